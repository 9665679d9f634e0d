"""Whole-log walks read the ledger's canonical bytes in order, page after page, ahead of the checks."""

from __future__ import annotations

import secrets
from typing import Any

from services.ledger import keys, store


def _tenant_with_events(ddb: Any, table: str, count: int) -> tuple[str, list[bytes]]:
    tenant = f"walk-{secrets.token_hex(4)}"
    drafts = [store.EventDraft("test", "test.note", "", {"n": i}) for i in range(count)]
    store.append_events(ddb, table, tenant, drafts)
    return tenant, [e.canonical for e in store.events_between(ddb, table, tenant, 1, count)]


def test_canonical_events_are_every_stored_event_in_order_across_pages(ddb: Any, aws_settings: Any) -> None:
    """With pages of 3 and read-ahead, the walk gets exactly the stored canonical bytes of seq 1..n."""
    tenant, stored = _tenant_with_events(ddb, aws_settings.table_name, 10)
    assert list(store.canonical_events(ddb, aws_settings.table_name, tenant, 1, page=3, prefetch=2)) == stored


def test_canonical_events_start_where_asked(ddb: Any, aws_settings: Any) -> None:
    """A walk from seq 8 gets the events from seq 8 on and nothing before."""
    tenant, stored = _tenant_with_events(ddb, aws_settings.table_name, 10)
    assert list(store.canonical_events(ddb, aws_settings.table_name, tenant, 8, page=2)) == stored[7:]


def test_an_item_without_binary_canonical_bytes_reads_as_empty(ddb: Any, aws_settings: Any) -> None:
    """A stored event whose canonical attribute is not binary yields b"", which no check accepts."""
    table = aws_settings.table_name
    tenant, stored = _tenant_with_events(ddb, table, 3)
    ddb.update_item(TableName=table, Key={"PK": {"S": keys.ledger_pk(tenant)}, "SK": {"S": keys.event_sk(2)}},
                    UpdateExpression="SET canonical = :s", ExpressionAttributeValues={":s": {"S": "{}"}})
    assert list(store.canonical_events(ddb, table, tenant, 1)) == [stored[0], b"", stored[2]]
