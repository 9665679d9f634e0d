"""Run the ledger service: `python -m services.ledger` (settings from the environment)."""

from services.kit.server import run_service
from services.ledger.app import make_service
from services.ledger.settings import load_settings

if __name__ == "__main__":
    run_service("ledger", load_settings, make_service)
