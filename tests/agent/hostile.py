"""Hostile files a user can drop on their own machine, written byte by byte (no reference writer would make them).

Each generator reproduces one finding of issue 21 so the tests keep the attack, not only the fix.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_UINT32, _STRING, _ARRAY, _UINT64 = 4, 8, 9, 10


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _kv_string(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", _STRING) + _string(value)


def _kv_uint64(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<IQ", _UINT64, value)


def overflowing_gguf(path: Path) -> Path:
    """166 bytes: a tensor whose four dimensions multiply to 2^188 and a context_length of 2^64-1."""
    body = b"GGUF" + struct.pack("<IQQ", 3, 1, 2)
    body += _kv_string("general.architecture", "llama")
    body += _kv_uint64("llama.context_length", (1 << 64) - 1)
    body += _string("w") + struct.pack("<I", 4) + struct.pack("<4Q", *([(1 << 47)] * 4)) + struct.pack("<IQ", 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def tiny_gguf(path: Path) -> Path:
    """The smallest valid GGUF header: no tensors, no metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))
    return path


def memory_hungry_gguf(path: Path, total_bytes: int = 135 * 1024 * 1024) -> Path:
    """Metadata of nested arrays (256 x 256) of two-byte strings: 10 bytes on disk, ~60 in a Python list each.

    Every array is at most the reader's kept-array length, so without a memory budget all of it is kept.
    """
    element = _string("ab")  # two characters: Python shares one-character strings, not these
    inner = struct.pack("<IQ", _STRING, 256) + element * 256
    value = struct.pack("<IIQ", _ARRAY, _ARRAY, 256) + inner * 256
    count = max(1, total_bytes // (len(value) + 16))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"GGUF" + struct.pack("<IQQ", 3, 0, count))
        for index in range(count):
            handle.write(_string(f"k{index:06d}") + value)
    return path


def ollama_manifest(store: Path, size: int = 1 << 70) -> Path:
    """An Ollama store entry whose manifest claims a model layer of ``size`` bytes (past int64 by default)."""
    digest = "sha256:" + "ab" * 32
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "hostile" / "latest"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": size}
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [layer]}))
    tiny_gguf(store / "blobs" / digest.replace(":", "-"))
    return manifest


def huggingface_repo(hub: Path, context: int = 1 << 80, dimension: int = 1 << 40) -> Path:
    """A hub cache repository with a huge max_position_embeddings and a safetensors shape past int64."""
    snapshot = hub / "models--hostile--model" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (hub / "models--hostile--model" / "refs").mkdir(exist_ok=True)
    (hub / "models--hostile--model" / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": context}))
    header = json.dumps({"w": {"dtype": "F16", "shape": [dimension] * 4, "data_offsets": [0, 0]}}).encode()
    (snapshot / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return snapshot


def many_models(root: Path, count: int = 900) -> list[Path]:
    """``count`` valid GGUF files with long names: together their records are far past ingest's 128 KiB."""
    return [tiny_gguf(root / f"model-{index:04d}-{'x' * 120}.gguf") for index in range(count)]
