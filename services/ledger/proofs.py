"""Proofs served from the sealer's tiles: O(log n) tile reads, never a walk over the leaves.

Tiles and checkpoints are read through `services.sealer.store` (the sealer owns their keys).
Synchronous; the servicer runs these via `aws.call`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.ledger import store
from services.sealer import store as seals
from services.sealer.signing import TenantKeys
from services.tlog import merkle
from services.tlog.proof import TlogProof
from services.tlog.tiles import tile_hash_reader
from services.tlog.verify import verify_entry_proof


@dataclass(frozen=True)
class SealReader:
    """Where the seals of every tenant are, and the keys they must verify with."""

    ddb: Any
    s3: Any
    table: str
    bucket: str
    keys: TenantKeys


@dataclass(frozen=True)
class InclusionProof:
    index: int
    size: int
    hashes: list[bytes]
    root: bytes
    tile_reads: int


def newest(r: SealReader, tenant: str) -> seals.CheckpointRecord:
    record = seals.latest_checkpoint_record(r.ddb, r.table, tenant)
    if record is None:
        raise FailedPrecondition("the ledger has no checkpoint yet", reason="NOT_SEALED")
    return record


def _sealed_size(r: SealReader, tenant: str, tree_size: int) -> tuple[int, seals.CheckpointRecord]:
    latest = newest(r, tenant)
    size = tree_size or latest.size
    if size < 0:
        raise InvalidArgument.field("tree_size", "must not be negative")
    if size > latest.size:
        raise FailedPrecondition(f"tree size {size} is beyond the newest checkpoint ({latest.size})",
                                 reason="NOT_SEALED")
    return size, latest


def inclusion(r: SealReader, tenant: str, seq: int, tree_size: int) -> InclusionProof:
    """RFC 9162 inclusion proof of event `seq` in the sealed tree of `tree_size` (0: newest)."""
    if seq < 1:
        raise InvalidArgument.field("seq", "must be at least 1")
    size, latest = _sealed_size(r, tenant, tree_size)
    if seq > size:
        raise FailedPrecondition(f"event {seq} is not in the tree of size {size}", reason="NOT_SEALED")
    tiles = seals.TileReads(r.s3, r.bucket, tenant, latest.size)
    read = tile_hash_reader(size, tiles)
    hashes = merkle.inclusion_proof(seq - 1, size, read)
    record = latest if size == latest.size else seals.get_checkpoint_record(r.ddb, r.table, tenant, size)
    root = record.root if record is not None else merkle.root_from_hash_reader(size, read)
    return InclusionProof(seq - 1, size, hashes, root, tiles.reads)


def consistency(r: SealReader, tenant: str, size1: int, size2: int) -> tuple[list[bytes], int]:
    """RFC 9162 consistency proof between two sealed sizes; and the tile reads it took."""
    if size1 < 1:
        raise InvalidArgument.field("first_tree_size", "must be at least 1")
    if size2 < size1:
        raise InvalidArgument.field("second_tree_size", "must be at least first_tree_size")
    size, latest = _sealed_size(r, tenant, size2)
    tiles = seals.TileReads(r.s3, r.bucket, tenant, latest.size)
    return merkle.consistency_proof(size1, size, tile_hash_reader(size, tiles)), tiles.reads


def export_proof(r: SealReader, tenant: str, seq: int) -> tuple[bytes, store.StoredEvent, seals.CheckpointRecord]:
    """A c2sp.org/tlog-proof for event `seq` against the newest checkpoint, checked before it leaves."""
    event = store.get_event(r.ddb, r.table, tenant, seq) if seq >= 1 else None
    if event is None:
        raise NotFound(f"event {seq} does not exist")
    latest = newest(r, tenant)
    if seq > latest.size:
        raise FailedPrecondition(f"event {seq} is not sealed yet (sealed through {latest.size})",
                                 reason="NOT_SEALED")
    proof = inclusion(r, tenant, seq, latest.size)
    data = TlogProof(proof.index, tuple(proof.hashes), latest.note).to_bytes()
    try:
        verify_entry_proof(event.canonical, data, r.keys.verifiers(tenant))
    except Exception as exc:
        raise FailedPrecondition(f"event {seq} does not verify against the newest checkpoint: {exc}",
                                 reason="SEAL_MISMATCH") from None
    return data, event, latest
