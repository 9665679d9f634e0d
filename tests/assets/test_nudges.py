"""The assets service's nudges to ingest: a burst's commands ride in a few DeliverCommands calls.

The ingest here is a gRPC server in this process that records what it is asked and answers each command
NOT_HELD: what is under test is how `Nudger` packs its calls, which the real ingest's answers do not show
(the stack's tests see the commands reach the streams: tests/ingest/test_stream.py, test_multi_replica.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

from services.assets.servicer import MAX_COMMANDS_PER_NUDGE, Nudger
from services.kit.settings import ServerSettings


class RecordingIngest(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, knows_many: bool) -> None:
        self.knows_many = knows_many
        self.calls: list[tuple[str, str, list[str]]] = []  # method, tenant, command ids

    async def DeliverCommand(self, request: Any, context: Any) -> Any:
        self.calls.append(("DeliverCommand", _tenant(context), [request.command.command_id]))
        return ingest_pb2.DeliverCommandResponse(path=ingest_pb2.DELIVERY_PATH_NOT_HELD)

    async def DeliverCommands(self, request: Any, context: Any) -> Any:
        if not self.knows_many:  # an ingest of before DeliverCommands
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        self.calls.append(("DeliverCommands", _tenant(context), [c.command_id for c in request.commands]))
        return ingest_pb2.DeliverCommandsResponse(deliveries=[
            ingest_pb2.DeliverCommandResponse(path=ingest_pb2.DELIVERY_PATH_NOT_HELD) for _ in request.commands])


def _tenant(context: Any) -> str:
    return dict(context.invocation_metadata())["x-lz-tenant"]


@contextlib.asynccontextmanager
async def _ingest(knows_many: bool) -> AsyncIterator[tuple[RecordingIngest, Nudger]]:
    ingest = RecordingIngest(knows_many)
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    nudger = Nudger([f"127.0.0.1:{port}"], ServerSettings(service_token="assets-token"))
    try:
        yield ingest, nudger
    finally:
        await nudger.close()
        await server.stop(None)


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[RecordingIngest, Nudger]]:
    async with _ingest(knows_many=True) as pair:
        yield pair


@pytest.fixture
async def old_ingest() -> AsyncIterator[tuple[RecordingIngest, Nudger]]:
    async with _ingest(knows_many=False) as pair:
        yield pair


def _command(n: int) -> common_pb2.Command:
    return common_pb2.Command(command_id=f"c-{n:03d}", asset_id=f"a-{n:03d}", kind=common_pb2.COMMAND_KIND_ISOLATE)


async def _settled(ingest: RecordingIngest, calls: int) -> None:
    for _ in range(200):
        if len(ingest.calls) >= calls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(ingest.calls)} nudges, expected {calls}: {ingest.calls}")


async def test_the_commands_of_one_turn_go_in_one_call_per_tenant(ingest: tuple[RecordingIngest, Nudger]) -> None:
    """Forty commands of a tenant and two of another nudged together: one DeliverCommands each, in order."""
    recorder, nudger = ingest
    for n in range(40):
        nudger.nudge("t-one", _command(n))
    nudger.nudge("t-two", _command(40))
    nudger.nudge("t-two", _command(41))
    await _settled(recorder, 2)
    await asyncio.sleep(0.05)
    assert sorted(recorder.calls) == [("DeliverCommands", "t-one", [f"c-{n:03d}" for n in range(40)]),
                                      ("DeliverCommands", "t-two", ["c-040", "c-041"])]


async def test_more_commands_than_one_call_holds_go_in_several(ingest: tuple[RecordingIngest, Nudger]) -> None:
    """A turn with more commands than DeliverCommandsRequest's limit sends them in calls of at most that many."""
    recorder, nudger = ingest
    for n in range(MAX_COMMANDS_PER_NUDGE + 5):
        nudger.nudge("t-one", _command(n))
    await _settled(recorder, 2)
    assert sorted(len(ids) for _, _, ids in recorder.calls) == [5, MAX_COMMANDS_PER_NUDGE]


async def test_a_command_nudged_twice_in_one_turn_is_sent_once(ingest: tuple[RecordingIngest, Nudger]) -> None:
    """Ingest refuses a request naming a command twice, so the second nudge of it in a turn is dropped."""
    recorder, nudger = ingest
    nudger.nudge("t-one", _command(1))
    nudger.nudge("t-one", _command(1))
    nudger.nudge("t-one", _command(2))
    await _settled(recorder, 1)
    assert recorder.calls == [("DeliverCommands", "t-one", ["c-001", "c-002"])]


async def test_an_ingest_without_the_call_gets_one_call_per_command(
        old_ingest: tuple[RecordingIngest, Nudger]) -> None:
    """During a rolling upgrade an ingest that answers UNIMPLEMENTED gets each command by DeliverCommand."""
    recorder, nudger = old_ingest
    for n in range(3):
        nudger.nudge("t-one", _command(n))
    await _settled(recorder, 3)
    assert recorder.calls == [("DeliverCommand", "t-one", [f"c-{n:03d}"]) for n in range(3)]
