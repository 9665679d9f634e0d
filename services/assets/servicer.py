# ruff: noqa: N802 - the methods carry the RPC names of the generated base class
"""AssetService: decode the request, call domain and store, encode the answer. Nothing else.

The tenant of every call is the caller's (`auth.current_tenant()`); no request field names it, except
CreateTenant's, which only the installation bootstrap principal may call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

from services.assets import domain
from services.assets.domain import (
    AgentEvent,
    Asset,
    Command,
    CommandKind,
    CommandResult,
    Outcome,
    Risk,
    RiskUpdate,
    StoredInventory,
)
from services.assets.store import AssetStore, FleetCounts
from services.assets.writes import AssetWrites
from services.ingest import health
from services.ingest.health import Connection
from services.kit import auth, aws, clients
from services.kit.auth import Role
from services.kit.errors import InvalidArgument
from services.kit.ids import validate_id
from services.kit.settings import ServerSettings
from services.kit.tokens import store as token_store
from services.ledger import store as ledger_store
from services.ledger.outbox import CustodySequencer
from services.tlog.events import parse_event

log = logging.getLogger(__name__)

MAX_RISK_UPDATES = 500
# Per inventory part (agents, engines: one item each), under DynamoDB's 400 KB item limit with room for the
# keys; ingest trims to stay below it.
MAX_AGENT_INVENTORY_BYTES = 350_000
NUDGE_TIMEOUT_SECONDS = 2.0
# DeliverCommandsRequest's limit (protos/lifecyclezero/v1/ingest.proto).
MAX_COMMANDS_PER_NUDGE = 100

_ROLE_TO_PROTO = {Role.VIEWER: assets_pb2.ROLE_VIEWER, Role.OPERATOR: assets_pb2.ROLE_OPERATOR,
                  Role.ADMIN: assets_pb2.ROLE_ADMIN}
_ROLE_FROM_PROTO = {v: k for k, v in _ROLE_TO_PROTO.items()}
_STATUS_TO_PROTO = {s: common_pb2.AssetStatus.Value(f"ASSET_STATUS_{s.value}") for s in domain.Status}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}
_KIND_TO_PROTO = {CommandKind.ISOLATE: common_pb2.COMMAND_KIND_ISOLATE,
                  CommandKind.RELEASE: common_pb2.COMMAND_KIND_RELEASE}
_ENROLLMENT_FROM_PROTO = {assets_pb2.ENROLLMENT_KIND_NEW: domain.EnrollmentKind.NEW,
                         assets_pb2.ENROLLMENT_KIND_ROTATION: domain.EnrollmentKind.ROTATION,
                         assets_pb2.ENROLLMENT_KIND_REENROLL: domain.EnrollmentKind.REENROLL}
_STATE_TO_PROTO = {
    health.State.NEVER: common_pb2.CONNECTION_STATE_UNSPECIFIED,
    health.State.ONLINE: common_pb2.CONNECTION_STATE_ONLINE,
    health.State.OFFLINE: common_pb2.CONNECTION_STATE_OFFLINE,
    health.State.MISSING: common_pb2.CONNECTION_STATE_MISSING,
}
_STATE_FROM_PROTO = {v: k for k, v in _STATE_TO_PROTO.items() if k is not health.State.NEVER}
_OUTCOME_FROM_PROTO = {common_pb2.COMMAND_OUTCOME_APPLIED: Outcome.APPLIED,
                       common_pb2.COMMAND_OUTCOME_FAILED: Outcome.FAILED}


class Nudger:
    """Tells ingest about new commands, so the live streams send them at once.

    One address is enough (in Kubernetes the ingest Service, so any replica): the replica that takes the
    nudge forwards it to the one holding the stream (services/ingest/routing.py). Each address listed
    is nudged. The commands of a tenant nudged in one turn of the event loop (the orders of one write
    group) go in one `DeliverCommands` call. Best effort: a failure is logged and forgotten, because the
    agent's next heartbeat picks the command up from the pending list anyway.
    """

    def __init__(self, addresses: Sequence[str], settings: ServerSettings) -> None:
        self._settings = settings
        self._channels = {address: clients.channel(address, settings) for address in addresses}
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, list[common_pb2.Command]] = {}

    def nudge(self, tenant: str, command: common_pb2.Command) -> None:
        waiting = self._waiting.setdefault(tenant, [])
        waiting.append(command)
        if len(waiting) == 1:
            asyncio.get_running_loop().call_soon(self._send, tenant)

    def _send(self, tenant: str) -> None:
        # A command nudged twice in one turn goes once: ingest refuses a request that names one twice.
        commands = list({command.command_id: command for command in self._waiting.pop(tenant, [])}.values())
        for start in range(0, len(commands), MAX_COMMANDS_PER_NUDGE):
            for address, channel in self._channels.items():
                task = asyncio.create_task(self._deliver(address, channel, tenant,
                                                         commands[start:start + MAX_COMMANDS_PER_NUDGE]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, address: str, channel: grpc.aio.Channel, tenant: str,
                       commands: list[common_pb2.Command]) -> None:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        metadata = clients.service_metadata(self._settings, tenant)
        try:
            try:
                reply = await stub.DeliverCommands(ingest_pb2.DeliverCommandsRequest(commands=commands),
                                                   metadata=metadata, timeout=NUDGE_TIMEOUT_SECONDS)
                deliveries = list(reply.deliveries)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    raise
                # An ingest older than DeliverCommands (a rolling upgrade): one call per command.
                deliveries = [await stub.DeliverCommand(ingest_pb2.DeliverCommandRequest(command=command),
                                                        metadata=metadata, timeout=NUDGE_TIMEOUT_SECONDS)
                              for command in commands]
        except grpc.aio.AioRpcError as exc:
            log.warning("nudge failed; the next heartbeat will pick the commands up",
                        extra={"address": address, "command_ids": [c.command_id for c in commands],
                               "code": exc.code().name})
            return
        # The delivery path of each command, on record: a command that waited for the poll shows here.
        for command, delivery in zip(commands, deliveries, strict=False):
            log.info("nudge answered", extra={"address": address, "command_id": command.command_id,
                                              "path": ingest_pb2.DeliveryPath.Name(delivery.path),
                                              "replica": delivery.replica})

    async def close(self) -> None:
        self._waiting.clear()
        for task in list(self._tasks):
            task.cancel()
        for channel in self._channels.values():
            await channel.close()


class AssetServicer(assets_pb2_grpc.AssetServiceServicer):
    def __init__(self, store: AssetStore, writes: AssetWrites, nudger: Nudger, sequencer: CustodySequencer, *,
                 control_plane_endpoints: Sequence[str], max_assets_per_tenant: int = 100_000) -> None:
        self._store = store
        # Concurrent orders and agents' results of a tenant share reads and transactions.
        self._writes = writes
        self._nudger = nudger
        self._sequencer = sequencer
        self._endpoints = tuple(control_plane_endpoints)
        self._max_assets = max_assets_per_tenant

    # --- tenants and tokens -----------------------------------------------------------------------

    async def CreateTenant(self, request: assets_pb2.CreateTenantRequest, context: Any) -> Any:
        tenant_id = validate_id("tenant_id", request.tenant_id)
        request_id = domain.validate_request_id(request.request_id)
        tenant, admin_token, secret = await aws.call(
            self._store.create_tenant, tenant_id, request.display_name or tenant_id, request_id)
        return assets_pb2.CreateTenantResponse(
            tenant=assets_pb2.Tenant(tenant_id=tenant.tenant_id, display_name=tenant.display_name,
                                     create_time=_ts(tenant.create_time)),
            admin_token=admin_token, enrollment_secret=secret,
        )

    async def CreateToken(self, request: assets_pb2.CreateTokenRequest, context: Any) -> Any:
        role = _ROLE_FROM_PROTO.get(request.role)
        if role is None:
            raise InvalidArgument.field("role", "must be ROLE_VIEWER, ROLE_OPERATOR or ROLE_ADMIN")
        tenant = auth.current_tenant()
        token, record = await aws.call(token_store.issue, self._store.ddb, self._store.table, tenant, role,
                                       request.description)
        return assets_pb2.CreateTokenResponse(token_info=_token_info(record), token=str(token))

    async def RevokeToken(self, request: assets_pb2.RevokeTokenRequest, context: Any) -> Any:
        token_id = validate_id("token_id", request.token_id)
        record = await aws.call(token_store.revoke, self._store.ddb, self._store.table, auth.current_tenant(),
                                token_id)
        return assets_pb2.RevokeTokenResponse(token_info=_token_info(record))

    async def ListTokens(self, request: assets_pb2.ListTokensRequest, context: Any) -> Any:
        page = await aws.call(self._store.list_tokens, auth.current_tenant(), domain.page_size(request.page_size),
                              request.page_token)
        return assets_pb2.ListTokensResponse(tokens=[_token_info(r) for r in page.items],
                                             next_page_token=page.next_token)

    async def GetEnrollmentSecret(self, request: assets_pb2.GetEnrollmentSecretRequest, context: Any) -> Any:
        tenant = await aws.call(self._store.get_tenant, auth.current_tenant())
        return assets_pb2.GetEnrollmentSecretResponse(fingerprint=domain.fingerprint(tenant.enrollment_sha256),
                                                      create_time=_ts(tenant.enrollment_create_time))

    async def RotateEnrollmentSecret(self, request: assets_pb2.RotateEnrollmentSecretRequest,
                                     context: Any) -> Any:
        secret, fingerprint = await aws.call(self._store.rotate_enrollment_secret, auth.current_tenant())
        return assets_pb2.RotateEnrollmentSecretResponse(enrollment_secret=secret, fingerprint=fingerprint)

    async def SetTenantResolvers(self, request: assets_pb2.SetTenantResolversRequest,
                                 context: Any) -> assets_pb2.SetTenantResolversResponse:
        resolvers = domain.validate_resolvers(list(request.dns_servers))
        stored = await aws.call(self._store.set_resolvers, auth.current_tenant(), resolvers)
        return assets_pb2.SetTenantResolversResponse(dns_servers=list(stored))

    async def CheckEnrollmentSecret(self, request: assets_pb2.CheckEnrollmentSecretRequest, context: Any) -> Any:
        if len(request.enrollment_secret) > 256:
            return assets_pb2.CheckEnrollmentSecretResponse(valid=False)
        valid = await aws.call(self._store.check_enrollment_secret, auth.current_tenant(),
                               request.enrollment_secret)
        return assets_pb2.CheckEnrollmentSecretResponse(valid=valid)

    # --- registry ---------------------------------------------------------------------------------

    async def CreateAsset(self, request: assets_pb2.CreateAssetRequest, context: Any) -> Any:
        tenant = auth.current_tenant()
        given = request.asset
        asset = domain.new_asset(given.asset_id, given.hostname, given.employee_id, os=given.os,
                                 agent_version=given.agent_version, when=domain.format_ts(domain.now()),
                                 request_id=domain.validate_request_id(request.request_id))
        stored = await aws.call(self._store.create_asset, tenant, asset)
        return assets_pb2.CreateAssetResponse(asset=_asset(stored))

    async def GetAsset(self, request: assets_pb2.GetAssetRequest, context: Any) -> Any:
        asset_id = validate_id("asset_id", request.asset_id)
        tenant = auth.current_tenant()
        view = await aws.call(self._store.get_asset_view, tenant, asset_id)
        connections = await aws.call(self._store.connections, tenant, [asset_id])
        message = _asset(view.asset, connections.get(asset_id), _now())
        if view.agents is not None:
            message.agent_inventory.ParseFromString(view.agents.data)
        if view.engines is not None:
            message.engine_inventory.ParseFromString(view.engines.data)
        return assets_pb2.GetAssetResponse(asset=message)

    async def ListAssets(self, request: assets_pb2.ListAssetsRequest, context: Any) -> Any:
        tenant = auth.current_tenant()
        size = domain.page_size(request.page_size)
        by_connection = request.connection_state != 0 or request.outdated
        filters = [bool(request.employee_id), request.status != 0, request.action_required, by_connection]
        if sum(filters) > 1:
            raise InvalidArgument("set at most one of employee_id, status, action_required and "
                                  "connection_state/outdated")
        if by_connection:
            return await self._list_by_connection(tenant, request, size)
        if request.employee_id:
            employee_id = validate_id("employee_id", request.employee_id)
            page = await aws.call(self._store.list_assets_by_employee, tenant, employee_id, size, request.page_token)
        elif request.status:
            status = _STATUS_FROM_PROTO.get(request.status)
            if status is None:
                raise InvalidArgument.field("status", "is not a known asset status")
            page = await aws.call(self._store.list_assets_by_status, tenant, status, size, request.page_token)
        elif request.action_required:
            page = await aws.call(self._store.list_assets_needing_action, tenant, size, request.page_token)
        else:
            page = await aws.call(self._store.list_assets, tenant, size, request.page_token)
        connections = await aws.call(self._store.connections, tenant, [a.asset_id for a in page.items])
        now = _now()
        return assets_pb2.ListAssetsResponse(assets=[_asset(a, connections.get(a.asset_id), now) for a in page.items],
                                             next_page_token=page.next_token)

    async def _list_by_connection(self, tenant: str, request: assets_pb2.ListAssetsRequest,
                                  size: int) -> assets_pb2.ListAssetsResponse:
        state = None
        if request.connection_state:
            state = _STATE_FROM_PROTO.get(request.connection_state)
            if state is None:
                raise InvalidArgument.field("connection_state", "must be ONLINE, OFFLINE or MISSING")
        now = _now()
        page, connections = await aws.call(self._store.list_assets_by_connection, tenant, state,
                                           outdated=request.outdated, size=size, page_token=request.page_token,
                                           now=now)
        return assets_pb2.ListAssetsResponse(assets=[_asset(a, connections.get(a.asset_id), now) for a in page.items],
                                             next_page_token=page.next_token)

    # --- orders -----------------------------------------------------------------------------------

    async def IsolateAsset(self, request: assets_pb2.IsolateAssetRequest, context: Any) -> Any:
        asset, command = await self._order(CommandKind.ISOLATE, request)
        return assets_pb2.IsolateAssetResponse(asset=asset, command=command, custody_seq=command.custody_seq)

    async def ReleaseAsset(self, request: assets_pb2.ReleaseAssetRequest, context: Any) -> Any:
        asset, command = await self._order(CommandKind.RELEASE, request)
        return assets_pb2.ReleaseAssetResponse(asset=asset, command=command, custody_seq=command.custody_seq)

    async def _order(
        self, kind: CommandKind, request: assets_pb2.IsolateAssetRequest | assets_pb2.ReleaseAssetRequest
    ) -> tuple[common_pb2.Asset, common_pb2.Command]:
        principal = auth.current_principal()
        tenant = auth.current_tenant()
        asset_id = validate_id("asset_id", request.asset_id)
        justification = domain.validate_justification(request.justification)
        request_id = domain.validate_request_id(request.request_id)
        outcome = await self._writes.write(tenant, self._store.order_write(
            tenant, asset_id, kind, actor=principal.actor, justification=justification, request_id=request_id,
            control_plane_endpoints=self._endpoints))
        command = _command(outcome.command)
        if outcome.custody is not None:
            self._sequencer.submit(outcome.custody)
        if not outcome.replayed:
            self._nudger.nudge(tenant, command)
        return _asset(outcome.asset), command

    async def RecordCommandResult(self, request: assets_pb2.RecordCommandResultRequest, context: Any) -> Any:
        tenant = auth.current_tenant()
        asset_id = validate_id("asset_id", request.asset_id)
        command_id = validate_id("result.command_id", request.result.command_id)
        outcome = _OUTCOME_FROM_PROTO.get(request.result.outcome)
        if outcome is None:
            raise InvalidArgument.field("result.outcome", "must be APPLIED or FAILED")
        given = request.result
        result = CommandResult(
            outcome=outcome, ruleset=given.ruleset, ruleset_sha256=given.ruleset_sha256,
            rule_count=given.rule_count, self_test_passed=given.self_test_passed,
            self_test_detail=given.self_test_detail, error=given.error,
            finish_time=_from_ts(given.finish_time, "result.finish_time") if given.HasField("finish_time") else "",
        )
        recorded = await self._writes.write(tenant, self._store.result_write(tenant, asset_id, command_id, result,
                                                                             f"agent:{asset_id}"))
        if recorded.custody is not None:
            self._sequencer.submit(recorded.custody)
        return assets_pb2.RecordCommandResultResponse(asset=_asset(recorded.asset), custody_seq=recorded.custody_seq)

    async def RecordAgentEvent(self, request: assets_pb2.RecordAgentEventRequest,
                               context: Any) -> assets_pb2.RecordAgentEventResponse:
        tenant = auth.current_tenant()
        asset_id = validate_id("asset_id", request.asset_id)
        event = _agent_event(request.event)
        recorded = await aws.call(self._store.record_agent_event, tenant, asset_id, event)
        if recorded.custody is not None:
            self._sequencer.submit(recorded.custody)
        return assets_pb2.RecordAgentEventResponse(custody_seq=recorded.custody_seq, replayed=recorded.replayed)

    async def ListPendingCommands(self, request: assets_pb2.ListPendingCommandsRequest, context: Any) -> Any:
        asset_id = validate_id("asset_id", request.asset_id) if request.asset_id else ""
        page = await aws.call(self._store.list_pending_commands, auth.current_tenant(), asset_id,
                              domain.page_size(request.page_size), request.page_token)
        return assets_pb2.ListPendingCommandsResponse(commands=[_command(c) for c in page.items],
                                                      next_page_token=page.next_token)

    async def UpdateAssetRisk(self, request: assets_pb2.UpdateAssetRiskRequest, context: Any) -> Any:
        tenant = auth.current_tenant()
        if len(request.updates) > MAX_RISK_UPDATES:
            raise InvalidArgument.field("updates", f"must hold at most {MAX_RISK_UPDATES} updates")
        updates = [_risk_update(u) for u in request.updates]
        updated = await aws.call(self._store.update_risk, tenant, updates)
        return assets_pb2.UpdateAssetRiskResponse(updated=updated)

    # --- enrollment ---------------------------------------------------------------------------------

    async def ApproveReEnrollment(self, request: assets_pb2.ApproveReEnrollmentRequest,
                                  context: Any) -> assets_pb2.ApproveReEnrollmentResponse:
        asset_id = validate_id("asset_id", request.asset_id)
        reason = domain.validate_reason(request.reason)
        approval = await aws.call(
            self._store.approve_reenrollment, auth.current_tenant(), asset_id, actor=auth.current_principal().actor,
            reason=reason, request_id=domain.validate_request_id(request.request_id))
        self._sequencer.submit(approval.custody)
        return assets_pb2.ApproveReEnrollmentResponse(reenroll_code=approval.code,
                                                      expire_time=_ts(approval.expire_time))

    async def RecordEnrollment(self, request: assets_pb2.RecordEnrollmentRequest,
                               context: Any) -> assets_pb2.RecordEnrollmentResponse:
        kind = _ENROLLMENT_FROM_PROTO.get(request.kind)
        if kind is None:
            raise InvalidArgument.field("kind", "must be NEW, ROTATION or REENROLL")
        given = request.asset
        facts = domain.new_asset(given.asset_id, given.hostname, given.employee_id, os=given.os,
                                 agent_version=given.agent_version, when=domain.format_ts(domain.now()))
        enrolled = await aws.call(
            self._store.record_enrollment, auth.current_tenant(), kind, facts,
            request_id=domain.validate_request_id(request.request_id), reenroll_code=request.reenroll_code[:256],
            max_assets=self._max_assets)
        if enrolled.custody is not None:
            self._sequencer.submit(enrolled.custody)
        return assets_pb2.RecordEnrollmentResponse(asset=_asset(enrolled.asset), custody_seq=enrolled.custody_seq)

    # --- reads of other services' records ----------------------------------------------------------

    async def ListAlerts(self, request: assets_pb2.ListAlertsRequest, context: Any) -> Any:
        asset_id = validate_id("asset_id", request.asset_id) if request.asset_id else ""
        minimum = "CRITICAL" if domain.severity(request.min_severity) is domain.Severity.CRITICAL else "WARNING"
        start = _from_ts(request.start_time, "start_time") if request.HasField("start_time") else ""
        end = _from_ts(request.end_time, "end_time") if request.HasField("end_time") else ""
        page = await aws.call(self._store.alerts, auth.current_tenant(), minimum, asset_id, start=start, end=end,
                              size=domain.page_size(request.page_size), page_token=request.page_token)
        return assets_pb2.ListAlertsResponse(alerts=[a.to_proto() for a in page.items],
                                             next_page_token=page.next_token)

    async def GetFleetSummary(self, request: assets_pb2.GetFleetSummaryRequest,
                              context: Any) -> assets_pb2.GetFleetSummaryResponse:
        counts = await aws.call(self._store.fleet_counts, auth.current_tenant(), _now())
        return _fleet_summary(counts)

    async def RecordAgentLoss(self, request: assets_pb2.RecordAgentLossRequest,
                              context: Any) -> assets_pb2.RecordAgentLossResponse:
        asset_id = validate_id("asset_id", request.asset_id)
        request_id = domain.validate_request_id(request.request_id)
        loss = await aws.call(self._store.record_agent_loss, auth.current_tenant(), asset_id, reason=request.reason,
                              last_seen=_optional_ts(request, "last_seen_time", "last_seen_time"),
                              request_id=request_id, actor=auth.current_principal().actor)
        if loss.custody is not None:
            self._sequencer.submit(loss.custody)
        return assets_pb2.RecordAgentLossResponse(isolated=loss.contained, custody_seq=loss.custody_seq,
                                                  status=_STATUS_TO_PROTO[loss.status])

    async def WhoAmI(self, request: assets_pb2.WhoAmIRequest, context: Any) -> assets_pb2.WhoAmIResponse:
        principal = auth.current_principal()
        return assets_pb2.WhoAmIResponse(tenant_id=auth.current_tenant(),
                                         role=_ROLE_TO_PROTO.get(principal.role, assets_pb2.ROLE_UNSPECIFIED),
                                         token_id=principal.subject.removeprefix("token:"))

    async def GetCustodyLog(self, request: assets_pb2.GetCustodyLogRequest, context: Any) -> Any:
        asset_id = validate_id("asset_id", request.asset_id)
        page = await aws.call(self._store.custody_log, auth.current_tenant(), asset_id,
                              domain.page_size(request.page_size), request.page_token)
        return assets_pb2.GetCustodyLogResponse(events=[_ledger_event(e) for e in page.items],
                                                next_page_token=page.next_token)


# --- encoding -------------------------------------------------------------------------------------


def _ts(text: str) -> timestamp_pb2.Timestamp | None:
    if not text:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(domain.parse_ts(text))
    return stamp


_AGENT_EVENT_KINDS = {common_pb2.AGENT_EVENT_KIND_BREAK_GLASS: "break_glass",
                      common_pb2.AGENT_EVENT_KIND_CONTAINMENT_DRIFT: "containment_drift"}


def _agent_event(given: common_pb2.AgentEvent) -> AgentEvent:
    kind = _AGENT_EVENT_KINDS.get(given.kind)
    if kind is None:
        raise InvalidArgument.field("event.kind", "must be BREAK_GLASS or CONTAINMENT_DRIFT")
    if not given.HasField("occur_time"):
        raise InvalidArgument.field("event.occur_time", "is required")
    return AgentEvent(
        event_id=validate_id("event.event_id", given.event_id), kind=kind,
        occur_time=_from_ts(given.occur_time, "event.occur_time"), operator=given.operator, reason=given.reason,
        command_id=given.command_id, expected_ruleset_sha256=given.expected_ruleset_sha256,
        found_ruleset_sha256=given.found_ruleset_sha256, repaired=given.repaired, detail=given.detail,
    )


def _from_ts(stamp: timestamp_pb2.Timestamp, field: str) -> str:
    """A timestamp field as the store's text, or INVALID_ARGUMENT when it is outside 0001-9999."""
    try:
        return domain.format_ts(stamp.ToDatetime(tzinfo=dt.UTC))
    except (ValueError, OverflowError):
        raise InvalidArgument.field(field, "is not a valid timestamp (years 0001-9999)") from None


def _optional_ts(message: Any, name: str, field: str) -> str:
    """The store's text for an optional timestamp field ('' when unset)."""
    return _from_ts(getattr(message, name), field) if message.HasField(name) else ""


def _token_info(record: token_store.TokenRecord) -> assets_pb2.TokenInfo:
    when = dt.datetime.fromisoformat(record.create_time) if record.create_time else None
    stamp = None
    if when is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(when)
    role = _ROLE_TO_PROTO.get(record.role, assets_pb2.ROLE_UNSPECIFIED)
    return assets_pb2.TokenInfo(token_id=record.token_id, role=role, description=record.description,
                                create_time=stamp, revoked=record.revoked)


def _risk(risk: Risk) -> common_pb2.RiskSummary:
    findings = []
    for raw in risk.findings:
        finding = common_pb2.Finding()
        json_format.ParseDict(raw, finding, ignore_unknown_fields=True)
        findings.append(finding)
    severity = common_pb2.Severity.Value(f"SEVERITY_{risk.max_severity.name}")
    return common_pb2.RiskSummary(max_severity=severity, findings=findings, evaluate_time=_ts(risk.evaluate_time))


def _asset(asset: Asset, connection: Connection | None = None, now: str = "") -> common_pb2.Asset:
    message = common_pb2.Asset(
        asset_id=asset.asset_id, hostname=asset.hostname, employee_id=asset.employee_id, os=asset.os,
        agent_version=asset.agent_version, status=_STATUS_TO_PROTO[asset.status],
        status_reason=asset.status_reason, last_seen_time=_ts(asset.last_seen_time), risk=_risk(asset.risk),
        create_time=_ts(asset.create_time), update_time=_ts(asset.update_time),
        last_custody_seq=asset.last_custody_seq, engine_kinds=asset.engine_kinds,
    )
    if connection is not None:
        _add_connection(message, connection, now)
    return message


def _add_connection(message: common_pb2.Asset, connection: Connection, now: str) -> None:
    """The agent's connection as of `now`; its last-seen when newer than the coalesced one on the asset."""
    state, reason = health.state_at(connection, now)
    message.connection_state = _STATE_TO_PROTO[state]
    message.disconnect_reason = reason
    if connection.since:
        message.connection_change_time.FromDatetime(domain.parse_ts(connection.since))
    message.agent_platform = connection.platform
    message.agent_outdated = connection.outdated
    if connection.agent_version:
        message.agent_version = connection.agent_version
    seen = now if state is health.State.ONLINE else connection.last_seen
    if seen and (not message.HasField("last_seen_time") or seen > _from_ts(message.last_seen_time, "last_seen")):
        message.last_seen_time.FromDatetime(domain.parse_ts(seen))


def _fleet_summary(counts: FleetCounts) -> assets_pb2.GetFleetSummaryResponse:
    return assets_pb2.GetFleetSummaryResponse(
        online=counts.states[health.State.ONLINE.value], offline=counts.states[health.State.OFFLINE.value],
        missing=counts.states[health.State.MISSING.value], never_connected=counts.states[health.State.NEVER.value],
        outdated=counts.outdated,
        versions=[assets_pb2.VersionCount(agent_version=version, count=count, outdated=old)
                  for version, (count, old) in sorted(counts.versions.items(), key=lambda kv: (-kv[1][0], kv[0]))],
    )


def _now() -> str:
    return domain.format_ts(domain.now())


def _command(command: Command) -> common_pb2.Command:
    policy = command.policy
    return common_pb2.Command(
        command_id=command.command_id, asset_id=command.asset_id, kind=_KIND_TO_PROTO[command.kind],
        issue_time=_ts(command.issue_time), custody_seq=command.custody_seq,
        policy=common_pb2.ContainmentPolicy(
            control_plane_endpoints=list(policy.control_plane_endpoints),
            allowlist_cidrs=list(policy.allowlist_cidrs), stop_engines=policy.stop_engines,
            dns_servers=list(policy.dns_servers),
        ),
    )


def _risk_update(update: assets_pb2.AssetRiskUpdate) -> RiskUpdate:
    asset_id = validate_id("updates.asset_id", update.asset_id)
    risk = None
    if update.HasField("risk"):
        risk = Risk(
            max_severity=domain.severity(update.risk.max_severity),
            findings=tuple(json_format.MessageToDict(f, preserving_proto_field_name=True)
                           for f in update.risk.findings),
            evaluate_time=_optional_ts(update.risk, "evaluate_time", "updates.risk.evaluate_time"),
        )
    return RiskUpdate(
        asset_id=asset_id,
        last_seen_time=_optional_ts(update, "last_seen_time", "updates.last_seen_time"),
        risk=risk, hostname=update.hostname, os=update.os, agent_version=update.agent_version,
        agent_inventory=_inventory(update, "agent_inventory") if update.HasField("agent_inventory") else None,
        engine_inventory=_inventory(update, "engine_inventory") if update.HasField("engine_inventory") else None,
        engine_kinds=domain.engine_kinds(engine.kind for engine in update.engine_inventory.engines)
        if update.HasField("engine_inventory") else None,
    )


def _inventory(update: assets_pb2.AssetRiskUpdate, field: str) -> StoredInventory:
    """One part of the inventory, serialized and bounded so its item stays under DynamoDB's 400 KB."""
    part = getattr(update, field)
    data = part.SerializeToString(deterministic=True)
    if len(data) > MAX_AGENT_INVENTORY_BYTES:
        raise InvalidArgument.field(f"updates.{field}", f"must be at most {MAX_AGENT_INVENTORY_BYTES} bytes")
    when = _optional_ts(part, "evaluate_time", f"updates.{field}.evaluate_time")
    return StoredInventory(data=data, evaluate_time=when)


def _ledger_event(stored: ledger_store.StoredEvent) -> common_pb2.LedgerEvent:
    event = parse_event(stored.canonical)
    payload = struct_pb2.Struct()
    payload.update(event.payload)
    return common_pb2.LedgerEvent(
        seq=event.seq, event_time=_ts(event.ts), actor=event.actor, action=event.action, subject=event.subject,
        payload=payload, prev_hash=bytes.fromhex(event.prev_hash), hash=event.hash,
        canonical=event.canonical_bytes,
    )
