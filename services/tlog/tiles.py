"""C2SP tlog-tiles (tile height 8): paths, incremental building and proof reads.

A tile at tile level ``L`` and index ``N`` stores up to 256 consecutive hashes
of Merkle level ``8 * L``, starting at node index ``N * 256``.  A tile with
fewer than 256 hashes is a *partial* tile at the right edge of the tree; it
gets its own immutable path ``.p/<W>``, so nothing once written ever changes.

* :class:`TileBuilder` turns new leaf hashes into the tiles to write, carrying
  only the right-edge partial tiles as state (O(new leaves + log n) work).
* :func:`tile_hash_reader` adapts a tile fetcher into a
  :data:`~services.tlog.merkle.HashReader`, so proofs are served from tiles.
  An inclusion or consistency proof touches at most three tiles per tile
  level (the tiles on the path(s) and the right-edge tile), i.e.
  O(log_256 n) reads: at most 9 for a 16-million-leaf tree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from services.tlog.compact import CompactRange
from services.tlog.errors import TileError
from services.tlog.merkle import HASH_SIZE, HashReader, NodeId

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileBuilder",
    "TileId",
    "TileReader",
    "tile_hash_reader",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_MAX_TILE_LEVEL = 63
_sha256 = hashlib.sha256


@dataclass(frozen=True, order=True)
class TileId:
    """A tile: tile ``level``, ``index`` within the level, ``width`` 1..256 (256 = full)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= _MAX_TILE_LEVEL or self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise TileError(f"invalid tile id ({self.level}, {self.index}, {self.width})")

    @property
    def is_partial(self) -> bool:
        """True for a right-edge tile with fewer than 256 hashes."""
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """The C2SP path, e.g. ``tile/0/x001/x234/067.p/8``."""
        groups = []
        n = self.index
        while True:
            groups.append(f"{n % 1000:03d}")
            n //= 1000
            if n == 0:
                break
        encoded = "/".join("x" + g for g in reversed(groups[1:]))
        encoded = f"{encoded}/{groups[0]}" if encoded else groups[0]
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{self.level}/{encoded}{suffix}"

    @classmethod
    def parse(cls, path: str) -> TileId:
        """Parse a C2SP tile path strictly (canonical index groups, width 1..255)."""
        m = _PATH_RE.fullmatch(path)
        if m is None:
            raise TileError(f"not a tile path: {path!r}")
        level = int(m.group("level"))
        parts = m.group("index").split("/")
        index = int("".join(p.removeprefix("x") for p in parts))
        width = int(m.group("width")) if m.group("width") else TILE_WIDTH
        tid = cls(level, index, width)
        if tid.path != path:
            raise TileError(f"non-canonical tile path: {path!r}")
        return tid


_PATH_RE = re.compile(
    r"tile/(?P<level>0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


class Tile(NamedTuple):
    """A tile to store: its id and its body (``width * 32`` bytes)."""

    tile_id: TileId
    data: bytes

    @property
    def path(self) -> str:
        """Storage path of the tile."""
        return self.tile_id.path


TileReader = Callable[[TileId], bytes]
"""Fetches one tile body; the caller owns storage, caching and batching."""


def _tile_width(size: int, level: int, index: int) -> int:
    """Width of tile (level, index) in the tree of ``size`` leaves (0 if absent)."""
    count = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def _subtree_root(row: Sequence[bytes]) -> bytes:
    """Root of a power-of-two sized run of hashes."""
    while len(row) > 1:
        it = iter(row)
        row = [_sha256(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=False)]
    return row[0]


def _split(data: bytes) -> list[bytes]:
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


class TileBuilder:
    """Incrementally produces the tiles of a growing tree.

    State is just the right-edge partial row at each tile level, which is
    exactly what the previous run wrote as partial tiles, so a sealer can
    :meth:`resume` after a restart without re-reading old leaves.
    """

    __slots__ = ("_counts", "_rows")

    def __init__(self) -> None:
        self._rows: list[list[bytes]] = [[]]
        self._counts: list[int] = [0]

    @property
    def size(self) -> int:
        """Number of leaves covered by the tiles produced so far."""
        return self._counts[0]

    @staticmethod
    def partial_tile_ids(size: int) -> list[TileId]:
        """The right-edge partial tiles that exist for ``size``, bottom level first."""
        ids: list[TileId] = []
        level = 0
        while size >> (TILE_HEIGHT * level):
            count = size >> (TILE_HEIGHT * level)
            if count % TILE_WIDTH:
                ids.append(TileId(level, count // TILE_WIDTH, count % TILE_WIDTH))
            level += 1
        return ids

    @classmethod
    def resume(cls, size: int, partial_tiles: Mapping[int, bytes], root: bytes | None = None) -> TileBuilder:
        """Restore the builder at ``size`` from its partial tiles, keyed by tile level.

        ``partial_tiles`` must hold exactly the tiles named by
        :meth:`partial_tile_ids`.  Passing the last signed ``root`` makes the
        restore self-checking: a wrong or stale partial tile is caught here
        instead of silently producing a forked tree.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise TileError(f"invalid tree size {size!r}")
        wanted = {t.level: t for t in cls.partial_tile_ids(size)}
        if set(partial_tiles) != set(wanted):
            raise TileError(f"size {size} needs partial tiles at levels {sorted(wanted)}, got {sorted(partial_tiles)}")
        builder = cls()
        levels = max(1, size.bit_length() // TILE_HEIGHT + 1)
        builder._rows = [[] for _ in range(levels)]
        builder._counts = [size >> (TILE_HEIGHT * lvl) for lvl in range(levels)]
        for level, tid in wanted.items():
            data = partial_tiles[level]
            if len(data) != tid.width * HASH_SIZE:
                raise TileError(f"partial tile {tid.path} is {len(data)} bytes, want {tid.width * HASH_SIZE}")
            builder._rows[level] = _split(data)
        if root is not None and builder.root() != root:
            raise TileError(f"partial tiles do not match the given root at size {size}")
        return builder

    def add(self, leaf_hashes: Iterable[bytes]) -> list[Tile]:
        """Append leaf hashes and return every tile to write for the new size.

        The result lists newly completed full tiles in the order they fill,
        then the new right-edge partial tiles (bottom level first) for the
        levels that changed.  Writing all of them makes storage complete for
        the new size.
        """
        out: list[Tile] = []
        touched: set[int] = set()
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise TileError(f"leaf hash is {len(h)} bytes, want {HASH_SIZE}")
            self._push(0, h, out, touched)
        for level in sorted(touched):
            row = self._rows[level]
            if row:
                tid = TileId(level, self._counts[level] // TILE_WIDTH, len(row))
                out.append(Tile(tid, b"".join(row)))
        return out

    def _push(self, level: int, h: bytes, out: list[Tile], touched: set[int]) -> None:
        while True:
            if level == len(self._rows):
                self._rows.append([])
                self._counts.append(0)
            row = self._rows[level]
            row.append(h)
            self._counts[level] += 1
            touched.add(level)
            if len(row) < TILE_WIDTH:
                return
            out.append(Tile(TileId(level, self._counts[level] // TILE_WIDTH - 1), b"".join(row)))
            h = _subtree_root(row)
            self._rows[level] = []
            level += 1

    def compact_range(self) -> CompactRange:
        """The frontier for the current size, derived from the partial rows."""
        frontier: list[bytes] = []
        for row in reversed(self._rows):
            pos = 0
            for bit in range(TILE_HEIGHT - 1, -1, -1):
                if len(row) >> bit & 1:
                    frontier.append(_subtree_root(row[pos : pos + (1 << bit)]))
                    pos += 1 << bit
        return CompactRange.from_parts(self.size, frontier)

    def root(self) -> bytes:
        """RFC 9162 root of the tree covered so far."""
        return self.compact_range().root()


def tile_hash_reader(size: int, read_tile: TileReader) -> HashReader:
    """Serve complete-subtree hashes of the tree of ``size`` from its tiles.

    Each batch fetches every distinct tile once (in sorted order) and checks
    its length; nodes above the bottom row of a tile are recomputed from that
    row (at most 255 hashes per tile).  Nodes that are not complete in the
    tree of ``size`` are refused, since no tile could hold them.
    """

    def read(ids: Sequence[NodeId]) -> list[bytes]:
        placement: list[tuple[TileId, int, int]] = []
        for level, index in ids:
            if level < 0 or index < 0 or (index + 1) << level > size:
                raise TileError(f"node ({level}, {index}) is not a complete subtree of size {size}")
            tile_level, sub = divmod(level, TILE_HEIGHT)
            first = index << sub
            tile_index = first // TILE_WIDTH
            width = _tile_width(size, tile_level, tile_index)
            placement.append((TileId(tile_level, tile_index, width), sub, (first % TILE_WIDTH) >> sub))
        pyramids: dict[TileId, list[list[bytes]]] = {}
        for tid in sorted({p[0] for p in placement}):
            data = read_tile(tid)
            if len(data) != tid.width * HASH_SIZE:
                raise TileError(f"tile {tid.path} is {len(data)} bytes, want {tid.width * HASH_SIZE}")
            pyramids[tid] = [_split(data)]
        out: list[bytes] = []
        for tid, sub, pos in placement:
            rows = pyramids[tid]
            while len(rows) <= sub:
                it = iter(rows[-1])
                rows.append([_sha256(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=False)])
            out.append(rows[sub][pos])
        return out

    return read
