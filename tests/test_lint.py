"""The code meets the house rules: ruff, mypy (strict, generated code excluded) and buf lint STANDARD."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_make_lint_is_clean() -> None:
    """`make lint` (ruff, mypy --strict, buf lint) reports nothing."""
    result = subprocess.run(["make", "--no-print-directory", "lint"], cwd=REPO, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
