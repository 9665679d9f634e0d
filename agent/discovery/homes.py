"""The homes discovery scans and the project folders inside them, walked within bounds.

A home comes from the password database or the agent's configuration; its
owner is whoever owns the folder. The project walk never follows a symbolic
link, never descends into hidden folders or package caches (where thousands of
folders and no user projects live), and stops at a depth and a folder count,
so a home with a million files costs a bounded time.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass

_NOISE = frozenset({
    "node_modules", "__pycache__", "venv", "site-packages", "Library", "AppData", "snap", "go", "target",
    "dist", "build", "vendor", "Pods", "DerivedData",
})


@dataclass(frozen=True)
class Home:
    """A home folder, its real path and the account that owns it."""

    path: str
    real: str
    uid: int
    user: str


@dataclass(frozen=True)
class WalkBounds:
    """How far the project walk goes."""

    max_depth: int = 5
    max_dirs: int = 50_000


def homes_of(paths: Iterable[str]) -> list[Home]:
    """Each existing home folder once (by real path), with its owner."""
    found: dict[str, Home] = {}
    for path in paths:
        try:
            real = os.path.realpath(path, strict=True)
            info = os.stat(real)
        except (OSError, RuntimeError, ValueError):
            continue
        # "/" as a home (root's, on some minimal systems) would make the project walk a file-system walk.
        if os.path.isdir(real) and real != os.sep and real not in found:
            found[real] = Home(path=os.path.normpath(path), real=real, uid=info.st_uid, user=user_name(info.st_uid))
    return sorted(found.values(), key=lambda h: h.path)


def root_home() -> list[str]:
    """The superuser's home: administrators run agents as root too, and it is below the human uid range."""
    try:
        return [pwd.getpwuid(0).pw_dir]
    except KeyError:
        return []


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


def project_dirs(home: Home, markers: frozenset[str], bounds: WalkBounds) -> dict[str, frozenset[str]]:
    """Folders under ``home`` (the home included) holding entries named in ``markers``, with those entries."""
    found: dict[str, frozenset[str]] = {}
    stack = [(home.path, 0)]
    visited = 0
    while stack and visited < bounds.max_dirs:
        folder, depth = stack.pop()
        visited += 1
        try:
            with os.scandir(folder) as entries:
                children = []
                present = []
                for entry in entries:
                    if entry.name in markers:
                        present.append(entry.name)
                    if depth < bounds.max_depth and _descend(entry):
                        children.append(entry.path)
        except OSError:
            continue
        if present:
            found[folder] = frozenset(present)
        stack.extend((child, depth + 1) for child in children)
    return dict(sorted(found.items()))


def _descend(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith(".") or entry.name in _NOISE:
        return False
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False
