"""One seal of one tenant, with its I/O in a crash-safe order (synchronous; run it via aws.call).

Order: read the newest checkpoint record (the resume point, O(log n) state) -> read the events
after it by seq range -> `domain.seal_step` -> write the tiles -> write the signed checkpoint object
-> record the checkpoint index item. Every write is idempotent and write-once, so a crash anywhere
leaves either nothing new or objects that a restarted sealer finds and reuses (same bytes, same
version id); the index item is written last, so a checkpoint is only ever announced once all its
tiles exist. A second checkpoint of the same size is never written (`If-None-Match: *` on the object,
`attribute_not_exists` on the item).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.ledger import store as ledger_store
from services.sealer import domain, store
from services.sealer.signing import TenantKeys

log = logging.getLogger(__name__)


@dataclass
class SealContext:
    ddb: Any
    s3: Any
    table: str
    bucket: str
    retention_days: int
    keys: TenantKeys
    published: set[str]


@dataclass(frozen=True)
class SealOutcome:
    record: store.CheckpointRecord | None
    ledger_size: int


_tile_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tiles")


def resume_state(record: store.CheckpointRecord | None) -> domain.SealState:
    if record is None:
        return domain.SealState.genesis()
    return domain.SealState(record.size, record.root, record.last_hash, dict(record.partial_tiles))


def plan(ctx: SealContext, tenant: str, max_events: int) -> tuple[domain.SealPlan | None, int]:
    """Read state and events and compute the next seal; (None, size) when nothing is pending."""
    last = store.latest_checkpoint_record(ctx.ddb, ctx.table, tenant)
    tail = ledger_store.read_tail(ctx.ddb, ctx.table, tenant)
    state = resume_state(last)
    if tail.seq <= state.size:
        return None, tail.seq
    target = min(tail.seq, state.size + max_events)
    events = [e.canonical for e in ledger_store.events_between(ctx.ddb, ctx.table, tenant, state.size + 1, target)]
    signer = ctx.keys.signer(tenant)
    return domain.seal_step(state, tenant, ctx.keys.origin_of(tenant), events, signer), tail.seq


def write_tiles(ctx: SealContext, tenant: str, sealed: domain.SealPlan) -> None:
    futures = [
        _tile_pool.submit(store.put_tile, ctx.s3, ctx.bucket, tenant, t.tile_id, t.data, ctx.retention_days)
        for t in sealed.tiles
    ]
    for future in futures:
        future.result()


def write_checkpoint(ctx: SealContext, tenant: str, sealed: domain.SealPlan) -> store.CheckpointRecord:
    """Write the signed note and record it in the index; returns the record."""
    size = sealed.state.size
    key, version = store.put_checkpoint_object(ctx.s3, ctx.bucket, tenant, size, sealed.note, ctx.retention_days)
    record = store.CheckpointRecord(
        size=size,
        root=sealed.state.root,
        note=sealed.note,
        object_key=key,
        version_id=version,
        compact=sealed.compact,
        partial_tiles=sealed.state.partial_tiles,
        last_hash=sealed.state.last_hash,
        create_time=datetime.now(UTC).isoformat(),
        key_name=sealed.key_name,
    )
    store.put_checkpoint_record(ctx.ddb, ctx.table, tenant, record)
    return record


def publish_keys(ctx: SealContext, tenant: str) -> None:
    """Put the tenant's verifier keys in the bucket (once per process and tenant)."""
    if tenant in ctx.published:
        return
    store.put_verifier_keys(ctx.s3, ctx.bucket, tenant, "\n".join(ctx.keys.verifier_strings(tenant)) + "\n")
    ctx.published.add(tenant)


def seal_once(ctx: SealContext, tenant: str, max_events: int) -> SealOutcome:
    """Seal up to `max_events` pending events; the outcome names the new checkpoint (or None)."""
    publish_keys(ctx, tenant)
    sealed, ledger_size = plan(ctx, tenant, max_events)
    if sealed is None:
        return SealOutcome(None, ledger_size)
    write_tiles(ctx, tenant, sealed)
    record = write_checkpoint(ctx, tenant, sealed)
    log.info("sealed", extra={"tenant": tenant, "size": record.size, "ledger_size": ledger_size})
    return SealOutcome(record, ledger_size)
