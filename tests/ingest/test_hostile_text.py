"""Text is data: ingest refuses control and bidi characters in host facts before anything is stored or queued."""

from __future__ import annotations

import grpc
import pytest
from lifecyclezero.v1 import common_pb2

from services.kit.devstack import Stack
from tests.ingest.agents import IngestTenant, TestAgent, enroll, heartbeat

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("hostname", ["ws\x1b[2J", "ws\x9b1m", "ws\u202eexe.txt", "ws\x7f", "ws\nfake: isolated"])
def test_enroll_refuses_a_hostname_with_control_or_bidi_characters(
    stack: Stack, ingest_tenant: IngestTenant, hostname: str
) -> None:
    """Enroll with such a hostname is INVALID_ARGUMENT naming the field."""
    with pytest.raises(grpc.RpcError) as caught:
        enroll(stack.addresses["ingest"], ingest_tenant, hostname=hostname)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "hostname" in caught.value.details()


async def test_a_heartbeat_with_a_hostile_hostname_is_refused_before_the_queue(agent: TestAgent) -> None:
    """A heartbeat whose inventory hostname holds an escape sequence ends the stream INVALID_ARGUMENT, unacked."""
    await agent.connect()
    await agent.send(heartbeat(1, common_pb2.Inventory(hostname="ws\x1b]0;pwned\x07", os="linux")))
    assert await agent.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert "heartbeat.inventory.hostname" in agent.details
