"""Run the CLI as `python -m lz`."""

from lz.cli import main

raise SystemExit(main())
