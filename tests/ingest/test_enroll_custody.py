"""Enrollment custody events go through the custody outbox: in each asset's order, without contention, once."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from services.kit.devstack import Stack
from tests.faults.helpers import Store, assert_chain_sound, chained_custody
from tests.ingest.agents import IngestTenant, enroll

pytestmark = pytest.mark.slow

BURST = 100


def _assets(stack: Stack) -> assets_pb2_grpc.AssetServiceStub:
    return assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))


def _chained_actions(stack: Stack, tenant: IngestTenant, asset_id: str) -> list[str]:
    """The asset's custody actions in ledger order, once every record of the asset is chained."""
    store = Store(stack)
    records = chained_custody(store.ddb, store.table, tenant.tenant, asset_id)
    return [r.draft.action for r in sorted(records, key=lambda r: r.ledger_seq)]


def test_a_rotation_after_a_pending_isolation_is_chained_after_it(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """An isolation then a credential rotation of one asset are in the ledger in that order, after the enrollment."""
    first = enroll(stack.addresses["ingest"], ingest_tenant)
    _assets(stack).IsolateAsset(assets_pb2.IsolateAssetRequest(
        asset_id=first.asset_id, justification="exposed engine", request_id=secrets.token_hex(8)),
        metadata=ingest_tenant.admin(), timeout=10)
    enroll(stack.addresses["ingest"], ingest_tenant, asset_id=first.asset_id, agent_credential=first.agent_credential)
    assert _chained_actions(stack, ingest_tenant, first.asset_id) == [
        "asset.enrolled", "asset.isolate.requested", "asset.credential.rotated"]


def test_a_hundred_concurrent_enrollments_all_succeed_with_one_event_each(
    stack: Stack, ingest_tenant: IngestTenant
) -> None:
    """A hundred hosts of one tenant enrolling at once all get a credential, and the sound chain holds one
    asset.enrolled event per new asset."""
    with ThreadPoolExecutor(BURST) as pool:
        replies = list(pool.map(lambda i: enroll(stack.addresses["ingest"], ingest_tenant, hostname=f"ws-{i}"),
                                range(BURST)))
    store = Store(stack)
    chained_custody(store.ddb, store.table, ingest_tenant.tenant, within=120)
    events = assert_chain_sound(store, ingest_tenant.tenant)
    assert Counter((e.action, e.subject) for e in events) == Counter(
        {("asset.enrolled", f"asset:{r.asset_id}"): 1 for r in replies})


def test_a_repeated_enrollment_request_writes_one_custody_record(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """RecordEnrollment sent twice with one request id writes one rotation record; the repeat answers its seq."""
    first = enroll(stack.addresses["ingest"], ingest_tenant)
    request = assets_pb2.RecordEnrollmentRequest(
        kind=assets_pb2.ENROLLMENT_KIND_ROTATION, request_id="rotate-once",
        asset=common_pb2.Asset(asset_id=first.asset_id, hostname="ws-1", os="linux", agent_version="test"))
    service = [("authorization", f"Bearer {stack.service_tokens['ingest']}"), ("x-lz-tenant", ingest_tenant.tenant)]
    _assets(stack).RecordEnrollment(request, metadata=service, timeout=10)
    actions = _chained_actions(stack, ingest_tenant, first.asset_id)
    again = _assets(stack).RecordEnrollment(request, metadata=service, timeout=10)
    rotated = [e for e in assert_chain_sound(Store(stack), ingest_tenant.tenant)
               if e.action == "asset.credential.rotated"]
    assert actions == ["asset.enrolled", "asset.credential.rotated"]
    assert [e.seq for e in rotated] == [again.custody_seq]


def test_a_re_enrollment_names_the_seq_of_its_approval(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """The asset.reenrolled event's approval_seq is the seq of the asset.reenroll.approved event it redeemed."""
    first = enroll(stack.addresses["ingest"], ingest_tenant)
    approval = _assets(stack).ApproveReEnrollment(assets_pb2.ApproveReEnrollmentRequest(
        asset_id=first.asset_id, reason="disk replaced, ticket IT-8", request_id=secrets.token_hex(8)),
        metadata=ingest_tenant.admin(), timeout=10)
    enroll(stack.addresses["ingest"], ingest_tenant, asset_id=first.asset_id, reenroll_code=approval.reenroll_code)
    _chained_actions(stack, ingest_tenant, first.asset_id)
    events = {e.action: e for e in assert_chain_sound(Store(stack), ingest_tenant.tenant)}
    payload = json.loads(events["asset.reenrolled"].canonical)["payload"]
    assert payload["approval_seq"] == events["asset.reenroll.approved"].seq


def test_a_repeated_redemption_answers_the_seq_of_its_one_event(stack: Stack, ingest_tenant: IngestTenant) -> None:
    """A re-enrollment code redeemed twice with one request id writes one asset.reenrolled event; the repeat
    answers its seq."""
    first = enroll(stack.addresses["ingest"], ingest_tenant)
    code = _assets(stack).ApproveReEnrollment(assets_pb2.ApproveReEnrollmentRequest(
        asset_id=first.asset_id, reason="disk replaced, ticket IT-9", request_id=secrets.token_hex(8)),
        metadata=ingest_tenant.admin(), timeout=10).reenroll_code
    request = assets_pb2.RecordEnrollmentRequest(
        kind=assets_pb2.ENROLLMENT_KIND_REENROLL, request_id="redeem-once", reenroll_code=code,
        asset=common_pb2.Asset(asset_id=first.asset_id, hostname="ws-1", os="linux", agent_version="test"))
    service = [("authorization", f"Bearer {stack.service_tokens['ingest']}"), ("x-lz-tenant", ingest_tenant.tenant)]
    _assets(stack).RecordEnrollment(request, metadata=service, timeout=10)
    _chained_actions(stack, ingest_tenant, first.asset_id)
    again = _assets(stack).RecordEnrollment(request, metadata=service, timeout=10)
    redeemed = [e.seq for e in assert_chain_sound(Store(stack), ingest_tenant.tenant) if e.action == "asset.reenrolled"]
    assert redeemed == [again.custody_seq]
