"""Which open files of an engine are sensitive.

Patterns are globs: a pattern without ``/`` matches the file's base name, one
with ``/`` matches the whole path (``*`` also crosses directories), and a
leading ``~/`` means the home directory of the user running the engine, which
is the home that matters when the agent itself runs as another user.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
from collections.abc import Iterable, Sequence

DEFAULT_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    "~/.ssh/*",
    "~/.aws/credentials",
    "~/.aws/config",
    "~/.config/gcloud/*",
    "~/.azure/*",
    "~/.kube/config",
    "~/.docker/config.json",
    "~/.netrc",
    "~/.git-credentials",
    "~/.pgpass",
    "id_rsa",
    "id_ed25519",
    "id_ecdsa",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.kdbx",
    "*.doc",
    "*.docx",
    "*.xls",
    "*.xlsx",
    "*.xlsm",
    "*.ppt",
    "*.pptx",
    "*.odt",
    "*.ods",
    "*.odp",
    "*.pdf",
    "*.csv",
    "*/.git/*",
    "*.py",
    "*.go",
    "*.rs",
    "*.java",
    "*.kt",
    "*.c",
    "*.cc",
    "*.cpp",
    "*.h",
    "*.ts",
    "*.tsx",
    "*.js",
    "*.rb",
    "*.cs",
    "*.swift",
    "*.sql",
)


def sensitive_files(paths: Iterable[str], patterns: Sequence[str], user: str) -> tuple[str, ...]:
    """The subset of ``paths`` matching any pattern, sorted."""
    home = _home(user)
    expanded = [_expand(p, home) for p in patterns]
    return tuple(sorted({path for path in paths if any(_matches(path, p) for p in expanded if p)}))


def _home(user: str) -> str | None:
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return None


def _expand(pattern: str, home: str | None) -> str:
    if pattern.startswith("~/"):
        return os.path.join(home, pattern[2:]) if home else ""
    return pattern


def _matches(path: str, pattern: str) -> bool:
    if "/" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    return fnmatch.fnmatchcase(os.path.basename(path), pattern)
