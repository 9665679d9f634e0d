"""Helpers the embedded endpoint's comparisons with released moto share."""

from __future__ import annotations

from typing import Any

TABLE = "lifecyclezero"
_ANSWER = ("Items", "Count", "ScannedCount", "LastEvaluatedKey", "ConsumedCapacity")
# Pages compared at each end of a walk of one-item pages (`query_pages`' `ends`).
ONE_ITEM_WALK_ENDS = 20


def query_pages(client: Any, ends: int | None = None, **query: Any) -> list[dict[str, Any]]:
    """Every page of a Query, each as its Items, Count, ScannedCount, LastEvaluatedKey and ConsumedCapacity,
    and the body as it came over the wire (`Body`).

    With `ends`, the first `ends` pages and the last ones only: a walk of a few hundred one-item pages
    repeats itself in between, and where a page's boundary can go wrong is at the first and the last
    matches. The last pages start where the same Query the other way round, limited to `ends` + 1
    items, stops (asked of the same client)."""
    bodies: list[bytes] = []

    def keep_body(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(response_dict["body"])

    def walk(start: Any, most: int | None) -> list[dict[str, Any]]:
        pages: list[dict[str, Any]] = []
        while most is None or len(pages) < most:
            got = client.query(TableName=TABLE, **query, **({"ExclusiveStartKey": start} if start else {}))
            pages.append({**{k: got.get(k) for k in _ANSWER}, "Body": bodies[-1]})
            start = got.get("LastEvaluatedKey")
            if not start:
                break
        return pages

    client.meta.events.register("before-parse.dynamodb.Query", keep_body)
    try:
        pages = walk(None, ends)
        if ends is None or not pages[-1]["LastEvaluatedKey"]:
            return pages
        backward = {**query, "ScanIndexForward": not query.get("ScanIndexForward", True), "Limit": ends + 1}
        tail_start = client.query(TableName=TABLE, **backward).get("LastEvaluatedKey")
        return pages + walk(tail_start or pages[-1]["LastEvaluatedKey"], None)
    finally:
        client.meta.events.unregister("before-parse.dynamodb.Query", keep_body)


def sets_sorted(value: Any) -> Any:
    """`value` with the members of every set attribute sorted, since DynamoDB keeps no order in a set."""
    if isinstance(value, dict):
        return {k: sorted(v) if k in ("SS", "NS", "BS") else sets_sorted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sets_sorted(v) for v in value]
    return value
