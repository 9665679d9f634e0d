"""Auto-isolation end to end: agent heartbeat -> ingest -> SQS -> risk worker -> assets -> command on the stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from services.kit.devstack import Stack
from tests.faults.helpers import until
from tests.ingest.agents import IngestTenant, TestAgent, enroll, heartbeat

pytestmark = pytest.mark.slow

EXPOSED = common_pb2.Inventory(hostname="ws-1", os="linux", engines=[common_pb2.Engine(
    kind="ollama", pid=7, executable="/usr/bin/ollama", listen=[common_pb2.Endpoint(address="0.0.0.0", port=11434)])])


def _write_policy(stack: Stack, tenant: str, text: str) -> None:
    policies = Path(stack.env["LZ_POLICY_DIR"])
    policies.mkdir(parents=True, exist_ok=True)
    (policies / f"{tenant}.yaml").write_text(text)


async def test_a_critical_finding_with_isolate_isolates_the_host(stack: Stack, ingest_tenant: IngestTenant,
                                                                 agent: TestAgent) -> None:
    """With isolate: true on exposed-listener, one exposed heartbeat brings an ISOLATE command down the stream."""
    _write_policy(stack, ingest_tenant.tenant, "rules:\n  exposed-listener: {isolate: true}\n")
    await agent.connect()
    await agent.send(heartbeat(1, EXPOSED))
    await agent.ack_for(1)
    command = (await agent.next_of("command", within=30)).command
    assert command.kind == common_pb2.COMMAND_KIND_ISOLATE
    async with grpc.aio.insecure_channel(stack.addresses["assets"]) as channel:
        assets = assets_pb2_grpc.AssetServiceStub(channel)
        got = await assets.GetAsset(assets_pb2.GetAssetRequest(asset_id=agent.asset_id),
                                    metadata=ingest_tenant.admin())
        assert got.asset.status == common_pb2.ASSET_STATUS_ISOLATION_PENDING
        assert got.asset.risk.max_severity == common_pb2.SEVERITY_CRITICAL
    events = await asyncio.to_thread(_custody_events, stack, ingest_tenant, agent.asset_id)
    assert [e.actor for e in events] == ["ingest:enroll", "policy:exposed-listener"]


def _custody_events(stack: Stack, tenant: IngestTenant, asset_id: str) -> list[common_pb2.LedgerEvent]:
    """The asset's custody events once the one after its enrollment is chained (moments after the order)."""
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        assets = assets_pb2_grpc.AssetServiceStub(channel)
        def events() -> list[common_pb2.LedgerEvent]:
            got = list(assets.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id),
                                            metadata=tenant.admin()).events)
            return got if len(got) >= 2 else []

        return until(events, 30, f"a custody event of {asset_id} after its enrollment")


async def test_a_policy_firing_on_many_hosts_isolates_every_one(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """Twelve hosts reporting an exposed engine at once each get an ISOLATE command and one policy custody event."""
    _write_policy(stack, ingest_tenant.tenant, "rules:\n  exposed-listener: {isolate: true}\n")
    agents = []
    for _ in range(12):
        reply = enroll(stack.addresses["ingest"], ingest_tenant)
        agents.append(TestAgent(stack.addresses["ingest"], ingest_tenant.tenant, reply.asset_id,
                                reply.agent_credential))
    try:
        await asyncio.gather(*(a.connect() for a in agents))
        await asyncio.gather(*(a.send(heartbeat(1, EXPOSED)) for a in agents))
        commands = await asyncio.gather(*(a.next_of("command", within=60) for a in agents))
        assert {c.command.kind for c in commands} == {common_pb2.COMMAND_KIND_ISOLATE}
        logs = [await asyncio.to_thread(_custody_events, stack, ingest_tenant, a.asset_id) for a in agents]
    finally:
        await asyncio.gather(*(a.close() for a in agents))
    assert [[(e.actor, e.action) for e in log] for log in logs] == [
        [("ingest:enroll", "asset.enrolled"), ("policy:exposed-listener", "asset.isolate.requested")]] * len(agents)


async def test_the_same_finding_without_isolate_only_raises_the_risk(stack: Stack, ingest_tenant: IngestTenant,
                                                                     agent: TestAgent) -> None:
    """Under the default policy an exposed listener raises the asset's risk to CRITICAL and sends no command."""
    await agent.connect()
    await agent.send(heartbeat(1, EXPOSED))
    await agent.ack_for(1)
    async with grpc.aio.insecure_channel(stack.addresses["assets"]) as channel:
        assets = assets_pb2_grpc.AssetServiceStub(channel)
        for _ in range(60):
            got = await assets.GetAsset(assets_pb2.GetAssetRequest(asset_id=agent.asset_id),
                                        metadata=ingest_tenant.admin())
            if got.asset.risk.max_severity == common_pb2.SEVERITY_CRITICAL:
                break
            await asyncio.sleep(0.5)
    assert got.asset.risk.findings[0].rule_id == "exposed-listener"
    assert got.asset.status == common_pb2.ASSET_STATUS_ACTIVE
    with pytest.raises(TimeoutError):
        await agent.next_of("command", within=1)
