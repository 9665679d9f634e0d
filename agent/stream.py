"""The agent's one stream to the control plane (``IngestService.Connect``), kept alive for good.

A session opens Connect, sends Hello (tenant, asset id, credential, last
acked seq), reads Welcome (the control plane's acked seq), replays the spooled
heartbeats above it in order, re-sends command results the control plane has
not acknowledged, and then lives: heartbeats go up every interval, acks trim
the spool, commands run once per id and their results go back up.

Heartbeats are produced whether or not a session is up; each one is spooled
before it is sent, so what is made while disconnected is replayed later. The
sequence number and the acked state are persisted, so a restart continues the
sequence. A heartbeat carries the full inventory only while its digest differs
from the last one the control plane acknowledged, and the digest alone when not.

A heartbeat the control plane refuses as invalid (its error names the seq) is
rejected from the spool rather than replayed on every reconnect; local events
(break-glass, containment drift) go up as ``agent_event`` until acked by id;
and the reconnect backoff only starts over after a session that carried
traffic (an ack came back), so a stream refused right after its Welcome backs
off like one that never connected.

Per-heartbeat work is kept small because the simulator runs thousands of these
in one process: heartbeats are spooled as bytes and framed into ConnectRequest
bytes by hand (a protobuf message is the concatenation of its fields), so a
replay never parses anything and an unchanged inventory is never re-encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import platform
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import grpc
from lifecyclezero.v1 import common_pb2, ingest_pb2

from agent import statefile
from agent.backoff import Backoff
from agent.commands import CommandBook, CommandExecutor, failed
from agent.enroll import AGENT_VERSION, Identity
from agent.events import EventOutbox
from agent.inventory import Inventory
from agent.spool import Spool
from agent.threads import in_daemon_thread
from agent.wire import inventory_proto

log = logging.getLogger("lz.agent.stream")

CONNECT_METHOD = "/lifecyclezero.v1.IngestService/Connect"
# Matches services/kit/server.py: the server permits pings every 10 s, we send one per 30 s of silence.
KEEPALIVE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
DEFAULT_INTERVAL = 30.0
WELCOME_TIMEOUT = 30.0
# How long a stopping agent waits for the control plane to close the stream after its goodbye.
GOODBYE_WAIT = 2.0
PLATFORM = f"{sys.platform}-{platform.machine()}"

# Field tags of ConnectRequest and Heartbeat (wire type 2 = length-delimited, 0 = varint).
_REQ_HELLO, _REQ_HEARTBEAT, _REQ_RESULT = 1, 2, 3
_HB_INVENTORY, _HB_REPLAYED = 4, 6


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_REPLAYED_TRUE = _varint(_HB_REPLAYED << 3) + b"\x01"


def frame_heartbeat(heartbeat: bytes, replayed: bool = False) -> bytes:
    """ConnectRequest bytes carrying a serialized Heartbeat (with ``replayed`` set when asked)."""
    return _field(_REQ_HEARTBEAT, heartbeat + _REPLAYED_TRUE if replayed else heartbeat)


def frame(request: ingest_pb2.ConnectRequest) -> bytes:
    data: bytes = request.SerializeToString()
    return data


def _passthrough(data: bytes) -> bytes:
    return data


class RateLimiter:
    """A token bucket on what the stream sends, kept under the control plane's own per-agent bucket."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            await asyncio.sleep((1.0 - self.tokens) / self.rate)
            self.tokens, self.stamp = 1.0, time.monotonic()
        self.tokens -= 1.0


def error_info(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The metadata of the server's ``google.rpc.ErrorInfo`` detail (empty when there is none)."""
    from google.rpc import error_details_pb2, status_pb2

    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except ValueError:
            return {}
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return dict(info.metadata)
    return {}


def retry_after(error: grpc.aio.AioRpcError) -> float:
    """The server's ``retry_after_ms`` (google.rpc.ErrorInfo metadata) in seconds, or 0."""
    with contextlib.suppress(KeyError, ValueError):
        return max(0.0, int(error_info(error)["retry_after_ms"]) / 1000)
    return 0.0


def refused_seq(error: grpc.aio.AioRpcError) -> int | None:
    """The heartbeat seq the control plane refused as invalid (INVALID_ARGUMENT naming a seq), else None."""
    if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
        return None
    try:
        return int(error_info(error)["seq"])
    except (KeyError, ValueError):
        return None


# What gRPC core says when the server closes a connection after its max_connection_age grace (GOAWAY first).
MAX_AGE_DETAILS = "max connection age"


def ended_at_max_age(error: grpc.aio.AioRpcError) -> bool:
    """Whether the server ended the call because its connection reached the server's maximum age."""
    return error.code() == grpc.StatusCode.UNAVAILABLE and MAX_AGE_DETAILS in (error.details() or "").lower()


def next_beat(due: float, now: float, interval: float) -> float:
    """When the next beat is due, after one that was due at `due`, it being `now`.

    One interval on; when that has passed too, the next time on the same cadence, so a late beat shifts none of
    the ones after it.
    """
    due += interval
    if due <= now:
        due = now + (due - now) % interval
    return due


def hex_digest(digest: str) -> str:
    """The bare lowercase hex of an ``sha256:<hex>`` digest, as the wire wants it."""
    return digest.removeprefix("sha256:").lower()


@dataclass(frozen=True)
class Snapshot:
    """An inventory as the stream sends it: its digest (bare hex) and its serialized ``common_pb2.Inventory``."""

    digest: str
    inventory: bytes


class InventorySource(Protocol):
    """Where heartbeats get the host's current inventory."""

    async def snapshot(self) -> Snapshot: ...


class CollectSource:
    """Discovery on this host every heartbeat (in a daemon thread); re-encodes only when the digest changes.

    Whatever discovery does, a heartbeat goes out: a pass that raises gives an inventory naming the error,
    and one still running after ``deadline`` seconds gives the last inventory with a note that the scan is
    late (the pass keeps running and the next heartbeat picks it up; only one runs at a time).
    """

    def __init__(self, collect: Callable[[], Inventory], deadline: float = 20.0) -> None:
        self._collect = collect
        self.deadline = deadline
        self._last: Snapshot | None = None
        self._pending: asyncio.Future[Inventory] | None = None
        self.latest: Inventory | None = None

    async def snapshot(self) -> Snapshot:
        if self._pending is None:
            self._pending = in_daemon_thread(self._collect_total)
        try:
            inventory = await asyncio.wait_for(asyncio.shield(self._pending), self.deadline)
            self._pending = None
            self.latest = inventory
        except TimeoutError:
            inventory = _late(self.latest, self.deadline)
        digest = hex_digest(inventory.digest())
        if self._last is None or self._last.digest != digest:
            self._last = Snapshot(digest, inventory_proto(inventory).SerializeToString())
        return self._last

    def engine_pids(self) -> Sequence[int]:
        return [e.pid for e in self.latest.engines] if self.latest else []

    def _collect_total(self) -> Inventory:
        try:
            return self._collect()
        except Exception as exc:
            log.exception("discovery failed")
            return _empty_inventory(f"discovery failed: {type(exc).__name__}: {exc}")


def _empty_inventory(error: str) -> Inventory:
    return Inventory(
        engines=(), models=(), hostname=socket.gethostname(), os="", collected_at=_utc_now(), errors=(error,)
    )


def _late(previous: Inventory | None, deadline: float) -> Inventory:
    error = f"discovery did not finish within {deadline:g}s; the previous snapshot is reported"
    if previous is None:
        return _empty_inventory(error)
    return dataclasses.replace(previous, errors=(*previous.errors, error))


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StreamState:
    """The sequence and acknowledgement state; persisted to ``path`` when given."""

    def __init__(self, path: Path | None = None, asset_id: str = "") -> None:
        self.path = path
        self.asset_id = asset_id
        self.last_seq = 0
        self.acked_seq = 0
        self.acked_digest = ""
        data = statefile.read_json(path) if path is not None else None
        if isinstance(data, dict) and data.get("asset_id") == asset_id:
            self.last_seq = int(data.get("last_seq", 0))
            self.acked_seq = int(data.get("acked_seq", 0))
            self.acked_digest = str(data.get("acked_digest", ""))

    def save(self) -> None:
        if self.path is not None:
            statefile.write_json(
                self.path,
                {
                    "asset_id": self.asset_id,
                    "last_seq": self.last_seq,
                    "acked_seq": self.acked_seq,
                    "acked_digest": self.acked_digest,
                },
            )


@dataclass
class StreamStats:
    """Counters of one stream or, shared, of many (the simulator's)."""

    connected: int = 0
    sessions: int = 0
    failed_connects: int = 0
    # Why connects failed: a gRPC status name, "NO_WELCOME", or an exception's type name.
    connect_errors: Counter[str] = field(default_factory=Counter)
    heartbeats_sent: int = 0
    heartbeats_replayed: int = 0
    heartbeats_acked: int = 0
    heartbeats_rejected: int = 0
    full_inventories_sent: int = 0
    commands_received: int = 0
    commands_applied: int = 0
    commands_failed: int = 0
    results_sent: int = 0
    results_acked: int = 0
    events_sent: int = 0
    events_acked: int = 0
    ack_latencies: list[float] = field(default_factory=list)
    aged_out: int = 0  # sessions the server ended at its maximum connection age (reconnected without backoff)


@dataclass(frozen=True)
class StreamSettings:
    """How a stream behaves; ``interval`` None follows the control plane's Welcome (or 30 s)."""

    interval: float | None = None
    welcome_timeout: float = WELCOME_TIMEOUT
    resend_results_after: float = 10.0
    # Below the control plane's default bucket (1 a second, burst 10) so a replay is never cut off.
    send_rate: float = 0.9
    send_burst: int = 8


class _Session:
    def __init__(self, call: Any) -> None:
        self.call = call
        self.ready = False
        self.carried = False  # an ack came back: the session did real work, so backoff may start over
        self.replayed_through = 0
        self.sent_at: deque[tuple[int, float]] = deque()


class AgentStream:
    """One host's stream: produce heartbeats forever, keep a session up, reconnect with backoff."""

    def __init__(
        self,
        identity: Identity,
        *,
        channel: Callable[[], grpc.aio.Channel],
        source: InventorySource,
        spool: Spool,
        state: StreamState,
        commands: CommandBook,
        executor: CommandExecutor,
        backoff: Backoff | None = None,
        settings: StreamSettings | None = None,
        stats: StreamStats | None = None,
        owns_channel: bool = True,
        events: EventOutbox | None = None,
        on_connect_failed: Callable[[], None] | None = None,
    ) -> None:
        self.identity = identity
        self._channel_factory = channel
        # Told when a session did not get its Welcome, so the next one may dial another endpoint.
        self._on_connect_failed = on_connect_failed
        self.source = source
        self.spool = spool
        self.state = state
        self.commands = commands
        self.executor = executor
        self.backoff = backoff or Backoff()
        self.settings = settings or StreamSettings()
        self.stats = stats or StreamStats()
        self.owns_channel = owns_channel
        self.events = events
        self._events_sent_at: dict[str, float] = {}
        self.interval = self.settings.interval or float(identity.heartbeat_interval_seconds or DEFAULT_INTERVAL)
        self._lock = asyncio.Lock()
        self._command_lock = asyncio.Lock()
        self._session: _Session | None = None
        self._digests: deque[tuple[int, str]] = deque()
        self._results_sent_at: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.spool.trim(self.state.acked_seq)
        self._limiter = RateLimiter(self.settings.send_rate, self.settings.send_burst)
        self._not_before = 0.0
        self.last_error: str = ""
        # Why the agent stops, said on the stream before it closes (None: it closes without a goodbye).
        self.goodbye: ingest_pb2.GoodbyeReason.ValueType | None = None
        self.vanished = False
        # The server ended the connection at its maximum age: reconnect at once, like a move, not a failure.
        self._aged_out = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stream until ``stop`` is set (or the task is cancelled)."""
        stop = stop or self._stop
        producer = asyncio.create_task(self._produce(stop))
        try:
            while not stop.is_set():
                carried = await self._run_session(stop)
                if stop.is_set():
                    break
                if carried:
                    self.backoff.reset()
                if self._aged_out:
                    self._aged_out = False
                    self.stats.aged_out += 1
                    delay = self.backoff.rebalance_delay()
                else:
                    delay = max(self.backoff.next_delay(), self._not_before)
                self._not_before = 0.0
                log.info("stream down (%s); reconnecting in %.1fs", self.last_error or "closed", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            for task in list(self._tasks):
                task.cancel()

    def stop(self) -> None:
        self._stop.set()

    @property
    def live(self) -> bool:
        """Whether a session is up and caught up (welcomed, spool replayed): heartbeats go straight up."""
        return self._session is not None

    def vanish(self) -> None:
        """End the stream at once, without a goodbye and without closing it properly, and never come back."""
        self.vanished = True
        self.goodbye = None
        self._stop.set()

    async def beat_now(self) -> None:
        """Produce one heartbeat immediately (tests and the CLI's first beat)."""
        await self._beat()

    # -- session -----------------------------------------------------------------------------------

    async def _run_session(self, stop: asyncio.Event) -> bool:
        """One Connect call, from Hello to its end; True when it carried traffic (an ack came back).

        A session that is welcomed and then refused at once (a bad record, a rate limit) is not healthy:
        resetting the backoff after it would reconnect about once a second for as long as that lasts.
        """
        channel = self._channel_factory()
        call = channel.stream_stream(
            CONNECT_METHOD,
            request_serializer=_passthrough,
            response_deserializer=ingest_pb2.ConnectResponse.FromString,
        )(wait_for_ready=False)
        session = _Session(call)
        welcomed = False
        stopper = asyncio.create_task(stop.wait())
        try:
            hello = ingest_pb2.Hello(
                tenant_id=self.identity.tenant_id,
                asset_id=self.identity.asset_id,
                agent_credential=self.identity.agent_credential,
                last_acked_seq=self.state.acked_seq,
                agent_version=AGENT_VERSION,
                platform=PLATFORM,
            )
            await call.write(frame(ingest_pb2.ConnectRequest(hello=hello)))
            first = await asyncio.wait_for(call.read(), self.settings.welcome_timeout)
            if first is grpc.aio.EOF or first.WhichOneof("message") != "welcome":
                self.last_error = "the control plane did not answer Hello with Welcome"
                self._connect_failed("NO_WELCOME")
                return False
            welcomed = True
            self.stats.sessions += 1
            self.stats.connected += 1
            reader = asyncio.create_task(self._read(session))
            catch_up = asyncio.create_task(self._on_welcome(session, first.welcome))
            try:
                done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                catch_up.cancel()
            if reader in done:
                reader.result()
            elif self.vanished:
                reader.cancel()
            else:
                await self._close(session, reader)
            return session.carried
        except grpc.aio.AioRpcError as exc:
            self.last_error = f"{exc.code().name}: {exc.details()}"
            seq = refused_seq(exc)
            if seq is not None and self.spool.reject(seq):
                self.stats.heartbeats_rejected += 1
                log.error("the control plane refused heartbeat %d (%s); dropped from the spool", seq, exc.details())
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self._not_before = retry_after(exc)
            self._aged_out = welcomed and ended_at_max_age(exc)
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                log.error("control plane refused this agent (%s); re-enroll with `lz-agent enroll`", exc.details())
            if not welcomed:
                self._connect_failed(exc.code().name)
            return session.carried
        except (TimeoutError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not welcomed:
                self._connect_failed(type(exc).__name__)
            return session.carried
        finally:
            stopper.cancel()
            async with self._lock:
                self._session = None
            if welcomed:
                self.stats.connected -= 1
            call.cancel()
            if self.owns_channel:
                await channel.close()

    async def _close(self, session: _Session, reader: asyncio.Task[None]) -> None:
        """Say goodbye (when there is a reason), half-close, and let the control plane end the stream."""
        with contextlib.suppress(BaseException):
            async with self._lock:
                if self.goodbye is not None and session.ready:
                    goodbye = ingest_pb2.Goodbye(reason=self.goodbye)
                    await session.call.write(frame(ingest_pb2.ConnectRequest(goodbye=goodbye)))
            await session.call.done_writing()
            await asyncio.wait_for(reader, GOODBYE_WAIT)
        reader.cancel()

    def _connect_failed(self, reason: str) -> None:
        self.stats.failed_connects += 1
        self.stats.connect_errors[reason] += 1
        if self._on_connect_failed is not None:
            self._on_connect_failed()

    async def _on_welcome(self, session: _Session, welcome: ingest_pb2.Welcome) -> None:
        """Catch up: replay the spool above the control plane's acked seq (paced), then go live."""
        if self.settings.interval is None and welcome.heartbeat_interval_seconds:
            self.interval = float(welcome.heartbeat_interval_seconds)
        try:
            async with self._lock:
                acked = welcome.acked_seq
                self.state.last_seq = max(self.state.last_seq, acked)
                self._advance_ack(acked)
                session.replayed_through = acked
            count = 0
            while True:
                async with self._lock:
                    batch = list(itertools.islice(self.spool.pending(session.replayed_through), 1))
                    if not batch:
                        self._session = session
                        session.ready = True
                        for result in self.commands.unacked():
                            await self._write_result(session, result)
                        await self._send_events(session, force=True)
                        break
                    seq, payload = batch[0]
                    await self._limiter.acquire()
                    session.sent_at.append((seq, time.monotonic()))
                    await session.call.write(frame_heartbeat(payload, replayed=True))
                    session.replayed_through = seq
                    count += 1
                    self.stats.heartbeats_replayed += 1
                    self.stats.heartbeats_sent += 1
            if count:
                log.info("replayed %d spooled heartbeats after seq %d", count, acked)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            self.last_error = f"replay failed: {exc}"
            session.call.cancel()

    async def _read(self, session: _Session) -> None:
        while True:
            message = await session.call.read()
            if message is grpc.aio.EOF:
                self.last_error = "the control plane closed the stream"
                return
            kind = message.WhichOneof("message")
            if kind == "ack":
                await self._on_ack(session, message.ack)
            elif kind == "command":
                self._spawn(self._on_command(message.command))

    async def _on_ack(self, session: _Session, ack: ingest_pb2.Ack) -> None:
        session.carried = True
        if ack.event_id and self.events is not None:
            self._events_sent_at.pop(ack.event_id, None)
            if await asyncio.to_thread(self.events.mark_acked, ack.event_id):
                self.stats.events_acked += 1
        if ack.command_id and self.commands.mark_acked(ack.command_id):
            self.stats.results_acked += 1
            self._results_sent_at.pop(ack.command_id, None)
        if ack.acked_seq > self.state.acked_seq:
            now = time.monotonic()
            while session.sent_at and session.sent_at[0][0] <= ack.acked_seq:
                self.stats.ack_latencies.append(now - session.sent_at.popleft()[1])
                self.stats.heartbeats_acked += 1
            self._advance_ack(ack.acked_seq)

    def _advance_ack(self, acked: int) -> None:
        if acked <= self.state.acked_seq:
            return
        digest = None
        while self._digests and self._digests[0][0] <= acked:
            digest = self._digests.popleft()[1]
        if digest is not None:
            self._digests.appendleft((acked, digest))
            self.state.acked_digest = digest
        self.state.acked_seq = acked
        self.spool.trim(acked)
        self.state.save()

    # -- heartbeats --------------------------------------------------------------------------------

    async def _produce(self, stop: asyncio.Event) -> None:
        """Beat on a fixed cadence until `run` cancels this task.

        A beat that comes late (the loop was busy) does not push the later ones back: thousands of streams in
        one process keep their own phases instead of clumping after a stall and then beating all at once.
        It sleeps rather than waiting on `stop` so that no beat adds itself to the waiters of a shared event.
        """
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not produce a heartbeat")
            await self._resend_results()
            now = loop.time()
            due = next_beat(due, now, self.interval)
            await asyncio.sleep(due - now)

    async def _beat(self) -> None:
        snapshot = await self.source.snapshot()
        async with self._lock:
            seq = max(self.state.last_seq, self.spool.last_seq()) + 1
            heartbeat = ingest_pb2.Heartbeat(
                seq=seq,
                inventory_digest=snapshot.digest,
                spool_dropped=self.spool.dropped,
                spool_rejected=self.spool.rejected,
            )
            heartbeat.observe_time.FromNanoseconds(time.time_ns())
            data = heartbeat.SerializeToString()
            full = snapshot.digest != self.state.acked_digest
            if full:
                data += _field(_HB_INVENTORY, snapshot.inventory)
            self.spool.append(seq, data)
            self.state.last_seq = seq
            self.state.save()
            if not self._digests or self._digests[-1][1] != snapshot.digest:
                self._digests.append((seq, snapshot.digest))
            session = self._session
            if session is None or not session.ready:
                return
            await self._limiter.acquire()
            session.sent_at.append((seq, time.monotonic()))
            try:
                await session.call.write(frame_heartbeat(data))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
                self.last_error = f"write failed: {exc}"
                session.call.cancel()
                return
            self.stats.heartbeats_sent += 1
            if full:
                self.stats.full_inventories_sent += 1

    # -- commands ----------------------------------------------------------------------------------

    async def _on_command(self, command: common_pb2.Command) -> None:
        self.stats.commands_received += 1
        async with self._command_lock:
            result = self.commands.result(command.command_id)
            if result is None:
                if command.asset_id and command.asset_id != self.identity.asset_id:
                    result = failed(command, f"command is for asset {command.asset_id}, not this one")
                else:
                    try:
                        result = await self.executor.execute(command)
                    except Exception as exc:
                        log.exception("command %s failed", command.command_id)
                        result = failed(command, f"{type(exc).__name__}: {exc}")
                if result.outcome == common_pb2.COMMAND_OUTCOME_APPLIED:
                    self.stats.commands_applied += 1
                else:
                    self.stats.commands_failed += 1
                self.commands.record(result)
            else:
                log.info("command %s seen before; re-sending its result", command.command_id)
        async with self._lock:
            if self._session is not None and self._session.ready:
                await self._write_result(self._session, result)

    async def _write_result(self, session: _Session, result: common_pb2.CommandResult) -> None:
        """Send one result (caller holds the write lock); a failed write waits for the next session."""
        await self._limiter.acquire()
        try:
            await session.call.write(frame(ingest_pb2.ConnectRequest(command_result=result)))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            self.last_error = f"write failed: {exc}"
            session.call.cancel()
            return
        self._results_sent_at[result.command_id] = time.monotonic()
        self.stats.results_sent += 1

    async def _send_events(self, session: _Session, force: bool = False) -> None:
        """Send local events (break-glass, drift) not yet acked (caller holds the write lock)."""
        if self.events is None:
            return
        now = time.monotonic()
        for event in await asyncio.to_thread(self.events.pending):
            sent = self._events_sent_at.get(event.event_id)
            if not force and sent is not None and now - sent < self.settings.resend_results_after:
                continue
            await self._limiter.acquire()
            try:
                await session.call.write(frame(ingest_pb2.ConnectRequest(agent_event=event)))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
                self.last_error = f"write failed: {exc}"
                session.call.cancel()
                return
            self._events_sent_at[event.event_id] = now
            self.stats.events_sent += 1

    async def _resend_results(self) -> None:
        if self.events is not None:
            async with self._lock:
                if self._session is not None and self._session.ready:
                    await self._send_events(self._session)
        pending = self.commands.unacked()
        if not pending:
            return
        now = time.monotonic()
        async with self._lock:
            session = self._session
            if session is None or not session.ready:
                return
            for result in pending:
                sent = self._results_sent_at.get(result.command_id, 0.0)
                if now - sent >= self.settings.resend_results_after:
                    await self._write_result(session, result)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
