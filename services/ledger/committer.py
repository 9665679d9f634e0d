"""Group commit: AppendEvents calls of one tenant that arrive while a transaction is in flight are
queued and committed together in the next TransactWriteItems (up to 99 events).

One drain task per tenant with a queue; the tail it last wrote is cached, so a steady stream of
appends costs one transaction per batch and no tail read. Another writer (a second ledger replica,
the assets service) makes the cached tail stale; the conditional puts then fail and `store.append`
re-reads the tail and retries, so correctness never depends on the cache.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.kit import aws
from services.ledger import store
from services.ledger.domain import take_batch


@dataclass
class _Call:
    group: store.AppendGroup
    done: asyncio.Future[list[int]]


@dataclass
class _Queue:
    calls: deque[_Call] = field(default_factory=deque)
    tail: store.Tail | None = None
    draining: bool = False


class GroupCommitter:
    """Appends per tenant, batching concurrent calls into shared transactions."""

    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table
        self._queues: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.transactions = 0

    async def append(self, tenant: str, drafts: Sequence[store.EventDraft], request_id: str = "") -> list[int]:
        """Append one call's (validated) events; resolves when they are durable."""
        store.check_request(drafts, request_id)
        queue = self._queues.setdefault(tenant, _Queue())
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        queue.calls.append(_Call(store.AppendGroup(tuple(drafts), request_id), done))
        if not queue.draining:
            queue.draining = True
            task = asyncio.create_task(self._drain(tenant, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _drain(self, tenant: str, queue: _Queue) -> None:
        try:
            while queue.calls:
                # A call whose RPC was cancelled while it waited is dropped, never written: its caller
                # could not learn the seqs. (One cancelled during the write is committed; a retry with
                # the same request_id then answers the original seqs.)
                while queue.calls and queue.calls[0].done.done():
                    queue.calls.popleft()
                if not queue.calls:
                    break
                count = take_batch([(len(c.group.drafts), c.group.request_id) for c in queue.calls])
                batch = [queue.calls.popleft() for _ in range(count)]
                batch = [c for c in batch if not c.done.done()]
                if not batch:
                    continue
                try:
                    seqs, queue.tail = await aws.call(
                        store.append, self._ddb, self._table, tenant, [c.group for c in batch], tail=queue.tail
                    )
                    self.transactions += 1
                except Exception as exc:
                    queue.tail = None
                    for call in batch:
                        if not call.done.done():
                            call.done.set_exception(exc)
                    continue
                for call, got in zip(batch, seqs, strict=True):
                    if not call.done.done():
                        call.done.set_result(got)
        finally:
            queue.draining = False
