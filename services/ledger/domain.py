"""Pure ledger logic: group-commit batching and the full-verification walk (no boto3, no grpc)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.ledger.store import MAX_EVENTS_PER_TRANSACTION, MAX_TRANSACTION_ITEMS
from services.tlog.compact import CompactRange
from services.tlog.errors import ChainError
from services.tlog.events import ChainVerifier
from services.tlog.merkle import leaf_hash
from services.tlog.tiles import TILE_WIDTH, TileId


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
    # The newest checkpoint the verification anchored on (its size; 0 when there is none).
    newest_checkpoint: int = 0


def level0_tile(seq: int, sealed_size: int) -> TileId:
    """The level-0 tile of the sealed tree of `sealed_size` that holds the leaf of event `seq`."""
    index = (seq - 1) // TILE_WIDTH
    return TileId(0, index, min(TILE_WIDTH, sealed_size - index * TILE_WIDTH))


class FullWalk:
    """Walks the chain from genesis, rebuilding the tree and checking each signed root on the way.

    `checkpoints` maps each signed size to its (already signature-checked) root; `sealed_leaf` is the
    leaf hash a sealed tile holds for the next event (None beyond the sealed tree). A tile that
    disagrees with an event is not believed on its own: the disagreement is settled by the chain (an
    altered event breaks the link to the next one) or by the next signed root, which the events or the
    tiles then fail to reach. So an altered event is named by its own seq, and a rewritten tile by its
    path, never the intact event it covers.
    """

    def __init__(self, tenant: str, checkpoints: Mapping[int, bytes], sealed_size: int | None = None) -> None:
        self._chain = ChainVerifier(tenant)
        self._tree = CompactRange()
        self._tiles = CompactRange()
        self._checkpoints = dict(checkpoints)
        self._sealed = max(self._checkpoints, default=0) if sealed_size is None else sealed_size
        self._suspect = 0  # the first seq whose sealed leaf differs from its event's leaf
        self.checked = 0
        self.failure: VerifyOutcome | None = None

    def add(self, canonical: bytes, sealed_leaf: bytes | None) -> bool:
        """Check the next event; False (and `failure` set) at the first one that does not verify."""
        leaf = leaf_hash(canonical)
        if sealed_leaf is not None:
            self._tiles.append(sealed_leaf)
            if sealed_leaf != leaf and not self._suspect:
                self._suspect = self._chain.next_seq
        try:
            self._chain.check(canonical)
        except ChainError as exc:
            if self._suspect:
                return self._fail(self._suspect, f"event {self._suspect} differs from the sealed leaf")
            return self._fail(exc.seq, exc.reason)
        self._tree.append(leaf)
        self.checked += 1
        # `checked` is the tree's size: a leaf is appended exactly when an event is accepted.
        root = self._checkpoints.get(self.checked)
        if root is None:
            return True
        size = self._tree.size
        if self._suspect:
            tiles_fit = self._tiles.size == size and self._tiles.root() == root
            if root == self._tree.root() and not tiles_fit:
                tile = level0_tile(self._suspect, self._sealed)
                return self._fail(size, f"tile {tile.path}: its leaf for event {self._suspect} does not match "
                                        f"checkpoint {size} (the tile was rewritten; the events fit the checkpoint)")
            return self._fail(self._suspect, f"event {self._suspect} differs from the sealed leaf")
        if root != self._tree.root():
            return self._fail(size, f"checkpoint {size}: root does not match events")
        return True

    @property
    def head_hash(self) -> str:
        """Hex hash of the last event accepted: after a successful `add`, the hash of its bytes."""
        return self._chain.head_hash

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
        return VerifyOutcome(ok, seq, reason, self.checked, len(self._checkpoints), self._tree.size, self._sealed)


def earliest(failures: Sequence[VerifyOutcome]) -> VerifyOutcome | None:
    """The failure with the smallest position, so the answer names the first bad seq."""
    bad = [f for f in failures if not f.ok]
    return min(bad, key=lambda f: f.first_bad_seq) if bad else None
