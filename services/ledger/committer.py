"""Group commit: AppendEvents calls of one tenant that arrive while a transaction is in flight are
queued and committed together in the next TransactWriteItems (up to 99 events).

One drain task per tenant with a queue (`services.kit.grouping`); the tail it last wrote is cached, so
a steady stream of appends costs one transaction per batch and no tail read. Another writer (a second
ledger replica, the assets service) makes the cached tail stale; the conditional puts then fail and
`store.append` re-reads the tail and retries, so correctness never depends on the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.kit import aws
from services.kit.grouping import Grouper
from services.ledger import store
from services.ledger.domain import take_batch


class GroupCommitter:
    """Appends per tenant, batching concurrent calls into shared transactions."""

    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table
        self._tails: dict[str, store.Tail | None] = {}
        self._grouper: Grouper[store.AppendGroup, list[int]] = Grouper(self._commit, _select)
        self.transactions = 0

    async def append(self, tenant: str, drafts: Sequence[store.EventDraft], request_id: str = "") -> list[int]:
        """Append one call's (validated) events; resolves when they are durable.

        A call whose RPC was cancelled while it waited is dropped, never written: its caller could not
        learn the seqs. (One cancelled during the write is committed; a retry with the same request_id
        then answers the original seqs.)
        """
        store.check_request(drafts, request_id)
        return await self._grouper.submit(tenant, store.AppendGroup(tuple(drafts), request_id))

    async def _commit(self, tenant: str, groups: list[store.AppendGroup]) -> list[list[int]]:
        try:
            seqs, self._tails[tenant] = await aws.call(store.append, self._ddb, self._table, tenant, groups,
                                                       tail=self._tails.get(tenant))
        except Exception:
            self._tails[tenant] = None
            raise
        self.transactions += 1
        return seqs


def _select(groups: Sequence[store.AppendGroup], in_flight: Sequence[store.AppendGroup]) -> range:
    # One group at a time (the Grouper's default): each appends after the tail the last one wrote.
    return range(take_batch([(len(g.drafts), g.request_id) for g in groups]))
