"""VerifyLedger: the I/O around the pure walk in `domain` and the checks in `services.tlog.verify`.

A checkpoint counts only when its note verifies with the tenant's keys, says what the index says,
is the object version the index recorded, and that object has no later version. Any disagreement
between the data and a seal is a failure naming the first bad seq (or checkpoint size); there is no
fallback to an older seal.
"""

from __future__ import annotations

from collections.abc import Iterator

from services.kit import aws
from services.kit.errors import DomainError
from services.ledger import store
from services.ledger.domain import FullWalk, VerifyOutcome, earliest
from services.ledger.proofs import SealReader, consistency, inclusion
from services.sealer import store as seals
from services.tlog import verify as tlog_verify
from services.tlog.errors import TlogError
from services.tlog.tiles import TILE_WIDTH, TileId
from services.tlog.verify import verify_checkpoint


def check_record(r: SealReader, tenant: str, record: seals.CheckpointRecord) -> str:
    """'' when the checkpoint is sound, else why not."""
    try:
        cp = verify_checkpoint(record.note, r.keys.verifiers(tenant))
    except TlogError as exc:
        return f"checkpoint {record.size}: signature: {exc}"
    if cp.origin != r.keys.origin_of(tenant) or cp.size != record.size or cp.root_hash != record.root:
        return f"checkpoint {record.size}: the signed note disagrees with the index"
    try:
        stored = seals.read_checkpoint_object(r.s3, r.bucket, record.object_key, record.version_id)
        versions = seals.checkpoint_object_versions(r.s3, r.bucket, record.object_key)
    except Exception as exc:
        return f"checkpoint {record.size}: object unreadable: {exc}"
    if stored != record.note:
        return f"checkpoint {record.size}: the stored object differs from the index"
    if versions != [record.version_id]:
        return f"checkpoint {record.size}: the object was overwritten by a newer version"
    return ""


TILES_AHEAD = 8


def _level0_tile(reads: seals.TileReads, index: int, width: int) -> bytes:
    """A sealed level-0 tile's body, or b"" when it cannot be read (its leaves then pin nothing)."""
    try:
        return reads(TileId(0, index, width))
    except DomainError:
        return b""


def _sealed_leaves(r: SealReader, tenant: str, sealed: int) -> Iterator[bytes | None]:
    """Leaf hashes held by the sealed level-0 tiles, in leaf order, then None forever.

    The tiles are read up to TILES_AHEAD ahead of the walk, on a thread of their own.
    """
    reads = seals.TileReads(r.s3, r.bucket, tenant, sealed)
    widths = [min(TILE_WIDTH, sealed - index * TILE_WIDTH) for index in range((sealed + TILE_WIDTH - 1) // TILE_WIDTH)]
    tiles = aws.prefetched((_level0_tile(reads, index, width) for index, width in enumerate(widths)), TILES_AHEAD)
    for width, data in zip(widths, tiles, strict=True):
        for i in range(width):
            leaf = data[i * 32 : (i + 1) * 32]
            yield leaf if len(leaf) == 32 else None
    while True:
        yield None


def verify_full(r: SealReader, tenant: str) -> VerifyOutcome:
    """Walk every event from genesis, rebuild the tree and check every checkpoint."""
    records = list(seals.all_checkpoint_records(r.ddb, r.table, tenant))
    problems: list[VerifyOutcome] = []
    roots: dict[int, bytes] = {}
    for record in records:
        why = check_record(r, tenant, record)
        if why:
            problems.append(VerifyOutcome(False, record.size, why, 0, len(records), 0))
        else:
            roots[record.size] = record.root
    walk = FullWalk(tenant, roots)
    leaves = _sealed_leaves(r, tenant, max(roots, default=0))
    for canonical in store.canonical_events(r.ddb, r.table, tenant, 1):
        if not walk.add(canonical, next(leaves)):
            break
    outcome = walk.finish()
    first = earliest([outcome, *problems])
    result = first or outcome
    return VerifyOutcome(result.ok, result.first_bad_seq, result.reason, outcome.events_checked,
                         len(records), outcome.tree_size)


def verify_since_checkpoint(r: SealReader, tenant: str) -> VerifyOutcome:
    """Check the newest checkpoint and its consistency with the previous one; walk only the tail."""
    latest = seals.latest_checkpoint_record(r.ddb, r.table, tenant)
    if latest is None:
        return verify_full(r, tenant)
    checked = 1
    why = check_record(r, tenant, latest)
    if why:
        return VerifyOutcome(False, latest.size, why, 0, checked, 0)
    previous_arg: tuple[bytes, list[bytes]] | None = None
    previous = seals.previous_checkpoint_record(r.ddb, r.table, tenant, latest.size)
    try:
        if previous is not None and previous.size > 0:
            checked += 1
            why = check_record(r, tenant, previous)
            if why:
                return VerifyOutcome(False, previous.size, why, 0, checked, 0)
            proof, _ = consistency(r, tenant, previous.size, latest.size)
            previous_arg = (previous.note, proof)
        anchor = store.get_event(r.ddb, r.table, tenant, latest.size) if latest.size else None
        if latest.size and anchor is None:
            return VerifyOutcome(False, latest.size, f"event {latest.size} (the last sealed) is missing",
                                 0, checked, 0)
        anchor_proof = inclusion(r, tenant, latest.size, latest.size).hashes if latest.size else []
        result = tlog_verify.verify_since_checkpoint(
            tenant=tenant,
            checkpoint=latest.note,
            verifiers=r.keys.verifiers(tenant),
            frontier=latest.compact,
            last_sealed_event=anchor.canonical if anchor is not None else b"",
            last_sealed_proof=anchor_proof,
            events_after=store.canonical_events(r.ddb, r.table, tenant, latest.size + 1),
            previous=previous_arg,
        )
    except (TlogError, DomainError) as exc:
        return VerifyOutcome(False, latest.size, f"checkpoint {latest.size}: {exc}", 0, checked, latest.size)
    return VerifyOutcome(result.ok, result.first_bad_seq or 0, result.reason, result.events_checked,
                         checked, result.tree_size)


def verify(r: SealReader, tenant: str, since_checkpoint: bool) -> VerifyOutcome:
    return verify_since_checkpoint(r, tenant) if since_checkpoint else verify_full(r, tenant)

