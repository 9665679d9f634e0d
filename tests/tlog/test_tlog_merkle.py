"""Merkle proofs: generation from hash readers, verification and tamper detection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_helpers import leaves, memory_reader, tile_reader

from services.tlog.errors import ProofError
from services.tlog.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

SETTINGS = settings(max_examples=80, deadline=None)
MAX_SIZE = 1500
ALL_LEAVES = leaves(MAX_SIZE)
ROOTS: dict[int, bytes] = {}


def _root(size: int) -> bytes:
    if size not in ROOTS:
        ROOTS[size] = root_hash(ALL_LEAVES[:size])
    return ROOTS[size]


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def _dummy_reader(ids: object) -> list[bytes]:
    assert isinstance(ids, list)
    return [bytes(32)] * len(ids)


def _inclusion_shape(index: int, size: int) -> list[bytes]:
    return inclusion_proof(index, size, _dummy_reader)


def _consistency_shape(size1: int, size2: int) -> list[bytes]:
    return consistency_proof(size1, size2, _dummy_reader)


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, size2)), size2


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    """The empty tree hashes to SHA-256 of the empty string."""
    assert root_hash([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_hash([]) == EMPTY_ROOT


def test_exhaustive_inclusion_small_trees() -> None:
    """Every leaf of every tree up to 64 leaves has a verifying inclusion proof."""
    for size in range(1, 65):
        reader = memory_reader(ALL_LEAVES[:size])
        for index in range(size):
            proof = inclusion_proof(index, size, reader)
            verify_inclusion(ALL_LEAVES[index], index, size, proof, _root(size))


def test_exhaustive_consistency_small_trees() -> None:
    """Every pair of sizes up to 64 has a verifying consistency proof."""
    for size2 in range(1, 65):
        reader = memory_reader(ALL_LEAVES[:size2])
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(size1, size2, reader)
            verify_consistency(size1, size2, proof, _root(size1), _root(size2))


@SETTINGS
@given(index_and_size())
def test_inclusion_from_memory_reader(case: tuple[int, int]) -> None:
    """Inclusion proofs built from a plain in-memory reader verify."""
    index, size = case
    proof = inclusion_proof(index, size, memory_reader(ALL_LEAVES[:size]))
    verify_inclusion(ALL_LEAVES[index], index, size, proof, _root(size))


@SETTINGS
@given(two_sizes())
def test_consistency_from_memory_reader(case: tuple[int, int]) -> None:
    """Consistency proofs built from a plain in-memory reader verify."""
    size1, size2 = case
    proof = consistency_proof(size1, size2, memory_reader(ALL_LEAVES[:size2]))
    verify_consistency(size1, size2, proof, _root(size1), _root(size2))


@SETTINGS
@given(index_and_size())
def test_proof_reader_called_once_with_complete_nodes(case: tuple[int, int]) -> None:
    """Proof generation makes one batch call for O(log n) complete-subtree ids."""
    index, size = case
    calls: list[list[tuple[int, int]]] = []
    inner = memory_reader(ALL_LEAVES[:size])

    def reader(ids: object) -> list[bytes]:
        assert isinstance(ids, list)
        calls.append(ids)
        return inner(ids)

    inclusion_proof(index, size, reader)
    assert len(calls) <= 1
    for ids in calls:
        assert len(ids) <= 2 * size.bit_length()
        assert all((i + 1) << lvl <= size for lvl, i in ids)


@SETTINGS
@given(index_and_size(), st.integers(0, 10**6), st.sampled_from(["proof", "leaf", "root", "index", "size"]))
def test_inclusion_tamper_fails(case: tuple[int, int], bit: int, target: str) -> None:
    """Flipping a bit of the proof, leaf, root, index or size makes inclusion fail.

    RFC 9162 proofs bind the tree size only through the path shape (the
    signed checkpoint binds size to root), so a flipped size is only
    required to fail when it changes the proof length.
    """
    index, size = case
    proof = inclusion_proof(index, size, memory_reader(ALL_LEAVES[:size]))
    leaf, root = ALL_LEAVES[index], _root(size)
    if target == "proof":
        if not proof:
            return
        k = bit % len(proof)
        proof[k] = _flip(proof[k], bit // len(proof))
    elif target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    elif target == "index":
        index ^= 1 << (bit % 12)
    else:
        size ^= 1 << (bit % 12)
        if index < size and len(_inclusion_shape(index, size)) == len(proof):
            return
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


@SETTINGS
@given(two_sizes(), st.integers(0, 10**6), st.sampled_from(["proof", "root1", "root2", "size1", "size2"]))
def test_consistency_tamper_fails(case: tuple[int, int], bit: int, target: str) -> None:
    """Flipping a bit of the proof, either root or either size makes consistency fail.

    As for inclusion, a flipped size must fail when it changes the proof length.
    """
    size1, size2 = case
    proof = consistency_proof(size1, size2, memory_reader(ALL_LEAVES[:size2]))
    root1, root2 = _root(size1), _root(size2)
    if target == "proof":
        if not proof:
            return
        k = bit % len(proof)
        proof[k] = _flip(proof[k], bit // len(proof))
    elif target == "root1":
        root1 = _flip(root1, bit)
    elif target == "root2":
        root2 = _flip(root2, bit)
    else:
        if target == "size1":
            size1 ^= 1 << (bit % 12)
        else:
            size2 ^= 1 << (bit % 12)
        if 0 < size1 < size2 and len(_consistency_shape(size1, size2)) == len(proof):
            return
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, root2)


def test_inclusion_rejects_short_hashes() -> None:
    """A proof element that is not 32 bytes is rejected before hashing."""
    proof = inclusion_proof(0, 2, memory_reader(ALL_LEAVES[:2]))
    with pytest.raises(ProofError, match="32"):
        verify_inclusion(ALL_LEAVES[0], 0, 2, [proof[0][:31]], _root(2))


def test_inclusion_rejects_index_at_size() -> None:
    """An index equal to the tree size is out of range."""
    with pytest.raises(ProofError, match="not below"):
        verify_inclusion(ALL_LEAVES[0], 4, 4, [], _root(4))


def test_generation_rejects_bad_arguments() -> None:
    """Proof generation refuses an index outside the tree and size1 of zero."""
    reader = memory_reader(ALL_LEAVES[:4])
    with pytest.raises(ValueError):
        inclusion_proof(4, 4, reader)
    with pytest.raises(ValueError):
        consistency_proof(0, 4, reader)


def test_generation_rejects_short_reader() -> None:
    """A reader that returns the wrong number of hashes is reported, not silently zipped."""
    with pytest.raises(ProofError, match="returned"):
        inclusion_proof(0, 8, lambda ids: [])


@settings(max_examples=25, deadline=None)
@given(index_and_size())
def test_inclusion_from_tiles(case: tuple[int, int]) -> None:
    """Inclusion proofs served from TileBuilder tiles verify."""
    index, size = case
    proof = inclusion_proof(index, size, tile_reader(ALL_LEAVES[:size]))
    verify_inclusion(ALL_LEAVES[index], index, size, proof, _root(size))


@settings(max_examples=25, deadline=None)
@given(two_sizes())
def test_consistency_from_tiles(case: tuple[int, int]) -> None:
    """Consistency proofs served from TileBuilder tiles verify."""
    size1, size2 = case
    proof = consistency_proof(size1, size2, tile_reader(ALL_LEAVES[:size2]))
    verify_consistency(size1, size2, proof, _root(size1), _root(size2))
