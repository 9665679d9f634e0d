"""Fixtures of the ingest tests: a tenant made through assets, and an enrolled agent on the stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.kit.devstack import Stack
from tests.ingest.agents import IngestTenant, TestAgent, create_tenant, enroll


@pytest.fixture
def ingest_tenant(stack: Stack) -> IngestTenant:
    """A fresh tenant with its admin token and enrollment secret."""
    return create_tenant(stack)


@pytest.fixture
async def agent(stack: Stack, ingest_tenant: IngestTenant) -> AsyncIterator[TestAgent]:
    """An enrolled (not yet connected) test agent of `ingest_tenant`."""
    reply = enroll(stack.addresses["ingest"], ingest_tenant)
    test_agent = TestAgent(stack.addresses["ingest"], ingest_tenant.tenant, reply.asset_id, reply.agent_credential)
    yield test_agent
    await test_agent.close()
