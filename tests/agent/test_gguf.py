"""The GGUF header reader: correct on real files, a clean GGUFError on anything else."""

from __future__ import annotations

import contextlib
import io
import struct
import time
import tracemalloc
from pathlib import Path

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.models.gguf import FILE_TYPES, TENSOR_TYPES, GGUFError, Limits, SkippedArray, parse_gguf, read_gguf
from tests.agent.gguf_fixtures import gguf_string, header, write_model

PAD = b"\0" * 4096  # room so that length checks fail on the limit, not on the file size


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes()


def test_reads_architecture_name_and_size_label(tmp_path: Path) -> None:
    """Architecture, name and size label come from the general.* keys."""
    info = read_gguf(write_model(tmp_path / "m.gguf"))
    assert (info.architecture, info.name, info.size_label) == ("llama", "Tiny Test Model", "528")


def test_reads_quantization_and_context_length(tmp_path: Path) -> None:
    """general.file_type maps to its quantisation name and <arch>.context_length is read."""
    info = read_gguf(write_model(tmp_path / "m.gguf", file_type=15))
    assert (info.version, info.quantization, info.context_length) == (3, "Q4_K_M", 4096)


def test_counts_parameters_from_tensor_shapes(tmp_path: Path) -> None:
    """The parameter count is the element count over all tensor shapes."""
    info = read_gguf(write_model(tmp_path / "m.gguf"))
    assert info.parameter_count == 32 * 16 + 16
    assert sorted(t.name for t in info.tensors) == ["output_norm.weight", "token_embd.weight"]


def test_quantization_falls_back_to_dominant_tensor_type(tmp_path: Path) -> None:
    """Without general.file_type the type holding most weights names the quantisation."""
    assert read_gguf(write_model(tmp_path / "m.gguf", file_type=None)).quantization == "F32"


def test_long_arrays_are_summarised_not_kept(tmp_path: Path) -> None:
    """A vocabulary longer than the keep bound is skipped and summarised; short arrays are kept."""
    info = read_gguf(write_model(tmp_path / "m.gguf"))
    assert info.metadata["tokenizer.ggml.tokens"] == SkippedArray(element_type=8, length=300)
    assert info.metadata["test.small_array"] == [1, 2, 3]


def test_quantisation_tables_agree_with_reference() -> None:
    """Our file-type and tensor-type names match the reference package's enums."""
    for value, name in FILE_TYPES.items():
        assert gguf.LlamaFileType(value).name.removeprefix("MOSTLY_").replace("ALL_", "") == name
    for value, name in TENSOR_TYPES.items():
        assert gguf.GGMLQuantizationType(value).name == name


@pytest.mark.parametrize("cut", [3, 10, 23, 60, 200])
def test_truncated_file_is_rejected(model_bytes: bytes, cut: int) -> None:
    """A file cut anywhere in its header is a GGUFError."""
    with pytest.raises(GGUFError):
        parse_gguf(io.BytesIO(model_bytes[:cut]))


def test_wrong_magic_is_rejected(model_bytes: bytes) -> None:
    """A file not starting with GGUF is a GGUFError."""
    with pytest.raises(GGUFError, match="magic"):
        parse_gguf(io.BytesIO(b"GGML" + model_bytes[4:]))


def test_unsupported_version_is_rejected(model_bytes: bytes) -> None:
    """A version this reader does not know (anything but 1 to 3) is a GGUFError."""
    with pytest.raises(GGUFError, match="version"):
        parse_gguf(io.BytesIO(b"GGUF" + struct.pack("<I", 4) + model_bytes[8:]))


def _rejected_fast(data: bytes, match: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(GGUFError, match=match):
            parse_gguf(io.BytesIO(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 0.5
    assert peak < 1024 * 1024


def test_huge_tensor_count_is_rejected_quickly() -> None:
    """A tensor count of 2^60 fails at once without allocating."""
    _rejected_fast(header(1 << 60, 0) + PAD, "tensor count")


def test_huge_string_length_is_rejected_quickly() -> None:
    """A key claiming 2^62 bytes fails at once without allocating."""
    _rejected_fast(header(0, 1) + struct.pack("<Q", 1 << 62) + PAD, "string length")


def test_huge_array_length_is_rejected_quickly() -> None:
    """An array claiming 2^61 elements fails at once without allocating."""
    kv = gguf_string("a") + struct.pack("<IIQ", 9, 4, 1 << 61)
    _rejected_fast(header(0, 1) + kv + PAD, "array length")


def test_array_longer_than_the_file_is_rejected() -> None:
    """An array length within limits but past the end of the file is a GGUFError."""
    kv = gguf_string("a") + struct.pack("<IIQ", 9, 4, 1_000_000)
    _rejected_fast(header(0, 1) + kv + PAD, "past the end")


def test_unknown_value_type_is_rejected() -> None:
    """A metadata value of an unknown type is a GGUFError."""
    _rejected_fast(header(0, 1) + gguf_string("a") + struct.pack("<I", 99) + PAD, "unknown value type")


def test_header_byte_budget_is_enforced(model_bytes: bytes) -> None:
    """A header larger than the configured byte budget is a GGUFError."""
    with pytest.raises(GGUFError, match="header larger"):
        parse_gguf(io.BytesIO(model_bytes), Limits(max_header_bytes=256))


def test_too_many_dimensions_is_rejected() -> None:
    """A tensor with more than four dimensions is a GGUFError."""
    tensor = (
        gguf_string("t") + struct.pack("<I", 5) + struct.pack("<5Q", 1, 1, 1, 1, 1) + struct.pack("<IQ", 0, 0)
    )
    _rejected_fast(header(1, 0) + tensor + PAD, "dimensions")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512))
def test_random_bytes_only_raise_gguf_error(data: bytes) -> None:
    """Arbitrary bytes, with or without the magic, parse or raise GGUFError, nothing else."""
    for candidate in (data, b"GGUF" + struct.pack("<I", 3) + data):
        with contextlib.suppress(GGUFError):
            parse_gguf(io.BytesIO(candidate))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_model_only_raises_gguf_error(model_bytes: bytes, mutations: list[tuple[int, int]]) -> None:
    """A real model file with random bytes overwritten parses or raises GGUFError, nothing else."""
    header_size = 1200
    data = bytearray(model_bytes)
    for position, value in mutations:
        data[position % header_size] = value
    with contextlib.suppress(GGUFError):
        parse_gguf(io.BytesIO(bytes(data)))


def test_reads_a_version_1_header_with_32_bit_sizes() -> None:
    """GGUF v1 (32-bit counts, lengths and dimensions) is read, not refused."""
    def text(value: str) -> bytes:
        return struct.pack("<I", len(value)) + value.encode()

    body = b"GGUF" + struct.pack("<III", 1, 1, 1) + text("general.architecture") + struct.pack("<I", 8)
    body += text("llama") + text("w") + struct.pack("<III", 2, 4, 8) + struct.pack("<IQ", 0, 0)
    info = parse_gguf(io.BytesIO(body + PAD))
    assert (info.version, info.architecture, info.parameter_count) == (1, "llama", 32)
