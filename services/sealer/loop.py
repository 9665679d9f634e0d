"""Sealing loops: one per tenant, woken by DynamoDB Streams records and by a timer.

The stream only says "tenant t has events up to seq n"; the loop then reads the events by seq range
(`sealing.seal_once`). A loop seals when K events are pending or T seconds have passed since the
first pending event was seen, whichever comes first, and keeps sealing (at most `max_batch` events
per checkpoint) while a backlog of K or more remains, so a burst drains as a bounded, shrinking
tail. Tenants are discovered from the stream only: a tenant with no new ledger record has nothing to
seal. Seals of one tenant are serialised by a lock shared with SealNow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from services.kit import aws
from services.ledger import keys as ledger_keys
from services.ledger import seals
from services.sealer import sealing
from services.sealer.domain import SealRefused

log = logging.getLogger(__name__)
# Records per stream read (the most DynamoDB Streams returns); a full read is followed by the next at once.
_STREAM_PAGE = 1000


@dataclass(frozen=True)
class LoopSettings:
    every_events: int = 256
    every_seconds: float = 2.0
    max_batch: int = 4096
    poll_seconds: float = 0.2
    recheck_seconds: float = 30.0


@dataclass
class _Tenant:
    seen: int = 0
    sealed: int = -1
    pending_since: float | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class SealerLoops:
    """The per-tenant loops of one sealer process and the stream reader that wakes them."""

    def __init__(self, ctx: sealing.SealContext, streams: Any, settings: LoopSettings) -> None:
        self._ctx = ctx
        self._streams = streams
        self._settings = settings
        self._tenants: dict[str, _Tenant] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Why sealing cannot be trusted right now (seal objects without retention); readiness fails on it.
        self.problem = ""

    def lock(self, tenant: str) -> asyncio.Lock:
        return self._locks.setdefault(tenant, asyncio.Lock())

    def wake(self, tenant: str, seq: int) -> None:
        """Note that `tenant` has an event `seq`; starts the tenant's loop on first sight."""
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
            state.task = asyncio.create_task(self._run(tenant, state), name=f"seal-{tenant}")
        if seq > state.seen:
            state.seen = seq
            if state.pending_since is None:
                state.pending_since = time.monotonic()
            state.wakeup.set()

    async def seal_now(self, tenant: str) -> seals.CheckpointRecord | None:
        """Seal everything appended so far (in batches); returns the newest checkpoint record."""
        async with self.lock(tenant):
            newest: seals.CheckpointRecord | None = None
            while True:
                outcome = await self._seal(tenant, 0)
                self._learned(tenant, outcome)
                if outcome.record is None:
                    break
                newest = outcome.record
                if outcome.record.size >= outcome.ledger_size:
                    break
            if newest is None:
                newest = await aws.call(seals.latest_checkpoint_record, self._ctx.ddb, self._ctx.table, tenant)
            return newest

    def seen(self, tenant: str) -> int:
        """The newest seq of `tenant` this process has heard of from the stream (0 if none)."""
        state = self._tenants.get(tenant)
        return state.seen if state is not None else 0

    async def _seal(self, tenant: str, seen: int) -> sealing.SealOutcome:
        """One seal; a seal object without COMPLIANCE retention is logged and kept as the readiness problem."""
        try:
            outcome = await aws.call(sealing.seal_once, self._ctx, tenant, self._settings.max_batch, seen)
        except seals.RetentionMissing as exc:
            self.problem = str(exc)
            log.error("seal objects have no COMPLIANCE retention; nothing is recorded",
                      extra={"tenant": tenant, "reason": exc.reason, "detail": str(exc)})
            raise
        if outcome.record is not None:
            self.problem = ""
        return outcome

    def _learned(self, tenant: str, outcome: sealing.SealOutcome) -> None:
        state = self._tenants.get(tenant)
        if state is None:
            return
        state.seen = max(state.seen, outcome.ledger_size)
        state.sealed = outcome.record.size if outcome.record is not None else max(state.sealed, outcome.ledger_size)
        state.pending_since = time.monotonic() if state.seen > state.sealed else None

    async def _run(self, tenant: str, state: _Tenant) -> None:
        s = self._settings
        while True:
            pending = state.seen - state.sealed
            if pending <= 0:
                state.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.wakeup.wait(), s.recheck_seconds)
                continue
            now = time.monotonic()
            since = state.pending_since if state.pending_since is not None else now
            due = since + s.every_seconds
            if pending < s.every_events and now < due and state.sealed >= 0:
                state.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.wakeup.wait(), due - now)
                continue
            try:
                async with self.lock(tenant):
                    outcome = await self._seal(tenant, state.seen)
            except asyncio.CancelledError:
                raise
            except seals.RetentionMissing:
                await asyncio.sleep(max(5.0, s.every_seconds))
                continue
            except SealRefused as exc:
                log.error("seal refused: the ledger does not extend the last checkpoint",
                          extra={"tenant": tenant, "seq": exc.seq, "reason": exc.reason})
                await asyncio.sleep(max(5.0, s.every_seconds))
                continue
            except Exception:
                log.exception("seal failed", extra={"tenant": tenant})
                await asyncio.sleep(1.0)
                continue
            self._learned(tenant, outcome)

    async def run_stream(self) -> None:
        """Read the table's stream forever and wake the loops of tenants with new ledger events.

        Between reads it pauses `poll_seconds`, busy or not, unless a read came back full: a seal
        waits seconds for more events anyway, DynamoDB Streams allows a shard five reads a second,
        and reading back to back during a burst of writes took the table (on the embedded endpoint,
        one request at a time) from the writes themselves, a few records per read.
        """
        iterators: dict[str, str | None] = {}
        arn = ""
        refreshed = 0.0
        while True:
            try:
                if not arn:
                    table = await aws.call(self._ctx.ddb.describe_table, TableName=self._ctx.table)
                    arn = str(table["Table"]["LatestStreamArn"])
                if time.monotonic() - refreshed > 10.0:
                    await self._refresh_shards(arn, iterators)
                    refreshed = time.monotonic()
                backlog = False
                for shard, iterator in list(iterators.items()):
                    if iterator is None:
                        continue
                    got = await aws.call(self._streams.get_records, ShardIterator=iterator, Limit=_STREAM_PAGE)
                    for record in got.get("Records", []):
                        self._on_record(record)
                    iterators[shard] = got.get("NextShardIterator")
                    backlog = backlog or len(got.get("Records", [])) >= _STREAM_PAGE
                if not backlog:
                    await asyncio.sleep(self._settings.poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream read failed: %s", exc)
                if aws.error_code(exc) in {"ExpiredIteratorException", "TrimmedDataAccessException"}:
                    iterators.clear()
                    refreshed = 0.0
                    self._recheck_all()
                await asyncio.sleep(1.0)

    async def _refresh_shards(self, arn: str, iterators: dict[str, str | None]) -> None:
        for shard in await aws.call(stream_shards, self._streams, arn):
            shard_id = str(shard["ShardId"])
            if shard_id in iterators:
                continue
            got = await aws.call(
                self._streams.get_shard_iterator, StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )
            iterators[shard_id] = got.get("ShardIterator")

    def _on_record(self, record: dict[str, Any]) -> None:
        if record.get("eventName") != "INSERT":
            return
        key = record.get("dynamodb", {}).get("Keys", {})
        tenant = ledger_keys.tenant_of_ledger_pk(str(key.get("PK", {}).get("S", "")))
        seq = ledger_keys.seq_of_event_sk(str(key.get("SK", {}).get("S", "")))
        if tenant is not None and seq is not None:
            self.wake(tenant, seq)

    def _recheck_all(self) -> None:
        for state in self._tenants.values():
            state.sealed = -1
            state.wakeup.set()

    async def stop(self) -> None:
        tasks = [s.task for s in self._tenants.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def stream_shards(streams: Any, arn: str) -> list[dict[str, Any]]:
    """Every shard of the table's stream: DescribeStream answers at most 100 a page (`LastEvaluatedShardId`),
    and a busy table's stream has more, so a sealer reading only the first page would miss tenants."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamArn": arn}
    while True:
        desc = streams.describe_stream(**kwargs)["StreamDescription"]
        shards.extend(desc.get("Shards", []))
        last = desc.get("LastEvaluatedShardId")
        if not last:
            return shards
        kwargs["ExclusiveStartShardId"] = last
