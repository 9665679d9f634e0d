"""Bounded filesystem walks and per-file model records.

Homes can hold millions of files; every walk here has a depth and a file-count
bound, never follows symlinked directories, and skips what it cannot read.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import bounds
from agent.inventory import Model
from agent.models.gguf import GGUFError, read_gguf

_SAFETENSORS_MAX_HEADER = 64 * 1024 * 1024


@dataclass(frozen=True)
class WalkLimits:
    """How far a walk may go."""

    max_depth: int = 6
    max_files: int = 50_000


def walk_files(root: Path, suffix: str, limits: WalkLimits) -> Iterator[Path]:
    """Regular files under ``root`` ending in ``suffix``, breadth-first, within ``limits``."""
    visited = 0
    level: list[Path] = [root]
    for _depth in range(limits.max_depth + 1):
        next_level: list[Path] = []
        for directory in level:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                visited += 1
                if visited > limits.max_files:
                    return
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith(".") or entry.name in (".ollama", ".lmstudio", ".cache"):
                            next_level.append(Path(entry.path))
                    elif entry.name.lower().endswith(suffix) and entry.is_file(follow_symlinks=True):
                        yield Path(entry.path)
                except OSError:
                    continue
        level = next_level
        if not level:
            return


def gguf_model(
    path: Path, name: str, source: str, digest: str | None = None, size: int | None = None
) -> Model:
    """A :class:`Model` for a GGUF file; what its header cannot tell (or an unreadable header) stays empty.

    A header the reader refuses, and any number out of its plausible range, is named in ``errors``:
    the file is still reported, only the fact is left out.
    """
    errors: list[str] = []
    try:
        info = read_gguf(path)
    except GGUFError as exc:
        info = None
        errors.append(f"gguf header: {exc}")
    except Exception as exc:  # a reader bug must cost one record, not the model inventory
        info = None
        errors.append(f"gguf header: unexpected {type(exc).__name__}: {exc}")
    if size is None:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
    parameters, context = (info.parameter_count or None, info.context_length) if info else (None, None)
    return Model(
        name=name,
        format="gguf",
        path=str(path),
        digest=digest,
        size_bytes=checked(bounds.SIZE_BYTES, size, errors) or 0,
        architecture=info.architecture if info else None,
        quantization=info.quantization if info else None,
        parameter_count=checked(bounds.PARAMETER_COUNT, parameters, errors),
        context_length=checked(bounds.CONTEXT_LENGTH, context, errors),
        source=source,
        errors=tuple(errors),
    )


def checked(allowed: bounds.Range, value: object, errors: list[str]) -> int | None:
    """``value`` when ``allowed`` admits it, else None with the reason appended to ``errors``."""
    kept, error = allowed.check(value)
    if error is not None:
        errors.append(error)
    return kept


def safetensors_parameters(path: Path) -> int | None:
    """Parameter count from a safetensors header (8-byte length, then JSON), without reading weights.

    The sum is unbounded here (Python ints); the caller range-checks it like any other number.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                return None
            (length,) = struct.unpack("<Q", raw)
            if length > _SAFETENSORS_MAX_HEADER:
                return None
            header: Any = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    total = 0
    for key, tensor in header.items():
        if key == "__metadata__" or not isinstance(tensor, dict):
            continue
        shape = tensor.get("shape")
        if isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape):
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total


def read_small_json(path: Path, limit: int = 1024 * 1024) -> Any:
    """Parsed JSON of a small file, or None when missing, too large or invalid."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        return None
    if len(data) > limit:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None
