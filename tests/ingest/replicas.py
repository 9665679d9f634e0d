"""Several ingest replicas on one stack: their addresses, and which one holds each asset's stream."""

from __future__ import annotations

from typing import Any

from services.ingest import keys
from services.ingest.health import ONLINE
from services.kit import aws
from services.kit.devstack import Stack
from tests.faults.helpers import Store

REPLICAS = ("ingest", "ingest-2", "ingest-3")


def public(stack: Stack) -> list[str]:
    return [stack.addresses[name] for name in REPLICAS]


def internal(stack: Stack) -> dict[str, str]:
    """Internal address -> replica name."""
    return {stack.addresses[f"{name}-internal"]: name for name in REPLICAS}


def holders(stack: Stack, tenant: str, asset_ids: list[str]) -> dict[str, str]:
    """asset id -> name of the replica its agent item names as the holder of a live stream (consistent reads)."""
    store, names = Store(stack), internal(stack)
    out = {}
    for start in range(0, len(asset_ids), 100):
        pending: Any = [aws.to_item({"PK": keys.agent_pk(tenant), "SK": keys.agent_sk(a)})
                        for a in asset_ids[start:start + 100]]
        while pending:
            got = store.ddb.batch_get_item(RequestItems={store.table: {
                "Keys": pending, "ConsistentRead": True,
                "ProjectionExpression": "asset_id, conn_state, conn_replica"}})
            for item in map(aws.from_item, got["Responses"].get(store.table, [])):
                if item.get("conn_state") == ONLINE and item.get("conn_replica") in names:
                    out[str(item["asset_id"])] = names[str(item["conn_replica"])]
            pending = got.get("UnprocessedKeys", {}).get(store.table, {}).get("Keys", [])
    return out


def all_held(stack: Stack, tenant: str, asset_ids: list[str],
             among: tuple[str, ...] = REPLICAS) -> dict[str, str] | None:
    """`holders` once every one of the assets has a live stream recorded on one of `among`, else None."""
    found = holders(stack, tenant, asset_ids)
    return found if len(found) == len(asset_ids) and set(found.values()) <= set(among) else None
