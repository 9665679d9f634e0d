"""CompactRange: agreement with the naive root, serialisation and node callbacks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_helpers import leaves

from services.tlog.compact import CompactRange
from services.tlog.errors import MalformedError
from services.tlog.merkle import EMPTY_ROOT, root_hash

ALL = leaves(5000)


def test_empty_range_has_empty_root() -> None:
    """A new CompactRange has size 0 and the empty-tree root."""
    cr = CompactRange()
    assert (cr.size, cr.root()) == (0, EMPTY_ROOT)


def test_append_matches_naive_root_for_small_sizes() -> None:
    """Appending one by one gives the naive root at every size up to 300."""
    cr = CompactRange()
    for n, h in enumerate(ALL[:300], start=1):
        cr.append(h)
        assert cr.root() == root_hash(ALL[:n])
        assert len(cr.hashes) == n.bit_count()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 1200), min_size=1, max_size=6))
def test_extend_in_chunks_matches_naive_root(chunks: list[int]) -> None:
    """Extending in arbitrary chunk sizes gives the same frontier as the naive root."""
    cr = CompactRange()
    pos = 0
    for k in chunks:
        cr.extend(ALL[pos : pos + k])
        pos = min(pos + k, len(ALL))
    assert cr.size == pos
    assert cr.root() == root_hash(ALL[:pos])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 5000))
def test_bytes_round_trip(size: int) -> None:
    """to_bytes/from_bytes round-trips and resuming gives the same later root."""
    cr = CompactRange()
    cr.extend(ALL[:size])
    restored = CompactRange.from_bytes(cr.to_bytes())
    assert restored == cr
    restored.extend(ALL[size : size + 7])
    cr.extend(ALL[size : size + 7])
    assert restored.root() == cr.root()


def test_from_bytes_rejects_wrong_length() -> None:
    """Decoding refuses a body whose hash count does not match the size."""
    cr = CompactRange()
    cr.extend(ALL[:7])
    with pytest.raises(MalformedError):
        CompactRange.from_bytes(cr.to_bytes()[:-1])
    with pytest.raises(MalformedError):
        CompactRange.from_bytes(b"\x00" * 7)


def test_append_rejects_short_hash() -> None:
    """A leaf hash that is not 32 bytes is refused."""
    with pytest.raises(MalformedError):
        CompactRange().append(b"short")


def test_visit_reports_every_completed_node() -> None:
    """The append callback reports every complete subtree exactly once with its hash."""
    seen: dict[tuple[int, int], bytes] = {}
    cr = CompactRange()
    for h in ALL[:37]:
        cr.append(h, seen.__setitem__)
    for (level, index), digest in seen.items():
        assert digest == root_hash(ALL[index << level : (index + 1) << level])
    assert len(seen) == sum(37 >> lvl for lvl in range(7))


def test_frontier_ids_name_the_frontier_subtrees() -> None:
    """frontier_ids lists the complete subtrees whose roots are the frontier hashes."""
    cr = CompactRange()
    cr.extend(ALL[:13])
    ids = cr.frontier_ids()
    assert ids == [(3, 0), (2, 2), (0, 12)]
    assert list(cr.hashes) == [root_hash(ALL[i << lvl : (i + 1) << lvl]) for lvl, i in ids]
