"""Hand-over to SQS: heartbeats from every stream are batched (SendMessageBatch, up to 10) after a short linger.

`submit` returns only when SQS has accepted the message, so an ack sent after it means "in SQS". When
SQS does not answer, the batcher marks itself unhealthy and fails new submissions at once (the streams
stop acking, the agents keep spooling) until `probe` reaches the queue again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from services.kit import aws
from services.kit.errors import Unavailable

log = logging.getLogger(__name__)

MAX_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024 - 8 * 1024  # SQS's limit on a whole batch, with room for the framing


@dataclass
class _Pending:
    body: str
    size: int
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a failure as seen even when its submitter was cancelled (no 'never retrieved' noise)."""
    if not future.cancelled():
        future.exception()


class QueueBatcher:
    def __init__(self, sqs: Any, queue_url: str, *, linger_seconds: float = 0.01, max_in_flight: int = 16) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._linger = linger_seconds
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.healthy = True
        self.unhealthy_since: float | None = None
        self.sent_messages = 0
        self.sent_batches = 0

    async def submit(self, body: str) -> None:
        """Resolve once SQS holds `body`; raise Unavailable when it could not be handed over."""
        if not self.healthy:
            raise Unavailable("the heartbeat queue is unreachable; keep spooling", reason="QUEUE_UNAVAILABLE")
        item = _Pending(body, len(body.encode()))
        item.future.add_done_callback(_retrieve)
        if self._pending_bytes + item.size > MAX_BATCH_BYTES:
            self._flush()
        self._pending.append(item)
        self._pending_bytes += item.size
        if len(self._pending) >= MAX_ENTRIES:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._flush)
        await asyncio.shield(item.future)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        async with self._slots:
            failed: list[_Pending] = batch
            error = "SQS did not accept the messages"
            try:
                got = await aws.call(
                    self._sqs.send_message_batch,
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": str(i), "MessageBody": p.body} for i, p in enumerate(batch)],
                )
                ok = {int(entry["Id"]) for entry in got.get("Successful", [])}
                failed = [p for i, p in enumerate(batch) if i not in ok]
                for i, p in enumerate(batch):
                    if i in ok and not p.future.done():
                        p.future.set_result(None)
                self.sent_messages += len(ok)
                self.sent_batches += 1
                if got.get("Failed"):
                    error = f"SQS refused {len(got['Failed'])} messages: {got['Failed'][0].get('Code', '')}"
            except Exception as exc:
                error = f"SQS unreachable: {type(exc).__name__}"
                self._mark_unhealthy(error)
            for p in failed:
                if not p.future.done():
                    p.future.set_exception(Unavailable(error, reason="QUEUE_UNAVAILABLE"))

    def _mark_unhealthy(self, why: str) -> None:
        if self.healthy:
            log.warning("heartbeat queue unhealthy: %s", why)
            self.unhealthy_since = time.monotonic()
        self.healthy = False

    async def probe(self) -> None:
        """Reach the queue (GetQueueAttributes); healthy again on success, raise (and unhealthy) otherwise."""
        try:
            await aws.call(self._sqs.get_queue_attributes, QueueUrl=self._queue_url,
                           AttributeNames=["ApproximateNumberOfMessages"])
        except Exception as exc:
            self._mark_unhealthy(f"{type(exc).__name__}")
            raise
        if not self.healthy:
            log.info("heartbeat queue reachable again")
        self.healthy = True
        self.unhealthy_since = None

    async def close(self) -> None:
        self._flush()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
