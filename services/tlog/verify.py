"""Verification steps shared by the ledger service's VerifyLedger and ``lz-verify``.

Each helper either returns the verified value or raises: :class:`NoteError`
(malformed input) or :class:`VerificationError` (does not verify).  There is
deliberately no "best effort" mode: a seal that does not match is a failure,
never a reason to fall back to an older seal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.tlog.checkpoint import Checkpoint
from services.tlog.compact import CompactRange
from services.tlog.errors import ChainError, PayloadError, VerificationError
from services.tlog.events import ChainVerifier, parse_event
from services.tlog.merkle import leaf_hash, verify_consistency, verify_inclusion
from services.tlog.note import Verifier, open_note
from services.tlog.proof import TlogProof

__all__ = [
    "SinceCheckpointResult",
    "verify_checkpoint",
    "verify_checkpoint_consistency",
    "verify_entry_proof",
    "verify_since_checkpoint",
]


def verify_checkpoint(note: bytes, verifiers: Iterable[Verifier]) -> Checkpoint:
    """Open a signed checkpoint and require a valid signature by a key named like its origin.

    The origin check stops a key trusted for one log (or a witness key) from
    vouching for another log's checkpoint.
    """
    opened = open_note(note, verifiers)
    checkpoint = Checkpoint.parse(opened.text)
    if not any(sig.name == checkpoint.origin for sig in opened.sigs):
        raise VerificationError(f"origin {checkpoint.origin!r} is not signed by a key of that name")
    return checkpoint


def verify_entry_proof(entry: bytes, proof: bytes, verifiers: Iterable[Verifier]) -> tuple[Checkpoint, int]:
    """Verify a ``.tlog-proof`` for leaf data ``entry``; returns the checkpoint and index."""
    parsed = TlogProof.parse(proof)
    checkpoint = verify_checkpoint(parsed.checkpoint, verifiers)
    verify_inclusion(leaf_hash(entry), parsed.index, checkpoint.size, parsed.hashes, checkpoint.root_hash)
    return checkpoint, parsed.index


def verify_checkpoint_consistency(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that ``new`` extends ``old`` (same origin, RFC 9162 consistency proof)."""
    if old.origin != new.origin:
        raise VerificationError(f"checkpoints are for different logs: {old.origin!r} and {new.origin!r}")
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)


@dataclass(frozen=True)
class SinceCheckpointResult:
    """Outcome of :func:`verify_since_checkpoint`."""

    ok: bool
    checkpoint: Checkpoint | None
    first_bad_seq: int | None
    reason: str
    events_checked: int
    tree_size: int
    root: bytes


def verify_since_checkpoint(
    *,
    tenant: str,
    checkpoint: bytes,
    verifiers: Iterable[Verifier],
    frontier: CompactRange,
    last_sealed_event: bytes,
    last_sealed_proof: Sequence[bytes],
    events_after: Iterable[bytes],
    previous: tuple[bytes, Sequence[bytes]] | None = None,
) -> SinceCheckpointResult:
    """Verify the newest checkpoint and walk only the events after it.

    * ``checkpoint`` must verify with ``verifiers``; if ``previous`` =
      ``(older checkpoint note, consistency proof)`` is given, the older one
      must verify too and the new one must be consistent with it.
    * ``frontier`` (e.g. ``TileBuilder.resume(...).compact_range()``) must
      hash to the checkpoint root, so it can be trusted for appending.
    * ``last_sealed_event`` (seq = checkpoint size) must be included at the
      last leaf by ``last_sealed_proof``; its hash anchors the chain.
    * ``events_after`` (seq size+1 onwards) must chain from it.

    Malformed checkpoints or proofs raise; chain breaks are reported in the
    result so the caller can name the first bad seq.
    """
    keys = list(verifiers)
    head = verify_checkpoint(checkpoint, keys)
    if previous is not None:
        older = verify_checkpoint(previous[0], keys)
        verify_checkpoint_consistency(older, head, previous[1])
    if frontier.size != head.size or frontier.root() != head.root_hash:
        raise VerificationError(f"stored tree state does not match checkpoint at size {head.size}")
    tree = frontier.copy()
    if head.size == 0:
        chain = ChainVerifier(tenant)
    else:
        verify_inclusion(leaf_hash(last_sealed_event), head.size - 1, head.size, last_sealed_proof, head.root_hash)
        try:
            anchor = parse_event(last_sealed_event)
        except PayloadError as exc:
            return _failed(head, head.size, f"last sealed event: {exc}", 0, tree)
        if anchor.tenant != tenant or anchor.seq != head.size:
            reason = f"last sealed event is {anchor.tenant!r} seq {anchor.seq}, want seq {head.size}"
            return _failed(head, head.size, reason, 0, tree)
        chain = ChainVerifier(tenant, first_seq=head.size + 1, prev_hash=anchor.hash_hex)
    for canonical in events_after:
        try:
            chain.check(canonical)
        except ChainError as exc:
            return _failed(head, exc.seq, exc.reason, chain.count, tree)
        tree.append(leaf_hash(canonical))
    return SinceCheckpointResult(True, head, None, "ok", chain.count, tree.size, tree.root())


def _failed(head: Checkpoint, seq: int, reason: str, count: int, tree: CompactRange) -> SinceCheckpointResult:
    return SinceCheckpointResult(False, head, seq, reason, count, tree.size, tree.root())
