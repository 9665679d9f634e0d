"""Whole-log walks read the ledger's events in order, page after page, ahead of the checks."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from services.kit import aws
from services.ledger import keys, store


@pytest.fixture(params=["shared-client", "walk-client"])
def reader(request: pytest.FixtureRequest, ddb: Any, aws_settings: Any) -> Any:
    """The client a walk reads through: the service's shared one, or a walk client of its own (`aws.walk_client`)."""
    return ddb if request.param == "shared-client" else aws.walk_client(aws_settings)


def _tenant_with_events(ddb: Any, table: str, count: int) -> tuple[str, list[store.StoredEvent]]:
    tenant = f"walk-{secrets.token_hex(4)}"
    drafts = [store.EventDraft("test", "test.note", "", {"n": i}) for i in range(count)]
    store.append_events(ddb, table, tenant, drafts)
    return tenant, list(store.events_between(ddb, table, tenant, 1, count, canonical_only=True))


def _walked(events: list[store.StoredEvent]) -> list[tuple[int, bytes, str]]:
    return [(e.seq, e.canonical, e.hash_hex) for e in events]


def test_walk_events_are_every_stored_event_in_order_across_pages(ddb: Any, aws_settings: Any, reader: Any) -> None:
    """With pages of 3 and read-ahead, the walk gets exactly the stored seq, bytes and hash attribute of 1..n."""
    tenant, stored = _tenant_with_events(ddb, aws_settings.table_name, 10)
    walked = list(store.walk_events(reader, aws_settings.table_name, tenant, 1, page=3, prefetch=2))
    assert _walked(walked) == _walked(stored)
    assert all(e.hash_hex == store.derived_hash(e.canonical) for e in walked)


def test_walk_events_start_where_asked(ddb: Any, aws_settings: Any, reader: Any) -> None:
    """A walk from seq 8 gets the events from seq 8 on and nothing before."""
    tenant, stored = _tenant_with_events(ddb, aws_settings.table_name, 10)
    assert _walked(list(store.walk_events(reader, aws_settings.table_name, tenant, 8, page=2))) == _walked(stored[7:])


def test_damaged_attributes_read_as_events_between_reads_them(ddb: Any, aws_settings: Any, reader: Any) -> None:
    """A canonical attribute that is not binary, or a hash attribute that is not a string, is read the way
    events_between reads it (still evidence, which the checks then reject)."""
    table = aws_settings.table_name
    tenant, _ = _tenant_with_events(ddb, table, 3)
    ddb.update_item(TableName=table, Key={"PK": {"S": keys.ledger_pk(tenant)}, "SK": {"S": keys.event_sk(2)}},
                    UpdateExpression="SET canonical = :s", ExpressionAttributeValues={":s": {"S": "{}"}})
    ddb.update_item(TableName=table, Key={"PK": {"S": keys.ledger_pk(tenant)}, "SK": {"S": keys.event_sk(3)}},
                    UpdateExpression="SET #h = :n", ExpressionAttributeNames={"#h": "hash"},
                    ExpressionAttributeValues={":n": {"N": "7"}})
    walked = list(store.walk_events(reader, table, tenant, 1))
    assert _walked(walked) == _walked(list(store.events_between(ddb, table, tenant, 1, 3, canonical_only=True)))
    assert walked[1].canonical == b"{}"
    assert walked[2].hash_hex == "7"


def test_a_canonical_of_another_type_reads_as_events_between_reads_it(
    ddb: Any, aws_settings: Any, reader: Any
) -> None:
    """A canonical attribute turned into a map is read the way events_between reads it (its page then parses
    through botocore's model on a walk client)."""
    table = aws_settings.table_name
    tenant, _ = _tenant_with_events(ddb, table, 3)
    ddb.update_item(TableName=table, Key={"PK": {"S": keys.ledger_pk(tenant)}, "SK": {"S": keys.event_sk(2)}},
                    UpdateExpression="SET canonical = :m",
                    ExpressionAttributeValues={":m": {"M": {"bytes": {"B": b"\x00"}}}})
    walked = list(store.walk_events(reader, table, tenant, 1))
    assert _walked(walked) == _walked(list(store.events_between(ddb, table, tenant, 1, 3, canonical_only=True)))
    assert walked[1].canonical != walked[0].canonical and b"bytes" in walked[1].canonical
