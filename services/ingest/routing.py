"""Nudges and revocations reach the replica that holds the asset's stream, whichever replica took them.

Assets nudges one address (in Kubernetes the ingest Service, so any replica). The replica that takes
the nudge sends the command down its own stream of the asset when it holds one; else it reads the
holder's internal address from the agent item (written when the stream opened: no write per
heartbeat, one consistent read per nudge) and forwards the nudge once. A peer's forwarded nudge is
never forwarded again. When no live stream is reached (the holder died, the stream moved, nothing
recorded yet), the command goes down at the asset's next connect or the tenant's poll, as before.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lifecyclezero.v1 import common_pb2

from services.ingest import presence
from services.ingest.peers import Peers
from services.ingest.streams import Hub
from services.kit import aws, telemetry
from services.kit.errors import DomainError

log = logging.getLogger(__name__)
nudges = telemetry.meter.create_counter("lz.ingest.nudges", description="Nudged commands by delivery path")


class Path(enum.Enum):
    LOCAL = "local"
    FORWARDED = "forwarded"
    NOT_HELD = "not_held"


@dataclass(frozen=True)
class Delivery:
    """How one nudged command went: the path, and the replica whose stream took it ("" when none did)."""

    path: Path
    replica: str = ""

    @property
    def delivered(self) -> bool:
        return self.path is not Path.NOT_HELD


def forward_target(holder: presence.StreamHolder | None, own_address: str) -> str:
    """The replica to forward to: the recorded holder of a live stream, unless unknown or this very replica."""
    if holder is None or not holder.online or not holder.replica or holder.replica == own_address:
        return ""
    return holder.replica


class Router:
    def __init__(self, hub: Hub, peers: Peers, ddb: Any, table: str, own_address: str) -> None:
        self._hub = hub
        self._peers = peers
        self._ddb = ddb
        self._table = table
        self._own = own_address

    async def deliver(self, tenant: str, command: common_pb2.Command, from_peer: bool) -> Delivery:
        """Send `command` down the asset's live stream, here or (once) on the replica holding it."""
        if self._hub.deliver(tenant, command):
            delivery = Delivery(Path.LOCAL, self._own)
        elif from_peer or not self._own:
            delivery = Delivery(Path.NOT_HELD)
        else:
            delivery = await self._forward(tenant, command)
        nudges.add(1, {"path": delivery.path.value, "from_peer": from_peer})
        log.info("command nudged", extra={"tenant": tenant, "asset_id": command.asset_id,
                                          "command_id": command.command_id, "path": delivery.path.value,
                                          "replica": delivery.replica, "from_peer": from_peer})
        return delivery

    async def deliver_many(self, tenant: str, commands: Sequence[common_pb2.Command],
                           from_peer: bool) -> list[Delivery]:
        """`deliver` for each command, answered in order; the forwards (one DeliverCommand each) run concurrently."""
        return list(await asyncio.gather(*(self.deliver(tenant, command, from_peer) for command in commands)))

    async def _forward(self, tenant: str, command: common_pb2.Command) -> Delivery:
        target = await self._holder(tenant, command.asset_id)
        if not target:
            return Delivery(Path.NOT_HELD)
        try:
            delivered = await self._peers.deliver_command(target, tenant, command)
        except DomainError as error:
            log.warning("nudge not forwarded; the poll or the next connect sends the command",
                        extra={"command_id": command.command_id, "replica": target, "error": error.message})
            return Delivery(Path.NOT_HELD)
        return Delivery(Path.FORWARDED, target) if delivered else Delivery(Path.NOT_HELD)

    async def revoke(self, tenant: str, asset_id: str, from_peer: bool) -> None:
        """Revoke the credential and end the stream, here at once and on the holding replica at once."""
        if from_peer:
            # The peer wrote the revocation; this replica reads the credential itself before ending anything.
            await self._hub.recheck_stream(tenant, asset_id)
            return
        held_here = self._hub.holds(tenant, asset_id)
        await self._hub.revoke(tenant, asset_id)
        if not held_here:
            await self._recheck_on_holder(tenant, asset_id)

    async def _recheck_on_holder(self, tenant: str, asset_id: str) -> None:
        """Best effort once the revocation is written: a failure here must not fail the revocation."""
        target = ""
        try:
            target = await self._holder(tenant, asset_id) if self._own else ""
            if target:
                await self._peers.recheck_agent(target, tenant, asset_id)
        except DomainError as error:
            log.warning("credential change not forwarded; the holder's periodic re-check ends the stream",
                        extra={"asset_id": asset_id, "replica": target, "error": error.message})

    async def _holder(self, tenant: str, asset_id: str) -> str:
        holder = await aws.call(presence.stream_holder, self._ddb, self._table, tenant, asset_id)
        return forward_target(holder, self._own)
