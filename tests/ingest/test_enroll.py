"""Enrollment, re-enrollment and revocation of agent credentials, on the stack."""

from __future__ import annotations

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from services.kit.devstack import Stack
from tests.ingest.agents import IngestTenant, TestAgent, enroll

pytestmark = pytest.mark.slow


def test_enroll_registers_the_asset_and_returns_a_credential(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """Enroll creates the asset in assets and returns a 256-bit credential."""
    reply = enroll(stack.addresses["ingest"], ingest_tenant, hostname="ws-enroll")
    assert reply.asset_id and len(reply.agent_credential) >= 43 and reply.heartbeat_interval_seconds == 5
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        got = assets_pb2_grpc.AssetServiceStub(channel).GetAsset(
            assets_pb2.GetAssetRequest(asset_id=reply.asset_id), metadata=ingest_tenant.admin())
    assert got.asset.hostname == "ws-enroll"


def test_a_wrong_enrollment_secret_is_unauthenticated(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """Enroll with a secret that is not the tenant's fails with UNAUTHENTICATED."""
    ingest_tenant.enrollment_secret = "not-the-secret-0123456789"
    with pytest.raises(grpc.RpcError) as caught:
        enroll(stack.addresses["ingest"], ingest_tenant)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_malformed_tenant_id_is_invalid(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """Enroll with a tenant id that could forge a key fails with INVALID_ARGUMENT."""
    ingest_tenant.tenant = "a#b"
    with pytest.raises(grpc.RpcError) as caught:
        enroll(stack.addresses["ingest"], ingest_tenant)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_key_rotation_keeps_the_asset_and_replaces_the_credential(
    stack: Stack, ingest_tenant: IngestTenant
) -> None:
    """Enrolling again with the asset id and its current credential keeps the asset; the old credential stops."""
    first = enroll(stack.addresses["ingest"], ingest_tenant)
    second = enroll(stack.addresses["ingest"], ingest_tenant, asset_id=first.asset_id,
                    agent_credential=first.agent_credential)
    assert second.asset_id == first.asset_id and second.agent_credential != first.agent_credential
    old = TestAgent(stack.addresses["ingest"], ingest_tenant.tenant, first.asset_id, first.agent_credential)
    new = TestAgent(stack.addresses["ingest"], ingest_tenant.tenant, first.asset_id, second.agent_credential)
    try:
        await old.start()
        assert await old.status() == grpc.StatusCode.UNAUTHENTICATED
        assert (await new.connect()).acked_seq == 0
    finally:
        await old.close()
        await new.close()


async def test_revocation_ends_the_live_stream_and_refuses_the_next(stack: Stack, ingest_tenant: IngestTenant,
                                                                   agent: TestAgent) -> None:
    """RevokeAgent (admin) ends the agent's live stream with UNAUTHENTICATED, and it cannot connect again."""
    await agent.connect()
    async with grpc.aio.insecure_channel(stack.addresses["ingest-internal"]) as channel:
        await ingest_pb2_grpc.IngestServiceStub(channel).RevokeAgent(
            ingest_pb2.RevokeAgentRequest(asset_id=agent.asset_id), metadata=ingest_tenant.admin())
    assert await agent.status() == grpc.StatusCode.UNAUTHENTICATED
    again = TestAgent(agent.address, agent.tenant, agent.asset_id, agent.credential)
    try:
        await again.start()
        assert await again.status() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await again.close()


def test_a_viewer_may_not_revoke(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """RevokeAgent with a viewer token fails with PERMISSION_DENIED."""
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        viewer = assets_pb2_grpc.AssetServiceStub(channel).CreateToken(
            assets_pb2.CreateTokenRequest(role=assets_pb2.ROLE_VIEWER, description="v"),
            metadata=ingest_tenant.admin()).token
    reply = enroll(stack.addresses["ingest"], ingest_tenant)
    with grpc.insecure_channel(stack.addresses["ingest-internal"]) as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).RevokeAgent(
            ingest_pb2.RevokeAgentRequest(asset_id=reply.asset_id), metadata=[("authorization", f"Bearer {viewer}")])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_deliver_command_is_closed_to_operators(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """DeliverCommand with an operator's token fails with PERMISSION_DENIED (service token only)."""
    with grpc.insecure_channel(stack.addresses["ingest-internal"]) as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommand(ingest_pb2.DeliverCommandRequest(),
                                                                  metadata=ingest_tenant.admin())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(("address", "token_of"), [("ingest", "assets"), ("ingest", "ingest"),
                                                   ("ingest-internal", "risk-worker")])
def test_deliver_command_is_refused_off_the_internal_port_or_to_another_service(
        stack: Stack, ingest_tenant: IngestTenant, address: str, token_of: str) -> None:
    """DeliverCommand is refused on ingest's public port even with assets' or ingest's token, and on the internal
    port with any service token but assets' and ingest's own (a replica forwarding a nudge)."""
    with grpc.insecure_channel(stack.addresses[address]) as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommand(ingest_pb2.DeliverCommandRequest(), metadata=[
            ("authorization", f"Bearer {stack.service_tokens[token_of]}"), ("x-lz-tenant", ingest_tenant.tenant)])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(("address", "token_of", "code"), [
    ("ingest", "assets", grpc.StatusCode.PERMISSION_DENIED),
    ("ingest-internal", "ingest", grpc.StatusCode.PERMISSION_DENIED),
    ("ingest-internal", "risk-worker", grpc.StatusCode.PERMISSION_DENIED),
    ("ingest-internal", "assets", grpc.StatusCode.INVALID_ARGUMENT),
])
def test_a_nudge_of_several_commands_is_for_the_assets_service_on_the_internal_port(
        stack: Stack, ingest_tenant: IngestTenant, address: str, token_of: str, code: grpc.StatusCode) -> None:
    """DeliverCommands passes its checks only with assets' token on the internal port (the empty request is then
    refused); replicas forward single commands with DeliverCommand."""
    with grpc.insecure_channel(stack.addresses[address]) as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommands(ingest_pb2.DeliverCommandsRequest(), metadata=[
            ("authorization", f"Bearer {stack.service_tokens[token_of]}"), ("x-lz-tenant", ingest_tenant.tenant)])
    assert caught.value.code() == code


def test_a_nudge_of_several_commands_is_closed_to_operators(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """DeliverCommands with an operator's token fails with PERMISSION_DENIED (service token only)."""
    with grpc.insecure_channel(stack.addresses["ingest-internal"]) as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommands(ingest_pb2.DeliverCommandsRequest(),
                                                                   metadata=ingest_tenant.admin())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_another_ingest_replica_may_forward_a_nudge_on_the_internal_port(stack: Stack,
                                                                         ingest_tenant: IngestTenant) -> None:
    """Ingest's own service token passes DeliverCommand's checks on the internal port (the empty command is refused)."""
    with grpc.insecure_channel(stack.addresses["ingest-internal"]) as channel, pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommand(ingest_pb2.DeliverCommandRequest(), metadata=[
            ("authorization", f"Bearer {stack.service_tokens['ingest']}"), ("x-lz-tenant", ingest_tenant.tenant)])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
