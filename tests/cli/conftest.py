"""Fixtures for the CLI tests: `lz` as a subprocess against the stack, or with no stack at all."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from cli_helpers import Lz, clean_env  # noqa: E402

from services.kit.auth import Role  # noqa: E402


@pytest.fixture
def lz_offline(tmp_path: Path) -> Lz:
    """`lz` with no stack at all: an empty working directory and an empty HOME."""
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    return Lz(work, clean_env(tmp_path / "home"))


@pytest.fixture
def lz(stack: Any, tmp_path: Path) -> Lz:
    """`lz` run from a directory holding the stack's `.lz/stack.json`, as after `make up`."""
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    (work / ".lz").mkdir(parents=True)
    shutil.copy(stack.write_state(), work / ".lz" / "stack.json")
    return Lz(work, clean_env(tmp_path / "home"))


@pytest.fixture
def admin(lz: Lz, new_tenant: Any) -> Lz:
    """`lz` with the admin token of a fresh tenant in LZ_TOKEN."""
    return lz.with_env(LZ_TOKEN=new_tenant.tokens[Role.ADMIN])


@pytest.fixture
def viewer(lz: Lz, new_tenant: Any) -> Lz:
    return lz.with_env(LZ_TOKEN=new_tenant.tokens[Role.VIEWER])
