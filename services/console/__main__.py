"""Run the console: `python -m services.console` (settings from the environment)."""

from services.console.app import run_console

if __name__ == "__main__":
    run_console()
