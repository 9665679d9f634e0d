"""Run the sealer service: `python -m services.sealer` (settings from the environment)."""

from services.kit.server import run_service
from services.sealer.app import make_service
from services.sealer.settings import load_settings

if __name__ == "__main__":
    run_service("sealer", load_settings, make_service)
