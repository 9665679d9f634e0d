"""Tiles: C2SP paths, incremental building, resuming and serving proofs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_helpers import leaves, tile_store

from services.tlog.errors import TileError
from services.tlog.merkle import consistency_proof, inclusion_proof, root_hash, verify_inclusion
from services.tlog.tiles import Tile, TileBuilder, TileId, tile_hash_reader

ALL = leaves(70000)


@pytest.mark.parametrize(
    ("tile", "path"),
    [
        (TileId(0, 0), "tile/0/000"),
        (TileId(0, 1234067), "tile/0/x001/x234/067"),
        (TileId(1, 1000), "tile/1/x001/000"),
        (TileId(2, 5, 17), "tile/2/005.p/17"),
        (TileId(63, 999), "tile/63/999"),
    ],
)
def test_tile_path_round_trip(tile: TileId, path: str) -> None:
    """Tile ids format to the C2SP path and parse back."""
    assert tile.path == path
    assert TileId.parse(path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",
        "tile/0/x000/001",
        "tile/00/000",
        "tile/64/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/010",
        "tile/entries/000",
        "tile/0/000/",
        "tile/0/x001",
    ],
)
def test_tile_path_rejects_non_canonical(path: str) -> None:
    """Non-canonical or out-of-range tile paths are rejected."""
    with pytest.raises(TileError):
        TileId.parse(path)


def _run(chunks: list[int], total: int) -> tuple[list[Tile], TileBuilder]:
    builder = TileBuilder()
    out: list[Tile] = []
    pos = 0
    for chunk in [*chunks, total]:
        k = min(chunk, total - pos)
        out.extend(builder.add(ALL[pos : pos + k]))
        pos += k
        if pos == total:
            break
    return out, builder


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.lists(st.integers(1, 700), max_size=8))
def test_chunked_building_matches_one_shot(total: int, chunks: list[int]) -> None:
    """Feeding leaves in random chunks yields the same full tiles and final partial tiles as one call."""
    one_shot, single = _run([], total)
    chunked, builder = _run(chunks, total)
    full = [t for t in chunked if not t.tile_id.is_partial]
    assert full == [t for t in one_shot if not t.tile_id.is_partial]
    final = {t.tile_id for t in one_shot if t.tile_id.is_partial}
    assert final == set(TileBuilder.partial_tile_ids(total))
    latest = {t.tile_id: t.data for t in chunked}
    assert {tid: latest[tid] for tid in final} == {t.tile_id: t.data for t in one_shot if t.tile_id.is_partial}
    assert builder.root() == single.root() == root_hash(ALL[:total])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 700))
def test_resume_from_partial_tiles(size: int, more: int) -> None:
    """A builder resumed from its partial tiles continues exactly like the original."""
    original = TileBuilder()
    tiles = {t.tile_id: t.data for t in original.add(ALL[:size])}
    partials = {tid.level: tiles[tid] for tid in TileBuilder.partial_tile_ids(size)}
    resumed = TileBuilder.resume(size, partials, root=root_hash(ALL[:size]))
    assert resumed.add(ALL[size : size + more]) == original.add(ALL[size : size + more])


def test_resume_rejects_wrong_root() -> None:
    """Resuming with a partial tile that does not match the signed root fails."""
    tiles = {t.tile_id: t.data for t in TileBuilder().add(ALL[:300])}
    partials = {tid.level: tiles[tid] for tid in TileBuilder.partial_tile_ids(300)}
    partials[0] = bytes(32) + partials[0][32:]
    with pytest.raises(TileError, match="root"):
        TileBuilder.resume(300, partials, root=root_hash(ALL[:300]))


def test_resume_rejects_missing_level() -> None:
    """Resuming without every needed partial tile fails and names the levels."""
    with pytest.raises(TileError, match="levels"):
        TileBuilder.resume(300, {})


def test_full_tile_content_is_level_hashes() -> None:
    """A level-1 tile holds the roots of consecutive 256-leaf subtrees."""
    store = tile_store(ALL[:65536])
    tile = store[TileId(1, 0)]
    assert tile[32:64] == root_hash(ALL[256:512])


@pytest.mark.parametrize("size", [1, 255, 256, 257, 65535, 65536, 65537, 70000])
def test_tile_reads_per_inclusion_proof_are_bounded(size: int) -> None:
    """An inclusion proof reads at most two tiles per tile level, each once."""
    store = tile_store(ALL[:size])
    reads: list[TileId] = []

    def read(tid: TileId) -> bytes:
        reads.append(tid)
        return store[tid]

    reader = tile_hash_reader(size, read)
    builder = TileBuilder()
    builder.add(ALL[:size])
    root = builder.root()
    tile_levels = (size.bit_length() + 7) // 8
    for index in {0, size // 3, size - 1}:
        reads.clear()
        proof = inclusion_proof(index, size, reader)
        verify_inclusion(ALL[index], index, size, proof, root)
        assert len(reads) == len(set(reads)) <= 2 * tile_levels


def test_tile_reads_per_consistency_proof_are_bounded() -> None:
    """A consistency proof reads at most three tiles per tile level."""
    store = tile_store(ALL[:70000])
    reads: list[TileId] = []
    reader = tile_hash_reader(70000, lambda tid: reads.append(tid) or store[tid])
    for size1 in (1, 300, 65536, 69999):
        reads.clear()
        consistency_proof(size1, 70000, reader)
        assert len(reads) <= 3 * 3


def test_tile_reader_rejects_wrong_length() -> None:
    """A tile body of the wrong length is reported instead of yielding wrong hashes."""
    reader = tile_hash_reader(10, lambda tid: b"\x00" * 31)
    with pytest.raises(TileError, match="bytes"):
        reader([(0, 0)])


def test_tile_reader_refuses_incomplete_nodes() -> None:
    """Asking for a subtree that is not complete at this size is an error."""
    reader = tile_hash_reader(10, lambda tid: b"")
    with pytest.raises(TileError, match="complete"):
        reader([(2, 2)])
