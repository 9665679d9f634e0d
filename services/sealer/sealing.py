"""One seal of one tenant, with its I/O in a crash-safe order (synchronous; run it via aws.call).

Order: read the newest checkpoint record (the resume point, O(log n) state) and the ledger tail ->
pick the target size -> read the events after the record by seq range -> `domain.seal_step` ->
write the tiles -> write the signed checkpoint object -> record the checkpoint index item.

Crash safety, at every step:
- Every object is write-once (`If-None-Match: *`) and deterministic: the same tree gives the same
  tiles, and Ed25519 signatures are deterministic, so a retried write finds identical bytes and
  reuses the stored version instead of writing a second one.
- The index item is written last (`attribute_not_exists`), so a checkpoint is announced only once
  its tiles and note are stored; a second checkpoint of one size is never written or recorded.
- A seal that stopped after writing the note but before recording it leaves a checkpoint object
  above the newest record. The next seal finds it (`seals.unrecorded_checkpoint_size`) and seals
  exactly that size again, so it records the note already there (the same bytes; or, after a key
  rotation, the stored note once it verifies with a configured key over the same tree) instead of
  signing another size around it.
- What is signed always extends the last signed tree: `seal_step` checks the chain from the last
  sealed hash and resumes the tile builder against the last signed root.

`LZ_SEALER_CRASH_AFTER` (`tiles`, `checkpoint`, `record`) is a test hook: the process exits with
`os._exit(137)` right after that step, as a kill -9 would, so the tests can stop a seal at an exact
point. It is never set outside tests.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.ledger import seals
from services.ledger import store as ledger_store
from services.ledger.signing import TenantKeys
from services.sealer import domain
from services.tlog.checkpoint import Checkpoint
from services.tlog.errors import TlogError
from services.tlog.note import open_note

log = logging.getLogger(__name__)

CRASH_POINTS = ("tiles", "checkpoint", "record")


@dataclass
class SealContext:
    ddb: Any
    s3: Any
    table: str
    bucket: str
    retention_days: int
    keys: TenantKeys
    published: set[str]
    crash_after: str = ""
    # The newest checkpoint record per tenant that this process wrote or read (the resume point).
    latest: dict[str, seals.CheckpointRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class SealOutcome:
    record: seals.CheckpointRecord | None
    ledger_size: int


_tile_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tiles")


def resume_state(record: seals.CheckpointRecord | None) -> domain.SealState:
    if record is None:
        return domain.SealState.genesis()
    if record.defect:
        raise domain.SealRefused(record.size, f"checkpoint {record.size}: the index item is damaged: {record.defect}")
    return domain.SealState(record.size, record.root, record.last_hash, dict(record.partial_tiles))


def target_size(state_size: int, ledger_size: int, max_events: int, unrecorded: int | None) -> int:
    """The size the next checkpoint gets: an interrupted seal's size first, else up to `max_events` more."""
    if unrecorded is not None and state_size < unrecorded <= ledger_size:
        return unrecorded
    return min(ledger_size, state_size + max_events)


def ledger_size(ctx: SealContext, tenant: str, seen: int) -> int:
    """How far the ledger goes: `seen` (a seq the stream reported) when that event exists, else a read.

    A lower bound is enough for a background seal (events after it are sealed next time); SealNow and
    the status pass `seen=0` to learn the exact tail.
    """
    if seen > 0 and ledger_store.event_exists(ctx.ddb, ctx.table, tenant, seen):
        return seen
    return ledger_store.read_tail(ctx.ddb, ctx.table, tenant).seq


def newest_record(ctx: SealContext, tenant: str) -> seals.CheckpointRecord | None:
    """The newest checkpoint record: the one this process last wrote or read, else a read of the index.

    A record another replica wrote meanwhile is not missed for safety: a seal planned from an older
    record extends the same chain, so it yields the same bytes at a size already sealed, or a
    consistent checkpoint at another size.
    """
    cached = ctx.latest.get(tenant)
    if cached is not None:
        return cached
    record = seals.latest_checkpoint_record(ctx.ddb, ctx.table, tenant)
    if record is not None:
        ctx.latest[tenant] = record
    return record


def plan(ctx: SealContext, tenant: str, max_events: int, seen: int = 0) -> tuple[domain.SealPlan | None, int]:
    """Read state and events and compute the next seal; (None, size) when nothing is pending."""
    last = newest_record(ctx, tenant)
    state = resume_state(last)
    size = ledger_size(ctx, tenant, seen if seen > state.size else 0)
    if size <= state.size:
        return None, size
    unrecorded = seals.unrecorded_checkpoint_size(ctx.s3, ctx.bucket, tenant, state.size)
    target = target_size(state.size, size, max_events, unrecorded)
    if target == unrecorded:
        log.warning("resuming an interrupted seal", extra={"tenant": tenant, "size": target})
    events = [
        e.canonical
        for e in ledger_store.events_between(
            ctx.ddb, ctx.table, tenant, state.size + 1, target, min(max(target - state.size, 100), 10_000),
            canonical_only=True,
        )
    ]
    signer = ctx.keys.signer(tenant)
    return domain.seal_step(state, tenant, ctx.keys.origin_of(tenant), events, signer), size


def write_tiles(ctx: SealContext, tenant: str, sealed: domain.SealPlan) -> None:
    futures = [
        _tile_pool.submit(seals.put_tile, ctx.s3, ctx.bucket, tenant, t.tile_id, t.data, ctx.retention_days)
        for t in sealed.tiles
    ]
    for future in futures:
        future.result()


def _same_checkpoint(ctx: SealContext, tenant: str, sealed: domain.SealPlan) -> Callable[[bytes], bool]:
    """Whether a stored note (of a crashed seal) verifies with our keys and says what `sealed` says."""
    expected = Checkpoint(ctx.keys.origin_of(tenant), sealed.state.size, sealed.state.root).to_text()

    def accept(existing: bytes) -> bool:
        try:
            note = open_note(existing, ctx.keys.verifiers(tenant))
        except TlogError:
            return False
        return note.text == expected

    return accept


def write_checkpoint(ctx: SealContext, tenant: str, sealed: domain.SealPlan) -> seals.CheckpointRecord:
    """Write the signed note and record it in the index; returns the record."""
    size = sealed.state.size
    key, stored = seals.put_checkpoint_object(
        ctx.s3, ctx.bucket, tenant, size, sealed.note, ctx.retention_days, accept=_same_checkpoint(ctx, tenant, sealed)
    )
    crash_point(ctx, "checkpoint")
    record = seals.CheckpointRecord(
        size=size,
        root=sealed.state.root,
        note=stored.body,
        object_key=key,
        version_id=stored.version_id,
        compact=sealed.compact,
        partial_tiles=sealed.state.partial_tiles,
        last_hash=sealed.state.last_hash,
        create_time=datetime.now(UTC).isoformat(),
        key_name=sealed.key_name,
    )
    if not seals.put_checkpoint_record(ctx.ddb, ctx.table, tenant, record):
        # Another replica recorded this size first; its record (same root) is the one that counts.
        existing = seals.get_checkpoint_record(ctx.ddb, ctx.table, tenant, size)
        if existing is not None:
            record = existing
    crash_point(ctx, "record")
    return record


def crash_point(ctx: SealContext, point: str) -> None:
    """Test hook: exit at once, as kill -9 would, when LZ_SEALER_CRASH_AFTER names this step."""
    if ctx.crash_after == point:
        log.warning("LZ_SEALER_CRASH_AFTER=%s: exiting with 137 (test hook)", point)
        os._exit(137)


def publish_keys(ctx: SealContext, tenant: str) -> None:
    """Put the tenant's verifier keys in the bucket (once per process and tenant)."""
    if tenant in ctx.published:
        return
    seals.put_verifier_keys(ctx.s3, ctx.bucket, tenant, "\n".join(ctx.keys.verifier_strings(tenant)) + "\n")
    ctx.published.add(tenant)


def seal_once(ctx: SealContext, tenant: str, max_events: int, seen: int = 0) -> SealOutcome:
    """Seal up to `max_events` pending events; the outcome names the new checkpoint (or None).

    `seen`: a seq the table's stream reported (0: read the exact tail, as SealNow does).
    """
    publish_keys(ctx, tenant)
    try:
        sealed, size = plan(ctx, tenant, max_events, seen)
        if sealed is None:
            return SealOutcome(None, size)
        write_tiles(ctx, tenant, sealed)
        crash_point(ctx, "tiles")
        record = write_checkpoint(ctx, tenant, sealed)
    except Exception:
        ctx.latest.pop(tenant, None)  # resume from the index next time
        raise
    cached = ctx.latest.get(tenant)
    if cached is None or record.size >= cached.size:
        ctx.latest[tenant] = record
    log.info("sealed", extra={"tenant": tenant, "size": record.size, "ledger_size": size})
    return SealOutcome(record, size)
