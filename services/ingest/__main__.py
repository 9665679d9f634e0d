"""Run the ingest service: `python -m services.ingest` (settings from the environment)."""

from services.ingest.app import make_service
from services.ingest.settings import load_settings
from services.kit.server import run_service

if __name__ == "__main__":
    run_service("ingest", load_settings, make_service)
