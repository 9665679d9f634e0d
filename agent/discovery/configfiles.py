"""Reading agent configuration files that anyone on the host may have written.

Every file here is hostile input: it may be huge, a FIFO, a symlink out of the
home or into a loop, nested ten thousand levels deep, a YAML alias bomb, not
UTF-8, or owned by another user. :func:`read_config` reads at most
``max_bytes`` of a regular file that resolves inside its home and is owned by
the home's owner (or root), parses it without following aliases, and answers
a document or a one-line reason, never an exception. Reasons never quote the
file's content (a parser's message may, so only its class name is kept).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from typing import Any

import yaml

JSON, JSONC, TOML, YAML = "json", "jsonc", "toml", "yaml"
_STRING = r'("(?:\\.|[^"\\])*")'
_JSONC_COMMENT = re.compile(_STRING + r"|//[^\n]*|/\*.*?\*/", re.DOTALL)
_JSONC_TRAILING_COMMA = re.compile(_STRING + r"|,(\s*[}\]])")


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on one configuration file."""

    max_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class Parsed:
    """A parsed document, or why there is none (``document`` is None exactly when ``problem`` is set)."""

    document: Any
    problem: str = ""


def resolve_inside(path: str, home_real: str) -> str | None:
    """The real path of ``path`` when it exists and stays inside ``home_real``; None otherwise (loops too)."""
    try:
        real = os.path.realpath(path, strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if real == home_real or real.startswith(home_real.rstrip(os.sep) + os.sep):
        return real
    return None


def read_config(path: str, home_real: str, owner_uid: int, fmt: str, limits: ReadLimits) -> Parsed:
    """The parsed document at ``path`` within the home ``home_real`` owned by ``owner_uid``."""
    real = resolve_inside(path, home_real)
    if real is None:
        return Parsed(None, "resolves outside the home or cannot be resolved; not read")
    raw = _read_bounded(real, home_real, owner_uid, limits.max_bytes)
    if isinstance(raw, str):
        return Parsed(None, raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Parsed(None, "not UTF-8; not parsed")
    return _parse(text, fmt)


_NO_LINKS = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_beneath(home_real: str, real: str) -> int:
    """Open ``real`` component by component from the home without following any link.

    ``real`` was resolved a moment ago; a folder swapped for a link since then (to reach a file
    outside the home) makes this fail instead of being followed.
    """
    parts = os.path.relpath(real, home_real).split(os.sep)
    fd = os.open(home_real, os.O_RDONLY | os.O_DIRECTORY | _NO_LINKS)
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NO_LINKS, dir_fd=fd)
            os.close(fd)
            fd = child
        # O_NONBLOCK: a FIFO planted under a config's name must not hang the scan.
        return os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | _NO_LINKS, dir_fd=fd)
    finally:
        os.close(fd)


def _read_bounded(real: str, home_real: str, owner_uid: int, max_bytes: int) -> bytes | str:
    """The file's bytes, or a reason it was not read."""
    try:
        fd = _open_beneath(home_real, real)
    except OSError as exc:
        return f"cannot open ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file; not read"
        if info.st_uid not in (owner_uid, 0):
            return f"owned by uid {info.st_uid}, not by the home's owner; not read"
        if info.st_size > max_bytes:
            return f"{info.st_size} bytes, over the {max_bytes}-byte limit; not read"
        data = os.read(fd, max_bytes + 1)
        if len(data) > max_bytes:
            return f"over the {max_bytes}-byte limit; not read"
        return data
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    finally:
        os.close(fd)


def _parse(text: str, fmt: str) -> Parsed:
    try:
        if fmt == JSON:
            return Parsed(json.loads(text))
        if fmt == JSONC:
            return Parsed(json.loads(strip_jsonc(text)))
        if fmt == TOML:
            return Parsed(tomllib.loads(text))
        if fmt == YAML:
            return Parsed(yaml.load(text, Loader=_NoAliasLoader))  # noqa: S506 - a SafeLoader without aliases
    except RecursionError:
        return Parsed(None, "nested too deeply; not parsed")
    except (ValueError, yaml.YAMLError) as exc:
        return Parsed(None, f"not valid {fmt} ({type(exc).__name__}); not parsed")
    raise ValueError(f"unknown config format {fmt!r}")


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors' aliases, which is what makes a billion-laughs document small on disk."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases are not accepted", None)
        return super().compose_node(parent, index)


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas (VS Code's and Zed's settings) as plain JSON."""
    without_comments = _JSONC_COMMENT.sub(lambda m: m.group(1) or "", text)
    return _JSONC_TRAILING_COMMA.sub(lambda m: m.group(1) or m.group(2), without_comments)
