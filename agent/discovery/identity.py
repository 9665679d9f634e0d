"""Which engine an executable is, from its bytes rather than its file name.

A renamed binary keeps what it was built from: Go embeds module paths, C++ builds keep their log
strings. Each executable is read once per (device, inode, size, mtime), through ``mmap`` so the
search runs in C without copying the file, and at most ``MAX_BYTES`` of it.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict

# Markers found in every build of the engine and in nothing else worth reporting.
MARKERS: tuple[tuple[bytes, str], ...] = (
    (b"github.com/ollama/ollama/", "ollama"),
    (b"llama_model_loader", "llama.cpp"),  # the function name llama.cpp logs under
)
MAX_BYTES = 512 * 1024 * 1024
_REMEMBERED = 4096

_verdicts: OrderedDict[tuple[int, int, int, int], str | None] = OrderedDict()
_lock = threading.Lock()


def engine_of_executable(path: str) -> str | None:
    """The engine kind whose marker the executable at ``path`` holds, or None (also when unreadable)."""
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    with _lock:
        if key in _verdicts:
            return _verdicts[key]
    verdict = _search(path, info.st_size)
    with _lock:
        _verdicts[key] = verdict
        while len(_verdicts) > _REMEMBERED:
            _verdicts.popitem(last=False)
    return verdict


def _search(path: str, size: int) -> str | None:
    if size == 0:
        return None
    try:
        with (
            open(path, "rb") as handle,
            mmap.mmap(handle.fileno(), min(size, MAX_BYTES), access=mmap.ACCESS_READ) as data,
        ):
            for marker, kind in MARKERS:
                if data.find(marker) != -1:
                    return kind
    except (OSError, ValueError):
        return None
    return None
