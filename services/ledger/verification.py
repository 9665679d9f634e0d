"""VerifyLedger: the I/O around the pure walk in `domain` and the checks in `services.tlog.verify`.

Checkpoints are found where they are stored write-once: both modes list every version and delete
marker under the tenant's checkpoint prefix (one ListObjectVersions) and compare it with the index
(`domain.seal_findings`), so deleting or editing index items cannot hide a signed checkpoint. A
checkpoint counts only when its note verifies with the tenant's keys, says what the index says, and
is the object version the index recorded. Checkpoints the caller pins (ones an auditor saw before)
are binding too. Any disagreement between the data and a seal is a failure naming the first bad seq
(or checkpoint size); there is no fallback to an older seal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from services.kit import aws
from services.kit.errors import DomainError, InvalidArgument
from services.ledger import keys as seal_keys
from services.ledger import seals, store
from services.ledger.domain import FullWalk, VerifyOutcome, earliest
from services.ledger.proofs import SealReader, consistency, inclusion
from services.ledger.seals import SealFinding, seal_findings
from services.tlog import verify as tlog_verify
from services.tlog.checkpoint import Checkpoint
from services.tlog.errors import TlogError
from services.tlog.merkle import verify_consistency
from services.tlog.tiles import TILE_WIDTH, TileId
from services.tlog.verify import verify_checkpoint

MAX_PINS = 64
SETTLE_SECONDS = 5.0
SETTLE_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class SealView:
    """The checkpoint index and the write-once store of one tenant, read once per verification."""

    records: list[seals.CheckpointRecord]
    objects: dict[int, list[seals.ObjectVersion]]
    findings: list[SealFinding]

    @property
    def newest(self) -> seals.CheckpointRecord | None:
        return max(self.records, key=lambda rec: rec.size, default=None)


def read_seals(r: SealReader, tenant: str, settle_seconds: float = SETTLE_SECONDS) -> SealView:
    """Every index item (one paged Query), then every checkpoint object version (one paged LIST).

    In that order, a seal running meanwhile can only show as an object the index lacks (the sealer
    writes the note, then the record), never the other way round. Such an object is looked at again
    for up to `settle_seconds` (a running seal records it within milliseconds); one still unrecorded
    then is a finding: tampering with the index, or a seal that stopped before recording it.
    """
    deadline = time.monotonic() + settle_seconds
    while True:
        records = list(seals.all_checkpoint_records(r.ddb, r.table, tenant))
        objects = seals.checkpoint_objects(r.s3, r.bucket, tenant)
        findings = seal_findings(records, objects, lambda size: seal_keys.checkpoint_object_key(tenant, size))
        if not any(f.unindexed for f in findings) or time.monotonic() >= deadline:
            return SealView(records, objects, findings)
        time.sleep(SETTLE_POLL_SECONDS)


def check_record(r: SealReader, tenant: str, record: seals.CheckpointRecord) -> str:
    """'' when the checkpoint's note is sound (`seals.check_note` with the tenant's keys), else why not."""
    return seals.check_note(r.s3, r.bucket, record, r.keys.verifiers(tenant), r.keys.origin_of(tenant))


def pinned_checkpoints(r: SealReader, tenant: str, notes: Sequence[bytes]) -> list[Checkpoint]:
    """The checkpoints a caller pins, each verified with the tenant's keys (InvalidArgument otherwise)."""
    if len(notes) > MAX_PINS:
        raise InvalidArgument.field("pinned_checkpoints", f"at most {MAX_PINS} checkpoints")
    pins: list[Checkpoint] = []
    for index, note in enumerate(notes):
        try:
            cp = verify_checkpoint(note, r.keys.verifiers(tenant))
        except TlogError as exc:
            raise InvalidArgument.field(f"pinned_checkpoints[{index}]", f"does not verify: {exc}") from None
        if cp.origin != r.keys.origin_of(tenant):
            raise InvalidArgument.field(f"pinned_checkpoints[{index}]", f"is for log {cp.origin!r}")
        pins.append(cp)
    return pins


def _pin_findings(view: SealView, pins: Sequence[Checkpoint]) -> list[SealFinding]:
    """A pinned checkpoint must be in the write-once store, with the root the index gives its size."""
    by_size = {rec.size: rec for rec in view.records}
    found: list[SealFinding] = []
    for pin in pins:
        record = by_size.get(pin.size)
        if pin.size not in view.objects:
            found.append(SealFinding(pin.size, f"pinned checkpoint {pin.size} is not in the seal bucket "
                                                "(the ledger was rolled back, or this is another ledger)"))
        elif record is not None and record.root != pin.root_hash:
            found.append(SealFinding(pin.size, f"pinned checkpoint {pin.size}: the ledger's checkpoint "
                                                f"{pin.size} has another root (a fork)"))
    return found


def _failure(finding: SealFinding, checked: int) -> VerifyOutcome:
    return VerifyOutcome(False, finding.size, finding.reason, 0, checked, 0)


def _attribute_lie(event: store.StoredEvent, derived: str = "") -> str:
    """Why an event's stored `hash` attribute is not the hash of its bytes ('' when it is, or absent).

    `derived` is that hash when the caller has it already (a walk that just chained the event).
    """
    if event.hash_hex and event.hash_hex != (derived or store.derived_hash(event.canonical)):
        return f"event {event.seq}: the stored hash attribute is not the hash of its bytes"
    return ""


TILES_AHEAD = 8
# A full walk tells its `progress` callback how many events it checked once per this many events.
PROGRESS_EVENTS = 256


def _level0_tile(reads: seals.TileReads, tile: TileId) -> tuple[bytes, str]:
    """A sealed level-0 tile's body and '', or b"" and why it cannot be read."""
    try:
        return reads(tile), ""
    except DomainError as exc:
        return b"", str(exc)


def sealed_leaves(r: SealReader, tenant: str, sealed: int, problems: list[VerifyOutcome]) -> Iterator[bytes | None]:
    """Leaf hashes held by the sealed level-0 tiles, in leaf order, then None forever.

    A tile that cannot be read is a problem named by its path (its leaves are then None). The tiles
    are read up to TILES_AHEAD ahead of the walk, on a thread of their own; a problem is recorded
    when the walk reaches the tile, as without the read-ahead.
    """
    reads = seals.TileReads(r.s3, r.bucket, tenant, sealed)
    tiles = [TileId(0, index, min(TILE_WIDTH, sealed - index * TILE_WIDTH))
             for index in range((sealed + TILE_WIDTH - 1) // TILE_WIDTH)]
    bodies = aws.prefetched((_level0_tile(reads, tile) for tile in tiles), TILES_AHEAD)
    for tile, (data, why) in zip(tiles, bodies, strict=True):
        if why:
            problems.append(VerifyOutcome(False, sealed, f"tile {tile.path}: {why}", 0, 0, 0))
        for i in range(tile.width):
            leaf = data[i * 32 : (i + 1) * 32]
            yield leaf if len(leaf) == 32 else None
    while True:
        yield None


def verify_full(r: SealReader, tenant: str, pinned: Sequence[bytes] = (),
                progress: Callable[[int], None] | None = None) -> VerifyOutcome:
    """Walk every event from genesis, rebuild the tree and check every checkpoint, found or pinned.

    `progress`, if given, is called with the count of events checked every PROGRESS_EVENTS events (on
    the walking thread); an exception it raises stops the walk.
    """
    pins = pinned_checkpoints(r, tenant, pinned)
    view = read_seals(r, tenant)
    problems = [_failure(f, len(view.records)) for f in (*view.findings, *_pin_findings(view, pins))]
    unsound = {f.size for f in view.findings}
    roots: dict[int, bytes] = {}
    for record in view.records:
        if record.size in unsound:
            continue
        why = check_record(r, tenant, record)
        if why:
            problems.append(VerifyOutcome(False, record.size, why, 0, len(view.records), 0))
        else:
            roots[record.size] = record.root
    sealed = max(roots, default=0)
    for pin in pins:
        roots.setdefault(pin.size, pin.root_hash)
    walk = FullWalk(tenant, roots, sealed)
    leaves = sealed_leaves(r, tenant, sealed, problems)
    for event in store.walk_events(r.walk_ddb, r.table, tenant, 1):
        chained = walk.add(event.canonical, next(leaves))
        lie = _attribute_lie(event, walk.head_hash if chained else "")
        if lie:
            problems.append(VerifyOutcome(False, event.seq, lie, 0, 0, 0))
        if not chained:
            break
        if progress is not None and walk.checked % PROGRESS_EVENTS == 0:
            progress(walk.checked)
    outcome = walk.finish()
    first = earliest([outcome, *problems])
    result = first or outcome
    return VerifyOutcome(result.ok, result.first_bad_seq, result.reason, outcome.events_checked,
                         len(view.records) + len(pins), outcome.tree_size, sealed)


def verify_since_checkpoint(r: SealReader, tenant: str, pinned: Sequence[bytes] = ()) -> VerifyOutcome:
    """Check the newest checkpoint, its consistency with the previous one and with every pinned one;
    walk only the tail. The index is compared with the store for every checkpoint (one LIST)."""
    pins = pinned_checkpoints(r, tenant, pinned)
    view = read_seals(r, tenant)
    findings = [*view.findings, *_pin_findings(view, pins)]
    if findings:
        return _failure(min(findings, key=lambda f: f.size), 0)
    latest = view.newest
    if latest is None:
        return verify_full(r, tenant, pinned)
    try:
        return _since(r, tenant, view, latest, pins)
    except (TlogError, DomainError) as exc:
        return VerifyOutcome(False, latest.size, f"checkpoint {latest.size}: {exc}", 0, 1, latest.size, latest.size)


def _since(
    r: SealReader, tenant: str, view: SealView, latest: seals.CheckpointRecord, pins: Sequence[Checkpoint]
) -> VerifyOutcome:
    checked = 1
    why = check_record(r, tenant, latest)
    if why:
        return VerifyOutcome(False, latest.size, why, 0, checked, 0, latest.size)
    previous = max((rec for rec in view.records if 0 < rec.size < latest.size), key=lambda rec: rec.size,
                   default=None)
    previous_arg: tuple[bytes, list[bytes]] | None = None
    if previous is not None:
        checked += 1
        why = check_record(r, tenant, previous)
        if why:
            return VerifyOutcome(False, previous.size, why, 0, checked, 0, latest.size)
        previous_arg = (previous.note, consistency(r, tenant, previous.size, latest.size)[0])
    for pin in pins:
        checked += 1
        if 0 < pin.size < latest.size:
            proof, _ = consistency(r, tenant, pin.size, latest.size)
            verify_consistency(pin.size, latest.size, proof, pin.root_hash, latest.root)
    anchor = store.get_event(r.ddb, r.table, tenant, latest.size) if latest.size else None
    if latest.size and anchor is None:
        return VerifyOutcome(False, latest.size, f"event {latest.size} (the last sealed) is missing",
                             0, checked, 0, latest.size)
    lie = _attribute_lie(anchor) if anchor is not None else ""
    if lie:
        return VerifyOutcome(False, latest.size, lie, 0, checked, latest.size, latest.size)
    lies: list[VerifyOutcome] = []

    def tail() -> Iterator[bytes]:
        for event in store.walk_events(r.walk_ddb, r.table, tenant, latest.size + 1):
            lie = _attribute_lie(event)
            if lie:
                lies.append(VerifyOutcome(False, event.seq, lie, 0, checked, 0, latest.size))
                return
            yield event.canonical

    result = tlog_verify.verify_since_checkpoint(
        tenant=tenant,
        checkpoint=latest.note,
        verifiers=r.keys.verifiers(tenant),
        frontier=latest.compact,
        last_sealed_event=anchor.canonical if anchor is not None else b"",
        last_sealed_proof=inclusion(r, tenant, latest.size, latest.size).hashes if latest.size else [],
        events_after=tail(),
        previous=previous_arg,
    )
    outcome = VerifyOutcome(result.ok, result.first_bad_seq or 0, result.reason, result.events_checked,
                            checked, result.tree_size, latest.size)
    first = earliest([outcome, *lies])
    return replace(first, events_checked=result.events_checked, tree_size=result.tree_size) if first else outcome


def verify(r: SealReader, tenant: str, since_checkpoint: bool, pinned: Sequence[bytes] = ()) -> VerifyOutcome:
    if since_checkpoint:
        return verify_since_checkpoint(r, tenant, pinned)
    return verify_full(r, tenant, pinned)
