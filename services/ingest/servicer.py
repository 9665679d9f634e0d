# ruff: noqa: N802 - the methods carry the RPC names of the generated base class
"""IngestService: thin; decodes requests, calls the hub or the enrollment logic, encodes replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lifecyclezero.v1 import assets_pb2, ingest_pb2, ingest_pb2_grpc

from services.ingest.enrollment import Enrollment
from services.ingest.routing import Delivery, Path, Router
from services.ingest.streams import Hub
from services.kit import auth
from services.kit.errors import InvalidArgument, Unauthenticated
from services.kit.ids import validate_id

PEER_SERVICE = "ingest"
# DeliverCommandsRequest's limit: a tenant's orders of one write group, or a few groups, fit in one nudge.
MAX_COMMANDS_PER_NUDGE = 100


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, hub: Hub, enrollment: Enrollment, router: Router) -> None:
        self._hub = hub
        self._enrollment = enrollment
        self._router = router

    async def Enroll(self, request: ingest_pb2.EnrollRequest, context: Any) -> ingest_pb2.EnrollResponse:
        enrolled = await self._enrollment.enroll(request)
        if enrolled.kind != assets_pb2.ENROLLMENT_KIND_NEW:
            # The credential write replaced the agent item, holder included: another replica's stream of the
            # old credential ends at that replica's next re-check (LZ_CREDENTIAL_RECHECK_SECONDS).
            self._hub.end_stream(request.tenant_id, enrolled.asset_id, Unauthenticated(
                "the agent credential was replaced by a new enrollment", reason="CREDENTIAL_REPLACED"))
        return ingest_pb2.EnrollResponse(
            asset_id=enrolled.asset_id,
            agent_credential=enrolled.credential,
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
        delivery = await self._router.deliver(tenant, request.command, from_peer=_from_peer())
        return _reply(delivery)

    async def DeliverCommands(self, request: ingest_pb2.DeliverCommandsRequest,
                              context: Any) -> ingest_pb2.DeliverCommandsResponse:
        tenant = auth.current_tenant()
        commands = request.commands
        if not 1 <= len(commands) <= MAX_COMMANDS_PER_NUDGE:
            raise InvalidArgument.field("commands", f"must hold 1 to {MAX_COMMANDS_PER_NUDGE} commands")
        seen: set[str] = set()
        for index, command in enumerate(commands):
            validate_id(f"commands[{index}].asset_id", command.asset_id)
            command_id = validate_id(f"commands[{index}].command_id", command.command_id)
            if command_id in seen:
                raise InvalidArgument.field(f"commands[{index}].command_id", "appears twice in the request")
            seen.add(command_id)
        deliveries = await self._router.deliver_many(tenant, commands, from_peer=_from_peer())
        return ingest_pb2.DeliverCommandsResponse(deliveries=[_reply(delivery) for delivery in deliveries])

    async def RevokeAgent(self, request: ingest_pb2.RevokeAgentRequest,
                          context: Any) -> ingest_pb2.RevokeAgentResponse:
        tenant = auth.current_tenant()
        await self._router.revoke(tenant, validate_id("asset_id", request.asset_id), from_peer=_from_peer())
        return ingest_pb2.RevokeAgentResponse()


def _reply(delivery: Delivery) -> ingest_pb2.DeliverCommandResponse:
    return ingest_pb2.DeliverCommandResponse(delivered=delivery.delivered, path=_PATHS[delivery.path],
                                             replica=delivery.replica)


_PATHS = {Path.LOCAL: ingest_pb2.DELIVERY_PATH_LOCAL, Path.FORWARDED: ingest_pb2.DELIVERY_PATH_FORWARDED,
          Path.NOT_HELD: ingest_pb2.DELIVERY_PATH_NOT_HELD}


def _from_peer() -> bool:
    """A call another ingest replica forwarded (its own service token): it is handled here, never passed on."""
    return auth.current_principal().service == PEER_SERVICE


