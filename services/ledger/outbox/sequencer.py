"""The custody sequencer: chains pending custody records into the ledger, many per transaction.

Records reach it two ways: `submit` right after the transaction that wrote them commits (the normal,
millisecond path), and `sweep`, which reads every pending record from the table at start and then
periodically (records whose process died before chaining them, or whose append failed). A record is
appended through the ledger's `GroupCommitter` with a request id derived from the record, so all the
records that are ready in a tenant share transactions (50 per transaction: event and request marker),
and a record appended twice (a crash between append and mark, two sequencers) keeps its first seq.

Chaining is background work beside the writes that produce the records: given `yield_to` (the assets
service's "none of this tenant's orders and results is queued or being written"), a round waits for
that pause, at most `MAX_YIELD_SECONDS`. A burst of fifty isolations then commits its orders without
queueing behind the chaining of its own first records at the table, and its records are chained
together right after it; under a longer flood a round still goes every second.

Order per asset: a record is appended only after the asset's previous record (`prev_version`) is
chained; an unchained previous record is loaded and chained first. Records of different assets have
no order between them, as their state changes had none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.kit import aws
from services.ledger.committer import GroupCommitter
from services.ledger.outbox import keys, store
from services.ledger.outbox.store import CustodyRecord

log = logging.getLogger(__name__)

MAX_RECORDS_PER_ROUND = 500
REMEMBERED_CHAINED = 100_000
SWEEP_PAGE = 1000
MAX_RETRY_PAUSE_SECONDS = 5.0
MAX_YIELD_SECONDS = 1.0


@dataclass
class _TenantQueue:
    # asset id -> version -> record, for records not chained yet
    records: dict[str, dict[int, CustodyRecord]] = field(default_factory=dict)
    draining: bool = False

    def add(self, record: CustodyRecord) -> None:
        self.records.setdefault(record.asset_id, {})[record.version] = record

    def remove(self, record: CustodyRecord) -> None:
        versions = self.records.get(record.asset_id, {})
        versions.pop(record.version, None)
        if not versions:
            self.records.pop(record.asset_id, None)

    def heads(self, limit: int) -> list[CustodyRecord]:
        """The oldest waiting record of each asset."""
        return [versions[min(versions)] for versions in list(self.records.values())[:limit]]


@dataclass(frozen=True)
class SweepReport:
    pending: int
    overdue: list[CustodyRecord]


class CustodySequencer:
    """Chains custody records per tenant through a group committer; see the module docstring."""

    def __init__(self, ddb: Any, table: str, committer: GroupCommitter, *, overdue_after: timedelta,
                 yield_to: Callable[[str], Awaitable[None]] | None = None,
                 max_yield_seconds: float = MAX_YIELD_SECONDS) -> None:
        self._ddb = ddb
        self._table = table
        self._committer = committer
        self._overdue_after = overdue_after
        self._yield_to = yield_to
        self._max_yield_seconds = max_yield_seconds
        self._queues: dict[str, _TenantQueue] = {}
        self._chained: OrderedDict[tuple[str, str, int], int] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, record: CustodyRecord) -> None:
        """Queue a committed record for chaining (call from the event loop)."""
        if record.chained or record.key in self._chained:
            return
        queue = self._queues.setdefault(record.tenant, _TenantQueue())
        queue.add(record)
        if not queue.draining:
            queue.draining = True
            task = asyncio.create_task(self._drain(record.tenant, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def sweep(self) -> SweepReport:
        """Queue every pending record of the table; report those older than the overdue bound."""
        bound = store.format_time(datetime.now(UTC) - self._overdue_after)
        pending = overdue = 0
        late: list[CustodyRecord] = []
        for shard in range(keys.PENDING_SHARDS):
            records = await aws.call(_pending_page, self._ddb, self._table, shard)
            pending += len(records)
            for record in records:
                if record.record_time < bound:
                    overdue += 1
                    late.append(record)
                self.submit(record)
        if late:
            oldest = min(late, key=lambda r: r.record_time)
            log.error("custody records unchained past the bound", extra={
                "overdue": overdue, "bound_seconds": self._overdue_after.total_seconds(),
                "oldest_tenant": oldest.tenant, "oldest_asset": oldest.asset_id,
                "oldest_record_time": oldest.record_time})
        return SweepReport(pending, late)

    async def run(self, every_seconds: float) -> None:
        """Sweep now (finishing what a previous process left) and then every `every_seconds`."""
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # a failed sweep is tried again at the next tick
                log.warning("custody sweep failed: %s", exc)
            await asyncio.sleep(every_seconds)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _drain(self, tenant: str, queue: _TenantQueue) -> None:
        failures = 0
        try:
            while queue.records:
                await self._pause_for(tenant)
                try:
                    progressed = await self._round(tenant, queue)
                except Exception as exc:  # the records stay queued and are tried again
                    log.warning("custody chaining of tenant %s failed: %s", tenant, exc)
                    progressed = False
                failures = 0 if progressed else failures + 1
                if failures:
                    await asyncio.sleep(min(MAX_RETRY_PAUSE_SECONDS, 0.05 * 2**failures))
        finally:
            queue.draining = False

    async def _pause_for(self, tenant: str) -> None:
        """Let the tenant's writes in progress go first, for at most `max_yield_seconds`."""
        if self._yield_to is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._yield_to(tenant), self._max_yield_seconds)

    async def _round(self, tenant: str, queue: _TenantQueue) -> bool:
        """Chain the head record of every asset whose previous record is chained; True on progress."""
        heads = queue.heads(MAX_RECORDS_PER_ROUND)
        earlier = await asyncio.gather(*(self._unchained_previous(h) for h in heads))
        ready = [head for head, previous in zip(heads, earlier, strict=True) if previous is None]
        for previous in earlier:
            if previous is not None:
                queue.add(previous)
        if not ready:
            return len(heads) > 0
        answers = await asyncio.gather(
            *(self._committer.append(tenant, [r.draft], r.request_id) for r in ready), return_exceptions=True)
        done = [(record, seqs[0]) for record, seqs in zip(ready, answers, strict=True)
                if not isinstance(seqs, BaseException)]
        failed = [a for a in answers if isinstance(a, BaseException)]
        if failed:
            log.warning("custody append failed for %d records of tenant %s: %s", len(failed), tenant, failed[0])
        if done:
            await aws.call(store.mark_chained, self._ddb, self._table, done)
            for record, seq in done:
                self._remember(record, seq)
                queue.remove(record)
        return bool(done)

    async def _unchained_previous(self, record: CustodyRecord) -> CustodyRecord | None:
        """The asset's previous record when it still waits for its seq (it must be chained first)."""
        if not record.prev_version or (record.tenant, record.asset_id, record.prev_version) in self._chained:
            return None
        previous = await aws.call(store.get_record, self._ddb, self._table, record.tenant, record.asset_id,
                                  record.prev_version)
        if previous is None:
            log.error("custody record %s/%s v%d names a previous record v%d that does not exist",
                      record.tenant, record.asset_id, record.version, record.prev_version)
            return None
        if previous.chained:
            self._remember(previous, previous.ledger_seq)
            return None
        return previous

    def _remember(self, record: CustodyRecord, seq: int) -> None:
        self._chained[record.key] = seq
        while len(self._chained) > REMEMBERED_CHAINED:
            self._chained.popitem(last=False)


def _pending_page(ddb: Any, table: str, shard: int) -> list[CustodyRecord]:
    return list(store.pending_records(ddb, table, shard, limit=SWEEP_PAGE))
