"""Each service alone builds its keys, and every identifier is validated before it reaches one."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest

from services.kit.errors import InvalidArgument

REPO = Path(__file__).resolve().parents[2]
KEY_MODULES = sorted(
    str(path.relative_to(REPO).with_suffix("")).replace("/", ".")
    for path in (REPO / "services").rglob("keys.py")
)


def _load(name: str) -> ModuleType:
    return importlib.import_module(name)


def _builders(module: ModuleType) -> list[tuple[str, inspect.Signature, object]]:
    found = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        returns_key = inspect.signature(fn).return_annotation in ("str", str)
        if fn.__module__ == module.__name__ and not name.startswith("_") and returns_key:
            found.append((name, inspect.signature(fn), fn))
    return found


def test_there_are_key_modules() -> None:
    """The check below has key modules to look at (it would pass vacuously otherwise)."""
    assert "services.kit.tokens.keys" in KEY_MODULES
    assert len(KEY_MODULES) >= 2


def test_no_two_services_share_an_entity_prefix() -> None:
    """No entity prefix is declared by two key modules."""
    owner: dict[str, str] = {}
    for name in KEY_MODULES:
        for prefix in _load(name).ENTITY_PREFIXES:
            assert prefix not in owner, f"{prefix} is declared by {owner.get(prefix)} and {name}"
            owner[prefix] = name


@pytest.mark.parametrize("module_name", KEY_MODULES)
def test_every_key_builder_refuses_a_forged_identifier(module_name: str) -> None:
    """Each key builder (a public function returning a key string) rejects an identifier holding '#'."""
    for name, signature, fn in _builders(_load(module_name)):
        str_params = [p for p in signature.parameters.values() if p.annotation in ("str", str)]
        for target in str_params:
            args = {p.name: ("a#b" if p is target else "ok") if p in str_params else 1
                    for p in signature.parameters.values()}
            with pytest.raises(InvalidArgument):
                fn(**args)  # type: ignore[operator]
                pytest.fail(f"{module_name}.{name} accepted {target.name}='a#b'")


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            found.append((node.lineno, text))
    return found


def test_only_key_modules_spell_entity_prefixes() -> None:
    """Outside keys.py no code writes an entity prefix followed by '#' (so no second key builder exists)."""
    prefixes = {p for name in KEY_MODULES for p in _load(name).ENTITY_PREFIXES}
    offenders = []
    for path in (REPO / "services").rglob("*.py"):
        # IAM conditions describe key patterns for AWS to match; they never build a key.
        if path.name == "keys.py" or path == REPO / "services" / "kit" / "iam.py":
            continue
        for line, text in _literals(path):
            for prefix in prefixes:
                if f"{prefix}#" in text or f"#{prefix}" in text:
                    offenders.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    assert not offenders, "\n".join(offenders)
