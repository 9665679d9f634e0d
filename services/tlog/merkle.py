"""RFC 9162 Merkle tree hashing, proof verification and proof generation.

Hashes follow RFC 9162 section 2.1.1: ``leaf = SHA-256(0x00 || data)`` and
``node = SHA-256(0x01 || left || right)``; the empty tree hashes to
``SHA-256("")``.  Verification implements the algorithms of sections 2.1.3.2
and 2.1.4.2 literally, because any "simplification" of those bit-twiddling
loops is where real-world verifiers have gone wrong.

Proof generation never touches leaves.  It asks a :data:`HashReader` for the
hashes of *complete* subtrees only, named ``(level, index)`` = the root of the
``2**level`` leaves starting at ``index * 2**level``.  Complete subtrees never
change once written, which is what lets them live in immutable storage (tiles);
hashes of the incomplete right edge are composed here from complete ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from services.tlog.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "HashReader",
    "NodeId",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_hash_reader",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]
"""``(level, index)``: the complete subtree of ``2**level`` leaves from ``index << level``."""

HashReader = Callable[[Sequence[NodeId]], Sequence[bytes]]
"""Returns the hashes of the requested complete-subtree nodes, in request order."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Hash leaf data with the 0x00 domain-separation prefix of RFC 9162."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes with the 0x01 interior-node prefix of RFC 9162."""
    return _sha256(b"\x01" + left + right).digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Compute MTH over leaf hashes by the naive recursive definition.

    This is the reference against which the fast structures are tested; it is
    O(n) hashes but O(n log n) slicing, so do not use it on large trees.
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split_point(n)
    return node_hash(root_hash(leaf_hashes[:k]), root_hash(leaf_hashes[k:]))


def _split_point(n: int) -> int:
    """Return the largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, want {HASH_SIZE}")


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"{name} must be a non-negative integer, got {value!r}")


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Implements RFC 9162 section 2.1.3.2.  Returns normally on success and
    raises :class:`ProofError` saying what failed otherwise.
    """
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root", root)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof is too long for index {index} size {size}")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short for index {index} size {size}")
    if r != root:
        raise ProofError(f"inclusion proof for index {index} size {size} does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2``/``root2`` extends the tree of ``size1``/``root1``.

    Implements RFC 9162 section 2.1.4.2.  Equal sizes need an empty proof and
    equal roots (an empty tree must have the empty root); a non-empty tree is
    never provably consistent with the empty one, so ``size1 == 0 < size2``
    fails rather than passing vacuously.
    """
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size1 > size2:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof is not empty")
        if root1 != root2:
            raise ProofError(f"sizes are equal ({size1}) but the roots differ")
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise ProofError("a tree of size 0 must have the empty-tree root")
        return
    if size1 == 0:
        raise ProofError("consistency with the empty tree (size1 = 0) proves nothing")
    if not proof:
        raise ProofError(f"empty consistency proof for sizes {size1} -> {size2}")
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof {size1} -> {size2} has too many hashes")
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof {size1} -> {size2} has too few hashes")
    if fr != root1:
        raise ProofError(f"consistency proof {size1} -> {size2} does not lead to root1")
    if sr != root2:
        raise ProofError(f"consistency proof {size1} -> {size2} does not lead to root2")


# --- proof generation -------------------------------------------------------

_Group = list[NodeId]
"""Complete subtrees, left to right, whose right fold is one proof hash."""


def _range_nodes(begin: int, end: int) -> _Group:
    """Decompose leaf range [begin, end) into complete subtrees, left to right.

    Only valid for ranges that are subtrees of the RFC 9162 tree shape (begin
    aligned to a power of two at least end - begin), which is all we need: the
    right fold of these nodes then equals MTH of the range.
    """
    nodes: _Group = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def _inclusion_plan(index: int, size: int) -> list[_Group]:
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not below tree size {size}")
    plan: list[_Group] = []
    level = 0
    while (1 << level) < size:
        sibling = (index >> level) ^ 1
        begin = sibling << level
        if begin < size:
            plan.append(_range_nodes(begin, min(begin + (1 << level), size)))
        level += 1
    return plan


def _consistency_plan(size1: int, size2: int) -> list[_Group]:
    if not 0 < size1 <= size2:
        raise ValueError(f"need 0 < size1 <= size2, got {size1} and {size2}")
    plan: list[_Group] = []
    # Iterative form of RFC 9162 SUBPROOF(m, D[lo:hi], b); results are
    # collected innermost-first, which is the order the proof lists them.
    outer: list[_Group] = []
    lo, hi, complete = 0, size2, True
    while size1 != hi:
        k = _split_point(hi - lo)
        if size1 - lo <= k:
            outer.append(_range_nodes(lo + k, hi))
            hi = lo + k
        else:
            outer.append(_range_nodes(lo, lo + k))
            lo += k
            complete = False
    if not complete:
        plan.append(_range_nodes(lo, hi))
    plan.extend(reversed(outer))
    return plan


def _run_plan(plan: list[_Group], read_hashes: HashReader) -> list[bytes]:
    wanted = sorted({node for group in plan for node in group})
    if not wanted:
        return []
    got = read_hashes(wanted)
    if len(got) != len(wanted):
        raise ProofError(f"hash reader returned {len(got)} hashes for {len(wanted)} nodes")
    table = dict(zip(wanted, got, strict=True))
    proof: list[bytes] = []
    for group in plan:
        h = table[group[-1]]
        for node in reversed(group[:-1]):
            h = node_hash(table[node], h)
        proof.append(h)
    return proof


def inclusion_proof(index: int, size: int, read_hashes: HashReader) -> list[bytes]:
    """Build the RFC 9162 inclusion proof for leaf ``index`` in the tree of ``size``.

    Reads O(log n) complete-subtree hashes in a single ``read_hashes`` call.
    """
    return _run_plan(_inclusion_plan(index, size), read_hashes)


def consistency_proof(size1: int, size2: int, read_hashes: HashReader) -> list[bytes]:
    """Build the RFC 9162 consistency proof from ``size1`` to ``size2`` (0 < size1 <= size2).

    Reads O(log n) complete-subtree hashes in a single ``read_hashes`` call.
    """
    return _run_plan(_consistency_plan(size1, size2), read_hashes)


def root_from_hash_reader(size: int, read_hashes: HashReader) -> bytes:
    """The root of the tree of ``size`` leaves from its O(log n) complete subtrees (one ``read_hashes`` call).

    The subtrees are the binary decomposition of ``size``, largest first; the empty tree's root is
    :data:`EMPTY_ROOT`.
    """
    _check_size("size", size)
    nodes: list[NodeId] = []
    begin = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, begin >> level))
            begin += 1 << level
    if not nodes:
        return EMPTY_ROOT
    hashes = list(read_hashes(nodes))
    if len(hashes) != len(nodes):
        raise ProofError(f"hash reader returned {len(hashes)} hashes for {len(nodes)} subtrees")
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root
