"""SealerService: thin, decode -> call -> encode; the tenant comes from the credential."""

# ruff: noqa: N802 - method names are the RPC names gRPC dispatches on

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from lifecyclezero.v1 import sealer_pb2, sealer_pb2_grpc

from services.kit import aws
from services.kit.auth import current_tenant
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.ledger import seals
from services.ledger import store as ledger_store
from services.ledger.messages import checkpoint_message
from services.sealer import sealing
from services.sealer.domain import SealRefused
from services.sealer.loop import SealerLoops
from services.sealer.sealing import SealContext

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
MAX_PAGE = 1000


class SealerServicer(sealer_pb2_grpc.SealerServiceServicer):
    def __init__(self, ctx: SealContext, loops: SealerLoops) -> None:
        self._ctx = ctx
        self._loops = loops

    async def SealNow(self, request: sealer_pb2.SealNowRequest, context: Context) -> sealer_pb2.SealNowResponse:
        try:
            record = await self._loops.seal_now(current_tenant())
        except SealRefused as exc:
            raise FailedPrecondition(
                f"the ledger does not extend its last checkpoint at seq {exc.seq}: {exc.reason}; nothing was signed "
                "(`lz ledger verify --full` names the damage)", reason="SEAL_REFUSED", metadata={"seq": str(exc.seq)},
            ) from None
        if record is None:
            raise FailedPrecondition("the ledger is empty; there is nothing to seal", reason="LEDGER_EMPTY")
        return sealer_pb2.SealNowResponse(checkpoint=checkpoint_message(record))

    async def GetSealStatus(
        self, request: sealer_pb2.GetSealStatusRequest, context: Context
    ) -> sealer_pb2.GetSealStatusResponse:
        tenant = current_tenant()
        ddb, table = self._ctx.ddb, self._ctx.table
        # The newest record this process sealed or read (an index Query only when it has none): cheap
        # enough to poll. A record another replica wrote since shows once this one seals the tenant too.
        latest = await aws.call(sealing.newest_record, self._ctx, tenant)
        hint = max(self._loops.seen(tenant), latest.size if latest is not None else 0)
        ledger_size = await aws.call(ledger_store.tail_seq_near, ddb, table, tenant, hint)
        sealed = latest.size if latest is not None else 0
        pending = max(0, ledger_size - sealed)
        lag = 0.0
        if pending:
            oldest = await aws.call(ledger_store.get_event, ddb, table, tenant, sealed + 1)
            if oldest is not None and oldest.ts:
                when = datetime.strptime(oldest.ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                lag = max(0.0, (datetime.now(UTC) - when).total_seconds())
        return sealer_pb2.GetSealStatusResponse(
            sealed_through=sealed, pending=pending, lag_seconds=lag, ledger_size=ledger_size
        )

    async def GetCheckpoint(
        self, request: sealer_pb2.GetCheckpointRequest, context: Context
    ) -> sealer_pb2.GetCheckpointResponse:
        tenant = current_tenant()
        if request.tree_size < 0:
            raise InvalidArgument.field("tree_size", "must not be negative")
        if request.tree_size == 0:
            record = await aws.call(seals.latest_checkpoint_record, self._ctx.ddb, self._ctx.table, tenant)
        else:
            record = await aws.call(
                seals.get_checkpoint_record, self._ctx.ddb, self._ctx.table, tenant, request.tree_size
            )
        if record is None:
            raise NotFound(f"no checkpoint of size {request.tree_size or 'any'}")
        return sealer_pb2.GetCheckpointResponse(checkpoint=checkpoint_message(record))

    async def ListCheckpoints(
        self, request: sealer_pb2.ListCheckpointsRequest, context: Context
    ) -> sealer_pb2.ListCheckpointsResponse:
        tenant = current_tenant()
        size = min(request.page_size or 100, MAX_PAGE)
        if request.page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        before: int | None = None
        if request.page_token:
            if not request.page_token.isdigit() or len(request.page_token) > 20:
                raise InvalidArgument.field("page_token", "is not a token this service issued")
            before = int(request.page_token)
        records, following = await aws.call(
            seals.list_checkpoint_records, self._ctx.ddb, self._ctx.table, tenant, before, size
        )
        return sealer_pb2.ListCheckpointsResponse(
            checkpoints=[checkpoint_message(r) for r in records],
            next_page_token=str(following) if following is not None else "",
        )

    async def GetVerifierKeys(
        self, request: sealer_pb2.GetVerifierKeysRequest, context: Context
    ) -> sealer_pb2.GetVerifierKeysResponse:
        tenant = current_tenant()
        return sealer_pb2.GetVerifierKeysResponse(
            verifier_keys=self._ctx.keys.verifier_strings(tenant), origin=self._ctx.keys.origin_of(tenant)
        )
