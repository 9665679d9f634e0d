"""The embedded endpoint's Query pages are moto's own: the same answers from released moto, call for call.

Released moto runs in this process (tests/kit/conftest.py's `released_moto`, none of the endpoint's
patches applied), so every difference between the two answers is a difference the patches made.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.kit import aws
from tests.kit.helpers import ONE_ITEM_WALK_ENDS, query_pages

TABLE = "lifecyclezero"
PARTITION = "pages-ledger"


def _event_item(seq: int) -> dict[str, Any]:
    """A ledger-like item whose size varies, so that some pages end at DynamoDB's 1 MB rather than at Limit."""
    return aws.to_item({"PK": PARTITION, "SK": f"EVENT#{seq:012d}", "seq": seq, "hash": f"{seq:064x}",
                        "canonical": bytes([seq % 256]) * (200 + (seq * 7919) % 20000), "actor": "pages",
                        "request_id": None if seq % 3 else f"r-{seq}"})


@pytest.fixture(scope="module")
def both(ddb: Any, released_moto: Any) -> tuple[Any, Any]:
    """The embedded endpoint and released moto, each holding the same 200 items, written out of order,
    and items of another kind sorting after them."""
    for client in (ddb, released_moto):
        for seq in [*range(2, 201, 2), *range(1, 201, 2)]:
            client.put_item(TableName=TABLE, Item=_event_item(seq))
        for request in range(3):
            client.put_item(TableName=TABLE, Item=aws.to_item({"PK": PARTITION, "SK": f"REQ#{request}", "seqs": "1"}))
    return ddb, released_moto


_CONDITIONS = [
    ("PK = :p", {}),
    ("PK = :p AND SK BETWEEN :a AND :b", {":a": "EVENT#000000000007", ":b": "EVENT#000000000180"}),
    ("PK = :p AND SK >= :a", {":a": "EVENT#000000000100"}),
    ("PK = :p AND SK > :a", {":a": "EVENT#000000000100"}),
    ("PK = :p AND SK < :a", {":a": "EVENT#000000000050"}),
    ("PK = :p AND SK <= :a", {":a": "EVENT#000000000050"}),
    ("PK = :p AND SK = :a", {":a": "EVENT#000000000042"}),
    ("PK = :p AND begins_with(SK, :a)", {":a": "EVENT#0000000001"}),
    ("PK = :p AND begins_with(SK, :a)", {":a": "EVENT#"}),
    ("PK = :p AND begins_with(SK, :a)", {":a": "REQ#"}),
    ("PK = :p AND SK BETWEEN :a AND :b", {":a": "EVENT#000000000300", ":b": "EVENT#000000000900"}),
]


@pytest.mark.parametrize(("condition", "values"), _CONDITIONS, ids=range(len(_CONDITIONS)))
@pytest.mark.parametrize("limit", [None, 1, 7, 1000])
@pytest.mark.parametrize("projection", ["SK, canonical, #h", "canonical, seq, request_id", ""],
                         ids=["walk", "other", "whole"])
def test_a_query_pages_exactly_as_released_moto(
    both: tuple[Any, Any], condition: str, values: dict[str, str], limit: int | None, projection: str
) -> None:
    """A Query of a large partition, projected or not, gives released moto's answers per page, byte for byte."""
    query: dict[str, Any] = {
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": aws.to_item({":p": PARTITION, **values}), "ConsistentRead": True,
        **({"ProjectionExpression": projection} if projection else {}),
        **({"ExpressionAttributeNames": {"#h": "hash"}} if "#h" in projection else {}),
        **({"Limit": limit} if limit else {}),
    }
    ends = ONE_ITEM_WALK_ENDS if limit == 1 else None
    embedded_pages, released_pages = (query_pages(client, ends, **query) for client in both)
    assert embedded_pages == released_pages


def _put_201(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=_event_item(201))


def _delete_200(client: Any) -> None:
    client.delete_item(TableName=TABLE, Key=aws.to_item({"PK": PARTITION, "SK": "EVENT#000000000200"}))


def _update_202(client: Any) -> None:
    """An UpdateItem of a key not yet there, which creates the item."""
    client.update_item(TableName=TABLE, Key=aws.to_item({"PK": PARTITION, "SK": "EVENT#000000000202"}),
                       UpdateExpression="SET actor = :a", ExpressionAttributeValues=aws.to_item({":a": "pages"}))


@pytest.mark.parametrize(("write", "key", "present"), [
    (_put_201, "EVENT#000000000201", True),
    (_delete_200, "EVENT#000000000200", False),
    (_update_202, "EVENT#000000000202", True),
], ids=["put", "delete", "update"])
def test_a_query_after_a_write_sees_the_write(both: tuple[Any, Any], write: Any, key: str, present: bool) -> None:
    """A write between two reads of a partition is in the second read, as in released moto."""
    query = {"KeyConditionExpression": "PK = :p AND SK BETWEEN :a AND :b", "ProjectionExpression": "SK",
             "ExpressionAttributeValues": aws.to_item({":p": PARTITION, ":a": "EVENT#000000000199",
                                                       ":b": "EVENT#999999999999"})}
    before = [query_pages(client, **query) for client in both]
    for client in both:
        write(client)
    after = [query_pages(client, **query) for client in both]
    assert before[0] == before[1] and after[0] == after[1]
    assert (key in [item["SK"]["S"] for page in after[0] for item in page["Items"]]) is present


def _overwrite_150(client: Any) -> None:
    client.put_item(TableName=TABLE, Item={**_event_item(150), **aws.to_item({"actor": "overwritten"})})


def _update_150(client: Any) -> None:
    client.update_item(TableName=TABLE, Key=aws.to_item({"PK": PARTITION, "SK": "EVENT#000000000150"}),
                       UpdateExpression="SET actor = :a", ExpressionAttributeValues=aws.to_item({":a": "overwritten"}))


@pytest.mark.parametrize("write", [_overwrite_150, _update_150], ids=["put", "update"])
def test_a_query_after_an_overwrite_reads_the_new_item(both: tuple[Any, Any], write: Any) -> None:
    """A write that replaces an item already read (its key stays) is what the next read returns, as in released moto."""
    query = {"KeyConditionExpression": "PK = :p AND SK BETWEEN :a AND :b", "ProjectionExpression": "SK, actor",
             "Limit": 20, "ExpressionAttributeValues": aws.to_item({":p": PARTITION, ":a": "EVENT#000000000140",
                                                                   ":b": "EVENT#000000000160"})}
    before = [query_pages(client, **query) for client in both]
    for client in both:
        write(client)
    after = [query_pages(client, **query) for client in both]
    assert before[0] == before[1] and after[0] == after[1]
    actors = {item["SK"]["S"]: item["actor"]["S"] for page in after[0] for item in page["Items"]}
    assert actors["EVENT#000000000150"] == "overwritten"


def _walk_query(**more: Any) -> dict[str, Any]:
    """The ledger walk's Query of the whole partition (`store.walk_events`), with `more` arguments."""
    return {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": aws.to_item({":p": PARTITION}),
            "ProjectionExpression": "SK, canonical, #h", "ExpressionAttributeNames": {"#h": "hash"},
            "ConsistentRead": True, **more}


def test_the_partition_is_read_in_pages_cut_at_one_megabyte(both: tuple[Any, Any]) -> None:
    """Without a Limit the partition takes several pages, so the comparisons include pages cut by size."""
    pages = query_pages(both[0], **_walk_query())
    assert len(pages) > 1 and all(len(page["Body"]) > 900_000 for page in pages[:-1])


@pytest.mark.parametrize("capacity", ["TOTAL", "INDEXES", "NONE"])
@pytest.mark.parametrize("limit", [None, 7])
def test_a_query_with_consumed_capacity_answers_as_released_moto(
    both: tuple[Any, Any], capacity: str, limit: int | None
) -> None:
    """A walk that asks for its consumed capacity gets released moto's answers, capacity included, byte for byte."""
    query = _walk_query(ReturnConsumedCapacity=capacity, **({"Limit": limit} if limit else {}))
    embedded_pages, released_pages = (query_pages(client, **query) for client in both)
    assert embedded_pages == released_pages


@pytest.mark.parametrize("limit", [None, 7])
def test_a_count_query_answers_as_released_moto(both: tuple[Any, Any], limit: int | None) -> None:
    """A Query with Select=COUNT gets released moto's counts and last keys, and no items, byte for byte."""
    query = {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": aws.to_item({":p": PARTITION}),
             "Select": "COUNT", **({"Limit": limit} if limit else {})}
    embedded_pages, released_pages = (query_pages(client, **query) for client in both)
    assert embedded_pages == released_pages and all(page["Items"] is None for page in embedded_pages)


UNUSUAL = "pages-unusual"
_UNUSUAL_TEXT = ["caf\u00e9 \u4e2d\u6587 \U0001f600", 'quote " backslash \\ slash /', "new\nline\ttab \u2028 \x7f \x01",
                 "", "<b>not xml</b> & ampersand"]


@pytest.fixture(scope="module")
def unusual(both: tuple[Any, Any]) -> tuple[Any, Any]:
    """Both clients, and a partition of items with unusual strings, numbers and binaries, and one item
    holding every other type of attribute."""
    items = [aws.to_item({"PK": UNUSUAL, "SK": f"ITEM#{n}", "text": text, "n": n * 10**20 + n,
                          "data": text.encode("utf-8") + bytes(range(n * 50, n * 50 + 5))})
             for n, text in enumerate(_UNUSUAL_TEXT)]
    items.append({**aws.to_item({"PK": UNUSUAL, "SK": "ITEM#9", "text": "typed"}), "n": {"N": "-0.50"},
                  "tags": {"SS": ["a", "b"]}, "flags": {"BOOL": True}, "nothing": {"NULL": True},
                  "map": {"M": {"inner": {"B": b"\x00\xff"}}}, "list": {"L": [{"N": "1"}, {"S": "x"}]},
                  "bins": {"BS": [b"\x01", b"\x02"]}, "nums": {"NS": ["1", "2.5"]}})
    for client in both:
        for item in items:
            client.put_item(TableName=TABLE, Item=item)
    return both


# moto projects a set through a Python set, whose order differs between processes: sets are compared in whole items.
@pytest.mark.parametrize("projection", ["SK, #t, n, #d", "#d, SK", "SK, #t, nothing, flags", "SK, #m, #l", ""],
                         ids=["scalars", "reordered", "boolean", "nested", "whole"])
@pytest.mark.parametrize("limit", [None, 2])
def test_unusual_values_are_answered_as_released_moto(
    unusual: tuple[Any, Any], projection: str, limit: int | None
) -> None:
    """Unicode and escaped strings, large and negative numbers, binaries and every other attribute type come
    back as released moto sends them, byte for byte."""
    names = {name: value for name, value in {"#t": "text", "#d": "data", "#m": "map", "#l": "list"}.items()
             if name in projection}
    query = {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": aws.to_item({":p": UNUSUAL}),
             **({"ProjectionExpression": projection} if projection else {}),
             **({"ExpressionAttributeNames": names} if names else {}), **({"Limit": limit} if limit else {})}
    embedded_pages, released_pages = (query_pages(client, **query) for client in unusual)
    assert embedded_pages == released_pages


def test_a_string_like_an_xml_request_id_is_answered_as_stored(both: tuple[Any, Any]) -> None:
    """A string holding `<RequestId>...</RequestId>` comes back as written (released moto rewrites it)."""
    embedded = both[0]
    text = "<RequestId>written by an agent</RequestId>"
    embedded.put_item(TableName=TABLE, Item=aws.to_item({"PK": "pages-xml", "SK": "ITEM#1", "text": text}))
    got = embedded.query(TableName=TABLE, KeyConditionExpression="PK = :p", ProjectionExpression="SK, #t",
                         ExpressionAttributeNames={"#t": "text"},
                         ExpressionAttributeValues=aws.to_item({":p": "pages-xml"}))
    assert [item["text"]["S"] for item in got["Items"]] == [text]


def _kept_key_writes() -> list[tuple[str, dict[str, Any]]]:
    """Writes that add keys at the end, at the start and in between, replace one, remove some, and one that fails."""
    def put(sk: str) -> tuple[str, dict[str, Any]]:
        return "put_item", {"TableName": TABLE, "Item": aws.to_item({"PK": "pages-kept", "SK": sk, "v": sk})}

    def delete(sk: str) -> tuple[str, dict[str, Any]]:
        return "delete_item", {"TableName": TABLE, "Key": aws.to_item({"PK": "pages-kept", "SK": sk})}

    return [
        put("EVENT#005"), put("EVENT#009"), put("EVENT#001"), put("EVENT#007"), put("EVENT#007"),
        delete("EVENT#005"), delete("EVENT#404"),
        ("update_item", {"TableName": TABLE, "Key": aws.to_item({"PK": "pages-kept", "SK": "EVENT#003"}),
                         "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": aws.to_item({":v": "made"})}),
        ("transact_write_items", {"TransactItems": [
            {"Put": put("EVENT#011")[1]}, {"Delete": delete("EVENT#001")[1]}, {"Put": put("EVENT#002")[1]}]}),
        ("transact_write_items", {"TransactItems": [
            {"Put": put("EVENT#012")[1]},
            {"Put": {**put("EVENT#009")[1], "ConditionExpression": "attribute_not_exists(SK)"}}]}),
        ("batch_write_item", {"RequestItems": {TABLE: [{"PutRequest": {"Item": put(f"EVENT#02{n}")[1]["Item"]}}
                                                       for n in range(5)]
                                               + [{"DeleteRequest": {"Key": delete("EVENT#002")[1]["Key"]}}]}}),
        delete("EVENT#011"), delete("EVENT#003"), delete("EVENT#007"), delete("EVENT#009"),
    ]


def test_reads_between_writes_that_add_and_remove_keys_page_as_released_moto(both: tuple[Any, Any]) -> None:
    """After each write that adds, replaces or removes a key, a forward read and a newest-first tail read
    of the partition give released moto's pages (the endpoint keeps the partition's sorted keys up)."""
    reads = [
        {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": aws.to_item({":p": "pages-kept"}),
         "ConsistentRead": True, "Limit": 2},
        {"KeyConditionExpression": "PK = :p AND begins_with(SK, :e)", "ScanIndexForward": False, "Limit": 1,
         "ExpressionAttributeValues": aws.to_item({":p": "pages-kept", ":e": "EVENT#"}),
         "ProjectionExpression": "SK, v", "ConsistentRead": True},
    ]
    seen: list[Any] = []
    for operation, request in _kept_key_writes():
        answers: list[Any] = []
        for client in both:
            try:
                getattr(client, operation)(**request)
                answers.append("written")
            except client.exceptions.ClientError as error:
                answers.append(error.response["Error"]["Code"])
            answers.append([query_pages(client, **read) for read in reads])
        assert answers[:2] == answers[2:], operation
        seen.append(answers[1])
    assert seen[-1][1][0]["Items"] == [aws.to_item({"SK": "EVENT#024", "v": "EVENT#024"})]
