"""The stream client against a small recording Connect server on a real socket.

The server (below) speaks the protocol the way ingest does: Welcome with the highest seq it holds,
an Ack per heartbeat, an Ack with the command id per command result; it can also go down (end the
stream and refuse new ones) and push commands. It records everything it receives, which the real
ingest service does not expose, so ordering and exactly-once delivery can be checked message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

from agent.backoff import Backoff, BackoffPolicy
from agent.commands import CommandBook, DryRunExecutor
from agent.enroll import Identity
from agent.spool import FileSpool
from agent.stream import AgentStream, Snapshot, StreamSettings, StreamState, next_beat

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64
FAST = StreamSettings(interval=0.1, send_rate=1000, send_burst=1000, resend_results_after=0.2)


class Recorder(ingest_pb2_grpc.IngestServiceServicer):
    """A Connect server that records what agents send and can be taken down and brought back."""

    def __init__(self) -> None:
        self.up = True
        self.ack_results = True
        self.refuse_after_welcome = False
        self.hellos: list[ingest_pb2.Hello] = []
        self.heartbeats: list[ingest_pb2.Heartbeat] = []
        self.results: list[common_pb2.CommandResult] = []
        self.durable = 0
        self.on_connect: list[common_pb2.Command] = []
        self._outbox: asyncio.Queue[Any] | None = None

    async def Connect(
        self, request_iterator: AsyncIterator[ingest_pb2.ConnectRequest], context: Any
    ) -> AsyncIterator[ingest_pb2.ConnectResponse]:
        first = await anext(aiter(request_iterator))
        self.hellos.append(first.hello)
        if not self.up:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._outbox = outbox
        outbox.put_nowait(ingest_pb2.ConnectResponse(welcome=ingest_pb2.Welcome(acked_seq=self.durable)))
        for command in self.on_connect:
            outbox.put_nowait(ingest_pb2.ConnectResponse(command=command))
        if self.refuse_after_welcome:
            outbox.put_nowait("refuse")

        async def read() -> None:
            async for request in request_iterator:
                kind = request.WhichOneof("message")
                if kind == "heartbeat":
                    self.heartbeats.append(request.heartbeat)
                    self.durable = max(self.durable, request.heartbeat.seq)
                    outbox.put_nowait(ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=self.durable)))
                elif kind == "command_result":
                    self.results.append(request.command_result)
                    if self.ack_results:
                        ack = ingest_pb2.Ack(acked_seq=self.durable, command_id=request.command_result.command_id)
                        outbox.put_nowait(ingest_pb2.ConnectResponse(ack=ack))
            outbox.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await outbox.get()
                if item is None:
                    return
                if item == "down":
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "going down")
                if item == "refuse":
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "refused before any ack")
                yield item
        finally:
            reader.cancel()

    def go_down(self) -> None:
        self.up = False
        if self._outbox is not None:
            self._outbox.put_nowait("down")

    def push(self, command: common_pb2.Command) -> None:
        assert self._outbox is not None
        self._outbox.put_nowait(ingest_pb2.ConnectResponse(command=command))


class StaticSource:
    """An inventory source whose digest the test changes."""

    def __init__(self, digest: str = DIGEST_A) -> None:
        self.digest = digest

    async def snapshot(self) -> Snapshot:
        inventory = common_pb2.Inventory(hostname=f"host-{self.digest[:4]}", os="linux 6.8")
        return Snapshot(self.digest, inventory.SerializeToString())


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    servicer = Recorder()
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _stream(
    state_dir: Path, target: str, source: StaticSource | None = None, executor: DryRunExecutor | None = None
) -> AgentStream:
    identity = Identity("t-test", "a-test", "c" * 32, target)
    return AgentStream(
        identity,
        channel=lambda: grpc.aio.insecure_channel(target),
        source=source or StaticSource(),
        spool=FileSpool(state_dir / "spool", max_bytes=1 << 20),
        state=StreamState(state_dir / "stream.json", identity.asset_id),
        commands=CommandBook(state_dir / "results.json"),
        executor=executor or DryRunExecutor(),
        backoff=Backoff(BackoffPolicy(initial=0.05, cap=0.2, first_jitter=0)),
        settings=FAST,
    )


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _running(stream: AgentStream) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(stream.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def _command(command_id: str, kind: int = common_pb2.COMMAND_KIND_ISOLATE) -> common_pb2.Command:
    return common_pb2.Command(
        command_id=command_id,
        asset_id="a-test",
        kind=kind,
        policy=common_pb2.ContainmentPolicy(control_plane_endpoints=["10.1.2.3:443"]),
    )


async def test_heartbeats_made_while_disconnected_arrive_once_in_order(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    """Heartbeats spooled during an outage are replayed after reconnecting: every seq arrives once, in order."""
    server, target = recorder
    stream = _stream(tmp_path, target)
    async with _running(stream):
        await _until(lambda: len(server.heartbeats) >= 3)
        server.go_down()
        down_at = stream.state.last_seq
        await _until(lambda: stream.state.last_seq >= down_at + 8)
        server.up = True
        up_at = stream.state.last_seq
        await _until(lambda: server.durable >= up_at + 3)
    seqs = [h.seq for h in server.heartbeats]
    assert seqs == list(range(1, len(seqs) + 1))
    assert any(h.replayed for h in server.heartbeats if h.seq > down_at)


async def test_the_sequence_continues_after_a_restart(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A new agent process on the same state directory continues the seq where the last one stopped."""
    server, target = recorder
    first_run = _stream(tmp_path, target)
    async with _running(first_run):
        await _until(lambda: len(server.heartbeats) >= 3)
    before, count = first_run.state.last_seq, len(server.heartbeats)
    server.durable = 0  # a control plane that forgot everything: the agent still must not reuse a seq
    async with _running(_stream(tmp_path, target)):
        await _until(lambda: len(server.heartbeats) >= count + 3)
    second = server.heartbeats[count:]
    seqs = [h.seq for h in second]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[-1] > before + 1
    assert all(h.replayed for h in second if h.seq <= before)


async def test_hello_carries_identity_and_last_acked_seq(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The stream opens with the tenant, asset, credential and the last acked seq."""
    server, target = recorder
    first_run = _stream(tmp_path, target)
    async with _running(first_run):
        await _until(lambda: first_run.state.acked_seq >= 2)
    async with _running(_stream(tmp_path, target)):
        await _until(lambda: len(server.hellos) >= 2)
    first, second = server.hellos[:2]
    assert (first.tenant_id, first.asset_id, first.agent_credential) == ("t-test", "a-test", "c" * 32)
    assert first.last_acked_seq == 0
    assert second.last_acked_seq >= 2


async def test_full_inventory_only_while_the_digest_is_not_acked(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    """The inventory goes up until the control plane acks its digest, then only the digest, until it changes."""
    server, target = recorder
    source = StaticSource(DIGEST_A)
    async with _running(_stream(tmp_path, target, source)):
        await _until(lambda: len(server.heartbeats) >= 5)
        source.digest = DIGEST_B
        await _until(lambda: any(h.inventory_digest == DIGEST_B for h in server.heartbeats[-3:]))
        await _until(lambda: len(server.heartbeats) >= 12)
    carried = [(h.inventory_digest, h.HasField("inventory")) for h in server.heartbeats]
    assert carried[0] == (DIGEST_A, True)
    assert (DIGEST_A, False) in carried
    first_b = next(i for i, (d, _) in enumerate(carried) if d == DIGEST_B)
    assert carried[first_b] == (DIGEST_B, True)
    assert carried[-1] == (DIGEST_B, False)


async def test_a_repeated_command_runs_once_and_gets_the_same_result(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    """A command delivered twice with one id is executed once; both deliveries get the identical result."""
    server, target = recorder
    executor = DryRunExecutor()
    async with _running(_stream(tmp_path, target, executor=executor)):
        await _until(lambda: len(server.heartbeats) >= 1)
        server.push(_command("cmd-1"))
        await _until(lambda: len(server.results) >= 1)
        server.push(_command("cmd-1"))
        await _until(lambda: len(server.results) >= 2)
    assert executor.executed == [("cmd-1", common_pb2.COMMAND_KIND_ISOLATE)]
    assert server.results[0] == server.results[1]
    assert server.results[0].outcome == common_pb2.COMMAND_OUTCOME_APPLIED
    assert server.results[0].ruleset_sha256 == hashlib.sha256(server.results[0].ruleset.encode()).hexdigest()
    assert "10.1.2.3" in server.results[0].ruleset


async def test_a_result_is_resent_until_acked(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Without an ack the result goes up again and again; once acked it stops."""
    server, target = recorder
    server.ack_results = False
    async with _running(_stream(tmp_path, target)):
        await _until(lambda: len(server.heartbeats) >= 1)
        server.push(_command("cmd-2"))
        await _until(lambda: len(server.results) >= 3)
        server.ack_results = True
        await _until(lambda: len(server.heartbeats) >= 1)
        acked_after = len(server.results) + 1
        await asyncio.sleep(1.0)
    assert {r.command_id for r in server.results} == {"cmd-2"}
    assert len(server.results) <= acked_after


async def test_an_unacked_result_survives_a_restart(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A result not acked before the agent stopped is sent again by the next process, without re-running."""
    server, target = recorder
    server.ack_results = False
    executor = DryRunExecutor()
    async with _running(_stream(tmp_path, target, executor=executor)):
        await _until(lambda: len(server.heartbeats) >= 1)
        server.push(_command("cmd-3"))
        await _until(lambda: len(server.results) >= 1)
    server.ack_results = True
    server.results.clear()
    second = DryRunExecutor()
    restarted = _stream(tmp_path, target, executor=second)
    async with _running(restarted):
        await _until(lambda: restarted.commands.is_acked("cmd-3"))  # not just sent: stopping could beat the ack
    assert server.results[0].command_id == "cmd-3"
    assert second.executed == []
    assert CommandBook(tmp_path / "results.json").is_acked("cmd-3")


async def test_a_command_for_another_asset_fails(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A command naming a different asset is refused with a FAILED result and not executed."""
    server, target = recorder
    executor = DryRunExecutor()
    command = _command("cmd-4")
    command.asset_id = "a-other"
    async with _running(_stream(tmp_path, target, executor=executor)):
        await _until(lambda: len(server.heartbeats) >= 1)
        server.push(command)
        await _until(lambda: len(server.results) >= 1)
    assert server.results[0].outcome == common_pb2.COMMAND_OUTCOME_FAILED
    assert executor.executed == []


async def test_failed_connects_are_counted_by_their_reason(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Each Connect refused before a Welcome is counted under the status the control plane answered."""
    servicer, target = recorder
    servicer.up = False
    stream = _stream(tmp_path, target)
    async with _running(stream):
        await _until(lambda: stream.stats.failed_connects >= 3)
        servicer.up = True
        await _until(lambda: stream.stats.connected == 1)
    assert stream.stats.connect_errors == {"UNAVAILABLE": stream.stats.failed_connects}


async def test_backoff_keeps_growing_while_sessions_carry_no_traffic(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    """Sessions that are welcomed and then refused before any ack do not reset the reconnect backoff."""
    servicer, target = recorder
    servicer.refuse_after_welcome = True
    stream = _stream(tmp_path, target)
    async with _running(stream):
        await _until(lambda: len(servicer.hellos) >= 4)
    assert stream.backoff.attempt >= 3


def test_the_next_beat_is_one_interval_on() -> None:
    """A beat that ran on time is followed one interval after it was due."""
    assert next_beat(10.0, 10.2, 5.0) == 15.0


def test_a_late_beat_shifts_none_of_the_next() -> None:
    """After a beat so late that the next one's time has passed, beats resume on the original cadence."""
    assert next_beat(10.0, 17.3, 5.0) == pytest.approx(20.0)
