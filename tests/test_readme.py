"""The README stays true: every setting a process reads is documented, every command it names exists."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

from services.kit import settings as s

REPO = Path(__file__).resolve().parents[1]
SETTINGS_MODULES = ("services.ledger.settings", "services.sealer.settings", "services.assets.settings",
                    "services.ingest.settings", "services.console.settings")


def _settings_classes() -> list[type]:
    classes: list[type] = []
    for name in SETTINGS_MODULES:
        module = importlib.import_module(name)
        classes += [obj for obj in vars(module).values()
                    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == name]
    return classes


def test_every_setting_is_in_the_readme() -> None:
    """Each environment variable a service reads appears in the README's settings tables."""
    readme = (REPO / "README.md").read_text()
    names = {row[0] for cls in _settings_classes() for row in s.describe(cls)}
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_make_target_the_readme_names_exists() -> None:
    """Each `make X` in the README is a target of the Makefile."""
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"make ([a-z][a-z-]*)", readme))
    assert named, "the README names no make command"
    assert named <= targets, f"README names missing targets: {sorted(named - targets)}"
