# ruff: noqa: PLR0917 - store functions take (ddb, table, tenant, ...) positionally, like the access patterns
"""The items ingest owns, in the one table: agent credentials, telemetry and alerts (ACCESS_PATTERNS.md).

The only code that builds ingest's keys (through `keys`). Synchronous boto3: async callers offload
with `services.kit.aws.call`; the assets service calls `list_alerts` for ListAlerts.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2
from lifecyclezero.v1 import common_pb2

from services.ingest import keys
from services.ingest.health import AGENT_OUTDATED
from services.kit import aws
from services.kit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.kit.table import GSI1, GSI2, TTL_ATTRIBUTE

_SEVERITY_RANK = {"INFO": 1, "WARNING": 2, "CRITICAL": 3}
_EPOCH_START = "1970-01-01T00:00:00.000000Z"
MAX_BATCH_RETRIES = 8


# ------------------------------------------------------------------------------------ agent credentials


@dataclass(frozen=True)
class AgentRecord:
    tenant: str
    asset_id: str
    secret_sha256: str
    epoch: int
    durable_seq: int
    revoked: bool
    # Agent-health alerts open on the agent (rule id, alert sort key): those its absence raised, resolved when it
    # connects again, and agent-outdated's, resolved when it connects with a version the tenant accepts.
    open_alerts: tuple[tuple[str, str], ...] = ()


def put_agent(ddb: Any, table: str, tenant: str, asset_id: str, secret_sha256: str, epoch: int,
              enroll_time: str) -> None:
    """Store a credential's hash unconditionally (test and benchmark set-up only: Enroll uses `create_agent`
    and `replace_agent`, which never re-key an identity without proof)."""
    ddb.put_item(TableName=table, Item=aws.to_item(_agent_item(tenant, asset_id, secret_sha256, epoch, enroll_time)))


def create_agent(ddb: Any, table: str, tenant: str, asset_id: str, secret_sha256: str, epoch: int,
                 enroll_time: str) -> None:
    """Store the first credential of an asset; AlreadyExists when it has one (an enrollment never re-keys)."""
    try:
        ddb.put_item(TableName=table, Item=aws.to_item(_agent_item(tenant, asset_id, secret_sha256, epoch,
                                                                   enroll_time)),
                     ConditionExpression="attribute_not_exists(SK)")
    except ddb.exceptions.ConditionalCheckFailedException:
        raise AlreadyExists(f"asset {asset_id} already has an agent credential; re-enrolling needs the current "
                            "credential or an operator's re-enrollment code", reason="ALREADY_ENROLLED") from None


def replace_agent(ddb: Any, table: str, tenant: str, asset_id: str, previous_sha256: str | None,
                  secret_sha256: str, epoch: int, enroll_time: str, *, readmit: bool = False) -> None:
    """Replace the credential whose hash is `previous_sha256` (None: the asset has none yet) by a new one.

    A rotation (`readmit` False) also requires the previous credential not to be revoked; a redeemed
    re-enrollment code (`readmit` True) re-admits a revoked asset. PermissionDenied when the credential
    changed since it was read.
    """
    condition = "attribute_not_exists(SK)"
    values: dict[str, Any] = {}
    if previous_sha256 is not None:
        condition = "secret_sha256 = :old" if readmit else "secret_sha256 = :old AND revoked = :no"
        values = {":old": previous_sha256} if readmit else {":old": previous_sha256, ":no": False}
    try:
        ddb.put_item(TableName=table, Item=aws.to_item(_agent_item(tenant, asset_id, secret_sha256, epoch,
                                                                   enroll_time)),
                     ConditionExpression=condition,
                     **({"ExpressionAttributeValues": aws.to_item(values)} if values else {}))
    except ddb.exceptions.ConditionalCheckFailedException:
        raise PermissionDenied(f"the agent credential of asset {asset_id} changed meanwhile",
                               reason="CREDENTIAL_CHANGED") from None


def _agent_item(tenant: str, asset_id: str, secret_sha256: str, epoch: int, enroll_time: str) -> dict[str, Any]:
    return {"PK": keys.agent_pk(tenant), "SK": keys.agent_sk(asset_id), "asset_id": asset_id,
            "secret_sha256": secret_sha256, "epoch": epoch, "durable_seq": 0, "revoked": False,
            "enroll_time": enroll_time}


def put_agents(ddb: Any, table: str, agents: list[tuple[str, str, str]], epoch: int, enroll_time: str) -> None:
    """`put_agent` for many (tenant, asset, secret SHA-256) at once with BatchWriteItem (benchmark set-up)."""
    items = [_agent_item(tenant, asset_id, secret_sha256, epoch, enroll_time)
             for tenant, asset_id, secret_sha256 in agents]
    _batch_put(ddb, table, items, "credential")


def get_agent(ddb: Any, table: str, tenant: str, asset_id: str) -> AgentRecord | None:
    got = ddb.get_item(
        TableName=table,
        Key=aws.to_item({"PK": keys.agent_pk(tenant), "SK": keys.agent_sk(asset_id)}),
        ConsistentRead=True,
    )
    if "Item" not in got:
        return None
    return _agent_record(tenant, asset_id, aws.from_item(got["Item"]))


def _agent_record(tenant: str, asset_id: str, item: dict[str, Any]) -> AgentRecord:
    return AgentRecord(
        tenant=tenant,
        asset_id=asset_id,
        secret_sha256=str(item.get("secret_sha256", "")),
        epoch=int(item.get("epoch", 0)),
        durable_seq=int(item.get("durable_seq", 0)),
        revoked=bool(item.get("revoked", False)),
        open_alerts=_open_alerts(asset_id, item),
    )


def _open_alerts(asset_id: str, item: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    alerts = {str(k): str(v) for k, v in (item.get("open_alerts") or {}).items()}
    if item.get("outdated_since"):
        alerts[AGENT_OUTDATED] = keys.health_sk(asset_id, str(item["outdated_since"]), AGENT_OUTDATED)
    return tuple(sorted(alerts.items()))


MAX_BATCH_GET = 100


def get_agents(ddb: Any, table: str, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], AgentRecord]:
    """Credential items of many (tenant, asset) pairs with consistent BatchGetItem (100 a call); absent ones
    are missing from the result. Unprocessed keys are asked again; Unavailable if they stay unprocessed."""
    found: dict[tuple[str, str], AgentRecord] = {}
    unique = list(dict.fromkeys(wanted))
    for start in range(0, len(unique), MAX_BATCH_GET):
        by_key = {(keys.agent_pk(t), keys.agent_sk(a)): (t, a) for t, a in unique[start:start + MAX_BATCH_GET]}
        pending = [aws.to_item({"PK": pk, "SK": sk}) for pk, sk in by_key]
        for attempt in range(MAX_BATCH_RETRIES):
            got = ddb.batch_get_item(RequestItems={table: {"Keys": pending, "ConsistentRead": True}})
            for raw in got.get("Responses", {}).get(table, []):
                item = aws.from_item(raw)
                pair = by_key.get((str(item.get("PK")), str(item.get("SK"))))
                if pair is not None:
                    found[pair] = _agent_record(pair[0], pair[1], item)
            pending = got.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if not pending:
                break
            time.sleep(min(1.0, 0.02 * 2**attempt))
        if pending:
            raise Unavailable(f"{len(pending)} credential reads stayed unprocessed")
    return found


def revoke_agent(ddb: Any, table: str, tenant: str, asset_id: str, when: str) -> None:
    try:
        ddb.update_item(
            TableName=table,
            Key=aws.to_item({"PK": keys.agent_pk(tenant), "SK": keys.agent_sk(asset_id)}),
            UpdateExpression="SET revoked = :t, revoke_time = :w",
            ConditionExpression="attribute_exists(SK)",
            ExpressionAttributeValues=aws.to_item({":t": True, ":w": when}),
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        raise NotFound(f"asset {asset_id} has no agent credential") from None


def save_durable_seq(ddb: Any, table: str, tenant: str, asset_id: str, secret_sha256: str, seq: int) -> bool:
    """Raise the stored durable seq of this credential to `seq`; False when it moved on or was replaced."""
    try:
        ddb.update_item(
            TableName=table,
            Key=aws.to_item({"PK": keys.agent_pk(tenant), "SK": keys.agent_sk(asset_id)}),
            UpdateExpression="SET durable_seq = :s",
            ConditionExpression="attribute_exists(SK) AND secret_sha256 = :h AND durable_seq < :s",
            ExpressionAttributeValues=aws.to_item({":s": seq, ":h": secret_sha256}),
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


# ------------------------------------------------------------------------------------------- telemetry


@dataclass(frozen=True)
class FindingRecord:
    rule_id: str
    severity: str
    summary: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class TelemetryRecord:
    """One heartbeat as stored: keys are deterministic in (tenant, asset, observe time, seq)."""

    tenant: str
    asset_id: str
    seq: int
    epoch: int
    observe_time: str
    receive_time: str
    inventory_digest: str
    inventory: bytes | None
    model_keys: list[str] | None
    findings: list[FindingRecord]
    spool_dropped: int
    replayed: bool


def telemetry_item(record: TelemetryRecord, shards: int, ttl_seconds: int, now_epoch: float) -> dict[str, Any]:
    """The DynamoDB item of a telemetry record (alerting records also carry the sparse GSI2 keys)."""
    shard = keys.shard_of(record.asset_id, record.seq, shards)
    alerting = [f for f in record.findings if f.severity in keys.SEVERITIES]
    values: dict[str, Any] = {
        "PK": keys.telemetry_pk(record.tenant, shard),
        "SK": keys.telemetry_sk(record.asset_id, record.observe_time, record.seq),
        "GSI1PK": keys.asset_gsi1pk(record.tenant, record.asset_id),
        "GSI1SK": keys.date_gsi1sk(record.observe_time),
        "asset_id": record.asset_id,
        "seq": record.seq,
        "epoch": record.epoch,
        "observe_time": record.observe_time,
        "receive_time": record.receive_time,
        "inventory_digest": record.inventory_digest,
        "kind": "inventory" if record.inventory is not None else "keepalive",
        "spool_dropped": record.spool_dropped,
        "replayed": record.replayed,
        TTL_ATTRIBUTE: int(now_epoch) + ttl_seconds,
    }
    if record.inventory is not None:
        values["inventory"] = zlib.compress(record.inventory, 6)
        values["model_keys"] = list(record.model_keys or [])
    if record.findings:
        values["findings"] = json.dumps(
            [{"rule_id": f.rule_id, "severity": f.severity, "summary": f.summary, "evidence": f.evidence}
             for f in record.findings],
            separators=(",", ":"), sort_keys=True,
        )
        values["max_severity"] = max((f.severity for f in record.findings), key=lambda s: _SEVERITY_RANK.get(s, 0))
    if alerting:
        top = max((f.severity for f in alerting), key=lambda s: _SEVERITY_RANK[s])
        values["GSI2PK"] = keys.alert_gsi2pk(record.tenant, top)
        values["GSI2SK"] = keys.alert_gsi2sk(record.observe_time, record.asset_id)
    return values


def _size(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value.encode() if isinstance(value, str) else value)
    if isinstance(value, (list, tuple)):
        return 3 + sum(_size(v) + 1 for v in value)
    if isinstance(value, dict):
        return 3 + sum(len(k) + _size(v) + 1 for k, v in value.items())
    return 21 if isinstance(value, (int, float)) else 1


def write_units(item: dict[str, Any]) -> int:
    """DynamoDB write units a put of `item` costs: the table plus each GSI the item is in (1 KB each)."""
    size = sum(len(name) + _size(value) for name, value in item.items())
    per_copy = -(-size // 1024)
    copies = 1 + ("GSI1PK" in item) + ("GSI2PK" in item)
    return per_copy * copies


def put_telemetry(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    """Write items with BatchWriteItem (25 a call), retrying unprocessed ones; Unavailable if they stay.

    Items with the same key (one heartbeat delivered twice in a batch) are written once.
    """
    _batch_put(ddb, table, items, "telemetry")


def _batch_put(ddb: Any, table: str, items: list[dict[str, Any]], what: str) -> None:
    items = list({(str(i["PK"]), str(i["SK"])): i for i in items}.values())
    for start in range(0, len(items), 25):
        pending = [{"PutRequest": {"Item": aws.to_item(item)}} for item in items[start:start + 25]]
        for attempt in range(MAX_BATCH_RETRIES):
            got = ddb.batch_write_item(RequestItems={table: pending})
            pending = got.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
            time.sleep(min(1.0, 0.02 * 2**attempt))
        if pending:
            raise Unavailable(f"{len(pending)} {what} items stayed unprocessed")


def previous_model_keys(ddb: Any, table: str, tenant: str, asset_id: str, ts: str, seq: int,
                        max_pages: int = 10) -> list[str] | None:
    """Model keys of the asset's newest inventory before (ts, seq); None when there is none."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": GSI1,
        "KeyConditionExpression": "GSI1PK = :pk AND GSI1SK BETWEEN :lo AND :hi",
        "FilterExpression": "attribute_exists(model_keys)",
        "ExpressionAttributeValues": aws.to_item({
            ":pk": keys.asset_gsi1pk(tenant, asset_id),
            ":lo": keys.date_gsi1sk(_EPOCH_START),
            ":hi": keys.date_gsi1sk(ts),
        }),
        "ProjectionExpression": "model_keys, seq, observe_time",
        "ScanIndexForward": False,
    }
    for _ in range(max_pages):
        got = ddb.query(**kwargs)
        for raw in got.get("Items", []):
            item = aws.from_item(raw)
            if item.get("observe_time") == ts and int(item.get("seq", 0)) >= seq:
                continue
            return [str(k) for k in item.get("model_keys", [])]
        if "LastEvaluatedKey" not in got:
            return None
        kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]
    return None


def count_telemetry(ddb: Any, table: str, tenant: str, asset_id: str) -> int:
    """How many telemetry records the asset has (tests and benchmarks)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": GSI1,
        "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :d)",
        "ExpressionAttributeValues": aws.to_item({":pk": keys.asset_gsi1pk(tenant, asset_id),
                                                  ":d": keys.DATE_PREFIX}),
        "Select": "COUNT",
    }
    total = 0
    while True:
        got = ddb.query(**kwargs)
        total += int(got.get("Count", 0))
        if "LastEvaluatedKey" not in got:
            return total
        kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]


def get_telemetry(ddb: Any, table: str, tenant: str, asset_id: str, ts: str, seq: int,
                  shards: int) -> dict[str, Any] | None:
    """One telemetry item by its deterministic key (plain values), or None."""
    got = ddb.get_item(
        TableName=table,
        Key=aws.to_item({"PK": keys.telemetry_pk(tenant, keys.shard_of(asset_id, seq, shards)),
                         "SK": keys.telemetry_sk(asset_id, ts, seq)}),
        ConsistentRead=True,
    )
    return aws.from_item(got["Item"]) if "Item" in got else None


# ---------------------------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class AlertRecord:
    asset_id: str
    rule_id: str
    severity: str
    summary: str
    evidence: dict[str, Any]
    observe_time: str
    heartbeat_seq: int
    resolve_time: str = ""

    def to_proto(self) -> common_pb2.Alert:
        evidence = struct_pb2.Struct()
        evidence.update(self.evidence)
        alert = common_pb2.Alert(
            asset_id=self.asset_id,
            rule_id=self.rule_id,
            severity=common_pb2.Severity.Value(f"SEVERITY_{self.severity}"),
            summary=self.summary,
            evidence=evidence,
            heartbeat_seq=self.heartbeat_seq,
        )
        alert.observe_time.FromJsonString(self.observe_time)
        if self.resolve_time:
            alert.resolve_time.FromJsonString(self.resolve_time)
        return alert


def _alert_severities(min_severity: str) -> tuple[str, ...]:
    if min_severity in ("", "INFO", "WARNING", "SEVERITY_UNSPECIFIED", "SEVERITY_INFO", "SEVERITY_WARNING"):
        return ("CRITICAL", "WARNING")
    if min_severity in ("CRITICAL", "SEVERITY_CRITICAL"):
        return ("CRITICAL",)
    raise InvalidArgument.field("min_severity", "must be WARNING or CRITICAL")


def _page_of(ddb: Any, table: str, tenant: str, severity: str, asset_id: str, start: str, end: str,
             limit: int, cursor: dict[str, str] | None) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` alerting items of one severity partition, newest first; True when it is exhausted."""
    values: dict[str, Any] = {":pk": keys.alert_gsi2pk(tenant, severity),
                              ":lo": keys.alert_gsi2sk_bound(start), ":hi": keys.alert_gsi2sk_bound(end)}
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": GSI2,
        "KeyConditionExpression": "GSI2PK = :pk AND GSI2SK BETWEEN :lo AND :hi",
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if asset_id:
        kwargs["FilterExpression"] = "asset_id = :a"
        values[":a"] = asset_id
    kwargs["ExpressionAttributeValues"] = aws.to_item(values)
    if cursor:
        kwargs["ExclusiveStartKey"] = aws.to_item(cursor)
    items: list[dict[str, Any]] = []
    while len(items) < limit:
        got = ddb.query(**kwargs)
        items.extend(aws.from_item(i) for i in got.get("Items", []))
        if "LastEvaluatedKey" not in got:
            return items[:limit], len(items) <= limit
        kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]
    return items[:limit], False


def list_alerts(
    ddb: Any,
    table: str,
    tenant: str,
    min_severity: str,
    asset_id: str,
    start: str,
    end: str,
    limit: int,
    start_key: dict[str, Any] | None,
) -> tuple[list[AlertRecord], dict[str, Any] | None]:
    """The tenant's alerts, newest first, from the sparse GSI2 (WARNING and CRITICAL partitions merged).

    `min_severity` is "WARNING" or "CRITICAL" (the proto's SEVERITY_ names work too); `start` and `end`
    are RFC 3339 UTC key timestamps (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, empty for open), `start` included
    and `end` excluded; `asset_id` empty for every asset. A page holds the alerts of at most `limit`
    telemetry records. `start_key` is the `next_key` of the page before (a JSON-serialisable dict of
    strings, or None for the first page); `next_key` is None on the last page.
    """
    if asset_id:
        keys.agent_sk(asset_id)  # validates the id before it reaches a filter
    limit = max(1, min(limit or 50, 500))
    start = start or _EPOCH_START
    end = end or "9999-12-31T23:59:59.999999Z"
    severities = _alert_severities(min_severity)
    cursors: dict[str, Any] = dict(start_key or {})
    pages: dict[str, list[dict[str, Any]]] = {}
    exhausted: dict[str, bool] = {}
    for severity in severities:
        cursor = cursors.get(severity)
        if cursor == "done":
            pages[severity], exhausted[severity] = [], True
            continue
        if cursor is not None and not isinstance(cursor, dict):
            raise InvalidArgument.field("page_token", "is not a token this service issued")
        pages[severity], exhausted[severity] = _page_of(
            ddb, table, tenant, severity, asset_id, start, end, limit, cursor
        )
    merged = sorted(
        ((item, severity) for severity, items in pages.items() for item in items),
        key=lambda pair: (str(pair[0]["GSI2SK"]), str(pair[0]["SK"])),
        reverse=True,
    )[:limit]
    taken: dict[str, int] = {s: 0 for s in severities}
    alerts: list[AlertRecord] = []
    floor = _SEVERITY_RANK[severities[-1]]
    for item, severity in merged:
        taken[severity] += 1
        cursors[severity] = {k: str(item[k]) for k in ("PK", "SK", "GSI2PK", "GSI2SK")}
        for finding in json.loads(str(item.get("findings", "[]"))):
            if _SEVERITY_RANK.get(finding.get("severity", ""), 0) >= floor:
                alerts.append(AlertRecord(
                    asset_id=str(item["asset_id"]),
                    rule_id=str(finding["rule_id"]),
                    severity=str(finding["severity"]),
                    summary=str(finding.get("summary", "")),
                    evidence=dict(finding.get("evidence", {})),
                    observe_time=str(item["observe_time"]),
                    heartbeat_seq=int(item["seq"]),
                    resolve_time=str(item.get("resolve_time", "")),
                ))
    for severity in severities:
        if exhausted[severity] and taken[severity] == len(pages[severity]):
            cursors[severity] = "done"
    finished = all(cursors.get(s) == "done" for s in severities)
    return alerts, None if finished else {s: cursors.get(s) for s in severities}
