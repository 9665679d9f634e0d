"""Test agents: plain grpc.aio clients of IngestService, and helpers to enroll them on the stack."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from lifecyclezero.v1 import (
    assets_pb2,
    assets_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
)

from services.kit.devstack import Stack

# Keepalive that the ingest server accepts (it allows pings every 10 s or more).
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]


@dataclass
class IngestTenant:
    tenant: str
    admin_token: str
    enrollment_secret: str

    def admin(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.admin_token}")]


def create_tenant(stack: Stack) -> IngestTenant:
    """A fresh tenant made through AssetService.CreateTenant (admin token and enrollment secret)."""
    tenant = f"t-{secrets.token_hex(4)}"
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        reply = assets_pb2_grpc.AssetServiceStub(channel).CreateTenant(
            assets_pb2.CreateTenantRequest(tenant_id=tenant, display_name=tenant),
            metadata=[("authorization", f"Bearer {stack.bootstrap_token}")], timeout=10,
        )
    return IngestTenant(tenant, reply.admin_token, reply.enrollment_secret)


def enroll(address: str, tenant: IngestTenant, hostname: str = "ws-1", asset_id: str = "",
           agent_credential: str = "", reenroll_code: str = "") -> ingest_pb2.EnrollResponse:
    """Enroll through IngestService.Enroll: a new host, or `asset_id` with its credential or a re-enrollment code."""
    with grpc.insecure_channel(address) as channel:
        reply: ingest_pb2.EnrollResponse = ingest_pb2_grpc.IngestServiceStub(channel).Enroll(
            ingest_pb2.EnrollRequest(tenant_id=tenant.tenant, enrollment_secret=tenant.enrollment_secret,
                                     hostname=hostname, os="linux", agent_version="test", asset_id=asset_id,
                                     agent_credential=agent_credential, reenroll_code=reenroll_code,
                                     request_id=secrets.token_hex(8)),
            timeout=10,
        )
    return reply


def revoke_agent(stack: Stack, tenant: IngestTenant, asset_id: str) -> None:
    """RevokeAgent with the tenant's admin token, through the (first) ingest's internal port."""
    with grpc.insecure_channel(stack.addresses["ingest-internal"]) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).RevokeAgent(
            ingest_pb2.RevokeAgentRequest(asset_id=asset_id), metadata=tenant.admin(), timeout=10)


def digest_of(inventory: common_pb2.Inventory | None) -> str:
    data = inventory.SerializeToString(deterministic=True) if inventory is not None else b""
    return hashlib.sha256(data).hexdigest()


def heartbeat(seq: int, inventory: common_pb2.Inventory | None = None, digest: str = "",
              when: dt.datetime | None = None) -> ingest_pb2.ConnectRequest:
    hb = ingest_pb2.Heartbeat(seq=seq, inventory_digest=digest or digest_of(inventory))
    hb.observe_time.FromDatetime(when or dt.datetime.now(dt.UTC))
    if inventory is not None:
        hb.inventory.CopyFrom(inventory)
    return ingest_pb2.ConnectRequest(heartbeat=hb)


class TestAgent:
    """One Connect stream; responses are collected by a reader task so tests can wait with a timeout."""

    __test__ = False

    def __init__(self, address: str, tenant: str, asset_id: str, credential: str) -> None:
        self.address = address
        self.tenant = tenant
        self.asset_id = asset_id
        self.credential = credential
        self.responses: asyncio.Queue[ingest_pb2.ConnectResponse] = asyncio.Queue()
        self.channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: tuple[Any, ...] = ()

    async def start(self, first: ingest_pb2.ConnectRequest | None = None, last_acked_seq: int = 0) -> None:
        self.channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.call = ingest_pb2_grpc.IngestServiceStub(self.channel).Connect()
        self._reader = asyncio.create_task(self._read())
        await self.send(first or ingest_pb2.ConnectRequest(hello=ingest_pb2.Hello(
            tenant_id=self.tenant, asset_id=self.asset_id, agent_credential=self.credential,
            last_acked_seq=last_acked_seq, agent_version="test")))

    async def connect(self, last_acked_seq: int = 0) -> ingest_pb2.Welcome:
        await self.start(last_acked_seq=last_acked_seq)
        return (await self.next_of("welcome")).welcome

    async def _read(self) -> None:
        try:
            async for response in self.call:
                await self.responses.put(response)
        except grpc.aio.AioRpcError:
            pass
        finally:
            with contextlib.suppress(Exception):
                self.code = await self.call.code()
                self.details = await self.call.details()
                self.trailers = tuple(await self.call.trailing_metadata() or ())
            self.ended.set()

    async def send(self, request: ingest_pb2.ConnectRequest) -> None:
        """Write one message, unless the stream has already ended.

        A write that races the server's end of the stream makes grpc.aio replace the server's status
        with a local INTERNAL ("Internal error from Core"), so tests that expect an ending must stop
        writing once they have provoked it.
        """
        if self.ended.is_set():
            return
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self.call.write(request)

    async def next_of(self, kind: str, within: float = 10.0) -> ingest_pb2.ConnectResponse:
        """The next response of `kind` (welcome, ack or command), skipping the others."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} within {within}s")
            try:
                response = await asyncio.wait_for(self.responses.get(), remaining)
            except TimeoutError:
                raise TimeoutError(f"no {kind} within {within}s (stream {self.code})") from None
            if response.WhichOneof("message") == kind:
                return response

    async def ack_for(self, seq: int, within: float = 10.0) -> int:
        while True:
            ack = (await self.next_of("ack", within)).ack
            if not ack.command_id and ack.acked_seq >= seq:
                return ack.acked_seq

    async def no_ack(self, within: float) -> bool:
        """True when no heartbeat ack arrives within `within` seconds."""
        try:
            while True:
                ack = (await self.next_of("ack", within)).ack
                if not ack.command_id:
                    return False
        except TimeoutError:
            return True

    async def status(self, within: float = 10.0) -> grpc.StatusCode | None:
        await asyncio.wait_for(self.ended.wait(), within)
        return self.code

    def error_info(self) -> error_details_pb2.ErrorInfo:
        """The ErrorInfo detail of the status the stream ended with."""
        status = status_pb2.Status()
        for key, value in self.trailers:
            if key == "grpc-status-details-bin":
                status.ParseFromString(value)
        info = error_details_pb2.ErrorInfo()
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                detail.Unpack(info)
        return info

    async def close(self) -> None:
        if self.call is not None:
            self.call.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.channel is not None:
            await self.channel.close()
