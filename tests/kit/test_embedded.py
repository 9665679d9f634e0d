"""The embedded AWS endpoint behaves like DynamoDB where the ledger depends on it."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import botocore.exceptions
import pytest

from services.kit import aws

TABLE = "lifecyclezero"


def _put(pk: str, sk: str, **extra: Any) -> dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": aws.to_item({"PK": pk, "SK": sk, **extra}),
                    "ConditionExpression": "attribute_not_exists(SK)"}}


def _count(ddb: Any, pk: str) -> int:
    got = ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p",
                    ExpressionAttributeValues=aws.to_item({":p": pk}), Select="COUNT", ConsistentRead=True)
    return int(got["Count"])


def test_a_cancelled_transaction_writes_nothing(ddb: Any) -> None:
    """When one condition fails, none of the transaction's items are written."""
    ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": "emb-a", "SK": "taken"}))
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        ddb.transact_write_items(TransactItems=[_put("emb-a", "new-1"), _put("emb-a", "taken"),
                                                _put("emb-a", "new-2")])
    assert aws.error_code(caught.value) == "TransactionCanceledException"
    reasons = [r["Code"] for r in caught.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed", "None"]
    assert _count(ddb, "emb-a") == 1


def test_a_cancelled_transaction_keeps_concurrent_writes(ddb: Any) -> None:
    """Writes committed by other requests while transactions are being cancelled all survive."""
    ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": "emb-b", "SK": "taken"}))
    stop = threading.Event()

    def cancel_forever() -> None:
        while not stop.is_set():
            with contextlib.suppress(botocore.exceptions.ClientError):
                ddb.transact_write_items(TransactItems=[_put("emb-b", f"x-{time.time_ns()}"), _put("emb-b", "taken")])

    canceller = threading.Thread(target=cancel_forever)
    canceller.start()
    try:
        for i in range(200):
            ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": "emb-c", "SK": f"item-{i}"}))
    finally:
        stop.set()
        canceller.join()
    assert _count(ddb, "emb-c") == 200
    assert _count(ddb, "emb-b") == 1
