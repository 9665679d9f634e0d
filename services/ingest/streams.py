"""Live agent streams: the one-stream-per-asset registry, the stream protocol and command fan-out.

A stream is: hello (credential checked in constant time) -> Welcome with the highest durable seq ->
heartbeats, each handed to the queue and then acked; commands go down the same stream whenever they
exist (on open, on the per-tenant poll, at once on a nudge) and again until their result comes back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from lifecyclezero.v1 import common_pb2, ingest_pb2

from services.ingest import domain, store
from services.ingest.assets_client import AssetsClient
from services.ingest.queue import QueueBatcher
from services.ingest.settings import StreamSettings
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

log = logging.getLogger(__name__)

Key = tuple[str, str]
_DONE = object()
_UNKNOWN_SECRET = auth.sha256_hex("no agent has this credential")
_DEFINITIVE = (FailedPrecondition, NotFound, AlreadyExists, InvalidArgument)
MAX_REMEMBERED = 200_000


@dataclass
class DurableSeq:
    """What this process knows of an agent's highest durable seq, and what it last wrote down."""

    secret_sha256: str
    acked: int
    stored: int
    stored_at: float
    due: bool = False


@dataclass(eq=False)
class LiveStream:
    tenant: str
    asset_id: str
    secret_sha256: str
    epoch: int
    sequencer: domain.Sequencer
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    acked_seq: int = 0
    gapped: bool = False
    sent: dict[str, float] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)
    ended: bool = False

    @property
    def key(self) -> Key:
        return (self.tenant, self.asset_id)

    def push(self, message: ingest_pb2.ConnectResponse) -> None:
        if not self.ended:
            self.outbox.put_nowait(message)

    def end(self, error: DomainError | None = None) -> None:
        """End the stream: with `error` as its status, or OK when None."""
        if not self.ended:
            self.ended = True
            self.outbox.put_nowait(error if error is not None else _DONE)

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


class Hub:
    """Every live stream of this process and what they share: the queue, assets, durable seqs, buckets."""

    def __init__(self, settings: StreamSettings, ddb: Any, table: str, batcher: QueueBatcher,
                 assets: AssetsClient) -> None:
        self.settings = settings
        self._ddb = ddb
        self._table = table
        self.batcher = batcher
        self.assets = assets
        self.streams: dict[Key, LiveStream] = {}
        self._durable: collections.OrderedDict[Key, DurableSeq] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[Key, domain.TokenBucket] = collections.OrderedDict()
        self.heartbeats = 0

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
        record = await aws.call(store.get_agent, self._ddb, self._table, facts.tenant, facts.asset_id)
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
        tasks: list[asyncio.Task[None]] = []
        try:
            yield ingest_pb2.ConnectResponse(welcome=ingest_pb2.Welcome(
                acked_seq=stream.acked_seq, heartbeat_interval_seconds=self.settings.heartbeat_interval_seconds))
            tasks.append(asyncio.create_task(self._read(stream, requests)))
            tasks.append(asyncio.create_task(self._send_pending(stream)))
            while True:
                item = await stream.outbox.get()
                if item is _DONE:
                    return
                if isinstance(item, DomainError):
                    raise item
                yield item
        finally:
            stream.ended = True
            for task in tasks:
                task.cancel()
            if self.streams.get(stream.key) is stream:
                del self.streams[stream.key]
            state = self._durable.get(stream.key)
            if state is not None and state.acked > state.stored:
                state.due = True

    def _welcome_seq(self, key: Key, record: store.AgentRecord) -> int:
        state = self._durable.get(key)
        if state is None or state.secret_sha256 != record.secret_sha256:
            state = DurableSeq(record.secret_sha256, record.durable_seq, record.durable_seq, time.monotonic())
            self._remember(self._durable, key, state)
        state.acked = max(state.acked, record.durable_seq)
        state.stored = max(state.stored, record.durable_seq)
        return state.acked

    def _bucket(self, key: Key) -> domain.TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = domain.TokenBucket(self.settings.rate_per_second, self.settings.burst, time.monotonic())
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
        try:
            async for request in requests:
                if stream.ended:
                    return
                wait = bucket.take(time.monotonic())
                if wait:
                    raise ResourceExhausted(
                        f"more than {self.settings.rate_per_second:g} messages a second "
                        f"(burst {self.settings.burst}); slow down and reconnect",
                        reason="AGENT_RATE_LIMITED",
                        metadata={"retry_after_ms": str(int(wait * 1000) + 1)},
                    )
                kind = request.WhichOneof("message")
                if kind == "heartbeat":
                    await self._heartbeat(stream, request.heartbeat)
                elif kind == "command_result":
                    await self._result(stream, request.command_result)
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

    async def _heartbeat(self, stream: LiveStream, heartbeat: ingest_pb2.Heartbeat) -> None:
        body_bytes = heartbeat.SerializeToString()
        received = domain.now()
        stream.sequencer.check(heartbeat, len(body_bytes), received)
        if stream.gapped:
            if self.batcher.healthy:
                raise Unavailable("the heartbeat queue is back; reconnect and replay what was not acked",
                                  reason="QUEUE_RECOVERED")
            return
        body = domain.encode_envelope(stream.tenant, stream.asset_id, stream.epoch, received, body_bytes)
        try:
            await self.batcher.submit(body)
        except Unavailable:
            stream.gapped = True  # no ack now, and none later on this stream: a cumulative ack would skip it
            return
        self.heartbeats += 1
        stream.acked_seq = max(stream.acked_seq, heartbeat.seq)
        state = self._durable.get(stream.key)
        if state is not None and state.secret_sha256 == stream.secret_sha256:
            state.acked = max(state.acked, heartbeat.seq)
        stream.push(ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=stream.acked_seq)))

    async def _result(self, stream: LiveStream, result: common_pb2.CommandResult) -> None:
        command_id = domain.check_command_result(result)
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
        stream.push(ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=stream.acked_seq,
                                                                  command_id=command_id)))

    async def _send_pending(self, stream: LiveStream) -> None:
        try:
            commands = await self.assets.list_pending_commands(stream.tenant, stream.asset_id)
        except DomainError as error:
            log.warning("pending commands of %s/%s not listed (%s); the poll retries", stream.tenant,
                        stream.asset_id, error.message)
            return
        now = time.monotonic()
        for command in commands:
            if command.asset_id in ("", stream.asset_id):
                stream.offer(command, now, self.settings.command_resend_seconds, force=True)

    # -------------------------------------------------------------------------------------- commands

    def deliver(self, tenant: str, command: common_pb2.Command) -> bool:
        """Push a command to its asset's live stream at once (the nudge); False when none is here."""
        stream = self.streams.get((tenant, command.asset_id))
        if stream is None or stream.ended:
            return False
        stream.offer(command, time.monotonic(), self.settings.command_resend_seconds, force=True)
        return True

    async def poll_commands(self) -> None:
        """One round of the per-tenant poll: pending commands go (again) to live streams of this process."""
        tenants = sorted({tenant for tenant, _ in self.streams})
        slots = asyncio.Semaphore(8)

        async def one(tenant: str) -> None:
            async with slots:
                try:
                    commands = await self.assets.list_pending_commands(tenant)
                except DomainError as error:
                    log.warning("pending commands of %s not listed: %s", tenant, error.message)
                    return
            now = time.monotonic()
            for command in commands:
                stream = self.streams.get((tenant, command.asset_id))
                if stream is not None:
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
        self._durable.pop((tenant, asset_id), None)
        stream = self.streams.get((tenant, asset_id))
        if stream is not None:
            stream.end(Unauthenticated("the agent credential was revoked; enroll again", reason="REVOKED"))

    # ------------------------------------------------------------------------------ durable seqs

    async def persist_seqs(self, force: bool = False) -> int:
        """Write down advanced durable seqs that are due (every `seq_persist_seconds`, at close, at stop)."""
        now = time.monotonic()
        due = [
            (key, state) for key, state in list(self._durable.items())
            if state.acked > state.stored
            and (force or state.due or now - state.stored_at >= self.settings.seq_persist_seconds)
        ]
        written = 0
        for (tenant, asset_id), state in due:
            seq = state.acked
            try:
                await aws.call(store.save_durable_seq, self._ddb, self._table, tenant, asset_id,
                               state.secret_sha256, seq)
            except Exception as exc:
                log.warning("durable seq of %s/%s not saved: %s", tenant, asset_id, exc)
                continue
            state.stored, state.stored_at, state.due = seq, now, False
            written += 1
        return written

    async def persist_seqs_forever(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.settings.seq_persist_seconds))
            with contextlib.suppress(Exception):
                await self.persist_seqs()

    async def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.end(Unavailable("the server is shutting down; reconnect", reason="DRAINING"))
        await self.batcher.close()
        await self.persist_seqs(force=True)
