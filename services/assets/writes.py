"""Orders and agents' results of one tenant share reads and transactions.

Those that arrive while the tenant's groups are in flight go together in the next one
(`AssetStore.write_group`: one BatchGetItem, one TransactWriteItems), so a burst of fifty isolations
costs a few round trips to the table instead of a hundred. Two groups of a tenant may be in flight at
once, so one group's reads and preparation overlap the other's transaction.

An asset's writes commit in the order they arrived: only the first queued write of an asset may join a
group, and none while a group in flight holds a write of that asset (so two groups never touch the same
asset, and neither cancels the other on it). Among the writes that may go, new orders go first and an
agent's result waits for a group without them: an operator (or a policy) waits in each order's call,
while a result's order is already durable and delivered, so under a burst the results' writes stay out
of the orders' groups instead of making them larger and pushing orders into a later one. The wait is
bounded: a result queued for `RESULT_WAIT_BOUND_SECONDS` goes before any order, because ingest gives up
on a result after a few seconds (the agent then sends it again only after ten).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from services.assets.store import AssetStore, GroupedWrite
from services.kit import aws
from services.kit.errors import Unavailable
from services.kit.grouping import Grouper

# Three actions and two keys each: one TransactWriteItems (100 actions) and one BatchGetItem (100 keys).
MAX_WRITES_PER_GROUP = 33
GROUPS_IN_FLIGHT = 2
# A result waits behind new orders at most this long (ingest gives up on it after 5 s).
RESULT_WAIT_BOUND_SECONDS = 1.0

AnswerT = TypeVar("AnswerT")


def select_writes(writes: Sequence[GroupedWrite[Any]], in_flight: Sequence[GroupedWrite[Any]] = (),
                  limit: int = MAX_WRITES_PER_GROUP, now: float | None = None) -> list[int]:
    """The queued writes the next group takes, up to `limit`, each kind in queue order.

    Of the first queued write of each asset that no group in flight holds: the results that waited
    `RESULT_WAIT_BOUND_SECONDS`, then the orders; the other results only when no order may go.
    """
    now = time.monotonic() if now is None else now
    held = {write.asset_id for write in in_flight}
    eligible: list[int] = []
    for index, write in enumerate(writes):
        if write.asset_id not in held:
            eligible.append(index)
        held.add(write.asset_id)
    overdue: list[int] = []
    orders: list[int] = []
    waiting: list[int] = []
    for index in eligible:
        write = writes[index]
        if not write.confirms:
            orders.append(index)
        elif now - write.queued_at >= RESULT_WAIT_BOUND_SECONDS:
            overdue.append(index)
        else:
            waiting.append(index)
    return sorted((overdue + (orders or waiting))[:limit])


class AssetWrites:
    """Groups each tenant's concurrent orders and results; see the module docstring."""

    def __init__(self, store: AssetStore) -> None:
        self._store = store
        self._grouper: Grouper[GroupedWrite[Any], Any] = Grouper(self._run, select_writes, GROUPS_IN_FLIGHT)

    @property
    def groups(self) -> int:
        return self._grouper.groups

    async def quiet(self, tenant: str) -> None:
        """Return once none of the tenant's orders and results is queued or being written."""
        await self._grouper.quiet(tenant)

    async def write(self, tenant: str, write: GroupedWrite[AnswerT]) -> AnswerT:
        """The write's answer once its group committed; raises the DomainError it was refused with."""
        return cast(AnswerT, await self._grouper.submit(tenant, write))

    async def _run(self, tenant: str, writes: list[GroupedWrite[Any]]) -> list[Any]:
        answers = await aws.call(self._store.write_group, writes)
        # As `aws.call` does for a whole call: a lost connection is UNAVAILABLE, for the writes it failed.
        return [Unavailable(f"AWS endpoint unreachable: {a}") if isinstance(a, aws.UNAVAILABLE_ERRORS) else a
                for a in answers]
