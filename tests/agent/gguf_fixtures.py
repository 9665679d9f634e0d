"""GGUF files for tests, written with the reference ``gguf`` package (a test-only dependency)."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np


def write_model(path: Path, *, file_type: int | None = 15, arch: str = "llama") -> Path:
    """A tiny valid GGUF model: tensors 32x16 and 16, a vocabulary longer than the kept-array bound."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("Tiny Test Model")
    writer.add_size_label("528")
    writer.add_context_length(4096)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_token_list([f"tok{i}" for i in range(300)])
    writer.add_array("test.small_array", [1, 2, 3])
    writer.add_tensor("token_embd.weight", np.zeros((32, 16), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.zeros((16,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def header(tensors: int, kvs: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data
