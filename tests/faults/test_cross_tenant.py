"""Cross-tenant: every RPC called with tenant A's credentials on tenant B's identifiers returns nothing of B
and changes nothing of B (checked on the table and the seal bucket, not through the services)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.message import Message
from lifecyclezero.v1 import (
    assets_pb2,
    assets_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ledger_pb2,
    sealer_pb2,
)

from services.assets.app import CALLERS as ASSETS_CALLERS
from services.ingest.app import INTERNAL as INGEST_INTERNAL
from services.kit.auth import Role
from services.kit.devstack import Stack
from tests.faults.helpers import Store, Tenant, chained_custody, ledger_stub, make_tenant, seal_now
from tests.ingest.agents import TestAgent, enroll

pytestmark = pytest.mark.slow

PATH = {
    "assets": "/lifecyclezero.v1.AssetService/",
    "ledger": "/lifecyclezero.v1.LedgerService/",
    "sealer": "/lifecyclezero.v1.SealerService/",
    "ingest": "/lifecyclezero.v1.IngestService/",
}


class Victim:
    """Tenant B with an enrolled agent, an isolated host, custody events, a checkpoint and a token."""

    def __init__(self, stack: Stack) -> None:
        self.tenant = make_tenant(stack)
        assets = assets_pb2_grpc.AssetServiceStub(self.tenant.channel("assets"))
        self.agent = enroll(stack.addresses["ingest"], self.tenant.ingest_tenant, hostname="victim-host")
        self.asset_id = self.agent.asset_id
        reply = assets.IsolateAsset(assets_pb2.IsolateAssetRequest(
            asset_id=self.asset_id, justification="victim-marker", request_id="victim-req"),
            metadata=self.tenant.metadata(Role.OPERATOR), timeout=10)
        self.command_id = reply.command.command_id
        store = Store(stack)
        chained_custody(store.ddb, store.table, self.tenant.tenant)  # B's data is still before it is watched
        ledger_stub(self.tenant).AppendEvents(ledger_pb2.AppendEventsRequest(
            events=[ledger_pb2.EventInput(action="victim.marker", subject=f"asset:{self.asset_id}")] * 5),
            metadata=self.tenant.metadata(Role.OPERATOR), timeout=10)
        self.size = seal_now(self.tenant).tree_size
        tokens = assets.ListTokens(assets_pb2.ListTokensRequest(), metadata=self.tenant.metadata(), timeout=10)
        self.token_id = tokens.tokens[0].token_id

    def markers(self) -> list[bytes]:
        # Not the asset id itself: A's own CreateAsset and AppendEvents legitimately put that string in A's data.
        return [m.encode() for m in (self.tenant.tenant, self.command_id, self.token_id,
                                     "victim-marker", "victim.marker", "victim-host")]


def _calls(b: Victim) -> list[tuple[str, str, Message, str]]:
    """(service, method, request, caller) for every RPC, aimed at B's identifiers."""
    a_id = b.asset_id
    result = common_pb2.CommandResult(command_id=b.command_id, outcome=common_pb2.COMMAND_OUTCOME_APPLIED)
    return [
        ("assets", "CreateToken", assets_pb2.CreateTokenRequest(role=assets_pb2.ROLE_ADMIN), "admin"),
        ("assets", "RevokeToken", assets_pb2.RevokeTokenRequest(token_id=b.token_id), "admin"),
        ("assets", "ListTokens", assets_pb2.ListTokensRequest(), "admin"),
        ("assets", "GetEnrollmentSecret", assets_pb2.GetEnrollmentSecretRequest(), "admin"),
        ("assets", "RotateEnrollmentSecret", assets_pb2.RotateEnrollmentSecretRequest(), "admin"),
        ("assets", "CheckEnrollmentSecret",
         assets_pb2.CheckEnrollmentSecretRequest(enrollment_secret=b.tenant.enrollment_secret), "service"),
        ("assets", "GetAsset", assets_pb2.GetAssetRequest(asset_id=a_id), "admin"),
        ("assets", "ListAssets", assets_pb2.ListAssetsRequest(), "admin"),
        ("assets", "ListAssets", assets_pb2.ListAssetsRequest(action_required=True), "admin"),
        ("assets", "IsolateAsset", assets_pb2.IsolateAssetRequest(asset_id=a_id, justification="x",
                                                                  request_id="victim-req"), "operator"),
        ("assets", "ReleaseAsset", assets_pb2.ReleaseAssetRequest(asset_id=a_id, justification="x"), "operator"),
        ("assets", "RecordCommandResult", assets_pb2.RecordCommandResultRequest(asset_id=a_id, result=result),
         "service"),
        ("assets", "ListPendingCommands", assets_pb2.ListPendingCommandsRequest(asset_id=a_id), "service"),
        ("assets", "ListPendingCommands", assets_pb2.ListPendingCommandsRequest(), "service"),
        ("assets", "UpdateAssetRisk", assets_pb2.UpdateAssetRiskRequest(
            updates=[assets_pb2.AssetRiskUpdate(asset_id=a_id, hostname="hijacked")]), "service"),
        ("assets", "ListAlerts", assets_pb2.ListAlertsRequest(asset_id=a_id), "viewer"),
        ("assets", "GetCustodyLog", assets_pb2.GetCustodyLogRequest(asset_id=a_id), "viewer"),
        ("assets", "CreateAsset", assets_pb2.CreateAssetRequest(
            asset=common_pb2.Asset(asset_id=a_id, hostname="shadow")), "operator"),
        ("assets", "ApproveReEnrollment", assets_pb2.ApproveReEnrollmentRequest(asset_id=a_id, reason="x"),
         "operator"),
        ("assets", "SetTenantResolvers", assets_pb2.SetTenantResolversRequest(dns_servers=["192.0.2.53"]), "admin"),
        ("assets", "RecordAgentEvent", assets_pb2.RecordAgentEventRequest(asset_id=a_id, event=common_pb2.AgentEvent(
            event_id="ev-1", kind=common_pb2.AGENT_EVENT_KIND_BREAK_GLASS, reason="x")), "service"),
        ("assets", "RecordEnrollment", assets_pb2.RecordEnrollmentRequest(
            kind=assets_pb2.ENROLLMENT_KIND_ROTATION, asset=common_pb2.Asset(asset_id=a_id, hostname="shadow")),
         "service"),
        ("assets", "GetFleetSummary", assets_pb2.GetFleetSummaryRequest(), "viewer"),
        ("assets", "WhoAmI", assets_pb2.WhoAmIRequest(), "viewer"),
        ("assets", "RecordAgentLoss", assets_pb2.RecordAgentLossRequest(asset_id=a_id, reason="lost",
                                                                        request_id="victim-req"), "service"),
        ("ledger", "AppendEvents", ledger_pb2.AppendEventsRequest(
            events=[ledger_pb2.EventInput(action="a.append", subject=f"asset:{a_id}")], request_id="victim-req"),
         "operator"),
        ("ledger", "GetEvent", ledger_pb2.GetEventRequest(seq=b.size), "viewer"),
        ("ledger", "ListEvents", ledger_pb2.ListEventsRequest(), "viewer"),
        ("ledger", "ListAssetEvents", ledger_pb2.ListAssetEventsRequest(asset_id=a_id), "viewer"),
        ("ledger", "GetInclusionProof", ledger_pb2.GetInclusionProofRequest(seq=1, tree_size=b.size), "viewer"),
        ("ledger", "GetConsistencyProof", ledger_pb2.GetConsistencyProofRequest(first_tree_size=1,
                                                                                second_tree_size=b.size), "viewer"),
        ("ledger", "ExportProof", ledger_pb2.ExportProofRequest(seq=b.size), "viewer"),
        ("ledger", "ExportBundle", ledger_pb2.ExportBundleRequest(), "viewer"),
        ("ledger", "VerifyLedger", ledger_pb2.VerifyLedgerRequest(mode=ledger_pb2.VERIFY_MODE_FULL), "viewer"),
        ("ledger", "WatchFullVerification", ledger_pb2.WatchFullVerificationRequest(), "viewer"),
        ("sealer", "SealNow", sealer_pb2.SealNowRequest(), "operator"),
        ("sealer", "GetSealStatus", sealer_pb2.GetSealStatusRequest(), "viewer"),
        ("sealer", "GetCheckpoint", sealer_pb2.GetCheckpointRequest(tree_size=b.size), "viewer"),
        ("sealer", "ListCheckpoints", sealer_pb2.ListCheckpointsRequest(), "viewer"),
        ("sealer", "GetVerifierKeys", sealer_pb2.GetVerifierKeysRequest(), "viewer"),
        ("ingest", "Enroll", ingest_pb2.EnrollRequest(tenant_id=b.tenant.tenant, enrollment_secret="wrong" * 5,
                                                      hostname="h", asset_id=a_id), "none"),
        ("ingest", "DeliverCommand", ingest_pb2.DeliverCommandRequest(
            command=common_pb2.Command(command_id=b.command_id, asset_id=a_id)), "service"),
        ("ingest", "DeliverCommands", ingest_pb2.DeliverCommandsRequest(
            commands=[common_pb2.Command(command_id=b.command_id, asset_id=a_id)]), "service"),
        ("ingest", "RevokeAgent", ingest_pb2.RevokeAgentRequest(asset_id=a_id), "admin"),
    ]


def _metadata(stack: Stack, attacker: Tenant, caller: str, path: str) -> list[tuple[str, str]]:
    if caller == "service":  # an internal call made for tenant A, with the token of the service that makes it
        calling = min({**ASSETS_CALLERS, **INGEST_INTERNAL}.get(path, {"ingest"}))
        return [("authorization", f"Bearer {stack.service_tokens[calling]}"), ("x-lz-tenant", attacker.tenant)]
    if caller == "none":
        return []
    return attacker.metadata({"admin": Role.ADMIN, "operator": Role.OPERATOR, "viewer": Role.VIEWER}[caller])


@pytest.fixture(scope="module")
def victim(stack: Stack) -> Victim:
    return Victim(stack)


@pytest.fixture(scope="module")
def attacker(stack: Stack) -> Tenant:
    tenant = make_tenant(stack)
    tenant.agent = enroll(stack.addresses["ingest"], tenant.ingest_tenant, hostname="attacker-host")  # type: ignore[attr-defined]
    ledger_stub(tenant).AppendEvents(ledger_pb2.AppendEventsRequest(events=[ledger_pb2.EventInput(action="a.own")]),
                                     metadata=tenant.metadata(Role.OPERATOR), timeout=10)
    seal_now(tenant)
    return tenant


@pytest.mark.parametrize("index", range(44))
def test_a_call_with_another_tenants_identifiers_reveals_and_changes_nothing_of_it(stack, victim, attacker, index):
    """Tenant A's call on tenant B's identifiers returns nothing of B and leaves B's items and objects as they were."""
    calls = _calls(victim)
    service, method, request, caller = calls[index]
    store = Store(stack)
    before = store.tenant_items(victim.tenant.tenant), store.tenant_objects(victim.tenant.tenant)
    path = PATH[service] + method
    channel = grpc.insecure_channel(stack.addresses["ingest-internal" if path in INGEST_INTERNAL else service])
    replies: list[bytes] = []
    try:
        if method in ("ExportBundle", "WatchFullVerification"):
            replies = list(channel.unary_stream(path, request_serializer=bytes, response_deserializer=bytes)(
                request.SerializeToString(), metadata=_metadata(stack, attacker, caller, path), timeout=30))
        else:
            replies = [channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)(
                request.SerializeToString(), metadata=_metadata(stack, attacker, caller, path), timeout=30)]
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    finally:
        channel.close()
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), f"{method}: {code.name}"
    leaked = [m for m in victim.markers() for r in replies if m in r]
    assert leaked == [], f"{method} returned tenant B's data: {leaked}"
    assert (store.tenant_items(victim.tenant.tenant), store.tenant_objects(victim.tenant.tenant)) == before, (
        f"{method} changed tenant B")


def test_the_count_of_cross_tenant_calls_covers_every_rpc(victim):
    """The cross-tenant table names every RPC of every service (Connect is tested on its own)."""
    from tests.faults.test_hostile_input import METHODS

    named = {m for _, m, _, _ in _calls(victim)}
    assert len(_calls(victim)) == 44
    assert {m.name for _, m in METHODS} - named == {"CreateTenant"}  # bootstrap only: it has no tenant


async def test_a_stream_hello_naming_another_tenants_asset_is_refused(stack, victim, attacker):
    """A Connect hello with tenant B's asset and an agent credential of tenant A is UNAUTHENTICATED."""
    own = attacker.agent  # enrolled before the table rotated A's enrollment secret
    store = Store(stack)
    before = store.tenant_items(victim.tenant.tenant)
    for tenant_id, asset_id in ((victim.tenant.tenant, victim.asset_id), (victim.tenant.tenant, own.asset_id),
                                (attacker.tenant, victim.asset_id)):
        agent = TestAgent(stack.addresses["ingest"], tenant_id, asset_id, own.agent_credential)
        try:
            await agent.start()
            assert await agent.status(within=10) is grpc.StatusCode.UNAUTHENTICATED
        finally:
            await agent.close()
    await asyncio.sleep(0)
    assert store.tenant_items(victim.tenant.tenant) == before


