"""Lazy, cached SHA-256 of model files.

Hashing a 40 GB model takes minutes, so a digest is only computed when asked
for and is remembered by (path, size, mtime): an unchanged file is never read
twice, a changed one is hashed again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from agent import statefile

_CHUNK = 4 * 1024 * 1024
_MAX_ENTRIES = 10_000


class DigestCache:
    """``sha256:<hex>`` of files, persisted as ``digests.json`` in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "digests.json"
        self._lock = threading.Lock()
        loaded = statefile.read_json(self._path)
        self._entries: dict[str, list[object]] = loaded if isinstance(loaded, dict) else {}
        self._dirty = False

    def digest(self, path: str) -> str:
        """The file's digest, hashing it only if the cache has no entry for its current size and mtime."""
        stat = os.stat(path)
        key = [stat.st_size, stat.st_mtime_ns]
        with self._lock:
            entry = self._entries.get(path)
            if isinstance(entry, list) and len(entry) == 3 and entry[:2] == key:
                return str(entry[2])
        digest = _hash(path)
        with self._lock:
            self._entries[path] = [*key, digest]
            self._dirty = True
        return digest

    def save(self) -> None:
        """Persist new entries (oldest dropped beyond a bound)."""
        with self._lock:
            if not self._dirty:
                return
            while len(self._entries) > _MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            statefile.write_json(self._path, self._entries)
            self._dirty = False


def _hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
