"""Helpers the embedded endpoint's comparisons with released moto share."""

from __future__ import annotations

from typing import Any

TABLE = "lifecyclezero"
_ANSWER = ("Items", "Count", "ScannedCount", "LastEvaluatedKey", "ConsumedCapacity")


def query_pages(client: Any, **query: Any) -> list[dict[str, Any]]:
    """Every page of a Query, each as its Items, Count, ScannedCount, LastEvaluatedKey and ConsumedCapacity,
    and the body as it came over the wire (`Body`)."""
    bodies: list[bytes] = []

    def keep_body(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(response_dict["body"])

    client.meta.events.register("before-parse.dynamodb.Query", keep_body)
    pages, start = [], None
    try:
        while True:
            got = client.query(TableName=TABLE, **query, **({"ExclusiveStartKey": start} if start else {}))
            pages.append({**{k: got.get(k) for k in _ANSWER}, "Body": bodies[-1]})
            start = got.get("LastEvaluatedKey")
            if not start:
                return pages
    finally:
        client.meta.events.unregister("before-parse.dynamodb.Query", keep_body)


def sets_sorted(value: Any) -> Any:
    """`value` with the members of every set attribute sorted, since DynamoDB keeps no order in a set."""
    if isinstance(value, dict):
        return {k: sorted(v) if k in ("SS", "NS", "BS") else sets_sorted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sets_sorted(v) for v in value]
    return value
