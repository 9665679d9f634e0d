"""Custody records: custody events written atomically with the state change they record, chained later.

A service that changes state and must leave a custody event for it puts `record_put(...)` into its
own TransactWriteItems (the assets isolation transaction). The record is one new item under the
asset, so concurrent custody actions of a tenant touch no common item and never cancel each other.
The sequencer (`sequencer.py`) then appends the record's event to the ledger through the group
committer and stamps the record with its seq (`mark_chained`), which also drops it from the pending
list. Synchronous boto3; async callers use `aws.call`. See ../ACCESS_PATTERNS.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.kit import aws
from services.ledger.outbox import keys
from services.ledger.store import EventDraft, check_draft

# TransactWriteItems holds at most 100 actions.
MARKS_PER_TRANSACTION = 100


@dataclass(frozen=True)
class CustodyRecord:
    """One custody event of one asset: `version` is the asset version its state change produced, and
    `prev_version` the version of the asset's previous record (0 for its first), which the sequencer
    chains first so the ledger keeps the asset's order."""

    tenant: str
    asset_id: str
    version: int
    prev_version: int
    draft: EventDraft
    record_time: str
    ledger_seq: int = 0

    @property
    def chained(self) -> bool:
        return self.ledger_seq > 0

    @property
    def key(self) -> tuple[str, str, int]:
        return self.tenant, self.asset_id, self.version

    @property
    def request_id(self) -> str:
        return keys.ledger_request_id(self.tenant, self.asset_id, self.version)


def format_time(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_record(tenant: str, asset_id: str, version: int, prev_version: int, draft: EventDraft, *,
               now: datetime | None = None) -> CustodyRecord:
    """A record to write; the draft is checked against the ledger's limits here, before any write."""
    check_draft(draft)
    keys.custody_sk(asset_id, version)
    return CustodyRecord(tenant, asset_id, version, prev_version, draft, format_time(now))


def record_put(table: str, record: CustodyRecord) -> dict[str, Any]:
    """The TransactWriteItems action that writes `record` (pending) beside the caller's own items."""
    return {"Put": {"TableName": table, "Item": aws.to_item(_item(record)),
                    "ConditionExpression": "attribute_not_exists(SK)"}}


def get_record(ddb: Any, table: str, tenant: str, asset_id: str, version: int) -> CustodyRecord | None:
    got = ddb.get_item(TableName=table, ConsistentRead=True, Key=aws.to_item(
        {"PK": keys.registry_pk(tenant), "SK": keys.custody_sk(asset_id, version)}))
    return _record(aws.from_item(got["Item"])) if "Item" in got else None


def asset_records(ddb: Any, table: str, tenant: str, asset_id: str = "") -> list[CustodyRecord]:
    """Every custody record of one asset (of the whole tenant when `asset_id` is ''), by asset and
    version (consistent)."""
    prefix = keys.custody_sk_prefix(asset_id) if asset_id else keys.CUSTODY_SK_PREFIX
    items = aws.query_items(
        ddb, TableName=table, ConsistentRead=True,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
        ExpressionAttributeValues=aws.to_item({":pk": keys.registry_pk(tenant), ":sk": prefix}),
    )
    return [_record(aws.from_item(i)) for i in items]


def pending_records(ddb: Any, table: str, shard: int, *, before: str = "", limit: int = 0) -> Iterator[CustodyRecord]:
    """Records of one shard that are not chained yet, oldest first (GSI2, eventually consistent);
    only those recorded before `before` when given, at most `limit` when given."""
    condition = "GSI2PK = :pk"
    values: dict[str, Any] = {":pk": keys.pending_gsi2pk(shard)}
    if before:
        condition += " AND GSI2SK < :before"
        values[":before"] = before
    query: dict[str, Any] = {"TableName": table, "IndexName": "GSI2", "KeyConditionExpression": condition,
                             "ExpressionAttributeValues": aws.to_item(values)}
    if limit:
        query["Limit"] = limit
    for count, item in enumerate(aws.query_items(ddb, **query), start=1):
        yield _record(aws.from_item(item))
        if limit and count >= limit:
            return


def overdue_records(ddb: Any, table: str, older_than: datetime, limit: int = 100) -> list[CustodyRecord]:
    """Records recorded before `older_than` and still not chained: custody actions the ledger lacks."""
    bound = format_time(older_than)
    found: list[CustodyRecord] = []
    for shard in range(keys.PENDING_SHARDS):
        found.extend(pending_records(ddb, table, shard, before=bound, limit=limit))
    return sorted(found, key=lambda r: r.record_time)[:limit]


def mark_chained(ddb: Any, table: str, chained: Sequence[tuple[CustodyRecord, int]]) -> None:
    """Stamp records with their ledger seqs and take them off the pending list (100 per transaction).

    Idempotent: marking a record again writes the same seq (the ledger's request marker makes the
    append of a record return the seq of its first append).
    """
    when = format_time()
    for start in range(0, len(chained), MARKS_PER_TRANSACTION):
        actions = [{"Update": {
            "TableName": table,
            "Key": aws.to_item({"PK": keys.registry_pk(r.tenant), "SK": keys.custody_sk(r.asset_id, r.version)}),
            "UpdateExpression": "SET ledger_seq = :seq, chain_time = :t REMOVE GSI2PK, GSI2SK",
            "ConditionExpression": "attribute_exists(SK)",
            "ExpressionAttributeValues": aws.to_item({":seq": seq, ":t": when}),
        }} for r, seq in chained[start:start + MARKS_PER_TRANSACTION]]
        if len(actions) == 1:
            update = actions[0]["Update"]
            ddb.update_item(**update)
        else:
            ddb.transact_write_items(TransactItems=actions)


def _item(record: CustodyRecord) -> dict[str, Any]:
    draft = record.draft
    return {
        "PK": keys.registry_pk(record.tenant),
        "SK": keys.custody_sk(record.asset_id, record.version),
        "GSI2PK": keys.pending_gsi2pk(keys.pending_shard(record.tenant, record.asset_id)),
        "GSI2SK": keys.pending_gsi2sk(record.record_time, record.tenant, record.asset_id, record.version),
        "tenant_id": record.tenant,
        "asset_id": record.asset_id,
        "version": record.version,
        "prev_version": record.prev_version,
        "record_time": record.record_time,
        "actor": draft.actor,
        "action": draft.action,
        "subject": draft.subject,
        "payload_json": json.dumps(dict(draft.payload), sort_keys=True, separators=(",", ":")),
    }


def _record(item: dict[str, Any]) -> CustodyRecord:
    draft = EventDraft(actor=str(item["actor"]), action=str(item["action"]), subject=str(item["subject"]),
                       payload=json.loads(str(item["payload_json"])))
    return CustodyRecord(
        tenant=str(item["tenant_id"]), asset_id=str(item["asset_id"]), version=int(item["version"]),
        prev_version=int(item["prev_version"]), draft=draft, record_time=str(item["record_time"]),
        ledger_seq=int(item.get("ledger_seq", 0)),
    )
