"""The seal step, pure: extend the tree by new events and say what to write (no boto3, no grpc).

The state carried from one seal to the next is O(log n): the compact range, the right-edge partial
tiles and the hash of the last sealed event. A step checks that the new events chain from that hash
before anything is signed, and resumes the tile builder against the previous signed root, so a
sealer can only ever sign a tree that extends the one it signed before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.tlog.checkpoint import Checkpoint
from services.tlog.compact import CompactRange
from services.tlog.errors import TileError, VerificationError
from services.tlog.events import GENESIS_PREV_HASH, ChainVerifier
from services.tlog.merkle import leaf_hash
from services.tlog.note import Signer
from services.tlog.tiles import Tile, TileBuilder


@dataclass(frozen=True)
class SealState:
    """What a seal needs to know about the last one."""

    size: int
    root: bytes
    last_hash: str
    partial_tiles: dict[int, bytes]

    @classmethod
    def genesis(cls) -> SealState:
        return cls(0, CompactRange().root(), GENESIS_PREV_HASH, {})


@dataclass(frozen=True)
class SealPlan:
    """The outcome of one step: tiles to write, the signed note, and the state after it."""

    tiles: list[Tile]
    note: bytes
    compact: CompactRange
    state: SealState
    key_name: str


class SealRefused(VerificationError):
    """The data does not extend the last signed tree; nothing may be signed."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def seal_step(state: SealState, tenant: str, origin: str, events: Sequence[bytes], signer: Signer) -> SealPlan:
    """Extend `state` by `events` (seq state.size+1 onward) and sign the new checkpoint."""
    chain = ChainVerifier(tenant, first_seq=state.size + 1, prev_hash=state.last_hash)
    leaves: list[bytes] = []
    for canonical in events:
        try:
            chain.check(canonical)
        except VerificationError as exc:
            seq = getattr(exc, "seq", chain.next_seq)
            raise SealRefused(seq, getattr(exc, "reason", str(exc))) from exc
        leaves.append(leaf_hash(canonical))
    try:
        builder = TileBuilder.resume(state.size, state.partial_tiles, state.root)
    except TileError as exc:
        raise SealRefused(state.size, f"stored tree state does not match the last checkpoint: {exc}") from exc
    tiles = builder.add(leaves)
    compact = builder.compact_range()
    written = {t.tile_id: t.data for t in tiles}
    partials: dict[int, bytes] = {}
    for tid in TileBuilder.partial_tile_ids(compact.size):
        data = written.get(tid, state.partial_tiles.get(tid.level))
        if data is None or len(data) != tid.width * 32:
            raise SealRefused(compact.size, f"no partial tile {tid.path} after sealing")
        partials[tid.level] = data
    root = compact.root()
    checkpoint = Checkpoint(origin, compact.size, root)
    note = checkpoint.sign([signer])
    new_state = SealState(compact.size, root, chain.head_hash, partials)
    return SealPlan(tiles, note, compact, new_state, signer.name)
