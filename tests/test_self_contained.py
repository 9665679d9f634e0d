"""The repository stands on its own: no tracked file names a path outside the checkout.

A fresh `git clone` has no neighbours, so a test, document or script that reaches beside the checkout
(a relative path climbing out of it, a Python path built from `__file__` that climbs above the root,
an absolute path to a sibling of the checkout, a symlink leading out) works only on the machine where
it was written. The scan runs over `git ls-files` at test time, so files added later are covered too.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# This module reads the checkout's parent folder on purpose (to learn its neighbours' names), and its
# own examples of references that climb out are built with os.pardir; the scan leaves it out.
SELF = Path(__file__).resolve().relative_to(REPO).as_posix()

# A run of parent steps that starts a path (not the middle of `a/..` or a `...` ellipsis), and the rest of it.
_CLIMB = re.compile(r"(?<![\w./\\-])((?:\.\./)+[^\s\"'`<>()\[\]{},;|*]*)")
# A Markdown link's target: `[text](target)` or `[text](target "title")`.
_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_URL = re.compile(r"[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_KEEP_DEPTH_METHODS = {"resolve", "absolute", "expanduser"}
# Directories whose other entries are other people's business, not neighbours of one checkout.
_COMMON_PARENTS = {Path("/"), Path("/home"), Path(tempfile.gettempdir()).resolve()}


def _tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [name for name in listing.stdout.decode().split("\0") if name]


def _read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file or one deleted since it was listed."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _relative_climbs(name: str, text: str) -> list[tuple[int, str]]:
    """Relative paths that leave the repository when resolved from the file's own directory."""
    found = []
    folder = posixpath.dirname(name)
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _CLIMB.finditer(line):
            resolved = posixpath.normpath(posixpath.join(folder, match.group(1)))
            if resolved == ".." or resolved.startswith("../"):
                found.append((number, match.group(1)))
    return found


def _path_depth(node: ast.expr, file_depth: int, names: dict[str, int]) -> int | None:
    """How many folders below the repository root the path expression `node` denotes.

    None when `node` is not a path derived from `__file__`; negative once it has climbed out of the
    repository (and it stays negative, whatever is joined after).
    """
    match node:
        case ast.Name(id="__file__"):
            return file_depth
        case ast.Name(id=name) if name in names:
            return names[name]
        case ast.Call(func=ast.Name(id="Path" | "PurePath"), args=[inner]):
            return _path_depth(inner, file_depth, names)
        case ast.Call(func=ast.Attribute(value=inner, attr=method), args=[]) if method in _KEEP_DEPTH_METHODS:
            return _path_depth(inner, file_depth, names)
        case ast.Attribute(value=inner, attr="parent"):
            return _step(_path_depth(inner, file_depth, names), -1)
        case ast.Subscript(value=ast.Attribute(value=inner, attr="parents"), slice=ast.Constant(value=int(n))):
            return _step(_path_depth(inner, file_depth, names), -(n + 1))
        case ast.BinOp(left=inner, op=ast.Div(), right=ast.Constant(value=str(part))):
            return _join(_path_depth(inner, file_depth, names), part)
        case _:
            return None


def _step(depth: int | None, by: int) -> int | None:
    if depth is None or depth < 0:
        return depth
    return depth + by


def _join(depth: int | None, relative: str) -> int | None:
    for part in relative.split("/"):
        if depth is None or depth < 0:
            return depth
        depth = _step(depth, -1 if part == ".." else 0 if part in {"", "."} else 1)
    return depth


def _python_climbs(name: str, text: str) -> list[tuple[int, str]]:
    """Paths built from `__file__` (directly or through a module-level name) that climb above the root."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    file_depth = len(Path(name).parts)
    names: dict[str, int] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            depth = _path_depth(statement.value, file_depth, names)
            if isinstance(target, ast.Name) and depth is not None:
                names[target.id] = depth
    lines = text.splitlines()
    return sorted({(node.lineno, lines[node.lineno - 1].strip()) for node in ast.walk(tree)
                   if isinstance(node, ast.expr) and (_path_depth(node, file_depth, names) or 0) < 0})


def _sibling_paths(text: str, parent: Path, siblings: set[str]) -> list[tuple[int, str]]:
    """Absolute paths to an entry beside the checkout (the machine's own workspace)."""
    pattern = re.compile(r"(?<![\w./-])" + re.escape(str(parent)) + r"/([^\s/\"'`<>()\[\]{},;]+)")
    return [(number, match.group(0)) for number, line in enumerate(text.splitlines(), start=1)
            for match in pattern.finditer(line) if match.group(1) in siblings]


def outside_references(name: str, text: str, parent: Path | None = None,
                       siblings: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """Every (line, reference) in tracked file `name` with content `text` that points outside the repository."""
    found = _relative_climbs(name, text)
    if name.endswith(".py"):
        found += _python_climbs(name, text)
    if parent is not None and siblings:
        found += _sibling_paths(text, parent, set(siblings))
    return sorted(set(found))


def _neighbours() -> tuple[Path | None, frozenset[str]]:
    parent = REPO.parent
    if parent in _COMMON_PARENTS:
        return None, frozenset()
    return parent, frozenset(entry.name for entry in parent.iterdir() if entry.resolve() != REPO)


def _escaping_symlink(name: str) -> str | None:
    path = REPO / name
    if not path.is_symlink():
        return None
    target = path.resolve()
    return None if target == REPO or REPO in target.parents else os.readlink(path)


def test_no_tracked_file_names_a_path_outside_the_repository() -> None:
    """Each tracked file's paths stay inside the checkout; one line per offending file says where."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: there is no list of tracked files to scan")
    parent, siblings = _neighbours()
    offenders = []
    for name in _tracked_files():
        if name == SELF:
            continue
        link = _escaping_symlink(name)
        text = None if link is not None else _read_text(REPO / name)
        refs = [(0, f"symlink to {link}")] if link is not None else (
            outside_references(name, text, parent, siblings) if text is not None else [])
        if refs:
            offenders.append(f"{name}: " + "; ".join(f"line {line}: {ref}" for line, ref in refs))
    assert not offenders, "tracked files name paths outside the repository:\n" + "\n".join(offenders)


def broken_links(name: str, text: str, exists: Callable[[str], bool]) -> list[tuple[int, str]]:
    """Relative Markdown links in `name` whose target (repository-relative) does not exist."""
    folder = posixpath.dirname(name)
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _LINK.finditer(line):
            target = match.group(1).split("#", 1)[0]
            if not target or _URL.match(target):
                continue
            resolved = posixpath.normpath(posixpath.join(folder, target))
            if resolved.startswith("../") or not exists(resolved):
                found.append((number, match.group(1)))
    return found


def test_every_relative_link_in_a_tracked_markdown_file_resolves() -> None:
    """Each relative link of a tracked Markdown file names a file or folder of the checkout."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: there is no list of tracked files to scan")
    broken = []
    for name in _tracked_files():
        text = _read_text(REPO / name) if name.endswith(".md") else None
        refs = broken_links(name, text, lambda path: (REPO / path).exists()) if text is not None else []
        if refs:
            broken.append(f"{name}: " + "; ".join(f"line {line}: {ref}" for line, ref in refs))
    assert not broken, "Markdown links that lead nowhere:\n" + "\n".join(broken)


def test_a_link_to_a_missing_file_is_found() -> None:
    """A relative link whose target is missing is reported; URLs, anchors and present targets are not."""
    text = ("[a](../services/ledger/ACCESS_PATTERNS.md) [b](https://c2sp.org/tlog-proof) [c](#layout)\n"
            "[d](DEPLOY.md#probes) [e](../services/ledger/GONE.md)\n")
    present = {"services/ledger/ACCESS_PATTERNS.md", "docs/DEPLOY.md"}
    assert broken_links("docs/DESIGN.md", text, present.__contains__) == [(2, "../services/ledger/GONE.md")]


UP = os.pardir + "/"


@pytest.mark.parametrize(("name", "text", "line"), [
    ("README.md", f"Read `{os.pardir}/shared/DESIGN.md` first.", 1),
    ("docs/DESIGN.md", f"# Design\n[vectors]({os.pardir}/{os.pardir}/shared/testvectors)", 2),
    ("tests/tlog/helpers.py", f'V = Path(__file__).resolve().parents[2] / "{os.pardir}" / "shared"\n', 1),
    ("tests/conftest.py", 'REPO = Path(__file__).resolve().parents[1]\nV = REPO.parent / "shared"\n', 2),
    ("tests/x.py", 'V = Path(__file__).parent.parent.parent / "shared"\n', 1),
    ("tests/x.py", f'import os\nV = Path(__file__).parents[0] / "vectors/{UP * 3}shared"\n', 2),
])
def test_a_reference_climbing_out_is_found(name: str, text: str, line: int) -> None:
    """A relative path or a `__file__`-based path that leaves the repository is reported with its line."""
    assert [number for number, _ in outside_references(name, text)] == [line]


@pytest.mark.parametrize(("name", "text"), [
    ("deploy/k8s/overlays/aws/kustomization.yaml", f"resources:\n- {os.pardir}/{os.pardir}/base\n"),
    ("docs/DESIGN.md", f"[ledger]({os.pardir}/services/ledger/ACCESS_PATTERNS.md)"),
    ("tests/x.py", 'bad = ["a/b", "' + os.pardir + '", "x" * 65]\n'),
    ("tests/tlog/helpers.py", 'VECTORS = Path(__file__).resolve().parents[1] / "vectors"\n'),
    ("services/x.py", 'POLICY = Path(__file__).parent / "policy" / "default.yaml"\n'),
    ("README.md", 'cd "$(dirname "$0")/' + os.pardir + '"\nsee ... and more\n'),
])
def test_a_path_inside_the_repository_is_not_reported(name: str, text: str) -> None:
    """Relative paths that stay inside the checkout, and `..` as a plain value, are not reported."""
    assert outside_references(name, text) == []


def test_an_absolute_path_to_a_sibling_of_the_checkout_is_found() -> None:
    """An absolute path to an entry beside the checkout is reported; other absolute paths are not."""
    text = ("see /srv/work/shared/DESIGN.md\nconfig: /etc/lz-agent/agent.toml\nalso /srv/work/lz/README.md\n"
            "and /x/srv/work/shared\n")
    refs = outside_references("README.md", text, Path("/srv/work"), frozenset({"shared"}))
    assert refs == [(1, "/srv/work/shared")]
