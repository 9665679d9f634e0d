# ruff: noqa: N802 - the methods carry the RPC names of the generated base class
"""IngestService: thin; decodes requests, calls the hub or the enrollment logic, encodes replies."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

from lifecyclezero.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

from services.ingest import domain, store
from services.ingest.assets_client import AssetsClient
from services.ingest.streams import Hub
from services.kit import auth, aws
from services.kit.errors import AlreadyExists, InvalidArgument, Unauthenticated
from services.kit.ids import validate_id

MAX_FACT_CHARS = 256


def _fact(name: str, value: str, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidArgument.field(name, "is required")
    if len(value) > MAX_FACT_CHARS:
        raise InvalidArgument.field(name, f"must be at most {MAX_FACT_CHARS} characters")
    return value


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, hub: Hub, assets: AssetsClient, ddb: Any, table: str) -> None:
        self._hub = hub
        self._assets = assets
        self._ddb = ddb
        self._table = table

    async def Enroll(self, request: ingest_pb2.EnrollRequest, context: Any) -> ingest_pb2.EnrollResponse:
        tenant = validate_id("tenant_id", request.tenant_id)
        if not request.enrollment_secret or len(request.enrollment_secret) > 256:
            raise Unauthenticated("wrong enrollment secret", reason="BAD_ENROLLMENT_SECRET")
        _fact("hostname", request.hostname, required=True)
        _fact("employee_id", request.employee_id)
        _fact("os", request.os)
        _fact("agent_version", request.agent_version)
        asset_id = validate_id("asset_id", request.asset_id) if request.asset_id else f"a-{secrets.token_hex(8)}"
        request_id = validate_id("request_id", request.request_id) if request.request_id else ""
        if not await self._assets.check_enrollment_secret(tenant, request.enrollment_secret):
            raise Unauthenticated("wrong enrollment secret", reason="BAD_ENROLLMENT_SECRET")
        asset = common_pb2.Asset(asset_id=asset_id, hostname=request.hostname, employee_id=request.employee_id,
                                 os=request.os, agent_version=request.agent_version)
        try:
            created = await self._assets.create_asset(tenant, asset, request_id or f"enroll-{asset_id}")
            asset_id = created.asset_id or asset_id
        except AlreadyExists:
            if not request.asset_id:
                raise
        credential = auth.new_secret()
        now = domain.now()
        epoch = int(now.timestamp() * 1000)
        await aws.call(store.put_agent, self._ddb, self._table, tenant, asset_id, auth.sha256_hex(credential),
                       epoch, domain.format_ts(now))
        return ingest_pb2.EnrollResponse(
            asset_id=asset_id,
            agent_credential=credential,
            heartbeat_interval_seconds=self._hub.settings.heartbeat_interval_seconds,
        )

    async def Connect(self, request_iterator: AsyncIterator[ingest_pb2.ConnectRequest],
                      context: Any) -> AsyncIterator[ingest_pb2.ConnectResponse]:
        async for response in self._hub.connect(request_iterator):
            yield response

    async def DeliverCommand(self, request: ingest_pb2.DeliverCommandRequest,
                             context: Any) -> ingest_pb2.DeliverCommandResponse:
        tenant = auth.current_tenant()
        validate_id("command.asset_id", request.command.asset_id)
        validate_id("command.command_id", request.command.command_id)
        return ingest_pb2.DeliverCommandResponse(delivered=self._hub.deliver(tenant, request.command))

    async def RevokeAgent(self, request: ingest_pb2.RevokeAgentRequest,
                          context: Any) -> ingest_pb2.RevokeAgentResponse:
        tenant = auth.current_tenant()
        await self._hub.revoke(tenant, validate_id("asset_id", request.asset_id))
        return ingest_pb2.RevokeAgentResponse()


