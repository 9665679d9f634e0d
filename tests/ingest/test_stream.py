"""The agent stream on the stack: hello and credential, acks, one stream per asset, limits, commands."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

from services.ingest import store
from services.kit import auth, aws
from services.kit.clients import service_metadata
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings, ServerSettings
from tests.ingest.agents import IngestTenant, TestAgent, enroll, heartbeat

pytestmark = pytest.mark.slow


def _ddb(stack: Stack) -> object:
    assert stack.resources is not None
    return aws.client(AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url),
                      "dynamodb")


async def test_heartbeats_are_acked_with_their_seq(agent: TestAgent) -> None:
    """Each heartbeat is answered with an ack carrying the highest durable seq."""
    welcome = await agent.connect()
    assert welcome.acked_seq == 0 and welcome.heartbeat_interval_seconds == 5
    for seq in (1, 2, 3):
        await agent.send(heartbeat(seq))
        assert await agent.ack_for(seq) == seq


async def test_a_stream_must_start_with_a_hello(agent: TestAgent) -> None:
    """A stream whose first message is a heartbeat ends with INVALID_ARGUMENT."""
    await agent.start(first=heartbeat(1))
    assert await agent.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello" in agent.details


async def test_a_wrong_credential_is_unauthenticated(agent: TestAgent) -> None:
    """A hello with a credential that is not the agent's ends with UNAUTHENTICATED."""
    agent.credential = "x" * 43
    await agent.start()
    assert await agent.status() == grpc.StatusCode.UNAUTHENTICATED


async def test_seq_going_backwards_ends_the_stream(agent: TestAgent) -> None:
    """A heartbeat whose seq is not above the last one ends the stream with INVALID_ARGUMENT, unacked."""
    await agent.connect()
    await agent.send(heartbeat(5))
    await agent.ack_for(5)
    await agent.send(heartbeat(4))
    assert await agent.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not after 5" in agent.details


async def test_oversized_heartbeat_is_refused(agent: TestAgent) -> None:
    """A heartbeat above the size limit ends the stream with INVALID_ARGUMENT and is not acked."""
    await agent.connect()
    big = common_pb2.Inventory(hostname="h", models=[common_pb2.Model(name="m" * 1000, path=f"/p/{i}")
                                                     for i in range(200)])
    await agent.send(heartbeat(1, big))
    assert await agent.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit" in agent.details


async def test_a_newer_stream_replaces_the_older(stack: Stack, agent: TestAgent) -> None:
    """A second stream for the same asset ends the first with ABORTED (STREAM_REPLACED) and keeps working."""
    await agent.connect()
    second = TestAgent(agent.address, agent.tenant, agent.asset_id, agent.credential)
    try:
        await second.connect()
        assert await agent.status() == grpc.StatusCode.ABORTED
        assert agent.error_info().reason == "STREAM_REPLACED"
        await second.send(heartbeat(1))
        assert await second.ack_for(1) == 1
    finally:
        await second.close()


async def test_rate_limit_ends_a_flooding_stream(agent: TestAgent) -> None:
    """Past the burst of 10, a stream sending faster than 1 message a second ends with RESOURCE_EXHAUSTED."""
    await agent.connect()
    for seq in range(1, 12):  # the eleventh is over the burst; nothing is written after it (see TestAgent.send)
        await agent.send(heartbeat(seq))
    assert await agent.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = agent.error_info()
    assert info.reason == "AGENT_RATE_LIMITED" and int(info.metadata["retry_after_ms"]) > 0


async def test_welcome_on_reconnect_carries_the_durable_seq(stack: Stack, agent: TestAgent) -> None:
    """After a stream closes its durable seq is written down, and the next Welcome carries it."""
    await agent.connect()
    for seq in (1, 2, 3):
        await agent.send(heartbeat(seq))
    await agent.ack_for(3)
    await agent.close()
    ddb = _ddb(stack)
    assert stack.resources is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        record = store.get_agent(ddb, stack.resources.table_name, agent.tenant, agent.asset_id)
        if record is not None and record.durable_seq == 3:
            break
        await asyncio.sleep(0.5)
    assert record is not None and record.durable_seq == 3
    again = TestAgent(agent.address, agent.tenant, agent.asset_id, agent.credential)
    try:
        assert (await again.connect()).acked_seq == 3
    finally:
        await again.close()


async def test_nudge_delivers_a_command_at_once(stack: Stack, agent: TestAgent) -> None:
    """DeliverCommand (the assets service's token, on the internal port) pushes the command down the live
    stream and reports delivered."""
    await agent.connect()
    command = common_pb2.Command(command_id="c-nudge", asset_id=agent.asset_id, kind=common_pb2.COMMAND_KIND_ISOLATE)
    settings = ServerSettings(service_token=stack.service_tokens["assets"])
    async with grpc.aio.insecure_channel(stack.addresses["ingest-internal"]) as channel:
        reply = await ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommand(
            ingest_pb2.DeliverCommandRequest(command=command), metadata=service_metadata(settings, agent.tenant))
    assert reply.delivered
    assert (await agent.next_of("command", within=2)).command.command_id == "c-nudge"


async def test_one_nudge_delivers_several_commands_each_to_its_stream(
    stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent
) -> None:
    """DeliverCommands sends each command down its asset's live stream and answers each delivery in order; a
    command of an asset with no live stream here is answered NOT_HELD."""
    other_reply = enroll(stack.addresses["ingest"], ingest_tenant)
    other = TestAgent(stack.addresses["ingest"], ingest_tenant.tenant, other_reply.asset_id,
                      other_reply.agent_credential)
    absent = enroll(stack.addresses["ingest"], ingest_tenant)
    try:
        await agent.connect()
        await other.connect()
        commands = [common_pb2.Command(command_id=f"c-many-{n}", asset_id=asset_id,
                                       kind=common_pb2.COMMAND_KIND_ISOLATE)
                    for n, asset_id in enumerate((agent.asset_id, absent.asset_id, other.asset_id))]
        reply = await _deliver_commands(stack, agent.tenant, commands)
        assert [d.path for d in reply.deliveries] == [ingest_pb2.DELIVERY_PATH_LOCAL, ingest_pb2.DELIVERY_PATH_NOT_HELD,
                                                      ingest_pb2.DELIVERY_PATH_LOCAL]
        assert [d.delivered for d in reply.deliveries] == [True, False, True]
        assert (await agent.next_of("command", within=2)).command.command_id == "c-many-0"
        assert (await other.next_of("command", within=2)).command.command_id == "c-many-2"
    finally:
        await other.close()


@pytest.mark.parametrize(("commands", "field"), [
    ([], "commands"),
    ([("c-1", "a-ok")] * 101, "commands"),
    ([("c-1", "a-ok"), ("c-2", "not an id")], "commands[1].asset_id"),
    ([("c-1", "a-ok"), ("c-1", "a-other")], "commands[1].command_id"),
])
async def test_a_bad_nudge_of_several_commands_delivers_none(
    stack: Stack, agent: TestAgent, commands: list[tuple[str, str]], field: str
) -> None:
    """An empty or oversized DeliverCommands, a bad id or a command id named twice is INVALID_ARGUMENT naming
    the field, and no command of the request goes down any stream."""
    await agent.connect()
    request = [common_pb2.Command(command_id=command_id, asset_id=agent.asset_id if asset_id == "a-ok" else asset_id,
                                  kind=common_pb2.COMMAND_KIND_ISOLATE) for command_id, asset_id in commands]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _deliver_commands(stack, agent.tenant, request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in str(refused.value.details())
    with pytest.raises(TimeoutError):
        await agent.next_of("command", within=0.5)


async def _deliver_commands(stack: Stack, tenant: str,
                            commands: list[common_pb2.Command]) -> ingest_pb2.DeliverCommandsResponse:
    settings = ServerSettings(service_token=stack.service_tokens["assets"])
    async with grpc.aio.insecure_channel(stack.addresses["ingest-internal"]) as channel:
        return await ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommands(
            ingest_pb2.DeliverCommandsRequest(commands=commands), metadata=service_metadata(settings, tenant))


async def test_isolation_order_reaches_the_stream_and_its_result_is_acked(
    stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent
) -> None:
    """An operator's isolation arrives as a command; the agent's result is recorded and acked by command id."""
    await agent.connect()
    async with grpc.aio.insecure_channel(stack.addresses["assets"]) as channel:
        assets = assets_pb2_grpc.AssetServiceStub(channel)
        await assets.IsolateAsset(assets_pb2.IsolateAssetRequest(asset_id=agent.asset_id, justification="test",
                                                                 request_id="r1"), metadata=ingest_tenant.admin())
        command = (await agent.next_of("command", within=10)).command
        assert command.kind == common_pb2.COMMAND_KIND_ISOLATE
        ruleset = "table inet lz {}"
        result = common_pb2.CommandResult(command_id=command.command_id, outcome=common_pb2.COMMAND_OUTCOME_APPLIED,
                                          ruleset=ruleset, ruleset_sha256=hashlib.sha256(ruleset.encode()).hexdigest(),
                                          rule_count=1, self_test_passed=True)
        await agent.send(ingest_pb2.ConnectRequest(command_result=result))
        while True:
            ack = (await agent.next_of("ack")).ack
            if ack.command_id:
                break
        assert ack.command_id == command.command_id
        got = await assets.GetAsset(assets_pb2.GetAssetRequest(asset_id=agent.asset_id),
                                    metadata=ingest_tenant.admin())
        assert got.asset.status == common_pb2.ASSET_STATUS_ISOLATED


async def test_a_stream_opening_after_a_missed_nudge_gets_the_command(
    stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent
) -> None:
    """An isolation ordered while the agent was away reaches its stream when it connects (the tenant's poll)."""
    async with grpc.aio.insecure_channel(stack.addresses["assets"]) as channel:
        await assets_pb2_grpc.AssetServiceStub(channel).IsolateAsset(
            assets_pb2.IsolateAssetRequest(asset_id=agent.asset_id, justification="away", request_id="r-away"),
            metadata=ingest_tenant.admin())
    await agent.connect()
    command = (await agent.next_of("command", within=8)).command
    assert command.kind == common_pb2.COMMAND_KIND_ISOLATE and command.asset_id == agent.asset_id


async def test_hellos_arriving_together_are_all_welcomed(stack: Stack) -> None:
    """Forty agents saying hello at once (their credentials read in shared batches) all get a Welcome."""
    assert stack.resources is not None
    tenant = f"t-{secrets.token_hex(4)}"
    credentials = {f"a-{i:03d}": auth.new_secret() for i in range(40)}
    store.put_agents(_ddb(stack), stack.resources.table_name,
                     [(tenant, a, auth.sha256_hex(c)) for a, c in credentials.items()], 1,
                     "2026-01-01T00:00:00.000000Z")
    agents = [TestAgent(stack.addresses["ingest"], tenant, a, c) for a, c in credentials.items()]
    try:
        welcomes = await asyncio.gather(*(a.connect() for a in agents))
        assert len(welcomes) == 40 and all(w.heartbeat_interval_seconds == 5 for w in welcomes)
    finally:
        await asyncio.gather(*(a.close() for a in agents))
