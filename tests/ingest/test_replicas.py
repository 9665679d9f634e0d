"""Revocation reaches every replica: a stream held by another ingest process ends at its next credential re-check."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2, ingest_pb2

from services.kit import embedded
from services.kit.devstack import Stack
from tests.faults.helpers import SERVICES, health, until
from tests.ingest.agents import IngestTenant, TestAgent, enroll, revoke_agent

pytestmark = pytest.mark.slow

RECHECK_SECONDS = 1


@contextlib.contextmanager
def _replica(stack: Stack, log_path: Path, recheck_seconds: float) -> Iterator[str]:
    """A second ingest process on the stack's table and queue; its address."""
    address = f"127.0.0.1:{embedded.free_port()}"
    env = {**os.environ, **embedded.EMBEDDED_CREDENTIALS, **stack.env, "LZ_PORT": address.rsplit(":", 1)[1],
           "LZ_CREDENTIAL_RECHECK_SECONDS": str(recheck_seconds), "LZ_COMMAND_POLL_SECONDS": "1",
           # Without an internal port it serves DeliverCommand on LZ_PORT: nudges are forwarded there. A stream
           # that sent no heartbeat yet is not recorded anywhere, so its commands come with the poll.
           "LZ_ADVERTISE_ADDRESS": address, "LZ_COMMAND_IDLE_POLL_SECONDS": "1",
           # Its own calls to assets (pending commands, results) carry ingest's service token, as the stack's do.
           "LZ_SERVICE_TOKEN": stack.service_tokens["ingest"]}
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        until(lambda: proc.poll() is not None or health(address, SERVICES["ingest"]) == 1, 60, "the replica serving")
        assert proc.poll() is None, log_path.read_text()
        yield address
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def replica(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A second ingest process re-checking live credentials every second."""
    with _replica(stack, tmp_path / "ingest-replica.log", RECHECK_SECONDS) as address:
        yield address


@pytest.fixture
def slow_replica(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A second ingest process whose periodic re-check never comes within a test."""
    with _replica(stack, tmp_path / "ingest-slow-replica.log", 3600) as address:
        yield address


async def _connected(replica: str, stack: Stack, tenant: IngestTenant) -> tuple[TestAgent, ingest_pb2.EnrollResponse]:
    reply = enroll(stack.addresses["ingest"], tenant)
    agent = TestAgent(replica, tenant.tenant, reply.asset_id, reply.agent_credential)
    await agent.connect()
    return agent, reply


async def test_revoking_on_one_replica_ends_the_stream_on_the_other(
    stack: Stack, ingest_tenant: IngestTenant, replica: str
) -> None:
    """RevokeAgent handled by the first ingest ends the agent's stream on the replica UNAUTHENTICATED."""
    agent, reply = await _connected(replica, stack, ingest_tenant)
    try:
        revoke_agent(stack, ingest_tenant, reply.asset_id)
        assert await agent.status(within=30) == grpc.StatusCode.UNAUTHENTICATED
        assert agent.error_info().reason == "CREDENTIAL_REVOKED"
    finally:
        await agent.close()


async def test_a_key_rotation_on_one_replica_ends_the_old_stream_on_the_other(
    stack: Stack, ingest_tenant: IngestTenant, replica: str
) -> None:
    """Rotating the credential through the first ingest ends the stream that still holds the old one."""
    agent, reply = await _connected(replica, stack, ingest_tenant)
    try:
        enroll(stack.addresses["ingest"], ingest_tenant, asset_id=reply.asset_id,
               agent_credential=reply.agent_credential)
        assert await agent.status(within=30) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await agent.close()


async def test_a_revoked_agents_command_result_is_refused_and_not_recorded(
    stack: Stack, ingest_tenant: IngestTenant, slow_replica: str
) -> None:
    """A result sent after revocation elsewhere ends the stream UNAUTHENTICATED and records no enforcement."""
    agent, reply = await _connected(slow_replica, stack, ingest_tenant)
    assets = assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))
    try:
        assets.IsolateAsset(assets_pb2.IsolateAssetRequest(asset_id=reply.asset_id, justification="exposed",
                                                           request_id="iso-revoked"),
                            metadata=ingest_tenant.admin(), timeout=10)
        command = (await agent.next_of("command", within=30)).command
        revoke_agent(stack, ingest_tenant, reply.asset_id)
        await agent.send(ingest_pb2.ConnectRequest(command_result=common_pb2.CommandResult(
            command_id=command.command_id, outcome=common_pb2.COMMAND_OUTCOME_APPLIED, rule_count=1,
            ruleset_sha256="ab" * 32, self_test_passed=True)))
        assert await agent.status(within=30) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await agent.close()
    events = assets.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=reply.asset_id),
                                  metadata=ingest_tenant.admin(), timeout=10).events
    assert [e.action for e in events] == ["asset.enrolled", "asset.isolate.requested"]
