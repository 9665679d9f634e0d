"""Hand-over to SQS: heartbeats from every stream are packed into envelopes and sent with SendMessageBatch.

An envelope (one SQS message, `domain.encode_batch`) holds up to `MAX_ENVELOPE_HEARTBEATS` heartbeats of
any streams; a SendMessageBatch carries up to 10 envelopes and at most `MAX_BATCH_BYTES`. A batch goes
when it is full, or once the linger has passed and fewer than `max_in_flight` batches are on their way
(while they all are, heartbeats keep gathering: under load batches grow instead of queueing calls).

`submit` takes a callback instead of returning a future, so a stream's reader never waits on SQS; the
callback runs on the event loop once SQS accepted the heartbeat (True) or did not (False), and only then
may the heartbeat be acked. When SQS does not answer, the batcher marks itself unhealthy and refuses new
heartbeats at once (the streams stop acking, the agents keep spooling) until `probe` reaches the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from services.ingest import domain
from services.kit import aws
from services.kit.errors import Unavailable

log = logging.getLogger(__name__)

MAX_ENTRIES = 10
MAX_ENVELOPE_HEARTBEATS = 500
MAX_BATCH_BYTES = 256 * 1024 - 8 * 1024  # SQS's limit on a whole batch, with room for the framing

Done = Callable[[bool], None]


class _Batch:
    """Heartbeats gathering for one SendMessageBatch, with their completion callbacks."""

    __slots__ = ("callbacks", "entries", "size")

    def __init__(self) -> None:
        self.entries: list[domain.BatchEntry] = []
        self.callbacks: list[Done] = []
        self.size = domain.BATCH_OVERHEAD * MAX_ENTRIES

    def fits(self, size: int) -> bool:
        return self.size + size <= MAX_BATCH_BYTES and len(self.entries) < MAX_ENTRIES * MAX_ENVELOPE_HEARTBEATS


class QueueBatcher:
    def __init__(self, sqs: Any, queue_url: str, *, linger_seconds: float = 0.01, max_in_flight: int = 2) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._linger = linger_seconds
        self._max_in_flight = max_in_flight
        self._open = _Batch()
        self._sealed: list[_Batch] = []  # full batches waiting for a free slot
        self._timer: asyncio.TimerHandle | None = None
        self._due = False  # the open batch has lingered long enough
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.healthy = True
        self.unhealthy_since: float | None = None
        self.sent_messages = 0
        self.sent_heartbeats = 0
        self.sent_batches = 0

    def submit(self, entry: domain.BatchEntry, done: Done) -> None:
        """Queue one heartbeat; `done(True)` once SQS holds it, `done(False)` when it could not be handed over.

        Raises Unavailable (and never calls `done`) while the queue is known to be unreachable.
        """
        if not self.healthy:
            raise Unavailable("the heartbeat queue is unreachable; keep spooling", reason="QUEUE_UNAVAILABLE")
        size = domain.entry_size(entry)
        batch = self._open
        if batch.entries and not batch.fits(size):
            self._sealed.append(batch)
            batch = self._open = _Batch()
            self._flush()
        batch.entries.append(entry)
        batch.callbacks.append(done)
        batch.size += size
        if self._timer is None and not self._due:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._linger_over)

    def _linger_over(self) -> None:
        self._timer = None
        self._due = True
        self._flush()

    def _flush(self) -> None:
        """Send sealed batches, then the open one if it lingered long enough, while slots are free."""
        while self._in_flight < self._max_in_flight:
            if self._sealed:
                batch = self._sealed.pop(0)
            elif self._due and self._open.entries:
                batch, self._open, self._due = self._open, _Batch(), False
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            else:
                return
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: _Batch) -> None:
        entries, callbacks = batch.entries, batch.callbacks
        groups = [(start, min(len(entries), start + MAX_ENVELOPE_HEARTBEATS))
                  for start in range(0, len(entries), MAX_ENVELOPE_HEARTBEATS)]
        accepted: set[int] = set()
        try:
            got = await aws.call(
                self._sqs.send_message_batch,
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "MessageBody": domain.encode_batch(entries[lo:hi])}
                         for i, (lo, hi) in enumerate(groups)],
            )
            accepted = {int(entry["Id"]) for entry in got.get("Successful", [])}
            self.sent_batches += 1
            self.sent_messages += len(accepted)
            if got.get("Failed"):
                log.warning("SQS refused %d of %d envelopes: %s", len(got["Failed"]), len(groups),
                            got["Failed"][0].get("Code", ""))
        except Exception as exc:
            self._mark_unhealthy(f"SQS unreachable: {type(exc).__name__}")
        finally:
            self._in_flight -= 1
        for i, (lo, hi) in enumerate(groups):
            ok = i in accepted
            if ok:
                self.sent_heartbeats += hi - lo
            for done in callbacks[lo:hi]:
                try:
                    done(ok)
                except Exception:
                    log.exception("heartbeat completion failed")
        self._flush()

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
        """Send what has gathered and wait for every send in flight."""
        while self._open.entries or self._sealed or self._tasks:
            self._due = True
            self._flush()
            if self._tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait(list(self._tasks))
