"""Run the assets service: `python -m services.assets` (settings from the environment)."""

from services.assets.app import make_service
from services.assets.settings import load_settings
from services.kit.server import run_service

if __name__ == "__main__":
    run_service("assets", load_settings, make_service)
