"""The embedded endpoint's writes answer as released moto's: conditions, item sizes and failed transactions.

The endpoint keeps a condition expression's tokens by its text, sizes a new item once instead of once
per attribute, keeps a condition's parsed tree by its text, names and values, and puts back what a
failed transaction changed from the items themselves
(`moto_endpoint._patch_condition_lexing`, `_patch_condition_parsing`, `_patch_item_sizing`,
`_transact_write_items`); released moto
(tests/kit/conftest.py) does none of that. Every expression runs several times with other values, so
kept tokens or trees that a request changed would show in a later answer.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from services.kit import aws

TABLE = "lifecyclezero"
PARTITION = "transactions"

_CONDITIONS: list[tuple[str, dict[str, Any]]] = [
    ("attribute_not_exists(SK)", {}),
    ("attribute_exists(SK) AND #status = :s", {":s": "ACTIVE"}),
    ("attribute_exists(SK) AND #status = :s", {":s": "ISOLATED"}),
    ("NOT #status IN (:s, :t) OR version < :v", {":s": "ACTIVE", ":t": "GONE", ":v": 3}),
    ("NOT #status IN (:s, :t) OR version < :v", {":s": "GONE", ":t": "LOST", ":v": 0}),
    ("begins_with(#status, :s) AND size(tags) > :v", {":s": "ACT", ":v": 1}),
    ("(version BETWEEN :v AND :w) AND attribute_type(tags, :t)", {":v": 1, ":w": 2, ":t": "SS"}),
    # Refused, each with the error moto gives: an unknown function, a dangling operator, a name not given.
    ("attribute_nonsense(SK)", {}),
    ("version < ", {}),
    ("#nope = :v", {":v": 1}),
]


def _answer(client: Any, actions: list[dict[str, Any]]) -> dict[str, Any]:
    """The transaction's outcome: committed, or its error code, message and cancellation reasons."""
    try:
        client.transact_write_items(TransactItems=actions)
    except botocore.exceptions.ClientError as error:
        reasons = [r["Code"] for r in error.response.get("CancellationReasons", [])]
        code = error.response["Error"]["Code"]
        # moto fails an unparsable condition with a 500, whose page its two servers word differently.
        message = "" if code == "500" else error.response["Error"]["Message"]
        return {"error": code, "message": message, "reasons": reasons}
    return {"committed": True}


def _items(client: Any) -> list[dict[str, Any]]:
    got = client.query(TableName=TABLE, KeyConditionExpression="PK = :p", ConsistentRead=True,
                       ExpressionAttributeValues=aws.to_item({":p": PARTITION}))
    return sorted(got["Items"], key=lambda item: item["SK"]["S"])


def _reset(client: Any) -> None:
    for item in _items(client):
        client.delete_item(TableName=TABLE, Key={"PK": item["PK"], "SK": item["SK"]})
    client.put_item(TableName=TABLE, Item=aws.to_item(
        {"PK": PARTITION, "SK": "asset", "status": "ACTIVE", "version": 1, "tags": {"a", "b"}}))


def _guarded(sk: str, condition: str, values: dict[str, Any], round_: int) -> list[dict[str, Any]]:
    update: dict[str, Any] = {
        "TableName": TABLE, "Key": aws.to_item({"PK": PARTITION, "SK": sk}),
        "UpdateExpression": "SET touched = :round", "ConditionExpression": condition,
        "ExpressionAttributeValues": aws.to_item({**values, ":round": round_})}
    if "#status" in condition:
        update["ExpressionAttributeNames"] = {"#status": "status"}
    return [{"Update": update},
            {"Put": {"TableName": TABLE, "Item": aws.to_item({"PK": PARTITION, "SK": f"record-{round_}"}),
                     "ConditionExpression": "attribute_not_exists(SK)"}}]


@pytest.mark.parametrize("sk", ["asset", "absent"])
def test_each_condition_decides_as_released_moto_decides(ddb: Any, released_moto: Any, sk: str) -> None:
    """Every condition of the list, three times over as the table changes, commits or cancels as released moto."""
    answers: dict[str, list[Any]] = {}
    for name, client in (("embedded", ddb), ("released", released_moto)):
        _reset(client)
        seen = answers.setdefault(name, [])
        for round_ in range(3):
            for number, (condition, values) in enumerate(_CONDITIONS):
                seen.append(_answer(client, _guarded(sk, condition, values, round_ * 100 + number)))
                seen.append(_items(client))
    assert answers["embedded"] == answers["released"]
    assert {"committed": True} in answers["embedded"]
    assert any("ConditionalCheckFailed" in a.get("reasons", []) for a in answers["embedded"] if isinstance(a, dict))


@pytest.mark.parametrize("padding", [404_000, 404_980, 405_000, 406_000])
def test_an_item_near_the_size_limit_is_taken_or_refused_as_released_moto_decides(
        ddb: Any, released_moto: Any, padding: int) -> None:
    """An item of many attributes just under or over moto's size limit is written or refused as released moto does."""
    attributes = {f"a{i:02d}": "x" * (padding // 40) for i in range(40)}
    outcomes: list[tuple[str, Any]] = []
    for client in (ddb, released_moto):
        _reset(client)
        try:
            client.put_item(TableName=TABLE, Item=aws.to_item({"PK": PARTITION, "SK": "big", **attributes}))
            outcomes.append(("written", len(_items(client))))
        except botocore.exceptions.ClientError as error:
            outcomes.append((error.response["Error"]["Code"], error.response["Error"]["Message"]))
    assert outcomes[0] == outcomes[1]


def test_a_transaction_failing_after_its_first_writes_leaves_every_item_as_released_moto_leaves_it(
        ddb: Any, released_moto: Any) -> None:
    """A transaction whose last write is refused after an update, an overwrite and a delete puts all three back."""
    actions = [
        {"Update": {"TableName": TABLE, "Key": aws.to_item({"PK": PARTITION, "SK": "asset"}),
                    "UpdateExpression": "SET #status = :s ADD version :one REMOVE tags",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": aws.to_item({":s": "ISOLATED", ":one": 1})}},
        {"Put": {"TableName": TABLE, "Item": aws.to_item({"PK": PARTITION, "SK": "overwritten", "v": "new"})}},
        {"Delete": {"TableName": TABLE, "Key": aws.to_item({"PK": PARTITION, "SK": "deleted"})}},
        {"Update": {"TableName": TABLE, "Key": aws.to_item({"PK": PARTITION, "SK": "refused"}),
                    "UpdateExpression": "SET m.nope.deeper = :x", "ExpressionAttributeValues": aws.to_item({":x": 1})}},
    ]
    outcomes = []
    for client in (ddb, released_moto):
        _reset(client)
        for sk in ("overwritten", "deleted", "refused"):
            client.put_item(TableName=TABLE, Item=aws.to_item({"PK": PARTITION, "SK": sk, "v": "old", "m": {}}))
        before = _items(client)
        outcomes.append((_answer(client, actions)["error"], _items(client)))
        assert outcomes[-1][1] == before
    assert outcomes[0] == outcomes[1]


def test_a_filter_read_again_with_other_values_filters_as_released_moto(ddb: Any, released_moto: Any) -> None:
    """A filter read with changing values, and again after the items change, keeps what released moto keeps."""
    answers: dict[str, list[Any]] = {}
    for name, client in (("embedded", ddb), ("released", released_moto)):
        _reset(client)
        for n in range(6):
            client.put_item(TableName=TABLE, Item=aws.to_item({"PK": PARTITION, "SK": f"item-{n}", "version": n}))
        seen = answers.setdefault(name, [])
        for low in (1, 3, 1, 5):
            got = client.query(TableName=TABLE, KeyConditionExpression="PK = :p", FilterExpression="version >= :low",
                               ExpressionAttributeValues=aws.to_item({":p": PARTITION, ":low": low}))
            seen.append(sorted(item["SK"]["S"] for item in got["Items"]))
            client.put_item(TableName=TABLE, Item=aws.to_item({"PK": PARTITION, "SK": "item-0", "version": 9}))
    assert answers["embedded"] == answers["released"]
    assert answers["embedded"][0] != answers["embedded"][1]
