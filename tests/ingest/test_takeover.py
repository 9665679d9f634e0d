"""Asset takeover with the tenant-wide enrollment secret fails: an enrolled identity is re-keyed only with proof."""

from __future__ import annotations

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from services.kit.devstack import Stack
from tests.faults.helpers import until
from tests.ingest.agents import IngestTenant, TestAgent, enroll

pytestmark = pytest.mark.slow


def _assets(stack: Stack) -> assets_pb2_grpc.AssetServiceStub:
    return assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))


def _custody_actions(stack: Stack, tenant: IngestTenant, asset_id: str, count: int) -> list[str]:
    """The asset's custody actions once `count` are chained (the outbox chains them moments after the answer)."""
    def chained() -> list[str]:
        events = _assets(stack).GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id),
                                              metadata=tenant.admin(), timeout=10).events
        return [e.action for e in events] if len(events) >= count else []

    return until(chained, 30, f"{count} custody events chained")


def _attempt(stack: Stack, tenant: IngestTenant, **proof: str) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        enroll(stack.addresses["ingest"], tenant, hostname="attacker", **proof)
    return caught.value.code()


async def test_the_enrollment_secret_alone_cannot_take_over_an_enrolled_asset(
    stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent
) -> None:
    """With the secret and a victim's asset id (bare, or with a made-up credential or code) the attacker is
    refused, the real agent keeps its stream and gets the isolation order, and the ledger holds nothing of the
    attacker."""
    await agent.connect()
    refused = [
        _attempt(stack, ingest_tenant, asset_id=agent.asset_id),
        _attempt(stack, ingest_tenant, asset_id=agent.asset_id, agent_credential="x" * 43),
        _attempt(stack, ingest_tenant, asset_id=agent.asset_id, reenroll_code="y" * 43),
    ]
    order = _assets(stack).IsolateAsset(assets_pb2.IsolateAssetRequest(
        asset_id=agent.asset_id, justification="exposed engine", request_id="iso-takeover"),
        metadata=ingest_tenant.admin(), timeout=10)
    command = (await agent.next_of("command")).command
    assert refused == [grpc.StatusCode.PERMISSION_DENIED] * 3
    assert command.command_id == order.command.command_id and not agent.ended.is_set()
    assert _custody_actions(stack, ingest_tenant, agent.asset_id, 2) == ["asset.enrolled", "asset.isolate.requested"]


def _revoke(stack: Stack, tenant: IngestTenant, asset_id: str) -> None:
    with grpc.insecure_channel(stack.addresses["ingest-internal"]) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).RevokeAgent(
            ingest_pb2.RevokeAgentRequest(asset_id=asset_id), metadata=tenant.admin(), timeout=10)


def _approve(stack: Stack, tenant: IngestTenant, asset_id: str) -> assets_pb2.ApproveReEnrollmentResponse:
    reply: assets_pb2.ApproveReEnrollmentResponse = _assets(stack).ApproveReEnrollment(
        assets_pb2.ApproveReEnrollmentRequest(asset_id=asset_id, reason="disk replaced, ticket IT-7"),
        metadata=tenant.admin(), timeout=10)
    return reply


def test_a_revoked_asset_stays_revoked_when_it_rotates_its_credential(
    stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent
) -> None:
    """After RevokeAgent, the revoked credential cannot buy a new one (PERMISSION_DENIED)."""
    _revoke(stack, ingest_tenant, agent.asset_id)
    code = _attempt(stack, ingest_tenant, asset_id=agent.asset_id, agent_credential=agent.credential)
    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_an_operators_code_re_admits_a_revoked_asset_once(
    stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent
) -> None:
    """A re-enrollment code re-admits the revoked asset (same id, new credential that connects); it works once."""
    _revoke(stack, ingest_tenant, agent.asset_id)
    code = _approve(stack, ingest_tenant, agent.asset_id).reenroll_code
    back = enroll(stack.addresses["ingest"], ingest_tenant, asset_id=agent.asset_id, reenroll_code=code)
    again = _attempt(stack, ingest_tenant, asset_id=agent.asset_id, reenroll_code=code)
    readmitted = TestAgent(stack.addresses["ingest"], ingest_tenant.tenant, back.asset_id, back.agent_credential)
    try:
        assert (await readmitted.connect()).acked_seq == 0
    finally:
        await readmitted.close()
    assert (back.asset_id, again) == (agent.asset_id, grpc.StatusCode.PERMISSION_DENIED)


def test_the_approval_and_the_re_enrollment_are_custody_events(
    stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent
) -> None:
    """The ledger records the operator's approval (with its reason) and the redemption of the code."""
    approval = _approve(stack, ingest_tenant, agent.asset_id)
    enroll(stack.addresses["ingest"], ingest_tenant, asset_id=agent.asset_id, reenroll_code=approval.reenroll_code)
    actions = _custody_actions(stack, ingest_tenant, agent.asset_id, 3)
    assert actions == ["asset.enrolled", "asset.reenroll.approved", "asset.reenrolled"]


def test_a_viewer_may_not_approve_re_enrollment(stack: Stack, ingest_tenant: IngestTenant, agent: TestAgent) -> None:
    """ApproveReEnrollment with a viewer token fails with PERMISSION_DENIED."""
    viewer = _assets(stack).CreateToken(assets_pb2.CreateTokenRequest(role=assets_pb2.ROLE_VIEWER, description="v"),
                                        metadata=ingest_tenant.admin(), timeout=10).token
    with pytest.raises(grpc.RpcError) as caught:
        _assets(stack).ApproveReEnrollment(
            assets_pb2.ApproveReEnrollmentRequest(asset_id=agent.asset_id, reason="r"),
            metadata=[("authorization", f"Bearer {viewer}")], timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
