"""The embedded endpoint reads DynamoDB requests and writes stream records as released moto does.

The endpoint parses a JSON request by looking up only the keys it has and takes an AttributeValue
without binaries as it was sent (`moto_endpoint._patch_request_parsing`), and builds a stream record
without converting images its view type leaves out (`_patch_stream_records`). The parser is compared
in this process with moto's own parser, dict order included; the answers and stream records are
compared with released moto's (tests/kit/conftest.py).
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import boto3
import pytest
from moto.core.parse import JSONParser
from moto.core.utils import get_service_model

from services.kit import aws, moto_endpoint
from tests.kit.helpers import sets_sorted

TABLE = "lifecyclezero"
PARTITION = "requests"


class _PatchedParser(JSONParser):
    """moto's JSON parser with the endpoint's structure parsing, in this process only (moto itself is untouched)."""

    _parse_structure = moto_endpoint._structure_parser(JSONParser._parse_structure)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Every attribute type, binaries nested in maps and lists, empty strings and sets, unknown keys and nulls.
_ALL_TYPES: dict[str, Any] = {
    "PK": {"S": PARTITION}, "SK": {"S": "ITEM#all"}, "empty": {"S": ""}, "n": {"N": "-1.50e3"},
    "bin": {"B": _b64(b"\x00\xffbinary")}, "bins": {"BS": [_b64(b"\x01"), _b64(b"\x02\x03")]},
    "tags": {"SS": ["b", "a", ""]}, "nums": {"NS": ["2", "1.5"]}, "yes": {"BOOL": True}, "no": {"BOOL": False},
    "nothing": {"NULL": True},
    "map": {"M": {"z": {"S": "last"}, "a": {"B": _b64(b"inside")}, "deep": {"M": {"l": {"L": [
        {"B": _b64(b"\x10")}, {"N": "3"}, {"M": {}}, {"L": []}]}}}}},
    "plain_map": {"M": {"z": {"S": "z"}, "a": {"N": "1"}, "set": {"SS": ["x"]}, "l": {"L": [{"BOOL": True}]}}},
    "list": {"L": [{"S": "x"}, {"NULL": True}, {"BS": [_b64(b"\x04")]}, {"M": {"b": {"B": _b64(b"\x05")}}}]},
}

# Attribute values no client sends, each in a request of its own (one that fails hides the others).
_HOSTILE: dict[str, Any] = {
    "two": {"S": "a", "N": "1"}, "none": {}, "unknown": {"Q": "x"}, "null_inside": {"S": None},
    "null_map": {"M": {"a": None}}, "null_list": {"L": [None, {"S": "x"}]},
    "mixed": {"M": {"a": {"S": "x"}, "b": {"B": _b64(b"\x06")}, "c": {"S": "y", "extra": None}}},
    "set_text": {"SS": "abc"}, "set_map": {"NS": {"1": "x"}}, "set_nulls": {"SS": ["a", None]},
    "nested_set_text": {"M": {"s": {"SS": "abc"}}}, "odd_scalars": {"BOOL": "true"}, "number_as_number": {"N": 5},
    "string_map": {"S": {"k": "v"}}, "map_of_text": {"M": "text"}, "list_of_text": {"L": "text"},
    "not_base64": {"M": {"b": {"B": "!!"}}}, "binary_number": {"B": 5}, "value_text": "text", "value_list": [],
}

_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    *[("PutItem", {"TableName": TABLE, "Item": {"PK": {"S": "p"}, "SK": {"S": "s"}, name: value}})
      for name, value in _HOSTILE.items()],
    ("PutItem", {"TableName": TABLE, "Item": _ALL_TYPES, "ConditionExpression": "attribute_not_exists(SK)",
                 "ReturnValues": "ALL_OLD"}),
    ("PutItem", {"Item": {"PK": {"S": "p"}, "SK": {"S": "s"}}, "TableName": TABLE, "Unknown": {"S": "x"},
                 "Expected": None, "ReturnValues": None}),
    ("UpdateItem", {"TableName": TABLE, "Key": {"SK": {"S": "ITEM#1"}, "PK": {"S": PARTITION}},
                    "UpdateExpression": "SET #a = :a, m = :m REMOVE c", "ExpressionAttributeNames": {"#a": "a"},
                    "ExpressionAttributeValues": {":m": _ALL_TYPES["map"], ":a": {"S": ""}, ":b": {"B": _b64(b"!")}},
                    "ReturnValues": "UPDATED_NEW", "ReturnValuesOnConditionCheckFailure": None}),
    ("TransactWriteItems", {"ClientRequestToken": "token", "TransactItems": [
        {"Put": {"TableName": TABLE, "Item": _ALL_TYPES}},
        {"Update": {"Key": {"PK": {"S": "p"}, "SK": {"S": "s"}}, "TableName": TABLE, "UpdateExpression": "SET a = :a",
                    "ExpressionAttributeValues": {":a": {"L": [{"B": _b64(b"\x07")}]}}}},
        {"Delete": {"TableName": TABLE, "Key": {"PK": {"S": "p"}, "SK": {"S": "t"}}, "Extra": 1}},
        {"ConditionCheck": {"TableName": TABLE, "Key": {"PK": {"S": "p"}, "SK": {"S": "u"}},
                            "ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}}},
        {"Put": None}, {}]}),
    ("BatchGetItem", {"RequestItems": {TABLE: {
        "Keys": [{"PK": {"S": "p"}, "SK": {"S": str(n)}} for n in range(5)], "ProjectionExpression": "SK, #d",
        "ExpressionAttributeNames": {"#d": "d"}, "ConsistentRead": True}}, "ReturnConsumedCapacity": "TOTAL"}),
    ("BatchWriteItem", {"RequestItems": {TABLE: [
        {"PutRequest": {"Item": _ALL_TYPES}}, {"DeleteRequest": {"Key": {"PK": {"S": "p"}, "SK": {"S": "s"}}}},
        {"PutRequest": None, "DeleteRequest": {"Key": {"SK": {"S": "t"}, "PK": {"S": "p"}}}}]}}),
    ("Query", {"TableName": TABLE, "IndexName": "GSI2", "KeyConditionExpression": "GSI2PK = :p AND GSI2SK <= :h",
               "ExpressionAttributeValues": {":p": {"S": "AGENTS#t"}, ":h": {"S": "2026"}}, "Limit": 100,
               "ScanIndexForward": False, "ExclusiveStartKey": {
                   "PK": {"S": "p"}, "SK": {"S": "s"}, "GSI2PK": {"S": "AGENTS#t"}, "GSI2SK": {"S": "2025"}},
               "FilterExpression": "attribute_exists(x)", "Select": None, "ConsistentRead": False}),
    ("Query", {"TableName": TABLE, "KeyConditions": {"PK": {"AttributeValueList": [{"S": "p"}],
                                                            "ComparisonOperator": "EQ"}},
               "QueryFilter": {"b": {"AttributeValueList": [{"B": _b64(b"\x08")}], "ComparisonOperator": "EQ"}}}),
]


def _form(value: Any) -> Any:
    """`value` with every dict's and list's type and order spelled out, so that equal forms mean equal order."""
    if isinstance(value, dict):
        return type(value).__name__, [(key, _form(inner)) for key, inner in value.items()]
    if isinstance(value, list):
        return type(value).__name__, [_form(inner) for inner in value]
    return type(value).__name__, value


def _request_dict(request: dict[str, Any]) -> Any:
    """The request as moto hands it to a JSON parser, which reads only its body."""
    return {"body": json.dumps(request).encode("utf-8")}


def _parsed(parser_class: type[JSONParser], operation: str, request: dict[str, Any]) -> Any:
    """The parameters `parser_class` reads from the request's JSON body, or the error it raises."""
    parser = parser_class(get_service_model("dynamodb").operation_model(operation))
    try:
        return _form(parser.parse(_request_dict(request)))
    except Exception as error:  # moto's own parser fails some hostile requests; the patched one must fail alike
        return "error", type(error).__name__, str(error)


@pytest.mark.parametrize(("operation", "request_body"), _REQUESTS,
                         ids=[f"{n}-{op}" for n, (op, _) in enumerate(_REQUESTS)])
def test_a_request_is_parsed_as_moto_parses_it(operation: str, request_body: dict[str, Any]) -> None:
    """A request of every attribute type, unknown keys and nulls included, gives moto's parameters in moto's order."""
    assert _parsed(_PatchedParser, operation, request_body) == _parsed(JSONParser, operation, request_body)


def test_a_binary_inside_a_map_is_decoded() -> None:
    """A binary nested in a map is parsed to its bytes, not passed on as its base64 text."""
    parsed = _PatchedParser(get_service_model("dynamodb").operation_model("PutItem")).parse(
        _request_dict({"TableName": TABLE, "Item": _ALL_TYPES}))
    assert parsed["Item"]["map"]["M"]["a"] == {"B": b"inside"}


_ITEMS = [
    aws.to_item({"PK": PARTITION, "SK": "ITEM#1", "data": b"\x00\x01", "text": "", "map": {
        "bytes": b"\xff", "nested": {"list": [b"\x02", "x", 1, None, True], "set": {"a", "b"}}}, "bins": {b"\x03"}}),
    {**aws.to_item({"PK": PARTITION, "SK": "ITEM#2"}),
     **{k: v for k, v in _ALL_TYPES.items() if k not in ("PK", "SK")}},
]


def _binaries_decoded(item: dict[str, Any]) -> dict[str, Any]:
    """`item` as a boto3 client takes it: binaries as bytes (`_ALL_TYPES` spells them as on the wire)."""
    def decoded(value: Any) -> Any:
        ((kind, inner),) = value.items()
        if kind == "B":
            return {"B": base64.b64decode(inner)}
        if kind == "BS":
            return {"BS": [base64.b64decode(b) for b in inner]}
        if kind == "M":
            return {"M": {k: decoded(v) for k, v in inner.items()}}
        if kind == "L":
            return {"L": [decoded(v) for v in inner]}
        return value

    return {name: decoded(value) for name, value in item.items()}


def _reads_and_writes(client: Any) -> list[Any]:
    """What a few writes and reads of items holding binaries and nested maps answer."""
    key = {"PK": {"S": PARTITION}, "SK": {"S": "ITEM#1"}}
    answers: list[Any] = []
    for item in _ITEMS:
        answers.append(client.put_item(TableName=TABLE, Item=_binaries_decoded(item), ReturnValues="ALL_OLD")
                       .get("Attributes"))
    answers.append(client.update_item(
        TableName=TABLE, Key=key, UpdateExpression="SET #m.nested.more = :b, added = :l", ReturnValues="ALL_NEW",
        ExpressionAttributeNames={"#m": "map"},
        ExpressionAttributeValues={":b": {"M": {"raw": {"B": b"\x09"}}}, ":l": {"L": [{"B": b"\x0a"}, {"S": ""}]}},
    )["Attributes"])
    answers.append(client.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"])
    answers.append(client.batch_get_item(RequestItems={TABLE: {"Keys": [key, {**key, "SK": {"S": "ITEM#2"}}],
                                                               "ConsistentRead": True}})["Responses"][TABLE])
    answers.append(client.query(TableName=TABLE, KeyConditionExpression="PK = :p", ConsistentRead=True,
                                FilterExpression="#d = :d", ExpressionAttributeNames={"#d": "data"},
                                ExpressionAttributeValues={":p": {"S": PARTITION}, ":d": {"B": b"\x00\x01"}})["Items"])
    return answers


def test_writes_and_reads_of_binaries_and_maps_answer_as_released_moto(ddb: Any, released_moto: Any) -> None:
    """Puts, an update, a get, a batch get and a filtered query of nested binaries answer as released moto."""
    embedded, released = (sets_sorted(_reads_and_writes(client)) for client in (ddb, released_moto))
    assert embedded == released
    assert embedded[3]["map"]["M"]["nested"]["M"]["more"] == {"M": {"raw": {"B": b"\x09"}}}


_VIEW_TYPES = ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]


def _record(init: Any, view_type: str, old: Any, new: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The record a StreamRecord built by `init` holds, with moto's clock and random ids fixed."""
    from moto.dynamodb.models import table as moto_table
    from moto.moto_api._internal import mock_random

    monkeypatch.setattr(moto_table, "utcnow", lambda: datetime.datetime(2026, 12, 6, 18, 0, 0, 123456))
    mock_random.seed(26)
    record: Any = moto_table.StreamRecord.__new__(moto_table.StreamRecord)
    init(record, _StreamTable(), view_type, "MODIFY", old, new, 1100000000017454423009)
    built: dict[str, Any] = record.record
    return built


class _StreamTable:
    """What a StreamRecord reads of its table: the key attributes' names."""

    hash_key_attr, range_key_attr = "PK", "SK"


@pytest.mark.parametrize("view_type", _VIEW_TYPES)
@pytest.mark.parametrize("change", ["insert", "modify", "remove"])
def test_a_stream_record_is_moto_s_record(view_type: str, change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream record of every view type, for an insert, a change and a removal, is the one moto builds."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.table import StreamRecord

    def item(extra: dict[str, Any]) -> Item:
        attrs = {**_binaries_decoded(_ALL_TYPES), **extra}
        return Item(DynamoType(attrs["PK"]), DynamoType(attrs["SK"]), attrs)

    old = None if change == "insert" else item({"version": {"N": "1"}})
    new = None if change == "remove" else item({"version": {"N": "2"}})
    patched = moto_endpoint._stream_record_init(StreamRecord.__init__)
    assert _record(patched, view_type, old, new, monkeypatch) == _record(
        StreamRecord.__init__, view_type, old, new, monkeypatch)


def _stream_client(client: Any) -> Any:
    """A DynamoDB Streams client of the same endpoint as the DynamoDB `client` (credentials from the environment)."""
    return boto3.session.Session().client("dynamodbstreams", endpoint_url=client.meta.endpoint_url,
                                          region_name=client.meta.region_name)


def _writes(client: Any) -> None:
    """Puts, an overwrite, an update, deletes (one of a missing key) and a transaction of the stream partition."""
    def key(n: int) -> dict[str, Any]:
        return aws.to_item({"PK": f"{PARTITION}-stream", "SK": f"ITEM#{n}"})

    for n in range(3):
        client.put_item(TableName=TABLE, Item={**key(n), **aws.to_item({"data": b"\x00" * n, "text": "t" * n})})
    client.put_item(TableName=TABLE, Item={**key(1), **aws.to_item({"text": "again"})})
    client.update_item(TableName=TABLE, Key=key(2), UpdateExpression="SET m = :m",
                       ExpressionAttributeValues=aws.to_item({":m": {"b": b"\x01", "l": [1, "x"]}}))
    client.update_item(TableName=TABLE, Key=key(7), UpdateExpression="SET made = :m",
                       ExpressionAttributeValues=aws.to_item({":m": True}))
    client.delete_item(TableName=TABLE, Key=key(0))
    client.delete_item(TableName=TABLE, Key=key(9))
    client.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {**key(3), **aws.to_item({"n": 3})}}},
        {"Update": {"TableName": TABLE, "Key": key(1), "UpdateExpression": "REMOVE #t",
                    "ExpressionAttributeNames": {"#t": "text"}}},
        {"Delete": {"TableName": TABLE, "Key": key(2)}}])


def _records_after_writes(client: Any) -> list[dict[str, Any]]:
    """The stream records `_writes` adds to the table's stream, as GetRecords answers them."""
    streams = _stream_client(client)
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    _writes(client)
    records: list[dict[str, Any]] = streams.get_records(ShardIterator=iterator)["Records"]
    return records


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what differs between two servers: its random id, its time, and so its size and sequence."""
    stream = {k: v for k, v in record["dynamodb"].items()
              if k not in ("ApproximateCreationDateTime", "SequenceNumber", "SizeBytes")}
    return {**{k: v for k, v in record.items() if k not in ("eventID", "dynamodb")}, "dynamodb": stream}


def _timestamp_length(record: dict[str, Any]) -> int:
    """The length of the record's time as its SizeBytes counted it: SizeBytes less the rest of the record's JSON.

    moto counts the time as a float of seconds, whose digits vary from record to record (12 to 18 characters:
    ten before the point, one to seven after it).
    """
    stream = record["dynamodb"]
    rest = {"StreamViewType": stream["StreamViewType"], "ApproximateCreationDateTime": 0,
            "SequenceNumber": stream["SequenceNumber"], "SizeBytes": 1, "Keys": stream["Keys"]}
    return int(stream["SizeBytes"]) - len(json.dumps(rest)) + 1


def test_stream_records_of_writes_are_released_moto_s(ddb: Any, released_moto: Any) -> None:
    """Puts, updates, deletes and a transaction give released moto's stream records: names, keys, view, sizes, order."""
    embedded, released = (_records_after_writes(client) for client in (ddb, released_moto))
    assert [_comparable(r) for r in embedded] == [_comparable(r) for r in released]
    steps = [[int(r["dynamodb"]["SequenceNumber"]) - int(records[0]["dynamodb"]["SequenceNumber"]) for r in records]
             for records in (embedded, released)]
    assert steps[0] == steps[1] == list(range(len(released)))
    # A size that counted an image, or lost a key, would be tens of characters off.
    assert all(12 <= _timestamp_length(r) <= 18 for r in embedded + released)
    # An update of a missing key is two records in moto (its put, then the update); a delete of one is none.
    assert [r["eventName"] for r in released] == ["INSERT", "INSERT", "INSERT", "MODIFY", "MODIFY", "INSERT", "INSERT",
                                                  "REMOVE", "INSERT", "MODIFY", "REMOVE"]
