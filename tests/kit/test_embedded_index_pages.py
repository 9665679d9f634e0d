"""The embedded endpoint's index Query pages are moto's own: the same answers as released moto, page for page.

The endpoint hands moto only the items of the index partition, less those not meeting the sort-key
condition that moto's loop would pass over without effect, and keeps items' sizes until a write
touches them (`moto_endpoint._index_range_narrowed`). Released moto (tests/kit/conftest.py) reads
every item, so every difference between the two answers is one the narrowing made.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.kit import aws
from tests.kit.helpers import ONE_ITEM_WALK_ENDS, query_pages

TABLE = "lifecyclezero"
AGENTS = "idx-agents"


def _agent(n: int) -> dict[str, Any]:
    """An item of the index partitions: sort-key values repeat (ties broken by PK, then SK), sizes vary,
    every 13th lacks the sort-key attributes, every 9th is in another index partition."""
    partition = "idx-other" if n % 9 == 0 else AGENTS
    values: dict[str, Any] = {"PK": f"idx-tenant#{n % 3}", "SK": f"AGENT#{n:04d}", "asset_id": f"asset-{n}",
                              "pad": "x" * ((n * 7919) % 3000), "GSI1PK": partition, "GSI2PK": partition}
    if n % 13:
        values |= {"GSI1SK": f"DUE#{n % 23:04d}#{n % 3}", "GSI2SK": f"DUE#{n % 37:04d}#{n % 2}"}
    return aws.to_item(values)


@pytest.fixture(scope="module")
def both(ddb: Any, released_moto: Any) -> tuple[Any, Any]:
    """The embedded endpoint and released moto, each holding the same 200 items, written out of order."""
    for client in (ddb, released_moto):
        for n in [*range(1, 201, 2), *range(200, 0, -2)]:
            client.put_item(TableName=TABLE, Item=_agent(n))
    return ddb, released_moto


_CONDITIONS = [
    ("{sk} <= :a", {":a": "DUE#0012"}),
    ("{sk} < :a", {":a": "DUE#0012#1"}),
    ("{sk} >= :a", {":a": "DUE#0030"}),
    ("{sk} > :a", {":a": "DUE#0030#0"}),
    ("{sk} = :a", {":a": "DUE#0005#1"}),
    ("{sk} BETWEEN :a AND :b", {":a": "DUE#0007", ":b": "DUE#0020#0"}),
    ("begins_with({sk}, :a)", {":a": "DUE#001"}),
    ("{sk} <= :a", {":a": "A"}),
    ("", {}),
]
_INDEXES = {"GSI2": ("GSI2PK", "GSI2SK"), "GSI1": ("GSI1PK", "GSI1SK")}


def _index_query(index: str, condition: str, values: dict[str, str], partition: str = AGENTS,
                 **more: Any) -> dict[str, Any]:
    """A Query of the index partition with the sort-key `condition`, `{sk}` standing for the index's sort key."""
    hash_name, sort_name = _INDEXES[index]
    key = f"{hash_name} = :p" + (" AND " + condition.format(sk=sort_name) if condition else "")
    return {"IndexName": index, "KeyConditionExpression": key,
            "ExpressionAttributeValues": aws.to_item({":p": partition, **values}), **more}


@pytest.mark.parametrize(("condition", "values"), _CONDITIONS, ids=range(len(_CONDITIONS)))
@pytest.mark.parametrize("limit", [None, 1, 7, 1000])
@pytest.mark.parametrize("forward", [True, False], ids=["forward", "backward"])
@pytest.mark.parametrize("index", list(_INDEXES))
def test_an_index_query_pages_exactly_as_released_moto(
    both: tuple[Any, Any], index: str, condition: str, values: dict[str, str], limit: int | None, forward: bool
) -> None:
    """An index Query with every kind of sort-key condition, both ways, gives released moto's pages byte for byte."""
    query = _index_query(index, condition, values, ScanIndexForward=forward, **({"Limit": limit} if limit else {}))
    ends = ONE_ITEM_WALK_ENDS if limit == 1 else None
    embedded_pages, released_pages = (query_pages(client, ends, **query) for client in both)
    assert embedded_pages == released_pages


@pytest.mark.parametrize(("condition", "forward"), [("{sk} <= :a", True), ("{sk} >= :a", False)],
                         ids=["forward", "backward"])
def test_a_page_full_at_the_last_match_has_a_last_key_as_in_released_moto(
    both: tuple[Any, Any], condition: str, forward: bool
) -> None:
    """A Limit of exactly the number of matches, with items after them, ends the page with a last key and a
    second, empty page."""
    query = _index_query("GSI2", condition, {":a": "DUE#0012"}, ScanIndexForward=forward)
    matches = query_pages(both[1], **query)[0]["Count"]
    embedded_pages, released_pages = (query_pages(client, **query, Limit=matches) for client in both)
    assert embedded_pages == released_pages and len(released_pages) == 2 and released_pages[1]["Count"] == 0


LARGE = "idx-large"


def _large(n: int, size: int) -> dict[str, Any]:
    return aws.to_item({"PK": "idx-large", "SK": f"ITEM#{n:02d}", "GSI2PK": LARGE, "GSI2SK": f"DUE#{n:02d}",
                        "pad": "y" * size})


@pytest.mark.parametrize("limit", [None, 2])
def test_matches_near_one_megabyte_page_as_released_moto(both: tuple[Any, Any], limit: int | None) -> None:
    """Matches whose sizes approach 1 MB (the narrowing is not exact there) still page as released moto."""
    for client in both:
        for n in range(12):
            client.put_item(TableName=TABLE, Item=_large(n, 200_000 if n % 2 else 1_000))
    query = _index_query("GSI2", "{sk} <= :a", {":a": "DUE#09"}, partition=LARGE, **({"Limit": limit} if limit else {}))
    embedded_pages, released_pages = (query_pages(client, **query) for client in both)
    assert embedded_pages == released_pages and len(released_pages) > 1


GROW = "idx-grow"


def _grow_item(sk: str, due: str, size: int) -> dict[str, Any]:
    return aws.to_item({"PK": GROW, "SK": sk, "GSI2PK": GROW, "GSI2SK": due, "pad": "z" * size})


def test_an_item_grown_in_place_is_sized_again(both: tuple[Any, Any]) -> None:
    """An update that grows an item past the matches is sized anew: the page ends before it, as in released moto."""
    query = _index_query("GSI2", "{sk} <= :a", {":a": "DUE#5"}, partition=GROW)
    for client in both:
        for sk, due, size in [("M1", "DUE#1", 300_000), ("M2", "DUE#2", 300_000), ("X", "DUE#6", 100),
                              ("M3", "DUE#4", 300_000), ("Y", "DUE#7", 100)]:
            client.put_item(TableName=TABLE, Item=_grow_item(sk, due, size))
    before = [query_pages(client, **query) for client in both]
    for client in both:
        client.update_item(TableName=TABLE, Key=aws.to_item({"PK": GROW, "SK": "Y"}),
                           UpdateExpression="SET #p = :p", ExpressionAttributeNames={"#p": "pad"},
                           ExpressionAttributeValues=aws.to_item({":p": "z" * 400_500}))
    after = [query_pages(client, **query) for client in both]
    assert before[0] == before[1] and after[0] == after[1]
    assert [len(page["Items"]) for page in before[1]] == [3] and [len(page["Items"]) for page in after[1]] == [3, 0]


def _put_new(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=_agent(1000))


def _move_due(client: Any) -> None:
    """An update moving an item's index sort key from past the bound to before it."""
    client.update_item(TableName=TABLE, Key=aws.to_item({"PK": "idx-tenant#2", "SK": "AGENT#0035"}),
                       UpdateExpression="SET GSI2SK = :d, GSI1SK = :s",
                       ExpressionAttributeValues=aws.to_item({":d": "DUE#0001#9", ":s": "DUE#0001#9"}))


def _drop_due(client: Any) -> None:
    """An update taking an item out of the index (the health sweep's last stage)."""
    client.update_item(TableName=TABLE, Key=aws.to_item({"PK": "idx-tenant#1", "SK": "AGENT#0004"}),
                       UpdateExpression="REMOVE GSI2PK, GSI2SK")


def _delete(client: Any) -> None:
    client.delete_item(TableName=TABLE, Key=aws.to_item({"PK": "idx-tenant#2", "SK": "AGENT#0002"}))


def test_index_reads_between_writes_page_as_released_moto(both: tuple[Any, Any]) -> None:
    """After a put, an update moving an item's sort key, one removing it and a delete, reads give released moto's
    pages."""
    reads = [_index_query("GSI2", "{sk} <= :a", {":a": "DUE#0012"}, Limit=100),
             _index_query("GSI2", "{sk} <= :a", {":a": "DUE#0012"}, Limit=3, ScanIndexForward=False),
             _index_query("GSI1", "{sk} BETWEEN :a AND :b", {":a": "DUE#0001", ":b": "DUE#0009"}, Limit=7)]
    for write in (_put_new, _move_due, _drop_due, _delete):
        answers = []
        for client in both:
            write(client)
            answers.append([query_pages(client, **read) for read in reads])
        assert answers[0] == answers[1], write.__name__
