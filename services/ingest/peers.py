"""Calls from one ingest replica to another's internal port, with this process's own service token.

Used once per nudge or revocation that reached a replica not holding the asset's stream: it goes on to
the replica the agent item names. The callee knows a peer by its principal (the `ingest` service) and
never forwards again, so a message crosses at most one hop.
"""

from __future__ import annotations

import collections

import grpc
from lifecyclezero.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

from services.kit import clients
from services.kit.errors import DomainError, Unavailable
from services.kit.interceptors import error_class_for
from services.kit.settings import ServerSettings

# The ingest certificate names the service, not the pod IPs replicas reach each other at.
PEER_TLS_NAME = "ingest"
FORWARD_TIMEOUT_SECONDS = 2.0
# Replicas come and go with the autoscaler: channels to the least recently used ones are closed.
MAX_PEER_CHANNELS = 32


def _peer_error(address: str, exc: grpc.aio.AioRpcError) -> DomainError:
    cls = error_class_for(exc.code()) or Unavailable
    return cls(f"ingest replica {address}: {exc.details() or exc.code().name}")


class Peers:
    def __init__(self, settings: ServerSettings, timeout: float = FORWARD_TIMEOUT_SECONDS) -> None:
        self._settings = settings
        self._timeout = timeout
        self._channels: collections.OrderedDict[str, grpc.aio.Channel] = collections.OrderedDict()
        self.forwarded = 0

    async def _stub(self, address: str) -> ingest_pb2_grpc.IngestServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = clients.channel(address, self._settings, tls_name=PEER_TLS_NAME)
            self._channels[address] = channel
            while len(self._channels) > MAX_PEER_CHANNELS:
                _, oldest = self._channels.popitem(last=False)
                await oldest.close()
        self._channels.move_to_end(address)
        return ingest_pb2_grpc.IngestServiceStub(channel)

    async def deliver_command(self, address: str, tenant: str, command: common_pb2.Command) -> bool:
        """Hand `command` to the replica at `address`; True when a live stream there took it."""
        stub = await self._stub(address)
        try:
            reply = await stub.DeliverCommand(ingest_pb2.DeliverCommandRequest(command=command),
                                              metadata=clients.service_metadata(self._settings, tenant),
                                              timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(address, exc) from None
        self.forwarded += 1
        return bool(reply.delivered)

    async def recheck_agent(self, address: str, tenant: str, asset_id: str) -> None:
        """Ask the replica at `address` to read the asset's credential again now (it was just revoked)."""
        stub = await self._stub(address)
        try:
            await stub.RevokeAgent(ingest_pb2.RevokeAgentRequest(asset_id=asset_id),
                                   metadata=clients.service_metadata(self._settings, tenant),
                                   timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(address, exc) from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
