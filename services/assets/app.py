"""Wiring of the assets service: clients, store, domain and servicer, handed to the server bootstrap."""

from __future__ import annotations

from datetime import timedelta

from lifecyclezero.v1 import assets_pb2_grpc

from services.assets.servicer import AssetServicer, Nudger
from services.assets.settings import AssetsSettings
from services.assets.store import AssetStore
from services.assets.writes import AssetWrites
from services.kit import auth, aws
from services.kit.auth import Role, at_least
from services.kit.authenticator import Authenticator
from services.kit.server import Service
from services.ledger.committer import GroupCommitter
from services.ledger.outbox import CustodySequencer

SERVICE_NAME = "lifecyclezero.v1.AssetService"
_PREFIX = f"/{SERVICE_NAME}/"

_VIEWER = at_least(Role.VIEWER)
_OPERATOR = at_least(Role.OPERATOR)
_ADMIN = at_least(Role.ADMIN)
_SERVICE = frozenset({Role.SERVICE})

POLICY: dict[str, frozenset[auth.Role]] = {
    _PREFIX + "CreateTenant": frozenset({Role.BOOTSTRAP}),
    _PREFIX + "CreateToken": _ADMIN,
    _PREFIX + "RevokeToken": _ADMIN,
    _PREFIX + "ListTokens": _ADMIN,
    _PREFIX + "GetEnrollmentSecret": _ADMIN,
    _PREFIX + "RotateEnrollmentSecret": _ADMIN,
    _PREFIX + "CheckEnrollmentSecret": _SERVICE,
    _PREFIX + "SetTenantResolvers": _ADMIN,
    # Operators register hosts by hand; ingest registers them when an agent enrolls.
    _PREFIX + "CreateAsset": _OPERATOR | _SERVICE,
    _PREFIX + "GetAsset": _VIEWER | _SERVICE,
    _PREFIX + "ListAssets": _VIEWER,
    # The risk worker isolates on policy (actor `policy:<rule>` in x-lz-actor); release is human only.
    _PREFIX + "IsolateAsset": _OPERATOR | _SERVICE,
    _PREFIX + "ReleaseAsset": _OPERATOR,
    _PREFIX + "RecordCommandResult": _SERVICE,
    _PREFIX + "RecordAgentEvent": _SERVICE,
    _PREFIX + "ListPendingCommands": _SERVICE,
    _PREFIX + "UpdateAssetRisk": _SERVICE,
    _PREFIX + "ListAlerts": _VIEWER,
    _PREFIX + "GetCustodyLog": _VIEWER,
    _PREFIX + "ApproveReEnrollment": _OPERATOR,
    _PREFIX + "RecordEnrollment": _SERVICE,
    _PREFIX + "GetFleetSummary": _VIEWER,
    # The console signs an operator in with this: whose token it is, and what it may do.
    _PREFIX + "WhoAmI": _VIEWER,
    # Ingest's health sweep: an isolated host's agent is gone (a custody event).
    _PREFIX + "RecordAgentLoss": _SERVICE,
}
# Which service's own token may call each service method (LZ_SERVICE_CALLERS): ingest enrolls agents
# and relays commands, the risk worker scores and isolates; nothing else is open to a service.
_INGEST = frozenset({"ingest"})
_RISK_WORKER = frozenset({"risk-worker"})
CALLERS: dict[str, frozenset[str]] = {
    _PREFIX + "CheckEnrollmentSecret": _INGEST,
    _PREFIX + "CreateAsset": _INGEST,
    _PREFIX + "ListPendingCommands": _INGEST,
    _PREFIX + "RecordCommandResult": _INGEST,
    _PREFIX + "RecordAgentEvent": _INGEST,
    _PREFIX + "UpdateAssetRisk": _RISK_WORKER,
    _PREFIX + "IsolateAsset": _RISK_WORKER,
    # Only ingest records an enrollment (its custody event) and an agent's loss.
    _PREFIX + "RecordEnrollment": _INGEST,
    _PREFIX + "RecordAgentLoss": _INGEST,
}


async def make_service(settings: AssetsSettings) -> Service:
    ddb = aws.client(settings.aws, "dynamodb")
    authenticator = Authenticator(
        ddb,
        settings.aws.table_name,
        service_callers=dict(settings.server.service_callers),
        bootstrap_token_sha256=settings.server.bootstrap_token_sha256,
        cache_seconds=settings.server.auth_cache_seconds,
    )
    # The embedded endpoint (moto) does not isolate concurrent transactions; see AssetStore.
    store = AssetStore(ddb, settings.aws.table_name)
    nudger = Nudger(settings.ingest_addresses, settings.server)
    writes = AssetWrites(store)
    # Custody records of this process's transactions are chained here, through the same group
    # committer the ledger's AppendEvents uses, once the tenant's orders and results pause; the sweep
    # finishes what a stopped process left.
    sequencer = CustodySequencer(ddb, settings.aws.table_name, GroupCommitter(ddb, settings.aws.table_name),
                                 overdue_after=timedelta(seconds=settings.custody_overdue_seconds),
                                 yield_to=writes.quiet)

    async def check_ready() -> None:
        await aws.call(ddb.describe_table, TableName=settings.aws.table_name)

    async def sweep_custody() -> None:
        await sequencer.run(settings.custody_sweep_seconds)

    async def stop() -> None:
        await nudger.close()
        await sequencer.close()

    servicer = AssetServicer(store, writes, nudger, sequencer, control_plane_endpoints=settings.control_plane_endpoints,
                             max_assets_per_tenant=settings.max_assets_per_tenant)
    return Service(
        name="assets",
        servicers=[(assets_pb2_grpc.add_AssetServiceServicer_to_server, servicer, SERVICE_NAME)],
        policy=POLICY,
        authenticator=authenticator,
        check_ready=check_ready,
        background=[sweep_custody],
        on_stop=stop,
        callers=CALLERS,
    )
