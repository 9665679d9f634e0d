"""Full ledger walks run in the background, one per tenant at a time, so no page waits minutes for one.

A walk of a large ledger outlasts a page request; the Ledger page starts it, then polls for its state:
the ledger's progress messages (events checked of the chain's length, from which the rate and the time
left follow), then the verifier's answer. The answer stays until the next walk of the tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lifecyclezero.v1 import ledger_pb2

from services.console.operator_client import OperatorClient
from services.kit.errors import DomainError

FIRST_MESSAGE_SECONDS = 10.0


@dataclass
class Walk:
    started: float
    progress: ledger_pb2.VerificationProgress | None = None
    answer: ledger_pb2.VerifyLedgerResponse | None = None
    error: str = ""
    ended: float | None = None
    # Set once the ledger's first message (the chain's length) or the walk's end arrived.
    began: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    opening: Walk | None = None

    @property
    def finished(self) -> bool:
        return self.ended is not None

    @property
    def percent(self) -> int:
        """How much of the chain the walk checked so far (0 to 100; 100 for an empty one)."""
        if self.progress is None:
            return 0
        if not self.progress.chain_length:
            return 100
        return min(100, self.progress.events_checked * 100 // self.progress.chain_length)

    @property
    def events_per_second(self) -> int:
        if self.progress is None or self.progress.elapsed_seconds <= 0:
            return 0
        return int(self.progress.events_checked / self.progress.elapsed_seconds)

    @property
    def seconds_left(self) -> int | None:
        """The time left at the rate so far; None until there is a rate."""
        rate = self.events_per_second
        if self.progress is None or not rate:
            return None
        return max(0, self.progress.chain_length - self.progress.events_checked) // rate


class FullWalks:
    def __init__(self, client: OperatorClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._walks: dict[str, Walk] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, tenant: str, token: str) -> Walk:
        """Start the tenant's full walk with `token`: the walk as it stood when the ledger's first message
        arrived (the chain's length), or as it stands after FIRST_MESSAGE_SECONDS; a walk of the tenant
        already running is answered as it stands."""
        if tenant in self._tasks:
            return self._walks[tenant]
        walk = self._walks[tenant] = Walk(self._clock())
        self._tasks[tenant] = asyncio.create_task(self._run(tenant, token, walk))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(walk.began.wait(), FIRST_MESSAGE_SECONDS)
        return walk.opening or walk

    def of(self, tenant: str) -> Walk | None:
        return self._walks.get(tenant)

    def seconds(self, walk: Walk) -> int:
        """How long the walk ran, or has run so far."""
        return int((walk.ended if walk.ended is not None else self._clock()) - walk.started)

    async def _run(self, tenant: str, token: str, walk: Walk) -> None:
        try:
            async for update in self._client.watch_full_verification(token):
                if update.HasField("progress"):
                    walk.progress = update.progress
                else:
                    walk.answer = update.result
                if not walk.began.is_set():
                    walk.opening = replace(walk)
                    walk.began.set()
            if walk.answer is None:
                walk.error = "the ledger ended the walk without an answer"
        except DomainError as exc:
            walk.error = str(exc)
        finally:
            walk.ended = self._clock()
            walk.began.set()
            del self._tasks[tenant]
