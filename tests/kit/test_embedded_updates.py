"""The embedded endpoint's UpdateItem is moto's own: the same items and the same errors as released moto.

The endpoint keeps parsed update expressions by their text, finds which walker step takes a node by
the node's class once, copies trees node by node and looks reserved words up in a set
(`moto_endpoint._patch_update_expressions`); released moto (tests/kit/conftest.py) does none of that. Every
expression runs several times with other values and on other items, so a kept tree that a request
changed would show in a later answer.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from services.kit import aws

TABLE = "lifecyclezero"
PARTITION = "updates"

_UPDATES = [
    ("SET a = :x, b = :y REMOVE c", {":x": "one", ":y": 2}),
    ("SET a = :x, b = :y REMOVE c", {":x": "two", ":y": 3}),
    ("SET n = if_not_exists(n, :y) + :y, l = list_append(if_not_exists(l, :l), :l)", {":y": 1, ":l": ["x"]}),
    ("ADD hits :y, tags :s", {":y": 5, ":s": {"red", "blue"}}),
    ("DELETE tags :s", {":s": {"red"}}),
    ("SET m = :m", {":m": {"inside": {"deep": "v"}}}),
    ("SET m.inside.deep = :x, #alias = :y", {":x": "changed", ":y": 9}),
    ("SET ledger_seq = :y, chain_time = :x REMOVE GSI2PK, GSI2SK", {":y": 7, ":x": "2026-12-06T15:10:49Z"}),
    # Refused, each with the error moto gives: an overlap, two SET clauses, a key attribute, a missing value,
    # a path that is not there, a reserved word.
    ("SET a = :x, a = :x", {":x": "dup"}),
    ("SET a = :x SET b = :x", {":x": "twice"}),
    ("SET SK = :x", {":x": "key"}),
    ("SET a = :missing", {":x": "unused"}),
    ("SET m.nope.deeper = :x", {":x": "no path"}),
    ("SET status = :x", {":x": "a reserved word"}),
]


def _update(client: Any, sk: str, expression: str, values: dict[str, Any]) -> dict[str, Any]:
    """The item after the update (ALL_NEW), or the error's code and message."""
    names = {"#alias": "aliased"} if "#alias" in expression else {}
    used = {k: v for k, v in values.items() if k in expression}
    try:
        got = client.update_item(TableName=TABLE, Key=aws.to_item({"PK": PARTITION, "SK": sk}),
                                 UpdateExpression=expression, ReturnValues="ALL_NEW",
                                 **({"ExpressionAttributeValues": aws.to_item(used)} if used else {}),
                                 **({"ExpressionAttributeNames": names} if names else {}))
    except botocore.exceptions.ClientError as error:
        return {"error": error.response["Error"]["Code"], "message": error.response["Error"]["Message"]}
    return dict(got.get("Attributes", {}))


@pytest.mark.parametrize("sk", ["ITEM#new", "ITEM#existing"])
def test_each_update_gives_what_released_moto_gives(ddb: Any, released_moto: Any, sk: str) -> None:
    """Every expression of the list, twice in turn and on an item new or already there, answers as released moto."""
    for client in (ddb, released_moto):
        client.delete_item(TableName=TABLE, Key=aws.to_item({"PK": PARTITION, "SK": sk}))
        if sk == "ITEM#existing":
            client.put_item(TableName=TABLE, Item=aws.to_item({"PK": PARTITION, "SK": sk, "c": "there"}))
    for round_ in range(2):
        for expression, values in _UPDATES:
            embedded, released = (_update(client, sk, expression, values) for client in (ddb, released_moto))
            assert embedded == released, (round_, expression)
