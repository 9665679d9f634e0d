"""Live agent streams: the one-stream-per-asset registry, the stream protocol and command fan-out.

A stream is: hello (credential checked in constant time) -> Welcome with the highest durable seq ->
heartbeats, each handed to the queue and then acked; commands go down the same stream whenever they
exist (on open, on the per-tenant poll, at once on a nudge) and again until their result comes back.

The per-heartbeat path is kept small because one process holds thousands of streams: the reader checks
the heartbeat and hands it to the batcher without waiting; the batcher's callback acks it (in order per
stream) once SQS holds it. Hellos arriving together share a BatchGetItem for their credentials, and a new
stream gets its pending commands from the tenant's last poll instead of an assets call of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from lifecyclezero.v1 import common_pb2, ingest_pb2

from services.ingest import domain, health, store
from services.ingest.assets_client import AssetsClient
from services.ingest.queue import QueueBatcher
from services.ingest.settings import StreamSettings
from services.ingest.tracker import StreamPresence, Tracker
from services.kit import auth, aws
from services.kit.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.kit.ids import validate_id
from services.kit.ratelimit import TokenBucket

log = logging.getLogger(__name__)

Key = tuple[str, str]
_DONE = object()
_UNKNOWN_SECRET = auth.sha256_hex("no agent has this credential")
_DEFINITIVE = (FailedPrecondition, NotFound, AlreadyExists, InvalidArgument)
MAX_REMEMBERED = 200_000
# Durable-seq writes in flight at once: a draining process writes down every stream's seq before its
# grace period ends, thousands of them, which one at a time took minutes.
SEQ_WRITES_AT_ONCE = 16
# How often the due durable-seq writes go. Streams fall due spread over `seq_persist_seconds` (jittered
# at open), and a tick every 5 s sent 5 s of them at once: ~30 writes in a row at 700 streams, which held
# the table from the operators' orders for ~150 ms every 5 s. The same writes, in smaller waves.
WRITE_DOWN_TICK_SECONDS = 1.0


@dataclass
class DurableSeq:
    """What this process knows of an agent's highest durable seq, and what it last wrote down."""

    secret_sha256: str
    acked: int
    stored: int
    stored_at: float
    due: bool = False


class Outbox:
    """What goes down one stream, in order: a deque and at most one waiting reader (lighter than a Queue)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def qsize(self) -> int:
        return len(self._items)


_PENDING, _STORED, _FAILED = 0, 1, 2


class LiveStream:
    __slots__ = ("acked_seq", "asset_id", "ended", "epoch", "gapped", "in_flight", "outbox", "presence", "resolved",
                 "secret_sha256", "sent", "sequencer", "tenant")

    def __init__(self, tenant: str, asset_id: str, secret_sha256: str, epoch: int,
                 sequencer: domain.Sequencer) -> None:
        self.tenant = tenant
        self.asset_id = asset_id
        self.secret_sha256 = secret_sha256
        self.epoch = epoch
        self.sequencer = sequencer
        self.outbox = Outbox()
        self.acked_seq = 0
        self.gapped = False
        self.in_flight: collections.deque[list[int]] = collections.deque()  # [seq, state], in submission order
        self.sent: dict[str, float] = {}
        self.resolved: set[str] = set()
        self.ended = False
        self.presence = StreamPresence("", "", "")  # the tracker's, once the stream is registered

    @property
    def key(self) -> Key:
        return (self.tenant, self.asset_id)

    def push(self, message: ingest_pb2.ConnectResponse) -> None:
        if not self.ended:
            self.outbox.put(message)

    def end(self, error: DomainError | None = None) -> None:
        """End the stream: with `error` as its status, or OK when None."""
        if not self.ended:
            self.ended = True
            self.outbox.put(error if error is not None else _DONE)

    def offer(self, command: common_pb2.Command, now: float, resend_after: float, force: bool = False) -> bool:
        """Send `command` unless it was sent recently (or its result is in); True when it went down."""
        if command.command_id in self.resolved:
            return False
        last = self.sent.get(command.command_id)
        if not force and last is not None and now - last < resend_after:
            return False
        self.sent[command.command_id] = now
        self.push(ingest_pb2.ConnectResponse(command=command))
        return True

    def stored(self, seq: int, ok: bool) -> int:
        """Record that SQS took (or refused) heartbeat `seq`; the new cumulative ack, or 0 when there is none.

        Acks follow submission order: a heartbeat is acked only once every earlier one is in SQS, and a
        refused one gaps the stream for good (a later cumulative ack would skip it).
        """
        for slot in self.in_flight:
            if slot[0] == seq and slot[1] == _PENDING:
                slot[1] = _STORED if ok else _FAILED
                break
        advanced = 0
        while self.in_flight and self.in_flight[0][1] != _PENDING:
            slot_seq, state = self.in_flight.popleft()
            if state == _FAILED:
                self.gapped = True
            elif not self.gapped and slot_seq > self.acked_seq:
                self.acked_seq = advanced = slot_seq
        return advanced


def _still_valid(stream: LiveStream, record: store.AgentRecord | None) -> bool:
    return record is not None and not record.revoked and record.secret_sha256 == stream.secret_sha256


def _credential_gone() -> Unauthenticated:
    return Unauthenticated("the agent credential was revoked or replaced; enroll again", reason="CREDENTIAL_REVOKED")


class CredentialLoader:
    """Reads agent credentials for hellos; hellos that arrive together share one BatchGetItem.

    A batch is cut when a read slot is free, not when the linger ends: while every slot is busy, hellos
    keep gathering, so under a reconnect storm the reads grow to 100 keys instead of queueing by the
    hundred with a few keys each (which once left hellos waiting longer than the agents' Welcome
    timeout). Hellos whose stream has already gone are dropped from the batch.
    """

    def __init__(self, ddb: Any, table: str, linger_seconds: float = 0.002, max_in_flight: int = 4) -> None:
        self._ddb = ddb
        self._table = table
        self._linger = linger_seconds
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._waiting: list[tuple[Key, asyncio.Future[store.AgentRecord | None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reads = 0

    async def get(self, tenant: str, asset_id: str) -> store.AgentRecord | None:
        future: asyncio.Future[store.AgentRecord | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(((tenant, asset_id), future))
        if len(self._waiting) >= store.MAX_BATCH_GET:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._in_flight < self._max_in_flight:
            self._waiting = [(key, future) for key, future in self._waiting if not future.done()]
            if not self._waiting:
                return
            batch = self._waiting[:store.MAX_BATCH_GET]
            del self._waiting[:store.MAX_BATCH_GET]
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._load(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _load(self, batch: list[tuple[Key, asyncio.Future[store.AgentRecord | None]]]) -> None:
        try:
            found = await aws.call(store.get_agents, self._ddb, self._table, [key for key, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._in_flight -= 1
            self._flush()
        self.reads += 1
        for key, future in batch:
            if not future.done():
                future.set_result(found.get(key))


class Hub:
    """Every live stream of this process and what they share: the queue, assets, durable seqs, buckets."""

    def __init__(self, settings: StreamSettings, ddb: Any, table: str, batcher: QueueBatcher,
                 assets: AssetsClient, *, tracker: Tracker) -> None:
        self.settings = settings
        self._ddb = ddb
        self._table = table
        self.batcher = batcher
        self.assets = assets
        self.credentials = CredentialLoader(ddb, table)
        self.tracker = tracker
        self.streams: dict[Key, LiveStream] = {}
        self._durable: collections.OrderedDict[Key, DurableSeq] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[Key, TokenBucket] = collections.OrderedDict()
        # tenant -> (monotonic time of its last poll, asset -> pending commands)
        self._commands: dict[str, tuple[float, dict[str, list[common_pb2.Command]]]] = {}
        self._polls: dict[str, asyncio.Task[dict[str, list[common_pb2.Command]]]] = {}
        # tenant -> monotonic time its next poll is due: soon while it has pending commands, else after the
        # idle period, so the poll's cost follows the tenants with commands, not every tenant with a stream.
        self._poll_due: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.heartbeats = 0
        self.tenant_polls = 0

    # ----------------------------------------------------------------------------------------- stream

    async def connect(self, requests: AsyncIterator[ingest_pb2.ConnectRequest]) -> AsyncIterator[
        ingest_pb2.ConnectResponse
    ]:
        try:
            first = await asyncio.wait_for(anext(requests), self.settings.hello_timeout_seconds)
        except StopAsyncIteration:
            raise InvalidArgument("the stream ended before its hello", reason="HELLO_REQUIRED") from None
        except TimeoutError:
            raise InvalidArgument("no hello within the time allowed", reason="HELLO_REQUIRED") from None
        facts = domain.check_hello(first)
        record = await self.credentials.get(facts.tenant, facts.asset_id)
        stored = record.secret_sha256 if record is not None and not record.revoked else _UNKNOWN_SECRET
        if not auth.same_secret(facts.credential, stored) or record is None:
            raise Unauthenticated("unknown asset, or a wrong or revoked agent credential", reason="BAD_CREDENTIAL")
        stream = LiveStream(facts.tenant, facts.asset_id, record.secret_sha256, record.epoch,
                            domain.Sequencer(self.settings.max_heartbeat_bytes))
        stream.acked_seq = self._welcome_seq(stream.key, record)
        old = self.streams.get(stream.key)
        if old is not None:
            old.end(Aborted("a newer stream for this asset replaced this one", reason="STREAM_REPLACED"))
        self.streams[stream.key] = stream
        stream.presence = self.tracker.opened(stream.tenant, stream.asset_id, stream.secret_sha256, first.hello,
                                              record.open_alerts)
        reader: asyncio.Task[None] | None = None
        try:
            yield ingest_pb2.ConnectResponse(welcome=ingest_pb2.Welcome(
                acked_seq=stream.acked_seq, heartbeat_interval_seconds=self.settings.heartbeat_interval_seconds))
            reader = asyncio.create_task(self._read(stream, requests))
            self._send_pending(stream)
            outbox = stream.outbox
            while True:
                item = await outbox.get()
                if item is _DONE:
                    return
                if isinstance(item, DomainError):
                    raise item
                yield item
        finally:
            stream.ended = True
            if reader is not None:
                reader.cancel()
            if self.streams.get(stream.key) is stream:
                del self.streams[stream.key]
            state = self._durable.get(stream.key)
            if state is not None and state.acked > state.stored:
                state.due = True
            self.tracker.closed(stream.presence)

    def _welcome_seq(self, key: Key, record: store.AgentRecord) -> int:
        state = self._durable.get(key)
        if state is None or state.secret_sha256 != record.secret_sha256:
            # The first write-down lands anywhere in the next period rather than exactly one period after
            # the hello: after a mass reconnect, thousands of writes spread out instead of arriving at once.
            first_due = time.monotonic() - random.uniform(0.0, self.settings.seq_persist_seconds)  # noqa: S311 - jitter
            state = DurableSeq(record.secret_sha256, record.durable_seq, record.durable_seq, first_due)
            self._remember(self._durable, key, state)
        state.acked = max(state.acked, record.durable_seq)
        state.stored = max(state.stored, record.durable_seq)
        return state.acked

    def _bucket(self, key: Key) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.settings.rate_per_second, self.settings.burst, time.monotonic())
            self._remember(self._buckets, key, bucket)
        return bucket

    @staticmethod
    def _remember(table: collections.OrderedDict[Key, Any], key: Key, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > MAX_REMEMBERED:
            table.popitem(last=False)

    async def _read(self, stream: LiveStream, requests: AsyncIterator[ingest_pb2.ConnectRequest]) -> None:
        bucket = self._bucket(stream.key)
        monotonic = time.monotonic
        try:
            async for request in requests:
                if stream.ended:
                    return
                wait = bucket.take(monotonic())
                if wait:
                    raise ResourceExhausted(
                        f"more than {self.settings.rate_per_second:g} messages a second "
                        f"(burst {self.settings.burst}); slow down and reconnect",
                        reason="AGENT_RATE_LIMITED",
                        metadata={"retry_after_ms": str(int(wait * 1000) + 1)},
                    )
                kind = request.WhichOneof("message")
                if kind == "heartbeat":
                    self._heartbeat(stream, request.heartbeat)
                elif kind == "command_result":
                    await self._result(stream, request.command_result)
                elif kind == "agent_event":
                    await self._agent_event(stream, request.agent_event)
                elif kind == "goodbye":
                    stream.presence.goodbye = health.goodbye_reason(request.goodbye)
                elif kind == "hello":
                    raise InvalidArgument("a stream has exactly one hello, first", reason="HELLO_REPEATED")
                else:
                    raise InvalidArgument("empty stream message", reason="EMPTY_MESSAGE")
            stream.end()
        except DomainError as error:
            stream.end(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not stream.ended:
                log.exception("stream of %s/%s failed", stream.tenant, stream.asset_id)
            stream.end(Unavailable(f"stream failed: {type(exc).__name__}"))

    def _heartbeat(self, stream: LiveStream, heartbeat: ingest_pb2.Heartbeat) -> None:
        """Check one heartbeat and hand it to the batcher; `_stored` acks it once SQS holds it."""
        body_bytes = heartbeat.SerializeToString()
        now = time.time()
        try:
            stream.sequencer.check_at(heartbeat, len(body_bytes), now)
        except InvalidArgument as error:
            # The agent drops exactly this record from its spool instead of replaying it forever.
            error.metadata.setdefault("seq", str(heartbeat.seq))
            raise
        stream.presence.seen = now
        self.tracker.heard(stream.presence)
        if stream.gapped:
            if self.batcher.healthy:
                raise Unavailable("the heartbeat queue is back; reconnect and replay what was not acked",
                                  reason="QUEUE_RECOVERED")
            return
        seq = heartbeat.seq
        entry = domain.batch_entry(stream.tenant, stream.asset_id, stream.epoch, int(now * 1000), body_bytes)
        try:
            self.batcher.submit(entry, functools.partial(self._stored, stream, seq))
        except Unavailable:
            stream.gapped = True  # no ack now, and none later on this stream: a cumulative ack would skip it
            return
        stream.in_flight.append([seq, _PENDING])

    def _stored(self, stream: LiveStream, seq: int, ok: bool) -> None:
        acked = stream.stored(seq, ok)
        if not acked:
            return
        self.heartbeats += 1
        state = self._durable.get(stream.key)
        if state is not None and state.secret_sha256 == stream.secret_sha256 and acked > state.acked:
            state.acked = acked
        stream.push(ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=acked)))

    async def _result(self, stream: LiveStream, result: common_pb2.CommandResult) -> None:
        command_id = domain.check_command_result(result)
        # A result becomes custody evidence: its stream's credential must still be valid right now, not
        # merely at the hello (another replica may have revoked or replaced it since).
        if not _still_valid(stream, await self.credentials.get(stream.tenant, stream.asset_id)):
            raise _credential_gone()
        try:
            await self.assets.record_command_result(stream.tenant, stream.asset_id, result)
        except _DEFINITIVE as error:
            log.warning("command result %s of %s/%s refused: %s", command_id, stream.tenant, stream.asset_id,
                        error.message)
        except DomainError as error:
            log.warning("command result %s not recorded yet (%s); the agent sends it again", command_id,
                        error.message)
            return
        stream.resolved.add(command_id)
        stream.sent.pop(command_id, None)
        self._forget_command(stream.tenant, stream.asset_id, command_id)
        stream.push(ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=stream.acked_seq,
                                                                  command_id=command_id)))

    async def _agent_event(self, stream: LiveStream, event: common_pb2.AgentEvent) -> None:
        """Record a break-glass or drift the agent saw in the custody ledger; ack it once recorded or refused."""
        event_id = validate_id("agent_event.event_id", event.event_id)
        try:
            await self.assets.record_agent_event(stream.tenant, stream.asset_id, event)
        except _DEFINITIVE as error:
            log.warning("agent event %s of %s/%s refused: %s", event_id, stream.tenant, stream.asset_id,
                        error.message)
        except DomainError as error:
            log.warning("agent event %s not recorded yet (%s); the agent sends it again", event_id, error.message)
            return
        stream.push(ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=stream.acked_seq, event_id=event_id)))

    # -------------------------------------------------------------------------------------- commands

    def _send_pending(self, stream: LiveStream) -> None:
        """A new stream's pending commands: from the tenant's last poll when it is fresh, else from a poll now."""
        cached = self._commands.get(stream.tenant)
        if cached is not None and time.monotonic() - cached[0] < 2 * self.settings.command_poll_seconds:
            self._offer_pending(stream, cached[1], force=True)
            return
        self._spawn(self._send_pending_later(stream))

    async def _send_pending_later(self, stream: LiveStream) -> None:
        try:
            by_asset = await self._poll_tenant(stream.tenant)
        except DomainError as error:
            log.warning("pending commands of %s not listed (%s); the poll retries", stream.tenant, error.message)
            return
        self._offer_pending(stream, by_asset, force=True)

    def _offer_pending(self, stream: LiveStream, by_asset: dict[str, list[common_pb2.Command]],
                       force: bool = False) -> None:
        commands = by_asset.get(stream.asset_id)
        if commands:
            now = time.monotonic()
            for command in commands:
                stream.offer(command, now, self.settings.command_resend_seconds, force=force)

    async def _poll_tenant(self, tenant: str) -> dict[str, list[common_pb2.Command]]:
        """The tenant's pending commands by asset (one ListPendingCommands; concurrent askers share it)."""
        task = self._polls.get(tenant)
        if task is None:
            task = asyncio.create_task(self._list_tenant(tenant))
            self._polls[tenant] = task
            task.add_done_callback(lambda _: self._polls.pop(tenant, None))
        return await asyncio.shield(task)

    async def _list_tenant(self, tenant: str) -> dict[str, list[common_pb2.Command]]:
        listed = time.monotonic()
        commands = await self.assets.list_pending_commands(tenant)
        self.tenant_polls += 1
        by_asset: dict[str, list[common_pb2.Command]] = {}
        for command in commands:
            if command.asset_id:
                by_asset.setdefault(command.asset_id, []).append(command)
        self._commands[tenant] = (listed, by_asset)
        pause = self.settings.command_poll_seconds if commands else self.settings.command_idle_poll_seconds
        self._poll_due[tenant] = listed + pause
        return by_asset

    def _forget_command(self, tenant: str, asset_id: str, command_id: str) -> None:
        cached = self._commands.get(tenant)
        if cached is not None and asset_id in cached[1]:
            cached[1][asset_id] = [c for c in cached[1][asset_id] if c.command_id != command_id]

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def deliver(self, tenant: str, command: common_pb2.Command) -> bool:
        """Push a command to its asset's live stream at once (the nudge); False when none is here."""
        # The tenant has a command pending now: poll it at the short period until none is left.
        soon = time.monotonic() + self.settings.command_poll_seconds
        self._poll_due[tenant] = min(self._poll_due.get(tenant, soon), soon)
        cached = self._commands.get(tenant)
        if cached is not None and command.asset_id:
            known = cached[1].setdefault(command.asset_id, [])
            if all(c.command_id != command.command_id for c in known):
                known.append(command)  # a stream that opens before the next poll gets it too
        stream = self.streams.get((tenant, command.asset_id))
        if stream is None or stream.ended:
            return False
        stream.offer(command, time.monotonic(), self.settings.command_resend_seconds, force=True)
        return True

    async def poll_commands(self) -> None:
        """One round of the per-tenant poll: pending commands go (again) to live streams of this process.

        Only the tenants due are listed: those with pending commands (at their last poll, or nudged since)
        every `command_poll_seconds`, the others every `command_idle_poll_seconds`.
        """
        live = {tenant for tenant, _ in self.streams}
        for tenant in set(self._commands) - live:
            del self._commands[tenant]
        for tenant in set(self._poll_due) - live:
            del self._poll_due[tenant]
        now = time.monotonic()
        tenants = sorted(tenant for tenant in live if self._poll_due.get(tenant, 0.0) <= now)
        slots = asyncio.Semaphore(8)

        async def one(tenant: str) -> None:
            async with slots:
                try:
                    by_asset = await self._poll_tenant(tenant)
                except DomainError as error:
                    log.warning("pending commands of %s not listed: %s", tenant, error.message)
                    return
            now = time.monotonic()
            for asset_id, commands in by_asset.items():
                stream = self.streams.get((tenant, asset_id))
                if stream is not None:
                    for command in commands:
                        stream.offer(command, now, self.settings.command_resend_seconds)

        await asyncio.gather(*(one(t) for t in tenants))

    async def poll_commands_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.command_poll_seconds)
            try:
                await self.poll_commands()
            except Exception:
                log.exception("command poll failed")

    # ---------------------------------------------------------------------------------- revocation

    async def revoke(self, tenant: str, asset_id: str) -> None:
        await aws.call(store.revoke_agent, self._ddb, self._table, tenant, asset_id, domain.format_ts(domain.now()))
        self.end_stream(tenant, asset_id, Unauthenticated("the agent credential was revoked; enroll again",
                                                          reason="REVOKED"))

    def holds(self, tenant: str, asset_id: str) -> bool:
        """Whether a live stream of the asset is on this process."""
        stream = self.streams.get((tenant, asset_id))
        return stream is not None and not stream.ended

    async def recheck_stream(self, tenant: str, asset_id: str) -> bool:
        """Read the asset's credential now and end its live stream here if it was revoked or replaced."""
        stream = self.streams.get((tenant, asset_id))
        if stream is None or stream.ended:
            return False
        if _still_valid(stream, await self.credentials.get(tenant, asset_id)):
            return False
        self.end_stream(tenant, asset_id, _credential_gone())
        return True

    async def recheck_credentials(self) -> int:
        """End every live stream of this process whose credential was revoked or replaced since its hello
        (by any replica); consistent batch reads, 100 streams a call. The number of streams ended."""
        live = [stream for stream in self.streams.values() if not stream.ended]
        if not live:
            return 0
        found = await aws.call(store.get_agents, self._ddb, self._table, [stream.key for stream in live])
        ended = 0
        for stream in live:
            if not _still_valid(stream, found.get(stream.key)):
                if self.streams.get(stream.key) is stream:
                    self._durable.pop(stream.key, None)
                stream.end(_credential_gone())
                ended += 1
        return ended

    async def recheck_credentials_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.credential_recheck_seconds)
            try:
                ended = await self.recheck_credentials()
            except Exception:
                log.exception("credential re-check failed; the next one tries again")
                continue
            if ended:
                log.info("%d streams ended: their credential was revoked or replaced", ended)

    def end_stream(self, tenant: str, asset_id: str, error: DomainError) -> None:
        """End the asset's live stream on this process (its credential is no longer valid) with `error`."""
        self._durable.pop((tenant, asset_id), None)
        stream = self.streams.get((tenant, asset_id))
        if stream is not None:
            stream.end(error)

    # ------------------------------------------------------------------------------ durable seqs

    async def persist_seqs(self, force: bool = False) -> int:
        """Write down advanced durable seqs that are due (every `seq_persist_seconds`, at close, at stop)."""
        now = time.monotonic()
        due = [
            (key, state) for key, state in list(self._durable.items())
            if state.acked > state.stored
            and (force or state.due or now - state.stored_at >= self.settings.seq_persist_seconds)
        ]
        slots = asyncio.Semaphore(SEQ_WRITES_AT_ONCE)

        async def write_down(key: Key, state: DurableSeq) -> bool:
            async with slots:
                return await self._persist_seq(key, state, now)

        return sum(await asyncio.gather(*(write_down(key, state) for key, state in due)))

    async def _persist_seq(self, key: Key, state: DurableSeq, now: float) -> bool:
        tenant, asset_id = key
        seq = state.acked
        live = self.streams.get(key)
        try:
            # A live stream's lease rides on its durable-seq write: no write of its own.
            refreshed = live is not None and await self.tracker.refresh(live.presence, seq)
            if not refreshed:
                await aws.call(store.save_durable_seq, self._ddb, self._table, tenant, asset_id,
                               state.secret_sha256, seq)
        except Exception as exc:
            log.warning("durable seq of %s/%s not saved: %s", tenant, asset_id, exc)
            return False
        state.stored, state.stored_at, state.due = seq, now, False
        return True

    async def persist_seqs_forever(self) -> None:
        while True:
            await asyncio.sleep(min(WRITE_DOWN_TICK_SECONDS, self.settings.seq_persist_seconds))
            with contextlib.suppress(Exception):
                await self.persist_seqs()
            await self.tracker.refresh_idle(s.presence for s in self.streams.values() if not s.ended)

    async def close(self) -> None:
        self.tracker.draining = True
        for stream in list(self.streams.values()):
            stream.end(Unavailable("the server is shutting down; reconnect", reason="DRAINING"))
        await self.batcher.close()
        await self.persist_seqs(force=True)
