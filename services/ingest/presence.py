# ruff: noqa: PLR0917 - store functions take (ddb, table, tenant, ...) positionally, like the access patterns
"""Connection state on the agent's item and agent-health alert items (see ACCESS_PATTERNS.md).

Writes happen when a stream opens or closes, when the health sweep finds a check due, and (for open
streams) inside the durable-seq write-down that already exists; none per heartbeat. Every write of
the agent item is conditioned on the credential (`secret_sha256`), so a re-enrolled or revoked agent's
late write cannot touch its successor, and writes about one stream are conditioned on its id.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.ingest import keys
from services.ingest.health import ONLINE, Connection, Stage
from services.kit import aws
from services.kit.table import GSI2

_FIELDS = ("conn_state", "conn_stream", "conn_since", "conn_reason", "last_seen", "online_until", "missing_at",
           "agent_version", "agent_platform", "outdated", "outdated_since", "watch_stage", "GSI2SK", "open_alerts",
           "asset_id")


def connection_from(asset_id: str, item: dict[str, Any]) -> Connection:
    """The connection fields of an agent item (plain values)."""
    due = str(item.get("GSI2SK", "")).split("#", 1)[0] if item.get("watch_stage") else ""
    alerts = item.get("open_alerts") or {}
    return Connection(
        asset_id=asset_id,
        state=str(item.get("conn_state", "")),
        stream_id=str(item.get("conn_stream", "")),
        since=str(item.get("conn_since", "")),
        reason=str(item.get("conn_reason", "")),
        last_seen=str(item.get("last_seen", "")),
        online_until=str(item.get("online_until", "")),
        missing_at=str(item.get("missing_at", "")),
        agent_version=str(item.get("agent_version", "")),
        platform=str(item.get("agent_platform", "")),
        outdated=bool(item.get("outdated", False)),
        outdated_since=str(item.get("outdated_since", "")),
        stage=str(item.get("watch_stage", "")),
        due=due,
        open_alerts=tuple(sorted((str(k), str(v)) for k, v in alerts.items())),
    )


def _key(tenant: str, asset_id: str) -> dict[str, Any]:
    return aws.to_item({"PK": keys.agent_pk(tenant), "SK": keys.agent_sk(asset_id)})


def _conditional(ddb: Any, **kwargs: Any) -> bool:
    try:
        ddb.update_item(**kwargs)
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def open_connection(ddb: Any, table: str, tenant: str, asset_id: str, secret_sha256: str, stream_id: str, now: str,
                    online_until: str, missing_at: str, version: str, platform: str, outdated_since: str,
                    resolved_rules: Sequence[str], replica: str = "") -> bool:
    """Record a stream that opened (online until `online_until` unless refreshed); False if the credential changed.

    `resolved_rules` are the open alerts this return resolves: they leave the item's `open_alerts`.
    `outdated_since` is when the agent-outdated alert of its version was raised ("": the version is accepted).
    `replica` is the internal address of the ingest replica holding the stream, where nudges are forwarded.
    """
    names = {f"#r{i}": rule for i, rule in enumerate(resolved_rules)}
    kwargs: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
    removes = [f"open_alerts.{name}" for name in names]
    values: dict[str, Any] = {
        ":on": ONLINE, ":id": stream_id, ":now": now, ":empty": "", ":until": online_until,
        ":missing": missing_at, ":v": version, ":p": platform, ":old": bool(outdated_since),
        ":stage": Stage.LEASE.value, ":wpk": keys.agent_watch_gsi2pk(tenant),
        ":wsk": keys.agent_watch_gsi2sk(online_until, asset_id), ":h": secret_sha256, ":rep": replica,
    }
    sets = ("conn_state = :on, conn_stream = :id, conn_since = :now, conn_reason = :empty, last_seen = :now, "
            "online_until = :until, missing_at = :missing, agent_version = :v, agent_platform = :p, "
            "outdated = :old, watch_stage = :stage, GSI2PK = :wpk, GSI2SK = :wsk, conn_replica = :rep")
    if outdated_since:
        sets += ", outdated_since = :os"
        values[":os"] = outdated_since
    else:
        removes.append("outdated_since")
    return _conditional(
        ddb, TableName=table, Key=_key(tenant, asset_id),
        UpdateExpression=f"SET {sets}" + (f" REMOVE {', '.join(removes)}" if removes else ""),
        ConditionExpression="attribute_exists(SK) AND secret_sha256 = :h",
        ExpressionAttributeValues=aws.to_item(values),
        **kwargs,
    )


def refresh_connection(ddb: Any, table: str, tenant: str, asset_id: str, secret_sha256: str, stream_id: str,
                       now: str, online_until: str, missing_at: str, durable_seq: int | None) -> bool:
    """Extend an open stream's lease, in the same write as its durable seq when that advanced.

    False when the stream is no longer the asset's current one, or the seq did not advance.
    """
    sets = "last_seen = :now, online_until = :until, missing_at = :missing, GSI2SK = :wsk"
    condition = "secret_sha256 = :h AND conn_stream = :id AND conn_state = :on"
    values: dict[str, Any] = {":now": now, ":until": online_until, ":missing": missing_at, ":h": secret_sha256,
                              ":id": stream_id, ":on": ONLINE,
                              ":wsk": keys.agent_watch_gsi2sk(online_until, asset_id)}
    if durable_seq is not None:
        sets += ", durable_seq = :s"
        condition += " AND durable_seq < :s"
        values[":s"] = durable_seq
    return _conditional(ddb, TableName=table, Key=_key(tenant, asset_id), UpdateExpression=f"SET {sets}",
                        ConditionExpression=condition, ExpressionAttributeValues=aws.to_item(values))


def set_outdated(ddb: Any, table: str, tenant: str, connection: Connection, outdated_since: str) -> bool:
    """Mark an agent outdated since `outdated_since` ("": no longer), connected or not; False when another stream
    opened since `connection` was read (that open judged the version itself)."""
    update = "SET outdated = :old" + (", outdated_since = :os" if outdated_since else " REMOVE outdated_since")
    values: dict[str, Any] = {":old": bool(outdated_since), ":id": connection.stream_id}
    if outdated_since:
        values[":os"] = outdated_since
    return _conditional(ddb, TableName=table, Key=_key(tenant, connection.asset_id), UpdateExpression=update,
                        ConditionExpression="conn_stream = :id",
                        ExpressionAttributeValues=aws.to_item(values))


def close_connection(ddb: Any, table: str, tenant: str, asset_id: str, secret_sha256: str, stream_id: str,
                     now: str, reason: str, last_seen: str, missing_at: str, stage: Stage, due: str) -> bool:
    """Record that this stream ended (with its goodbye's reason, or "" without one); the sweep checks it at `due`."""
    return _conditional(
        ddb, TableName=table, Key=_key(tenant, asset_id),
        UpdateExpression=("SET conn_state = :off, conn_since = :now, conn_reason = :reason, last_seen = :seen, "
                          "missing_at = :missing, watch_stage = :stage, GSI2PK = :wpk, GSI2SK = :wsk"),
        ConditionExpression="secret_sha256 = :h AND conn_stream = :id AND conn_state = :on",
        ExpressionAttributeValues=aws.to_item({
            ":off": "offline", ":now": now, ":reason": reason, ":seen": last_seen, ":missing": missing_at,
            ":stage": stage.value, ":wpk": keys.agent_watch_gsi2pk(tenant),
            ":wsk": keys.agent_watch_gsi2sk(due, asset_id), ":h": secret_sha256, ":id": stream_id, ":on": ONLINE,
        }),
    )


def mark_tenant_watched(ddb: Any, table: str, tenant: str) -> None:
    """Put the tenant on the sweep's tenant list (a marker item; putting it again changes nothing)."""
    ddb.put_item(TableName=table, Item=aws.to_item({
        "PK": keys.agent_pk(tenant), "SK": keys.WATCHED_TENANT_SK, "tenant_id": tenant,
        "GSI2PK": keys.WATCHED_TENANTS_GSI2PK, "GSI2SK": keys.watched_tenant_gsi2sk(tenant),
    }))


def watched_tenants(ddb: Any, table: str) -> list[str]:
    """Every tenant on the sweep's tenant list (sparse GSI2, tenant id order, every page)."""
    items = aws.query_items(ddb, TableName=table, IndexName=GSI2, ProjectionExpression="GSI2SK",
                            KeyConditionExpression="GSI2PK = :pk",
                            ExpressionAttributeValues=aws.to_item({":pk": keys.WATCHED_TENANTS_GSI2PK}))
    return [str(aws.from_item(raw)["GSI2SK"]) for raw in items]


def due_connections(ddb: Any, table: str, tenant: str, now: str, limit: int = 100) -> list[Connection]:
    """Agents of the tenant whose check is due at `now` (sparse GSI2, oldest due first)."""
    got = ddb.query(
        TableName=table, IndexName=GSI2, Limit=limit,
        KeyConditionExpression="GSI2PK = :pk AND GSI2SK <= :hi",
        ExpressionAttributeValues=aws.to_item({":pk": keys.agent_watch_gsi2pk(tenant),
                                               ":hi": keys.agent_watch_gsi2sk_bound(now)}),
    )
    out = []
    for raw in got.get("Items", []):
        item = aws.from_item(raw)
        out.append(connection_from(str(item.get("asset_id", "")), item))
    return out


def apply_check(ddb: Any, table: str, tenant: str, connection: Connection, reason: str, next_stage: Stage | None,
                next_due: str, raised: dict[str, str]) -> bool:
    """Move a due agent on (state offline, `reason`, next stage or none) and note the alerts raised for it.

    Conditioned on the due key and connection time that were read: every write that changes the item's
    open alerts also changes its due key, so a match means the alerts read are current, and of the
    replicas' sweeps only one wins.
    """
    values: dict[str, Any] = {":off": "offline", ":reason": reason, ":since": connection.since,
                              ":old": keys.agent_watch_gsi2sk(connection.due, connection.asset_id),
                              ":alerts": {**dict(connection.open_alerts), **raised}}
    update = "SET conn_state = :off, conn_reason = :reason, open_alerts = :alerts"
    if next_stage is None:
        update += " REMOVE watch_stage, GSI2PK, GSI2SK"
    else:
        update += ", watch_stage = :stage, GSI2SK = :wsk"
        values[":stage"] = next_stage.value
        values[":wsk"] = keys.agent_watch_gsi2sk(next_due, connection.asset_id)
    return _conditional(
        ddb, TableName=table, Key=_key(tenant, connection.asset_id), UpdateExpression=update,
        ConditionExpression="GSI2SK = :old AND conn_since = :since",
        ExpressionAttributeValues=aws.to_item(values),
    )


def put_health_alert(ddb: Any, table: str, tenant: str, asset_id: str, since: str, rule_id: str, severity: str,
                     summary: str, evidence: dict[str, Any], now: str) -> str:
    """Write one agent-health alert (once per rule and disconnection); its sort key."""
    sk = keys.health_sk(asset_id, since, rule_id)
    item: dict[str, Any] = {
        "PK": keys.health_pk(tenant), "SK": sk, "asset_id": asset_id, "rule_id": rule_id, "seq": 0,
        "observe_time": now, "kind": "health", "max_severity": severity,
        "findings": json.dumps([{"rule_id": rule_id, "severity": severity, "summary": summary,
                                 "evidence": evidence}], separators=(",", ":"), sort_keys=True),
    }
    if severity in keys.SEVERITIES:
        item["GSI2PK"] = keys.alert_gsi2pk(tenant, severity)
        item["GSI2SK"] = keys.alert_gsi2sk(now, asset_id)
    # Raised before (a retried sweep): the first one stands.
    with contextlib.suppress(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(TableName=table, Item=aws.to_item(item), ConditionExpression="attribute_not_exists(SK)")
    return sk


def resolve_health_alerts(ddb: Any, table: str, tenant: str, sort_keys: Iterable[str], now: str) -> int:
    """Mark agent-health alerts resolved at `now` (those not resolved yet); how many were."""
    resolved = 0
    for sk in sort_keys:
        if not sk.startswith(keys.HEALTH_SK_PREFIX):
            continue
        resolved += _conditional(
            ddb, TableName=table, Key=aws.to_item({"PK": keys.health_pk(tenant), "SK": sk}),
            UpdateExpression="SET resolve_time = :now",
            ConditionExpression="attribute_exists(SK) AND attribute_not_exists(resolve_time)",
            ExpressionAttributeValues=aws.to_item({":now": now}),
        )
    return resolved


@dataclass(frozen=True)
class StreamHolder:
    """Which ingest replica recorded the asset's current stream, as of its open write."""

    replica: str
    stream_id: str
    online: bool


def stream_holder(ddb: Any, table: str, tenant: str, asset_id: str) -> StreamHolder | None:
    """The replica holding the asset's stream (consistent GetItem, projected); None for an unknown asset."""
    got = ddb.get_item(TableName=table, Key=_key(tenant, asset_id), ConsistentRead=True,
                       ProjectionExpression="conn_state, conn_stream, conn_replica")
    if "Item" not in got:
        return None
    item = aws.from_item(got["Item"])
    return StreamHolder(str(item.get("conn_replica", "")), str(item.get("conn_stream", "")),
                        item.get("conn_state") == ONLINE)


def get_connection(ddb: Any, table: str, tenant: str, asset_id: str) -> Connection | None:
    got = ddb.get_item(TableName=table, Key=_key(tenant, asset_id), ConsistentRead=True)
    return connection_from(asset_id, aws.from_item(got["Item"])) if "Item" in got else None


def get_connections(ddb: Any, table: str, tenant: str, asset_ids: Sequence[str]) -> dict[str, Connection]:
    """The connections of up to 100 assets of the tenant (BatchGetItem; absent agents are left out)."""
    unique = list(dict.fromkeys(asset_ids))[:100]
    if not unique:
        return {}
    request: dict[str, Any] = {"Keys": [_key(tenant, a) for a in unique], "ProjectionExpression":
                               ", ".join(_FIELDS), "ConsistentRead": True}
    out: dict[str, Connection] = {}
    for _ in range(8):
        got = ddb.batch_get_item(RequestItems={table: request})
        for raw in got.get("Responses", {}).get(table, []):
            item = aws.from_item(raw)
            out[str(item.get("asset_id", ""))] = connection_from(str(item.get("asset_id", "")), item)
        pending = got.get("UnprocessedKeys", {}).get(table)
        if not pending:
            break
        request = pending
    return out


def list_connections(ddb: Any, table: str, tenant: str, after_asset: str = "",
                     limit: int = 1000) -> tuple[list[Connection], str]:
    """The tenant's agents in asset-id order from after `after_asset`; the last asset id when more may follow."""
    kwargs: dict[str, Any] = {
        "TableName": table, "Limit": limit, "ProjectionExpression": ", ".join(_FIELDS),
        "KeyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
        "ExpressionAttributeValues": aws.to_item({":pk": keys.agent_pk(tenant), ":sk": keys.AGENT_SK_PREFIX}),
    }
    if after_asset:
        kwargs["ExclusiveStartKey"] = _key(tenant, after_asset)
    got = ddb.query(**kwargs)
    found = [connection_from(str(aws.from_item(raw).get("asset_id", "")), aws.from_item(raw))
             for raw in got.get("Items", [])]
    more = "LastEvaluatedKey" in got and bool(found)
    return found, found[-1].asset_id if more else ""
