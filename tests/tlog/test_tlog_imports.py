"""services.tlog stays a pure library: standard library and cryptography only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import importlib, pkgutil, sys
import services.tlog as pkg
for info in pkgutil.iter_modules(pkg.__path__):
    importlib.import_module(f"services.tlog.{info.name}")
bad = sorted(m for m in sys.modules if m.split(".")[0] in {"boto3", "botocore", "grpc", "google", "moto"})
print(",".join(bad))
"""


def test_tlog_imports_neither_boto3_nor_grpc() -> None:
    """Importing every services.tlog module loads no AWS or gRPC package."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, cwd=REPO, check=True
    )
    assert result.stdout.strip() == ""
