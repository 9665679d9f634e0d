"""The embedded AWS endpoint behaves like DynamoDB and SQS where the services depend on it."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import botocore.exceptions
import pytest

from services.kit import aws
from services.kit.aws import AwsSettings
from tests.kit.helpers import sets_sorted

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


def _query(ddb: Any, **kwargs: Any) -> list[tuple[str, str]]:
    """Every page of a Query, as (PK, SK) pairs in the order DynamoDB returned them."""
    pages = ddb.get_paginator("query").paginate(TableName=TABLE, **kwargs)
    return [(item["PK"]["S"], item["SK"]["S"]) for page in pages for item in page["Items"]]


@pytest.fixture(scope="module")
def ranged(ddb: Any) -> str:
    """Three neighbouring partitions with sort keys s#01, s#02, s#03, s#10 and t#01, written out of order."""
    for pk in ("emb-q-1", "emb-q-2", "emb-q-10"):
        for sk in ("s#03", "t#01", "s#01", "s#10", "s#02"):
            ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": pk, "SK": sk}))
    return "emb-q-1"


@pytest.mark.parametrize(("condition", "values", "expected"), [
    ("", {}, ["s#01", "s#02", "s#03", "s#10", "t#01"]),
    ("SK = :a", {":a": "s#02"}, ["s#02"]),
    ("SK < :a", {":a": "s#03"}, ["s#01", "s#02"]),
    ("SK <= :a", {":a": "s#03"}, ["s#01", "s#02", "s#03"]),
    ("SK > :a", {":a": "s#03"}, ["s#10", "t#01"]),
    ("SK >= :a", {":a": "s#03"}, ["s#03", "s#10", "t#01"]),
    ("SK BETWEEN :a AND :b", {":a": "s#02", ":b": "s#10"}, ["s#02", "s#03", "s#10"]),
    ("begins_with(SK, :a)", {":a": "s#"}, ["s#01", "s#02", "s#03", "s#10"]),
    ("SK > :a", {":a": "u"}, []),
])
@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize("page_size", [1, 2, 100])
def test_a_query_returns_its_partitions_matching_items_in_key_order_on_every_page(
    ddb: Any, ranged: str, condition: str, values: dict[str, str], expected: list[str], forward: bool, page_size: int
) -> None:
    """A sort-key condition, either direction and any page size give the matching items of one partition only."""
    got = _query(ddb, KeyConditionExpression=" AND ".join(filter(None, ["PK = :p", condition])),
                 ExpressionAttributeValues=aws.to_item({":p": ranged, **values}), ScanIndexForward=forward,
                 PaginationConfig={"PageSize": page_size})
    assert got == [(ranged, sk) for sk in (expected if forward else expected[::-1])]


def test_a_query_of_a_missing_partition_is_empty(ddb: Any) -> None:
    """A Query of a partition that holds nothing returns nothing."""
    assert _query(ddb, KeyConditionExpression="PK = :p", ExpressionAttributeValues=aws.to_item({":p": "emb-q-3"})) == []


def test_a_limited_filtered_query_counts_the_limit_before_the_filter(ddb: Any, ranged: str) -> None:
    """As in DynamoDB, Limit bounds the items read, and the filter then drops some of them."""
    got = ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p", FilterExpression="SK <> :x",
                    ExpressionAttributeValues=aws.to_item({":p": ranged, ":x": "s#02"}), Limit=3)
    assert [item["SK"]["S"] for item in got["Items"]] == ["s#01", "s#03"]
    assert got["LastEvaluatedKey"]["SK"]["S"] == "s#03"


def test_an_index_query_sees_only_items_carrying_its_key(ddb: Any) -> None:
    """A GSI Query returns the items whose index key matches, in index order, and skips items without one."""
    for pk, index_key in (("emb-g-a", ("emb-g", "b")), ("emb-g-b", ("emb-g", "a")), ("emb-g-c", ("emb-g-other", "a"))):
        ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": pk, "SK": "1", "GSI1PK": index_key[0],
                                                        "GSI1SK": index_key[1]}))
    ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": "emb-g-d", "SK": "1"}))
    got = _query(ddb, IndexName="GSI1", KeyConditionExpression="GSI1PK = :g",
                 ExpressionAttributeValues=aws.to_item({":g": "emb-g"}), PaginationConfig={"PageSize": 1})
    assert got == [("emb-g-b", "1"), ("emb-g-a", "1")]


_EVERY_TYPE = {
    "PK": {"S": "emb-types"}, "SK": {"S": "1"},
    "text": {"S": "héllo"}, "count": {"N": "-12.50"}, "yes": {"BOOL": True}, "no": {"BOOL": False},
    "nothing": {"NULL": True}, "names": {"SS": ["a", "b"]}, "numbers": {"NS": ["1", "2.5"]},
    "blob": {"B": b"\x00\xffbinary"}, "blobs": {"BS": [b"\x01", b"\x02"]},
    "nested": {"M": {"list": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"BOOL": False}}}, {"B": b"\x03"}]},
                     "empty": {"M": {}}, "none": {"L": []}}},
}


def test_every_attribute_type_reads_back_exactly_as_written(ddb: Any) -> None:
    """GetItem, BatchGetItem and Query answer an item of every attribute type, nested ones too, unchanged."""
    ddb.put_item(TableName=TABLE, Item=_EVERY_TYPE)
    key = {"PK": _EVERY_TYPE["PK"], "SK": _EVERY_TYPE["SK"]}
    read = [
        ddb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"],
        ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key]}})["Responses"][TABLE][0],
        ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p",
                  ExpressionAttributeValues={":p": _EVERY_TYPE["PK"]})["Items"][0],
    ]
    assert [sets_sorted(item) for item in read] == [sets_sorted(_EVERY_TYPE)] * 3


@pytest.mark.parametrize("names", [("blob", "text"), tuple(sorted(set(_EVERY_TYPE) - {"PK", "SK"}))])
def test_a_projected_query_answers_the_named_attributes_exactly_as_written(ddb: Any, names: tuple[str, ...]) -> None:
    """A Query projecting top-level attributes (strings and bytes alone, or every type) answers those unchanged."""
    ddb.put_item(TableName=TABLE, Item=_EVERY_TYPE)
    aliases = {f"#a{i}": name for i, name in enumerate(names)}
    item = ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={
        ":p": _EVERY_TYPE["PK"]}, ProjectionExpression=", ".join([*aliases, "SK"]),
        ExpressionAttributeNames=aliases)["Items"][0]
    assert sets_sorted(item) == sets_sorted({k: v for k, v in _EVERY_TYPE.items() if k in {*names, "SK"}})


def _in_index(ddb: Any, value: str) -> list[str]:
    """The table partition keys a GSI1 Query for `value` returns."""
    return [pk for pk, _ in _query(ddb, IndexName="GSI1", KeyConditionExpression="GSI1PK = :g",
                                   ExpressionAttributeValues=aws.to_item({":g": value}))]


def test_an_index_query_follows_every_kind_of_write(ddb: Any) -> None:
    """Items put, updated in place, moved, deleted, batch-written or written in a transaction are where
    the index says after each write, even once the index has been queried before them."""
    ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": "emb-w-1", "SK": "1", "GSI1PK": "emb-w", "GSI1SK": "1"}))
    assert _in_index(ddb, "emb-w") == ["emb-w-1"]
    ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": "emb-w-2", "SK": "1", "GSI1PK": "emb-w", "GSI1SK": "2"}))
    assert _in_index(ddb, "emb-w") == ["emb-w-1", "emb-w-2"]
    ddb.update_item(TableName=TABLE, Key=aws.to_item({"PK": "emb-w-1", "SK": "1"}),
                    UpdateExpression="SET GSI1PK = :g", ExpressionAttributeValues=aws.to_item({":g": "emb-w-moved"}))
    assert (_in_index(ddb, "emb-w"), _in_index(ddb, "emb-w-moved")) == (["emb-w-2"], ["emb-w-1"])
    ddb.update_item(TableName=TABLE, Key=aws.to_item({"PK": "emb-w-2", "SK": "1"}), UpdateExpression="REMOVE GSI1PK")
    assert _in_index(ddb, "emb-w") == []
    ddb.update_item(TableName=TABLE, Key=aws.to_item({"PK": "emb-w-3", "SK": "1"}),
                    UpdateExpression="SET GSI1PK = :g, GSI1SK = :s",
                    ExpressionAttributeValues=aws.to_item({":g": "emb-w", ":s": "3"}))
    assert _in_index(ddb, "emb-w") == ["emb-w-3"]
    ddb.batch_write_item(RequestItems={TABLE: [
        {"PutRequest": {"Item": aws.to_item({"PK": "emb-w-4", "SK": "1", "GSI1PK": "emb-w", "GSI1SK": "4"})}},
        {"DeleteRequest": {"Key": aws.to_item({"PK": "emb-w-3", "SK": "1"})}},
    ]})
    assert _in_index(ddb, "emb-w") == ["emb-w-4"]
    ddb.transact_write_items(TransactItems=[
        _put("emb-w-5", "1", GSI1PK="emb-w", GSI1SK="5"),
        {"Update": {"TableName": TABLE, "Key": aws.to_item({"PK": "emb-w-1", "SK": "1"}),
                    "UpdateExpression": "SET GSI1PK = :g", "ExpressionAttributeValues": aws.to_item({":g": "emb-w"})}},
        {"Delete": {"TableName": TABLE, "Key": aws.to_item({"PK": "emb-w-4", "SK": "1"})}},
    ])
    assert (_in_index(ddb, "emb-w"), _in_index(ddb, "emb-w-moved")) == (["emb-w-1", "emb-w-5"], [])
    ddb.delete_item(TableName=TABLE, Key=aws.to_item({"PK": "emb-w-5", "SK": "1"}))
    assert _in_index(ddb, "emb-w") == ["emb-w-1"]


def test_a_cancelled_transaction_leaves_the_index_as_it_was(ddb: Any) -> None:
    """An index Query after a cancelled transaction sees the items as they were before it."""
    ddb.put_item(TableName=TABLE, Item=aws.to_item({"PK": "emb-x-1", "SK": "1", "GSI1PK": "emb-x", "GSI1SK": "1"}))
    assert _in_index(ddb, "emb-x") == ["emb-x-1"]
    with pytest.raises(botocore.exceptions.ClientError):
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": TABLE, "Key": aws.to_item({"PK": "emb-x-1", "SK": "1"}),
                        "UpdateExpression": "SET GSI1PK = :g",
                        "ExpressionAttributeValues": aws.to_item({":g": "emb-x-moved"})}},
            _put("emb-x-1", "1"),
        ])
    with pytest.raises(botocore.exceptions.ClientError):
        ddb.transact_write_items(TransactItems=[
            _put("emb-x-2", "1", GSI1PK="emb-x", GSI1SK="2"),
            {"ConditionCheck": {"TableName": TABLE, "Key": aws.to_item({"PK": "emb-x-1", "SK": "1"}),
                                "ConditionExpression": "attribute_not_exists(PK)"}},
        ])
    assert (_in_index(ddb, "emb-x"), _in_index(ddb, "emb-x-moved")) == (["emb-x-1"], [])


@pytest.fixture(scope="module")
def sqs(aws_settings: AwsSettings) -> Any:
    return aws.client(aws_settings, "sqs")


def _counts(sqs: Any, url: str) -> tuple[int, int]:
    """The queue's visible and in-flight message counts."""
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(got["ApproximateNumberOfMessages"]), int(got["ApproximateNumberOfMessagesNotVisible"])


def test_a_queue_counts_its_messages_between_sends(sqs: Any) -> None:
    """The message counts follow sends and receives, though a send does not compute them."""
    url = sqs.create_queue(QueueName="emb-counts")["QueueUrl"]
    for round_ in range(1, 21):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{round_}-{i}"}
                                                      for i in range(3)])
        sqs.send_message(QueueUrl=url, MessageBody=f"m{round_}")
        assert _counts(sqs, url) == (4 * round_, 0)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5, VisibilityTimeout=60)
    # The endpoint serves from a pool of threads: every one that sent must count again.
    assert {_counts(sqs, url) for _ in range(60)} == {(75, 5)}


def test_a_content_deduplicated_fifo_queue_keeps_one_of_equal_bodies(sqs: Any) -> None:
    """A send still sees the queue's content-based deduplication."""
    url = sqs.create_queue(QueueName="emb-dedup.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    sqs.send_message(QueueUrl=url, MessageBody="other", MessageGroupId="g")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["same", "other"]


def test_a_batch_delete_answers_each_receipt_handle(sqs: Any) -> None:
    """Current, earlier and already used receipt handles delete; an unknown one fails alone."""
    url = sqs.create_queue(QueueName="emb-delete")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(3)])
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=0)["Messages"]
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=60)["Messages"]
    by_body = {m["Body"]: m["ReceiptHandle"] for m in first}
    current = {m["Body"]: m["ReceiptHandle"] for m in again}
    assert set(by_body) == set(current) == {"0", "1", "2"}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=current["2"])
    got = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "earlier", "ReceiptHandle": by_body["0"]},
        {"Id": "current", "ReceiptHandle": current["1"]},
        {"Id": "used", "ReceiptHandle": current["2"]},
        {"Id": "unknown", "ReceiptHandle": "not-a-handle"},
    ])
    assert sorted(e["Id"] for e in got["Successful"]) == ["current", "earlier", "used"]
    assert [(e["Id"], e["Code"]) for e in got["Failed"]] == [("unknown", "ReceiptHandleIsInvalid")]
    assert _counts(sqs, url) == (0, 0)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert aws.error_code(caught.value) == "ReceiptHandleIsInvalid"


def test_a_batch_delete_keeps_every_other_message(sqs: Any) -> None:
    """Deleting some messages of a queue leaves the others, received or not, in it."""
    url = sqs.create_queue(QueueName="emb-keep")["QueueUrl"]
    for start in range(0, 30, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(start + i)}
                                                      for i in range(10)])
    received: list[dict[str, Any]] = []
    while len(received) < 20:
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1)["Messages"]
    sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                    for i, m in enumerate(received[:10])])
    time.sleep(1.1)
    left: set[str] = set()
    while len(left) < 20:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        assert got, f"only {len(left)} messages left"
        left |= {m["Body"] for m in got}
    assert left == {str(n) for n in range(30)} - {m["Body"] for m in received[:10]}
    assert _counts(sqs, url) == (0, 20)
