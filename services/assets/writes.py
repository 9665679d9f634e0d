"""Orders and agents' results of one tenant share reads and transactions.

Those that arrive while the tenant's previous group is in flight go together in the next one
(`AssetStore.write_group`: one BatchGetItem, one TransactWriteItems), so a burst of fifty isolations
costs a few round trips to the table instead of a hundred. Each asset is in a group at most once: a
second write of an asset waits for the next group, so an asset's writes commit in the order they arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

from services.assets.store import AssetStore, GroupedWrite
from services.kit import aws
from services.kit.errors import Unavailable
from services.kit.grouping import Grouper

# Three actions and two keys each: one TransactWriteItems (100 actions) and one BatchGetItem (100 keys).
MAX_WRITES_PER_GROUP = 33

AnswerT = TypeVar("AnswerT")


def select_writes(writes: Sequence[GroupedWrite[Any]], limit: int = MAX_WRITES_PER_GROUP) -> list[int]:
    """The queued writes the next group takes: in queue order, up to `limit`, each asset at most once."""
    taken: list[int] = []
    assets: set[str] = set()
    for index, write in enumerate(writes):
        if write.asset_id in assets:
            continue
        assets.add(write.asset_id)
        taken.append(index)
        if len(taken) == limit:
            break
    return taken


class AssetWrites:
    """Groups each tenant's concurrent orders and results; see the module docstring."""

    def __init__(self, store: AssetStore) -> None:
        self._store = store
        self._grouper: Grouper[GroupedWrite[Any], Any] = Grouper(self._run, select_writes)

    @property
    def groups(self) -> int:
        return self._grouper.groups

    async def write(self, tenant: str, write: GroupedWrite[AnswerT]) -> AnswerT:
        """The write's answer once its group committed; raises the DomainError it was refused with."""
        return cast(AnswerT, await self._grouper.submit(tenant, write))

    async def _run(self, tenant: str, writes: list[GroupedWrite[Any]]) -> list[Any]:
        answers = await aws.call(self._store.write_group, writes)
        # As `aws.call` does for a whole call: a lost connection is UNAVAILABLE, for the writes it failed.
        return [Unavailable(f"AWS endpoint unreachable: {a}") if isinstance(a, aws.UNAVAILABLE_ERRORS) else a
                for a in answers]
