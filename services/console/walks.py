"""Full ledger walks run in the background, one per tenant at a time, so no page waits minutes for one.

A walk of a large ledger outlasts a page request; the Ledger page starts it, then polls for its state
("running for N s", then the verifier's answer). The answer stays until the next walk of the tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from lifecyclezero.v1 import ledger_pb2

from services.console.operator_client import OperatorClient
from services.kit.errors import DomainError


@dataclass
class Walk:
    started: float
    answer: ledger_pb2.VerifyLedgerResponse | None = None
    error: str = ""
    ended: float | None = None

    @property
    def finished(self) -> bool:
        return self.ended is not None


class FullWalks:
    def __init__(self, client: OperatorClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._walks: dict[str, Walk] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, tenant: str, token: str) -> None:
        """Start the tenant's full walk with `token`, unless one is running."""
        if tenant in self._tasks:
            return
        walk = Walk(self._clock())
        self._walks[tenant] = walk
        self._tasks[tenant] = asyncio.create_task(self._run(tenant, token, walk))

    def of(self, tenant: str) -> Walk | None:
        return self._walks.get(tenant)

    def seconds(self, walk: Walk) -> int:
        """How long the walk ran, or has run so far."""
        return int((walk.ended if walk.ended is not None else self._clock()) - walk.started)

    async def _run(self, tenant: str, token: str, walk: Walk) -> None:
        try:
            walk.answer = await self._client.verify_ledger(token, full=True)
        except DomainError as exc:
            walk.error = str(exc)
        finally:
            walk.ended = self._clock()
            del self._tasks[tenant]
