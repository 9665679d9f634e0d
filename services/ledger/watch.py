"""A full walk with its progress: VerifyLedger FULL run on the AWS thread pool, watched from the event loop.

The walk reports how many events it checked (`verification.verify_full`'s callback) into a `FullWalkWatch`;
the loop reads that count every PROGRESS_SECONDS and yields it with the chain's length, then the outcome.
A caller that goes away stops the walk at its next report, and the walk has ended before the generator
returns, so the per-tenant limit the caller holds around it is never released while a walk still runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from services.kit import aws
from services.ledger import store, verification
from services.ledger.domain import VerifyOutcome
from services.ledger.proofs import SealReader

PROGRESS_SECONDS = 0.5


@dataclass(frozen=True)
class Progress:
    """How far a full walk got: events checked of the chain's length when it started, after `elapsed_seconds`."""

    events_checked: int
    chain_length: int
    elapsed_seconds: float


class WalkStopped(Exception):
    """Raised on the walking thread when the caller went away."""


class FullWalkWatch:
    """The walking thread's count of checked events, read by the loop; setting `stop` ends the walk."""

    def __init__(self) -> None:
        self.checked = 0
        self.stop = threading.Event()

    def report(self, checked: int) -> None:
        if self.stop.is_set():
            raise WalkStopped
        self.checked = checked


async def watch_full_walk(seals: SealReader, tenant: str, pinned: Sequence[bytes],
                          every_seconds: float = PROGRESS_SECONDS) -> AsyncGenerator[Progress | VerifyOutcome, None]:
    """Progress of the tenant's full walk every `every_seconds` (the first at once), then its outcome."""
    started = time.monotonic()
    length = (await aws.call(store.read_tail, seals.ddb, seals.table, tenant)).seq
    watch = FullWalkWatch()
    walk = asyncio.ensure_future(aws.call(verification.verify_full, seals, tenant, pinned, watch.report))
    try:
        yield Progress(0, length, 0.0)
        while not (await asyncio.wait({walk}, timeout=every_seconds))[0]:
            yield Progress(watch.checked, length, time.monotonic() - started)
        yield walk.result()
    finally:
        if not walk.done():
            watch.stop.set()
            await asyncio.wait({walk})
            if not walk.cancelled():
                walk.exception()  # WalkStopped, expected: retrieved so that asyncio does not log it
