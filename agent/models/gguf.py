"""A GGUF header reader written from the GGUF specification, for inventory only.

It reads the header, the metadata key/values and the tensor infos and never
touches tensor data. Model files come from untrusted places, so every count and
length is checked against :class:`Limits` *before* anything is allocated or
read, long arrays (token vocabularies) are skipped rather than kept, the total
number of header bytes read is capped, and every failure is a
:class:`GGUFError`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
# Version 1 is version 2 with 32-bit counts, lengths and dimensions.
SUPPORTED_VERSIONS = (1, 2, 3)
DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4

# Value type ids from the spec: (struct format, byte size) for the fixed-size ones.
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = range(10)
_UINT64, _INT64, _FLOAT64 = 10, 11, 12
_SCALARS: dict[int, tuple[str, int]] = {
    _UINT8: ("<B", 1),
    _INT8: ("<b", 1),
    _UINT16: ("<H", 2),
    _INT16: ("<h", 2),
    _UINT32: ("<I", 4),
    _INT32: ("<i", 4),
    _FLOAT32: ("<f", 4),
    _BOOL: ("<B", 1),
    _UINT64: ("<Q", 8),
    _INT64: ("<q", 8),
    _FLOAT64: ("<d", 8),
}

# general.file_type (llama_ftype) -> the quantisation name users know.
FILE_TYPES: Mapping[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}  # fmt: skip

# ggml_type of a tensor -> name; used when general.file_type is absent.
TENSOR_TYPES: Mapping[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip


class GGUFError(ValueError):
    """The file is not a GGUF file this reader accepts (bad magic, truncated, hostile, unsupported)."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds that keep a hostile header from costing time or memory."""

    max_tensors: int = 65_536
    max_kv: int = 16_384
    max_array_length: int = 4_000_000
    max_string_length: int = 4 * 1024 * 1024
    max_header_bytes: int = 256 * 1024 * 1024
    keep_array_length: int = 256
    # What stays in memory across the whole header: characters of kept strings (keys, values, tensor
    # names) and elements of kept arrays. A header needing more is refused, not half-read.
    max_kept_bytes: int = 8 * 1024 * 1024
    max_kept_elements: int = 65_536


@dataclass(frozen=True)
class SkippedArray:
    """An array longer than ``Limits.keep_array_length``: its type and length, not its contents."""

    element_type: int
    length: int


MetadataValue = int | float | bool | str | list["MetadataValue"] | SkippedArray


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and type of one tensor; its data is never read."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int


@dataclass(frozen=True)
class GGUFInfo:
    """What inventory needs from a GGUF header, plus the raw metadata for anything else."""

    version: int
    metadata: Mapping[str, MetadataValue]
    tensors: tuple[TensorInfo, ...]
    header_bytes: int

    @property
    def architecture(self) -> str | None:
        return _str(self.metadata.get("general.architecture"))

    @property
    def name(self) -> str | None:
        return _str(self.metadata.get("general.name"))

    @property
    def size_label(self) -> str | None:
        return _str(self.metadata.get("general.size_label"))

    @property
    def file_type(self) -> int | None:
        value = self.metadata.get("general.file_type")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def quantization(self) -> str | None:
        """From ``general.file_type``; otherwise the type holding the most weights."""
        if self.file_type is not None:
            return FILE_TYPES.get(self.file_type, f"ftype-{self.file_type}")
        weights: dict[int, int] = {}
        for tensor in self.tensors:
            if len(tensor.shape) >= 2:
                weights[tensor.ggml_type] = weights.get(tensor.ggml_type, 0) + _elements(tensor.shape)
        if not weights:
            return None
        dominant = max(weights, key=lambda t: weights[t])
        return TENSOR_TYPES.get(dominant, f"type-{dominant}")

    @property
    def context_length(self) -> int | None:
        if self.architecture is None:
            return None
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def alignment(self) -> int:
        value = self.metadata.get("general.alignment")
        return (
            value
            if isinstance(value, int) and not isinstance(value, bool) and value > 0
            else DEFAULT_ALIGNMENT
        )

    @property
    def parameter_count(self) -> int:
        """Elements across all tensors, i.e. the parameter count."""
        return sum(_elements(t.shape) for t in self.tensors)


def read_gguf(path: str | Path, limits: Limits | None = None) -> GGUFInfo:
    """Read the header of the GGUF file at ``path``."""
    try:
        with open(path, "rb") as handle:
            return parse_gguf(handle, limits)
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from exc


def parse_gguf(stream: BinaryIO, limits: Limits | None = None) -> GGUFInfo:
    """Parse a GGUF header from a seekable binary stream positioned at its start."""
    reader = _Reader(stream, limits or Limits())
    if reader.read(4) != MAGIC:
        raise GGUFError("not a GGUF file (bad magic)")
    version = reader.scalar(_UINT32)
    assert isinstance(version, int)
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            raise GGUFError(f"big-endian GGUF (version {swapped}) is not read")
        raise GGUFError(f"unsupported GGUF version {version}")
    reader.wide = version >= 2
    size = 8 if reader.wide else 4
    tensor_count = reader.count(reader.limits.max_tensors, "tensor count", minimum_bytes_each=size + 16)
    kv_count = reader.count(reader.limits.max_kv, "metadata count", minimum_bytes_each=size + 5)
    metadata: dict[str, MetadataValue] = {}
    for _ in range(kv_count):
        key = reader.string()
        metadata[key] = reader.value(reader.type_id())
    tensors = tuple(reader.tensor() for _ in range(tensor_count))
    return GGUFInfo(version=version, metadata=metadata, tensors=tensors, header_bytes=reader.consumed)


class _Reader:
    """Little-endian reads with a byte budget and a known file size to reject impossible lengths early."""

    def __init__(self, stream: BinaryIO, limits: Limits) -> None:
        self.stream = stream
        self.limits = limits
        self.consumed = 0
        self.kept_bytes = 0
        self.kept_elements = 0
        self.wide = True
        try:
            start = stream.tell()
            self.size = stream.seek(0, io.SEEK_END) - start
            stream.seek(start)
        except (OSError, ValueError) as exc:
            raise GGUFError("stream is not seekable") from exc

    def _charge(self, n: int) -> None:
        if n < 0 or self.consumed + n > self.size:
            raise GGUFError(f"truncated at byte {self.consumed} (wanted {n} more)")
        if self.consumed + n > self.limits.max_header_bytes:
            raise GGUFError(f"header larger than {self.limits.max_header_bytes} bytes")
        self.consumed += n

    def read(self, n: int) -> bytes:
        self._charge(n)
        data = self.stream.read(n)
        if len(data) != n:
            raise GGUFError(f"truncated at byte {self.consumed - n}")
        return data

    def skip(self, n: int) -> None:
        self._charge(n)
        self.stream.seek(n, io.SEEK_CUR)

    def scalar(self, type_id: int) -> int | float | bool:
        fmt, size = _SCALARS[type_id]
        (value,) = struct.unpack(fmt, self.read(size))
        if type_id == _BOOL:
            return bool(value)
        return value  # type: ignore[no-any-return]

    def size_field(self) -> int:
        """A count, length or dimension: 64-bit since GGUF v2, 32-bit in v1."""
        value = self.scalar(_UINT64 if self.wide else _UINT32)
        assert isinstance(value, int)
        return value

    def count(self, limit: int, what: str, minimum_bytes_each: int) -> int:
        value = self.size_field()
        assert isinstance(value, int)
        if value > limit:
            raise GGUFError(f"{what} {value} exceeds limit {limit}")
        if value * minimum_bytes_each > self.size - self.consumed:
            raise GGUFError(f"{what} {value} cannot fit in the file")
        return value

    def length(self, limit: int, what: str, element_size: int) -> int:
        value = self.size_field()
        assert isinstance(value, int)
        if value > limit:
            raise GGUFError(f"{what} {value} exceeds limit {limit}")
        if value * element_size > self.size - self.consumed:
            raise GGUFError(f"{what} {value} runs past the end of the file")
        return value

    def _keep(self, n_bytes: int, n_elements: int = 0) -> None:
        self.kept_bytes += n_bytes
        self.kept_elements += n_elements
        if self.kept_bytes > self.limits.max_kept_bytes:
            raise GGUFError(f"metadata past the reader's memory budget ({self.limits.max_kept_bytes} bytes)")
        if self.kept_elements > self.limits.max_kept_elements:
            raise GGUFError(
                f"arrays past the reader's memory budget ({self.limits.max_kept_elements} elements)"
            )

    def string(self) -> str:
        n = self.length(self.limits.max_string_length, "string length", 1)
        self._keep(n)
        try:
            return self.read(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError(f"string at byte {self.consumed - n} is not UTF-8") from exc

    def skip_string(self) -> None:
        self.skip(self.length(self.limits.max_string_length, "string length", 1))

    def type_id(self) -> int:
        value = self.scalar(_UINT32)
        assert isinstance(value, int)
        if value not in _SCALARS and value not in (_STRING, _ARRAY):
            raise GGUFError(f"unknown value type {value}")
        return value

    def value(self, type_id: int, depth: int = 0) -> MetadataValue:
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            return self.array(depth)
        return self.scalar(type_id)

    def array(self, depth: int) -> MetadataValue:
        if depth > 2:
            raise GGUFError("arrays nested too deeply")
        element_type = self.type_id()
        size = 8 if self.wide else 4
        minimum = _SCALARS[element_type][1] if element_type in _SCALARS else size + 4 * (element_type == _ARRAY)
        n = self.length(self.limits.max_array_length, "array length", minimum)
        if n <= self.limits.keep_array_length:
            self._keep(0, n)
            return [self.value(element_type, depth + 1) for _ in range(n)]
        if element_type in _SCALARS:
            self.skip(n * _SCALARS[element_type][1])
        else:
            for _ in range(n):
                if element_type == _STRING:
                    self.skip_string()
                else:
                    self.array(depth + 1)
        return SkippedArray(element_type, n)

    def tensor(self) -> TensorInfo:
        name = self.string()
        dims = self.scalar(_UINT32)
        assert isinstance(dims, int)
        if dims > _MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {dims} dimensions (max {_MAX_DIMS})")
        shape: list[int] = []
        for _ in range(dims):
            dim = self.size_field()
            if dim >= 1 << 48:
                raise GGUFError(f"tensor {name!r} has an impossible dimension {dim}")
            shape.append(dim)
        ggml_type = self.scalar(_UINT32)
        offset = self.scalar(_UINT64)
        assert isinstance(ggml_type, int) and isinstance(offset, int)
        return TensorInfo(name=name, shape=tuple(shape), ggml_type=ggml_type, offset=offset)


def _elements(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def _str(value: MetadataValue | None) -> str | None:
    return value if isinstance(value, str) else None
