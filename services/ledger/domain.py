"""Pure ledger logic: group-commit batching and the full-verification walk (no boto3, no grpc)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.ledger.store import MAX_EVENTS_PER_TRANSACTION, MAX_TRANSACTION_ITEMS
from services.tlog.compact import CompactRange
from services.tlog.errors import ChainError
from services.tlog.events import ChainVerifier
from services.tlog.merkle import leaf_hash


def take_batch(
    calls: Sequence[tuple[int, str]],
    max_events: int = MAX_EVENTS_PER_TRANSACTION,
    max_items: int = MAX_TRANSACTION_ITEMS,
) -> int:
    """How many queued calls (events, request_id) the next transaction takes, in order.

    Whole calls only (a call's events commit together or not at all), at most `max_events` events
    and `max_items` items (a request id costs one marker item), and never two calls with the same
    request id in one transaction (the second waits and then finds the first one's marker).
    """
    events = items = taken = 0
    ids: set[str] = set()
    for count, request_id in calls:
        cost = count + (1 if request_id else 0)
        if taken and (events + count > max_events or items + cost > max_items or request_id in ids):
            break
        events += count
        items += cost
        taken += 1
        if request_id:
            ids.add(request_id)
    return taken


@dataclass(frozen=True)
class VerifyOutcome:
    """What VerifyLedger answers; `first_bad_seq` is a seq or a checkpoint size (0 when ok)."""

    ok: bool
    first_bad_seq: int
    reason: str
    events_checked: int
    checkpoints_checked: int
    tree_size: int


class FullWalk:
    """Walks the chain from genesis, rebuilding the tree and checking each signed root on the way.

    `checkpoints` maps each signed size to its (already signature-checked) root; `sealed_leaf(i)`
    gives the leaf hash a sealed tile holds for leaf i (None beyond the sealed tree), which pins an
    altered event to its own seq instead of the one after it.
    """

    def __init__(self, tenant: str, checkpoints: Mapping[int, bytes]) -> None:
        self._chain = ChainVerifier(tenant)
        self._tree = CompactRange()
        self._checkpoints = dict(checkpoints)
        self.checked = 0
        self.failure: VerifyOutcome | None = None

    def add(self, canonical: bytes, sealed_leaf: bytes | None) -> bool:
        """Check the next event; False (and `failure` set) at the first one that does not verify."""
        seq = self._chain.next_seq
        leaf = leaf_hash(canonical)
        if sealed_leaf is not None and sealed_leaf != leaf:
            return self._fail(seq, f"event {seq} differs from the sealed leaf")
        try:
            self._chain.check(canonical)
        except ChainError as exc:
            return self._fail(exc.seq, exc.reason)
        self._tree.append(leaf)
        self.checked += 1
        root = self._checkpoints.get(self._tree.size)
        if root is not None and root != self._tree.root():
            return self._fail(self._tree.size, f"checkpoint {self._tree.size}: root does not match events")
        return True

    def finish(self) -> VerifyOutcome:
        if self.failure is not None:
            return self.failure
        newest = max(self._checkpoints, default=0)
        if newest > self._tree.size:
            return self._outcome(False, self._tree.size + 1,
                                 f"checkpoint {newest} covers events that are missing after seq {self._tree.size}")
        return self._outcome(True, 0, "ok")

    def _fail(self, seq: int, reason: str) -> bool:
        self.failure = self._outcome(False, seq, reason)
        return False

    def _outcome(self, ok: bool, seq: int, reason: str) -> VerifyOutcome:
        return VerifyOutcome(ok, seq, reason, self.checked, len(self._checkpoints), self._tree.size)


def earliest(failures: Sequence[VerifyOutcome]) -> VerifyOutcome | None:
    """The failure with the smallest position, so the answer names the first bad seq."""
    bad = [f for f in failures if not f.ok]
    return min(bad, key=lambda f: f.first_bad_seq) if bad else None
