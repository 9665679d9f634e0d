"""LedgerService: thin, decode -> call -> encode. The tenant comes from the credential, never a field."""

# ruff: noqa: N802 - method names are the RPC names gRPC dispatches on

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format, struct_pb2
from lifecyclezero.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc

from services.kit import aws
from services.kit.auth import Role, current_principal, current_tenant
from services.kit.errors import InvalidArgument, NotFound, ResourceExhausted
from services.kit.ids import validate_id
from services.ledger import export, proofs, store, verification, watch
from services.ledger.committer import GroupCommitter
from services.ledger.messages import checkpoint_message, verify_message, watch_message
from services.tlog.errors import TlogError
from services.tlog.events import parse_event

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
MAX_PAGE = 1000
DEFAULT_PAGE = 100


def event_message(event: store.StoredEvent) -> common_pb2.LedgerEvent:
    """A stored event as a message; the payload comes from the canonical bytes when they parse."""
    message = common_pb2.LedgerEvent(
        seq=event.seq, actor=event.actor, action=event.action, subject=event.subject, canonical=event.canonical
    )
    # A damaged item is still shown, with what its attributes say.
    with contextlib.suppress(TlogError, ValueError):
        message.payload.update(parse_event(event.canonical).payload)
    for field, value in (("prev_hash", event.prev_hash), ("hash", event.hash_hex)):
        with contextlib.suppress(ValueError):
            setattr(message, field, bytes.fromhex(value))
    if event.ts:
        try:
            when = datetime.strptime(event.ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            message.event_time.FromDatetime(when)
        except ValueError:
            pass
    return message


def _page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def _token(value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 20:
        raise InvalidArgument.field("page_token", "is not a token this service issued")
    return int(value)


def _payload(struct: struct_pb2.Struct) -> dict[str, Any]:
    return dict(json_format.MessageToDict(struct))


class TenantLimit:
    """At most `limit` expensive calls per tenant at once, so one tenant cannot take every worker thread."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._running: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, tenant: str, what: str) -> Iterator[None]:
        if self._running.get(tenant, 0) >= self._limit:
            raise ResourceExhausted(f"{self._limit} {what} calls of this tenant are already running; retry later",
                                    reason="TENANT_BUSY")
        self._running[tenant] = self._running.get(tenant, 0) + 1
        try:
            yield
        finally:
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, committer: GroupCommitter, seals: proofs.SealReader, expensive_per_tenant: int = 2) -> None:
        self._committer = committer
        self._seals = seals
        self._ddb = seals.ddb
        self._table = seals.table
        self._expensive = TenantLimit(expensive_per_tenant)

    async def AppendEvents(
        self, request: ledger_pb2.AppendEventsRequest, context: Context
    ) -> ledger_pb2.AppendEventsResponse:
        principal = current_principal()
        tenant = current_tenant()
        drafts = []
        for index, event in enumerate(request.events):
            actor = event.actor if principal.role is Role.SERVICE and event.actor else principal.actor
            if principal.role is not Role.SERVICE:
                store.check_not_reserved(event.action, index)
            if len(event.payload.ListFields()) and _depth(event.payload) > 64:
                raise InvalidArgument.field(f"events[{index}].payload", "is nested too deeply")
            drafts.append(store.EventDraft(actor, event.action, event.subject, _payload(event.payload)))
        seqs = await self._committer.append(tenant, drafts, request.request_id)
        return ledger_pb2.AppendEventsResponse(seqs=seqs)

    async def GetEvent(self, request: ledger_pb2.GetEventRequest, context: Context) -> ledger_pb2.GetEventResponse:
        tenant = current_tenant()
        if request.seq < 1:
            raise InvalidArgument.field("seq", "must be at least 1")
        event = await aws.call(store.get_event, self._ddb, self._table, tenant, request.seq)
        if event is None:
            raise NotFound(f"event {request.seq} does not exist")
        return ledger_pb2.GetEventResponse(event=event_message(event))

    async def ListEvents(
        self, request: ledger_pb2.ListEventsRequest, context: Context
    ) -> ledger_pb2.ListEventsResponse:
        tenant = current_tenant()
        if request.start_seq < 0:
            raise InvalidArgument.field("start_seq", "must not be negative")
        start = _token(request.page_token) or request.start_seq or 1
        events, following = await aws.call(
            store.list_events, self._ddb, self._table, tenant, start, _page_size(request.page_size)
        )
        return ledger_pb2.ListEventsResponse(
            events=[event_message(e) for e in events], next_page_token=str(following) if following else ""
        )

    async def ListAssetEvents(
        self, request: ledger_pb2.ListAssetEventsRequest, context: Context
    ) -> ledger_pb2.ListAssetEventsResponse:
        tenant = current_tenant()
        asset_id = validate_id("asset_id", request.asset_id)
        after = _token(request.page_token) or 0
        events, following = await aws.call(
            store.list_asset_events, self._ddb, self._table, tenant, asset_id, after, _page_size(request.page_size)
        )
        return ledger_pb2.ListAssetEventsResponse(
            events=[event_message(e) for e in events], next_page_token=str(following) if following else ""
        )

    async def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: Context
    ) -> ledger_pb2.GetInclusionProofResponse:
        tenant = current_tenant()
        proof = await aws.call(proofs.inclusion, self._seals, tenant, request.seq, request.tree_size)
        return ledger_pb2.GetInclusionProofResponse(
            leaf_index=proof.index, tree_size=proof.size, hashes=proof.hashes, root_hash=proof.root
        )

    async def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: Context
    ) -> ledger_pb2.GetConsistencyProofResponse:
        tenant = current_tenant()
        hashes, _ = await aws.call(
            proofs.consistency, self._seals, tenant, request.first_tree_size, request.second_tree_size
        )
        return ledger_pb2.GetConsistencyProofResponse(hashes=hashes)

    async def ExportProof(
        self, request: ledger_pb2.ExportProofRequest, context: Context
    ) -> ledger_pb2.ExportProofResponse:
        tenant = current_tenant()
        data, event, record = await aws.call(proofs.export_proof, self._seals, tenant, request.seq)
        return ledger_pb2.ExportProofResponse(
            tlog_proof=data, entry=event.canonical, checkpoint=checkpoint_message(record), event=event_message(event)
        )

    async def ExportBundle(
        self, request: ledger_pb2.ExportBundleRequest, context: Context
    ) -> AsyncIterator[ledger_pb2.ExportBundleResponse]:
        tenant = current_tenant()
        with self._expensive.slot(tenant, "ExportBundle and full VerifyLedger"):
            chunks = export.export_files(self._seals, tenant, request.start_seq, request.end_seq)
            try:
                while (part := await aws.call(next, chunks, None)) is not None:
                    path, chunk, last = part
                    yield ledger_pb2.ExportBundleResponse(path=path, chunk=chunk, last_chunk=last)
            finally:
                await aws.call(chunks.close)

    async def VerifyLedger(
        self, request: ledger_pb2.VerifyLedgerRequest, context: Context
    ) -> ledger_pb2.VerifyLedgerResponse:
        tenant = current_tenant()
        since = request.mode == ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT
        pinned = list(request.pinned_checkpoints)
        if since:
            outcome = await aws.call(verification.verify, self._seals, tenant, since, pinned)
        else:
            with self._expensive.slot(tenant, "ExportBundle and full VerifyLedger"):
                outcome = await aws.call(verification.verify, self._seals, tenant, since, pinned)
        return verify_message(outcome, since)

    async def WatchFullVerification(
        self, request: ledger_pb2.WatchFullVerificationRequest, context: Context
    ) -> AsyncIterator[ledger_pb2.WatchFullVerificationResponse]:
        tenant = current_tenant()
        walk = watch.watch_full_walk(self._seals, tenant, list(request.pinned_checkpoints))
        # Closed inside the slot: a caller that goes away frees it only once the walk stopped.
        with self._expensive.slot(tenant, "ExportBundle and full VerifyLedger"):
            async with contextlib.aclosing(walk) as updates:
                async for update in updates:
                    yield watch_message(update)


def _depth(struct: struct_pb2.Struct) -> int:
    """Nesting depth of a Struct, checked before conversion so a hostile message cannot recurse deeply."""
    deepest = 1
    stack: list[tuple[Any, int]] = [(struct, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > 64:
            return depth
        values = node.fields.values() if isinstance(node, struct_pb2.Struct) else node.values
        for value in values:
            kind = value.WhichOneof("kind")
            if kind == "struct_value":
                stack.append((value.struct_value, depth + 1))
            elif kind == "list_value":
                stack.append((value.list_value, depth + 1))
    return deepest
