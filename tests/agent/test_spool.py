"""The on-disk heartbeat spool: bounded, ordered, crash-safe, trimmed by acks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.spool import FileSpool, MemorySpool


def _payload(seq: int, size: int = 100) -> bytes:
    return (f"heartbeat-{seq}-".encode() * size)[:size]


def _fill(spool: FileSpool | MemorySpool, first: int, last: int, size: int = 100) -> None:
    for seq in range(first, last + 1):
        spool.append(seq, _payload(seq, size))


def test_pending_replays_after_the_acked_seq_in_order(tmp_path: Path) -> None:
    """``pending(n)`` yields exactly the records above n, oldest first, with their bytes intact."""
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    _fill(spool, 1, 40)
    assert [(s, p) for s, p in spool.pending(25)] == [(s, _payload(s)) for s in range(26, 41)]


def test_trim_forgets_acknowledged_records(tmp_path: Path) -> None:
    """After ``trim(n)`` nothing at or below n is replayed and whole acked segments are deleted."""
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    _fill(spool, 1, 40)
    segments_before = len(list(tmp_path.glob("*.seg")))
    spool.trim(30)
    assert [s for s, _ in spool.pending(0)] == list(range(31, 41))
    assert len(list(tmp_path.glob("*.seg"))) < segments_before


def test_records_survive_reopening(tmp_path: Path) -> None:
    """A reopened spool replays what the previous one held and knows the last seq."""
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    _fill(spool, 1, 12)
    spool.close()
    again = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    assert [s for s, _ in again.pending(5)] == list(range(6, 13))
    assert again.last_seq() == 12


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    """Beyond its byte budget the spool drops the oldest heartbeats, keeps the newest, and counts the loss."""
    spool = FileSpool(tmp_path, max_bytes=4096, segment_bytes=1024)
    _fill(spool, 1, 200)
    kept = [s for s, _ in spool.pending(0)]
    assert spool.size_bytes() <= 4096
    assert kept == list(range(kept[0], 201))
    assert kept[0] > 1
    assert spool.dropped == kept[0] - 1


def test_the_drop_counter_survives_reopening(tmp_path: Path) -> None:
    """The number of dropped heartbeats is kept on disk, so a restart still reports it."""
    spool = FileSpool(tmp_path, max_bytes=4096, segment_bytes=1024)
    _fill(spool, 1, 200)
    dropped = spool.dropped
    spool.close()
    assert dropped > 0
    assert FileSpool(tmp_path, max_bytes=4096, segment_bytes=1024).dropped == dropped


def test_acked_records_dropped_by_the_bound_are_not_counted_as_lost(tmp_path: Path) -> None:
    """Dropping a segment whose records were already acknowledged does not raise the loss counter."""
    spool = FileSpool(tmp_path, max_bytes=4096, segment_bytes=1024)
    _fill(spool, 1, 30)
    spool.trim(30)
    _fill(spool, 31, 60)
    assert spool.dropped == sum(1 for _ in range(31, 61)) - len(spool)


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    """A record cut short by a crash is not replayed, and appends after reopening follow the intact ones."""
    spool = FileSpool(tmp_path, max_bytes=1 << 20)
    _fill(spool, 1, 5)
    spool.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    whole = segment.read_bytes()
    with open(segment, "ab") as handle:
        handle.write(whole[-60:-20])  # half of a record: a header and part of its payload
    again = FileSpool(tmp_path, max_bytes=1 << 20)
    assert [s for s, _ in again.pending(0)] == [1, 2, 3, 4, 5]
    again.append(6, _payload(6))
    again.close()
    assert [s for s, _ in FileSpool(tmp_path, max_bytes=1 << 20).pending(0)] == [1, 2, 3, 4, 5, 6]


def test_a_corrupt_last_record_is_ignored(tmp_path: Path) -> None:
    """A last record whose bytes do not match its checksum is dropped on reopen."""
    spool = FileSpool(tmp_path, max_bytes=1 << 20)
    _fill(spool, 1, 3)
    spool.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    with open(segment, "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    assert [s for s, _ in FileSpool(tmp_path, max_bytes=1 << 20).pending(0)] == [1, 2]


def test_seqs_must_increase(tmp_path: Path) -> None:
    """Appending a seq at or below the last one is refused."""
    spool = FileSpool(tmp_path, max_bytes=1 << 20)
    spool.append(7, b"x")
    with pytest.raises(ValueError, match="not above"):
        spool.append(7, b"y")


def test_memory_spool_drops_the_oldest_and_counts_them() -> None:
    """The in-memory spool keeps the newest ``max_records`` and counts what it dropped."""
    spool = MemorySpool(max_records=10)
    _fill(spool, 1, 25)
    assert [s for s, _ in spool.pending(0)] == list(range(16, 26))
    assert spool.dropped == 15
    spool.trim(20)
    assert [s for s, _ in spool.pending(0)] == list(range(21, 26))
