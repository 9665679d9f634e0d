"""Package dependencies point one way: the ledger owns all custody data and never imports the sealer."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_ledger_imports_nothing_from_the_sealer() -> None:
    """No module of services/ledger imports services.sealer (the sealer writes through the ledger's seal store)."""
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "services" / "ledger").rglob("*.py"))
        for name in _imported_modules(path)
        if name == "services.sealer" or name.startswith("services.sealer.")
    ]
    assert not offenders, "\n".join(offenders)


def test_the_sealer_has_no_store_of_its_own() -> None:
    """The seal store has one home: the sealer keeps no store or keys module beside the ledger's."""
    assert not [p.name for p in (REPO / "services" / "sealer").glob("*.py") if p.name in {"store.py", "keys.py"}]
