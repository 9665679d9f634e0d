"""Calls to assets, ledger and sealer with the signed-in operator's own token; errors become domain errors.

The console holds no credential of its own: each call presents the token of the session it serves, so
the peers enforce roles, tenancy and revocation exactly as they do for `lz`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from lifecyclezero.v1 import (
    assets_pb2,
    assets_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    sealer_pb2,
    sealer_pb2_grpc,
)

from services.console.settings import PeerSettings
from services.kit import clients, telemetry
from services.kit.errors import DomainError, Unavailable
from services.kit.interceptors import error_class_for
from services.kit.settings import ServerSettings

T = TypeVar("T")
READY_TIMEOUT_SECONDS = 2.0
CUSTODY_PAGE_SIZE = 500


def as_domain_error(exc: grpc.aio.AioRpcError) -> DomainError:
    """The domain error of a failed call; anything unexpected counts as Unavailable."""
    cls = error_class_for(exc.code()) or Unavailable
    return cls(exc.details() or exc.code().name)


class OperatorClient:
    """One channel per peer, shared by every session; the token is per call."""

    def __init__(self, peers: PeerSettings, server: ServerSettings) -> None:
        self._channels = [clients.channel(address, server) for address in
                          (peers.assets_address, peers.ledger_address, peers.sealer_address)]
        self._assets = assets_pb2_grpc.AssetServiceStub(self._channels[0])
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(self._channels[1])
        self._sealer = sealer_pb2_grpc.SealerServiceStub(self._channels[2])
        self._timeout = peers.call_timeout

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, token: str) -> T:
        try:
            return await method(request, metadata=_metadata(token), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise as_domain_error(exc) from None

    async def who_am_i(self, token: str) -> assets_pb2.WhoAmIResponse:
        return await self._call(self._assets.WhoAmI, assets_pb2.WhoAmIRequest(), token)

    async def list_assets(self, token: str, request: assets_pb2.ListAssetsRequest) -> assets_pb2.ListAssetsResponse:
        return await self._call(self._assets.ListAssets, request, token)

    async def get_asset(self, token: str, asset_id: str) -> common_pb2.Asset:
        reply = await self._call(self._assets.GetAsset, assets_pb2.GetAssetRequest(asset_id=asset_id), token)
        asset: common_pb2.Asset = reply.asset
        return asset

    async def custody_log(self, token: str, asset_id: str) -> list[common_pb2.LedgerEvent]:
        """The asset's custody events in seq order, every page (the newest are on the last one)."""
        events: list[common_pb2.LedgerEvent] = []
        request = assets_pb2.GetCustodyLogRequest(asset_id=asset_id, page_size=CUSTODY_PAGE_SIZE)
        while True:
            reply = await self._call(self._assets.GetCustodyLog, request, token)
            events.extend(reply.events)
            if not reply.next_page_token:
                return events
            request.page_token = reply.next_page_token

    async def isolate(self, token: str, asset_id: str, reason: str, request_id: str) -> None:
        request = assets_pb2.IsolateAssetRequest(asset_id=asset_id, justification=reason, request_id=request_id)
        await self._call(self._assets.IsolateAsset, request, token)

    async def release(self, token: str, asset_id: str, reason: str, request_id: str) -> None:
        request = assets_pb2.ReleaseAssetRequest(asset_id=asset_id, justification=reason, request_id=request_id)
        await self._call(self._assets.ReleaseAsset, request, token)

    async def list_alerts(self, token: str, request: assets_pb2.ListAlertsRequest) -> assets_pb2.ListAlertsResponse:
        return await self._call(self._assets.ListAlerts, request, token)

    async def fleet_summary(self, token: str) -> assets_pb2.GetFleetSummaryResponse:
        return await self._call(self._assets.GetFleetSummary, assets_pb2.GetFleetSummaryRequest(), token)

    async def export_proof(self, token: str, seq: int) -> ledger_pb2.ExportProofResponse:
        return await self._call(self._ledger.ExportProof, ledger_pb2.ExportProofRequest(seq=seq), token)

    async def verifier_keys(self, token: str) -> list[str]:
        reply = await self._call(self._sealer.GetVerifierKeys, sealer_pb2.GetVerifierKeysRequest(), token)
        return list(reply.verifier_keys)

    async def seal_status(self, token: str) -> sealer_pb2.GetSealStatusResponse:
        return await self._call(self._sealer.GetSealStatus, sealer_pb2.GetSealStatusRequest(), token)

    async def verify_since_checkpoint(self, token: str) -> ledger_pb2.VerifyLedgerResponse:
        request = ledger_pb2.VerifyLedgerRequest(mode=ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT)
        return await self._call(self._ledger.VerifyLedger, request, token)

    async def watch_full_verification(self, token: str) -> AsyncIterator[ledger_pb2.WatchFullVerificationResponse]:
        """A full walk's progress messages as the ledger streams them, then its result."""
        call = self._ledger.WatchFullVerification(ledger_pb2.WatchFullVerificationRequest(),
                                                  metadata=_metadata(token), timeout=self._timeout * 30)
        try:
            async for update in call:
                yield update
        except grpc.aio.AioRpcError as exc:
            raise as_domain_error(exc) from None

    async def export_bundle(self, token: str) -> AsyncIterator[ledger_pb2.ExportBundleResponse]:
        """The chunks of a verification bundle of the whole ledger, as the ledger streams them."""
        call = self._ledger.ExportBundle(ledger_pb2.ExportBundleRequest(), metadata=_metadata(token),
                                         timeout=self._timeout * 30)
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as exc:
            raise as_domain_error(exc) from None

    async def list_tokens(self, token: str, page_token: str) -> assets_pb2.ListTokensResponse:
        request = assets_pb2.ListTokensRequest(page_size=100, page_token=page_token)
        return await self._call(self._assets.ListTokens, request, token)

    async def create_token(self, token: str, role: assets_pb2.Role.ValueType, description: str,
                           request_id: str) -> assets_pb2.CreateTokenResponse:
        request = assets_pb2.CreateTokenRequest(role=role, description=description, request_id=request_id)
        return await self._call(self._assets.CreateToken, request, token)

    async def revoke_token(self, token: str, token_id: str, request_id: str) -> None:
        request = assets_pb2.RevokeTokenRequest(token_id=token_id, request_id=request_id)
        await self._call(self._assets.RevokeToken, request, token)

    async def enrollment_secret(self, token: str) -> assets_pb2.GetEnrollmentSecretResponse:
        return await self._call(self._assets.GetEnrollmentSecret, assets_pb2.GetEnrollmentSecretRequest(), token)

    async def rotate_enrollment_secret(self, token: str, request_id: str) -> assets_pb2.RotateEnrollmentSecretResponse:
        request = assets_pb2.RotateEnrollmentSecretRequest(request_id=request_id)
        return await self._call(self._assets.RotateEnrollmentSecret, request, token)

    async def assets_serving(self) -> bool:
        """Whether the assets channel connects (readiness: the console is useless without it)."""
        try:
            await asyncio.wait_for(self._channels[0].channel_ready(), READY_TIMEOUT_SECONDS)
        except (TimeoutError, grpc.aio.AioRpcError):
            return False
        return True


def _metadata(token: str) -> list[tuple[str, str]]:
    return telemetry.inject([("authorization", f"Bearer {token}")])


