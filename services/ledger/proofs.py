"""Proofs served from the sealer's tiles: O(log n) tile reads, never a walk over the leaves.

Tiles and checkpoints are read through `services.ledger.seals`, the seal store the sealer writes through.
Synchronous; the servicer runs these via `aws.call`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.ledger import seals, store
from services.ledger.signing import TenantKeys
from services.tlog import merkle
from services.tlog.errors import TlogError
from services.tlog.merkle import HashReader
from services.tlog.proof import TlogProof
from services.tlog.tiles import tile_hash_reader
from services.tlog.verify import verify_checkpoint, verify_entry_proof


@dataclass(frozen=True)
class SealReader:
    """Where the seals of every tenant are, and the keys they must verify with."""

    ddb: Any
    s3: Any
    table: str
    bucket: str
    keys: TenantKeys
    walker: Any = None
    """A DynamoDB client of its own for whole-log walks (`aws.walk_client`); walks read through `ddb` without one."""

    @property
    def walk_ddb(self) -> Any:
        """The client whole-log walks read through."""
        return self.walker if self.walker is not None else self.ddb


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


class TileMismatch(FailedPrecondition):
    """A tile read for a proof does not match the signed root it serves (rewritten or lost)."""

    reason = "SEAL_TILE_MISMATCH"


def signed_root(r: SealReader, tenant: str, record: seals.CheckpointRecord) -> bytes:
    """The root a checkpoint's signed note states (never the index's `root` attribute alone)."""
    try:
        cp = verify_checkpoint(record.note, r.keys.verifiers(tenant))
    except TlogError as exc:
        raise FailedPrecondition(f"checkpoint {record.size} does not verify: {exc}", reason="SEAL_MISMATCH") from None
    if cp.size != record.size:
        raise FailedPrecondition(f"checkpoint {record.size}: the signed note is for size {cp.size}",
                                 reason="SEAL_MISMATCH")
    return cp.root_hash


def _checked_tiles(tiles: seals.TileReads, size: int, what: str) -> TileMismatch:
    return TileMismatch(f"tile {', '.join(dict.fromkeys(tiles.paths)) or '-'} read for {what} does not match the "
                        f"signed root of the tree of size {size}: rewritten or lost")


def _root_at(r: SealReader, tenant: str, size: int, latest: seals.CheckpointRecord, read: HashReader) -> bytes:
    """The signed root at `size`: a checkpoint's, or else the tiles' root proven consistent with the newest."""
    record = latest if size == latest.size else seals.get_checkpoint_record(r.ddb, r.table, tenant, size)
    if record is not None and not record.defect:
        return signed_root(r, tenant, record)
    root = merkle.root_from_hash_reader(size, read)
    if size:
        proof = merkle.consistency_proof(size, latest.size, read)
        merkle.verify_consistency(size, latest.size, proof, root, signed_root(r, tenant, latest))
    return root


def inclusion(r: SealReader, tenant: str, seq: int, tree_size: int) -> InclusionProof:
    """RFC 9162 inclusion proof of event `seq` in the sealed tree of `tree_size` (0: newest).

    The proof is checked against the signed root before it is served: the leaf and path come from
    tiles, which anyone with write access to the bucket could have replaced by a new version.
    """
    if seq < 1:
        raise InvalidArgument.field("seq", "must be at least 1")
    size, latest = _sealed_size(r, tenant, tree_size)
    if seq > size:
        raise FailedPrecondition(f"event {seq} is not in the tree of size {size}", reason="NOT_SEALED")
    tiles = seals.TileReads(r.s3, r.bucket, tenant, latest.size)
    read = tile_hash_reader(size, tiles)
    try:
        hashes = merkle.inclusion_proof(seq - 1, size, read)
        root = _root_at(r, tenant, size, latest, read)
        merkle.verify_inclusion(read([(0, seq - 1)])[0], seq - 1, size, hashes, root)
    except TlogError:
        raise _checked_tiles(tiles, size, f"the inclusion proof of event {seq}") from None
    return InclusionProof(seq - 1, size, hashes, root, tiles.reads)


def consistency(r: SealReader, tenant: str, size1: int, size2: int) -> tuple[list[bytes], int]:
    """RFC 9162 consistency proof between two sealed sizes, checked against their signed roots; and the
    tile reads it took."""
    if size1 < 1:
        raise InvalidArgument.field("first_tree_size", "must be at least 1")
    if size2 < size1:
        raise InvalidArgument.field("second_tree_size", "must be at least first_tree_size")
    size, latest = _sealed_size(r, tenant, size2)
    tiles = seals.TileReads(r.s3, r.bucket, tenant, latest.size)
    read = tile_hash_reader(size, tiles)
    try:
        proof = merkle.consistency_proof(size1, size, read)
        merkle.verify_consistency(size1, size, proof, _root_at(r, tenant, size1, latest, read),
                                  _root_at(r, tenant, size, latest, read))
    except TlogError:
        raise _checked_tiles(tiles, size, f"the consistency proof {size1}..{size}") from None
    return proof, tiles.reads


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
