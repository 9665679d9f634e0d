"""Heartbeats that the control plane has not acknowledged yet, kept until it has.

Every heartbeat goes into the spool before it is sent and leaves it when an
ack covers its sequence number, so heartbeats made while disconnected (or sent
but lost with the connection) are replayed, in order, after reconnecting.

:class:`FileSpool` keeps them in append-only segment files under the state
directory. A record is ``length (u32) | crc32 (u32) | seq (i64) | payload``
and is fsynced before :meth:`FileSpool.append` returns. A crash can leave a
torn record at the end of the newest segment; on open it fails its length or
checksum and is cut off, so it is ignored rather than replayed as garbage.
The spool is bounded: when it outgrows its budget the oldest segment goes,
and the number of heartbeats lost that way is counted (and reported upstream
in ``Heartbeat.spool_dropped``). A record the control plane refuses as invalid
is rejected: it is never replayed again, and the number rejected is counted
(``Heartbeat.spool_rejected``); the rejected seqs are kept in ``spool.json``
until an ack passes them, so a restart does not bring them back. :class:`MemorySpool` is the same contract in
memory, for the simulator's thousands of hosts.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from agent import statefile

log = logging.getLogger("lz.agent.spool")

_HEADER = struct.Struct("<IIq")
_SUFFIX = ".seg"
_MAX_RECORD = 16 * 1024 * 1024


class Spool(Protocol):
    """Ordered, bounded store of (seq, serialized heartbeat) awaiting acknowledgement."""

    @property
    def dropped(self) -> int:
        """Heartbeats lost to the size bound since the spool was created (cumulative)."""
        ...

    @property
    def rejected(self) -> int:
        """Records the control plane refused as invalid and that were dropped (cumulative)."""
        ...

    def append(self, seq: int, payload: bytes) -> None:
        """Keep ``payload`` under ``seq``, which must be above every seq already held."""
        ...

    def reject(self, seq: int) -> bool:
        """Never hand out ``seq`` again (the control plane refused it); True when it was held."""
        ...

    def trim(self, acked_seq: int) -> None:
        """Forget everything at or below ``acked_seq`` (the owner re-trims after a restart)."""
        ...

    def pending(self, after_seq: int) -> Iterator[tuple[int, bytes]]:
        """The held records above ``after_seq``, oldest first."""
        ...

    def last_seq(self) -> int:
        """The highest seq ever appended and still known (0 when none)."""
        ...

    def __len__(self) -> int: ...


class MemorySpool:
    """A :class:`Spool` in memory, bounded by a record count."""

    def __init__(self, max_records: int = 10_000) -> None:
        if max_records < 1:
            raise ValueError("max_records must be positive")
        self.max_records = max_records
        self._records: deque[tuple[int, bytes]] = deque()
        self._dropped = 0
        self._rejected = 0
        self._last = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def rejected(self) -> int:
        return self._rejected

    def reject(self, seq: int) -> bool:
        kept = deque(r for r in self._records if r[0] != seq)
        if len(kept) == len(self._records):
            return False
        self._records = kept
        self._rejected += 1
        return True

    def append(self, seq: int, payload: bytes) -> None:
        if seq <= self._last:
            raise ValueError(f"seq {seq} is not above the last seq {self._last}")
        self._records.append((seq, payload))
        self._last = seq
        while len(self._records) > self.max_records:
            self._records.popleft()
            self._dropped += 1

    def trim(self, acked_seq: int) -> None:
        while self._records and self._records[0][0] <= acked_seq:
            self._records.popleft()

    def pending(self, after_seq: int) -> Iterator[tuple[int, bytes]]:
        return iter([r for r in self._records if r[0] > after_seq])

    def last_seq(self) -> int:
        return self._last

    def __len__(self) -> int:
        return len(self._records)


@dataclass
class _Segment:
    path: Path
    first_seq: int
    last_seq: int
    count: int
    size: int


class FileSpool:
    """A :class:`Spool` in segment files under ``directory``, bounded by ``max_bytes``."""

    def __init__(
        self, directory: Path, max_bytes: int = 64 * 1024 * 1024, segment_bytes: int | None = None, fsync: bool = True
    ) -> None:
        if max_bytes < 1024:
            raise ValueError("a spool needs at least 1 KiB")
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(512, min(1024 * 1024, max_bytes // 8))
        self.fsync = fsync
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        statefile.adopt(self.dir)
        self._meta = self.dir / "spool.json"
        meta = statefile.read_json(self._meta)
        meta = meta if isinstance(meta, dict) else {}
        self._dropped = int(meta.get("dropped", 0))
        self._last = int(meta.get("last_seq", 0))
        self._rejected = int(meta.get("rejected", 0))
        self._rejected_seqs: set[int] = {int(seq) for seq in meta.get("rejected_seqs", ())}
        self._acked = 0
        self._segments: list[_Segment] = []
        self._active: BinaryIO | None = None
        for path in sorted(self.dir.glob("*" + _SUFFIX)):
            segment = _scan(path)
            if segment is None:
                path.unlink()
                continue
            self._segments.append(segment)
        if self._segments:
            self._last = max(self._last, self._segments[-1].last_seq)

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def rejected(self) -> int:
        return self._rejected

    def reject(self, seq: int) -> bool:
        if seq in self._rejected_seqs or seq <= self._acked:
            return False
        if not any(s.first_seq <= seq <= s.last_seq for s in self._segments):
            return False
        self._rejected_seqs.add(seq)
        self._rejected += 1
        self._save_meta()
        return True

    def append(self, seq: int, payload: bytes) -> None:
        if seq <= self._last:
            raise ValueError(f"seq {seq} is not above the last seq {self._last}")
        if len(payload) > _MAX_RECORD:
            raise ValueError("heartbeat too large for the spool")
        record = _HEADER.pack(len(payload), _crc(seq, payload), seq) + payload
        if self._active is None or not self._segments or self._segments[-1].size >= self.segment_bytes:
            self._roll(seq)
        assert self._active is not None
        self._active.write(record)
        self._active.flush()
        if self.fsync:
            os.fsync(self._active.fileno())
        segment = self._segments[-1]
        if segment.count == 0:
            segment.first_seq = seq
        segment.last_seq, segment.count, segment.size = seq, segment.count + 1, segment.size + len(record)
        self._last = seq
        self._enforce_bound()

    def trim(self, acked_seq: int) -> None:
        self._acked = max(self._acked, acked_seq)
        while self._segments and self._segments[0].last_seq <= acked_seq:
            self._drop_oldest(count_as_lost=False)
        passed = {seq for seq in self._rejected_seqs if seq <= acked_seq}
        if passed:
            self._rejected_seqs -= passed
            self._save_meta()

    def pending(self, after_seq: int) -> Iterator[tuple[int, bytes]]:
        after_seq = max(after_seq, self._acked)
        for segment in list(self._segments):
            if segment.last_seq <= after_seq:
                continue
            for seq, payload in _records(segment.path):
                if seq > after_seq and seq not in self._rejected_seqs:
                    yield seq, payload

    def last_seq(self) -> int:
        return self._last

    def __len__(self) -> int:
        return sum(s.count for s in self._segments)

    def size_bytes(self) -> int:
        """Bytes on disk in segment files."""
        return sum(s.size for s in self._segments)

    def close(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None

    def _roll(self, first_seq: int) -> None:
        self.close()
        path = self.dir / f"{first_seq:020d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        statefile.adopt(path)
        self._active = os.fdopen(fd, "ab")
        if not self._segments or self._segments[-1].path != path:
            self._segments.append(_Segment(path, first_seq, first_seq, 0, 0))
        _fsync_dir(self.dir)

    def _enforce_bound(self) -> None:
        lost = 0
        while self.size_bytes() > self.max_bytes and len(self._segments) > 1:
            lost += self._drop_oldest(count_as_lost=True)
        if lost:
            log.warning("spool full: dropped the %d oldest unacknowledged heartbeats", lost)

    def _drop_oldest(self, count_as_lost: bool) -> int:
        segment = self._segments.pop(0)
        if not self._segments:
            self.close()
        lost = 0
        if count_as_lost:
            if segment.first_seq > self._acked:
                lost = segment.count
            else:
                lost = sum(1 for seq, _ in _records(segment.path) if seq > self._acked)
            self._dropped += lost
        segment.path.unlink(missing_ok=True)
        self._rejected_seqs = {seq for seq in self._rejected_seqs if seq > segment.last_seq}
        self._save_meta()
        return lost

    def _save_meta(self) -> None:
        statefile.write_json(
            self._meta,
            {
                "dropped": self._dropped,
                "last_seq": self._last,
                "rejected": self._rejected,
                "rejected_seqs": sorted(self._rejected_seqs),
            },
        )


def _crc(seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<q", seq)))


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    """The intact records of one segment, stopping at the first torn or corrupt one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc, seq = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if length > _MAX_RECORD or len(payload) != length or _crc(seq, payload) != crc:
            return
        yield seq, payload
        offset = start + length


def _scan(path: Path) -> _Segment | None:
    """Index one segment, cutting off a torn tail; None when nothing intact is left."""
    first = last = count = size = 0
    for seq, payload in _records(path):
        if count and seq <= last:
            break
        first = first or seq
        last, count, size = seq, count + 1, size + _HEADER.size + len(payload)
    if size != path.stat().st_size:
        log.warning("spool segment %s: ignoring a torn or corrupt tail after %d records", path.name, count)
        with open(path, "r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())
    if count == 0:
        return None
    return _Segment(path, first, last, count, size)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
