"""Calls to the assets service on behalf of a tenant, with the service token; gRPC errors become domain errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from services.kit import clients
from services.kit.errors import DomainError, Unavailable
from services.kit.interceptors import error_class_for
from services.kit.settings import ServerSettings

T = TypeVar("T")
# An enrollment appends a custody event: a fleet enrolling at once queues on the tenant's ledger tail.
ENROLLMENT_TIMEOUT_SECONDS = 15.0



def as_domain_error(exc: grpc.aio.AioRpcError) -> DomainError:
    """The domain error of a failed call to assets; anything unexpected counts as Unavailable (retry)."""
    cls = error_class_for(exc.code()) or Unavailable
    return cls(f"assets: {exc.details() or exc.code().name}")


class AssetsClient:
    def __init__(self, address: str, settings: ServerSettings, timeout: float = 5.0) -> None:
        self._settings = settings
        self._channel = clients.channel(address, settings)
        self._stub = assets_pb2_grpc.AssetServiceStub(self._channel)
        self._timeout = timeout

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, tenant: str, actor: str = "",
                    deadline_seconds: float | None = None) -> T:
        try:
            return await method(request, metadata=clients.service_metadata(self._settings, tenant, actor),
                                timeout=deadline_seconds or self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise as_domain_error(exc) from None

    async def check_enrollment_secret(self, tenant: str, secret: str) -> bool:
        reply = await self._call(self._stub.CheckEnrollmentSecret,
                                 assets_pb2.CheckEnrollmentSecretRequest(enrollment_secret=secret), tenant,
                                 "ingest:enroll")
        return bool(reply.valid)

    async def create_asset(self, tenant: str, asset: common_pb2.Asset, request_id: str) -> common_pb2.Asset:
        reply = await self._call(self._stub.CreateAsset,
                                 assets_pb2.CreateAssetRequest(asset=asset, request_id=request_id), tenant,
                                 "ingest:enroll")
        created: common_pb2.Asset = reply.asset
        return created

    async def record_enrollment(self, tenant: str, kind: assets_pb2.EnrollmentKind.ValueType,
                                asset: common_pb2.Asset, request_id: str,
                                reenroll_code: str = "") -> assets_pb2.RecordEnrollmentResponse:
        actor = "ingest:enroll" if kind == assets_pb2.ENROLLMENT_KIND_NEW else f"agent:{asset.asset_id}"
        return await self._call(
            self._stub.RecordEnrollment,
            assets_pb2.RecordEnrollmentRequest(kind=kind, asset=asset, request_id=request_id,
                                               reenroll_code=reenroll_code),
            tenant, actor, deadline_seconds=ENROLLMENT_TIMEOUT_SECONDS,
        )

    async def list_pending_commands(self, tenant: str, asset_id: str = "") -> list[common_pb2.Command]:
        commands: list[common_pb2.Command] = []
        token = ""
        for _ in range(100):
            reply = await self._call(
                self._stub.ListPendingCommands,
                assets_pb2.ListPendingCommandsRequest(asset_id=asset_id, page_size=500, page_token=token),
                tenant, "ingest",
            )
            commands.extend(reply.commands)
            token = reply.next_page_token
            if not token:
                break
        return commands

    async def record_command_result(self, tenant: str, asset_id: str, result: common_pb2.CommandResult) -> None:
        await self._call(self._stub.RecordCommandResult,
                         assets_pb2.RecordCommandResultRequest(asset_id=asset_id, result=result), tenant,
                         f"agent:{asset_id}")

    async def record_agent_event(self, tenant: str, asset_id: str, event: common_pb2.AgentEvent) -> None:
        await self._call(self._stub.RecordAgentEvent,
                         assets_pb2.RecordAgentEventRequest(asset_id=asset_id, event=event), tenant,
                         f"agent:{asset_id}")

    async def update_asset_risk(self, tenant: str, updates: list[assets_pb2.AssetRiskUpdate]) -> int:
        reply = await self._call(self._stub.UpdateAssetRisk, assets_pb2.UpdateAssetRiskRequest(updates=updates),
                                 tenant, "risk-worker")
        return int(reply.updated)

    async def isolate_asset(self, tenant: str, asset_id: str, justification: str, request_id: str,
                            actor: str) -> assets_pb2.IsolateAssetResponse:
        return await self._call(
            self._stub.IsolateAsset,
            assets_pb2.IsolateAssetRequest(asset_id=asset_id, justification=justification, request_id=request_id),
            tenant, actor,
        )

    async def record_agent_loss(self, tenant: str, asset_id: str, reason: str, last_seen: Timestamp | None,
                                request_id: str) -> assets_pb2.RecordAgentLossResponse:
        return await self._call(
            self._stub.RecordAgentLoss,
            assets_pb2.RecordAgentLossRequest(asset_id=asset_id, reason=reason, last_seen_time=last_seen,
                                              request_id=request_id),
            tenant, "ingest:health",
        )

    async def close(self) -> None:
        await self._channel.close()
