"""Compact Merkle range: the O(log n) frontier of a growing RFC 9162 tree.

The frontier holds one hash per set bit of the tree size: the roots of the
maximal complete subtrees covering ``[0, size)``, biggest (leftmost) first.
That is all the state needed to keep appending and to compute the root, so
the sealer persists it (``to_bytes``) instead of re-reading old leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from services.tlog.errors import MalformedError
from services.tlog.merkle import EMPTY_ROOT, HASH_SIZE, NodeId

__all__ = ["CompactRange", "NodeVisitor"]

NodeVisitor = Callable[[NodeId, bytes], None]
"""Called with each newly completed node ``(level, index)`` and its hash."""

_sha256 = hashlib.sha256
# Leaves are folded in aligned blocks of this many so the inner loop is a
# flat list comprehension per level (close to raw hashlib speed) while the
# temporary lists stay small.
_BLOCK_LEVEL = 12
_MAX_SIZE = (1 << 64) - 1


class CompactRange:
    """Append-only frontier of a Merkle tree over leaves ``[0, size)``."""

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Frontier hashes, largest subtree first (one per set bit of ``size``)."""
        return tuple(self._hashes)

    def frontier_ids(self) -> list[NodeId]:
        """Node ids of the frontier hashes, in the same order as :attr:`hashes`."""
        ids: list[NodeId] = []
        begin = 0
        for level in range(self._size.bit_length() - 1, -1, -1):
            if self._size >> level & 1:
                ids.append((level, begin >> level))
                begin += 1 << level
        return ids

    def append(self, leaf_hash: bytes, visit: NodeVisitor | None = None) -> None:
        """Add one leaf hash; O(1) amortised, O(log n) worst case.

        ``visit`` (if given) sees the leaf itself and every interior node the
        append completes, which is how a caller can persist complete subtrees.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise MalformedError(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
        index = self._size
        if index >= _MAX_SIZE:
            raise MalformedError("tree size would exceed 2**64 - 1")
        self._size = index + 1
        stack = self._hashes
        h = leaf_hash
        if visit is None:  # every walk: the loop without the visitor's tests
            while index & 1:
                h = _sha256(b"\x01" + stack.pop() + h).digest()
                index >>= 1
            stack.append(h)
            return
        level = 0
        visit((0, index), h)
        while index >> level & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            level += 1
            visit((level, index >> level), h)
        stack.append(h)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes; the fast path for bulk building.

        Leaves are consumed in aligned power-of-two blocks whose roots are
        computed level by level, then merged into the frontier exactly as a
        single big append would be.
        """
        pending: list[bytes] = []
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise MalformedError(f"leaf hash is {len(h)} bytes, want {HASH_SIZE}")
            pending.append(h)
            if len(pending) >= 1 << _BLOCK_LEVEL:
                self._extend_list(pending)
                pending = []
        if pending:
            self._extend_list(pending)

    def _extend_list(self, leaves: list[bytes]) -> None:
        if self._size + len(leaves) > _MAX_SIZE:
            raise MalformedError("tree size would exceed 2**64 - 1")
        pos = 0
        total = len(leaves)
        while pos < total:
            size = self._size
            # Largest aligned block that fits: limited by the alignment of
            # the current size and by how many leaves remain.
            align = (size & -size).bit_length() - 1 if size else 63
            level = min(align, (total - pos).bit_length() - 1)
            if level == 0:
                self.append(leaves[pos])
                pos += 1
                continue
            row = leaves[pos : pos + (1 << level)]
            for _ in range(level):
                it = iter(row)
                row = [_sha256(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=False)]
            self._push(row[0], level)
            pos += 1 << level

    def _push(self, h: bytes, level: int) -> None:
        """Merge the root of an aligned complete subtree at ``level`` into the frontier."""
        stack = self._hashes
        size = self._size
        lvl = level
        while size >> lvl & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            lvl += 1
        stack.append(h)
        self._size = size + (1 << level)

    def root(self) -> bytes:
        """RFC 9162 tree head of the leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = _sha256(b"\x01" + h + r).digest()
        return r

    def copy(self) -> CompactRange:
        """Independent copy, e.g. to compute a root without disturbing the original."""
        return CompactRange.from_parts(self._size, self._hashes)

    def to_bytes(self) -> bytes:
        """Serialise as 8-byte big-endian size followed by the frontier hashes."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Inverse of :meth:`to_bytes`; rejects a length that does not match the size."""
        if len(data) < 8:
            raise MalformedError("compact range encoding is shorter than 8 bytes")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        if len(body) != HASH_SIZE * size.bit_count():
            raise MalformedError(f"compact range of size {size} needs {size.bit_count()} hashes")
        return cls.from_parts(size, [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)])

    @classmethod
    def from_parts(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Rebuild from a size and its frontier hashes (largest subtree first)."""
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_SIZE:
            raise MalformedError(f"invalid tree size {size!r}")
        if len(hashes) != size.bit_count():
            raise MalformedError(f"compact range of size {size} needs {size.bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise MalformedError(f"frontier hashes must be {HASH_SIZE} bytes")
        cr = cls()
        cr._size = size
        cr._hashes = [bytes(h) for h in hashes]
        return cr

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"
