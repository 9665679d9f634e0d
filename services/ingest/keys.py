"""Keys of the items ingest owns: agent credentials, telemetry and alerts (see ACCESS_PATTERNS.md).

This module is the only code that writes these prefixes into keys. Every builder validates each
identifier (and timestamp) it takes before it reaches a key, so a `#` can never forge one.
"""

from __future__ import annotations

import hashlib
import re

from services.kit.errors import InvalidArgument
from services.kit.ids import validate_id

ENTITY_PREFIXES = ("AGENT", "AGENT_CREDS", "TELEMETRY", "SHARD", "ALERT", "DATE", "HEALTH", "AGENT_WATCH")

AGENT_SK_PREFIX = "AGENT#"
HEALTH_SK_PREFIX = "HEALTH#"
DATE_PREFIX = "DATE#"
SEVERITIES = ("WARNING", "CRITICAL")

# Timestamps in keys: RFC 3339 UTC with exactly six fractional digits, so they sort as text.
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_SEQ_DIGITS = 20


def validate_ts(field: str, value: str) -> str:
    """A key timestamp, or InvalidArgument naming `field`."""
    if not _TS.fullmatch(value):
        raise InvalidArgument.field(field, "must be a UTC timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return value


def _severity(value: str) -> str:
    if value not in SEVERITIES:
        raise InvalidArgument.field("severity", "must be WARNING or CRITICAL")
    return value


def _seq(seq: int) -> str:
    if not 0 <= seq < 10**_SEQ_DIGITS:
        raise InvalidArgument.field("seq", "must be a non-negative 64-bit number")
    return f"{seq:0{_SEQ_DIGITS}d}"


def _tenant(tenant: str) -> str:
    return f"TENANT#{validate_id('tenant_id', tenant)}"


def agent_pk(tenant: str) -> str:
    """`TENANT#t#AGENT_CREDS`: the tenant's agent credentials, a partition only the ingest role may write."""
    return f"{_tenant(tenant)}#AGENT_CREDS"


def agent_sk(asset_id: str) -> str:
    return f"{AGENT_SK_PREFIX}{validate_id('asset_id', asset_id)}"


def shard_of(asset_id: str, seq: int, shards: int) -> int:
    """The telemetry write shard of one heartbeat: a stable hash of (asset, seq), so redelivery agrees."""
    if shards <= 0:
        raise InvalidArgument.field("shards", "must be positive")
    digest = hashlib.blake2b(f"{validate_id('asset_id', asset_id)}\n{_seq(seq)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def telemetry_pk(tenant: str, shard: int) -> str:
    """`TENANT#t#TELEMETRY#SHARD#k`: one of the tenant's write-sharded telemetry partitions."""
    if shard < 0:
        raise InvalidArgument.field("shard", "must not be negative")
    return f"{_tenant(tenant)}#TELEMETRY#SHARD#{shard}"


def telemetry_sk(asset_id: str, ts: str, seq: int) -> str:
    """`TELEMETRY#a#ts#seq`: deterministic, so the same heartbeat always lands on the same item."""
    return f"TELEMETRY#{validate_id('asset_id', asset_id)}#{validate_ts('ts', ts)}#{_seq(seq)}"


def asset_gsi1pk(tenant: str, asset_id: str) -> str:
    """`TENANT#t#ASSET#a`: an asset's timeline (assets writes its commands under the same key)."""
    return f"{_tenant(tenant)}#ASSET#{validate_id('asset_id', asset_id)}"


def date_gsi1sk(ts: str) -> str:
    return f"{DATE_PREFIX}{validate_ts('ts', ts)}"


def alert_gsi2pk(tenant: str, severity: str) -> str:
    """`TENANT#t#ALERT#<severity>`: the sparse alert list, WARNING and CRITICAL only."""
    return f"{_tenant(tenant)}#ALERT#{_severity(severity)}"


def alert_gsi2sk(ts: str, asset_id: str) -> str:
    return f"{validate_ts('ts', ts)}#{validate_id('asset_id', asset_id)}"


def alert_gsi2sk_bound(ts: str) -> str:
    """A GSI2 sort-key bound for a time range (`ts` alone sorts before every `ts#a`)."""
    return validate_ts("ts", ts)


def agent_watch_gsi2pk(tenant: str) -> str:
    """`TENANT#t#AGENT_WATCH`: the sparse list of agents with a connection check due (the health sweep)."""
    return f"{_tenant(tenant)}#AGENT_WATCH"


def agent_watch_gsi2sk(due: str, asset_id: str) -> str:
    """`due#a`: when the check of the agent is due, so the sweep reads only what is due."""
    return f"{validate_ts('due', due)}#{validate_id('asset_id', asset_id)}"


def agent_watch_gsi2sk_bound(now: str) -> str:
    """The highest `due#a` sort key due at `now` (`~` sorts after every character of an id)."""
    return f"{validate_ts('now', now)}#~"


# The sweep's tenant list: one marker item per tenant whose agents have connection state, in the tenant's
# own agent partition (the only one ingest may write), listed through a sparse GSI2 partition of its own.
WATCHED_TENANT_SK = "AGENT_WATCH#TENANT"
WATCHED_TENANTS_GSI2PK = "AGENT_WATCH#TENANTS"


def watched_tenant_gsi2sk(tenant: str) -> str:
    """The tenant id itself: the sweep's tenant list reads back the tenants in id order."""
    return validate_id("tenant_id", tenant)


def health_pk(tenant: str) -> str:
    """`TENANT#t#AGENT_CREDS`: the tenant's agent-health alerts (agent silent, missing, stopped while isolated).

    They share the agent credentials' partition (`HEALTH#` sort keys beside `AGENT#`), the only one the
    ingest role may write.
    """
    return agent_pk(tenant)


def health_sk(asset_id: str, since: str, rule_id: str) -> str:
    """`HEALTH#a#since#rule`: one alert per rule and disconnection, so a retried raise lands on the same item."""
    rule = validate_id("rule_id", rule_id)
    return f"{HEALTH_SK_PREFIX}{validate_id('asset_id', asset_id)}#{validate_ts('since', since)}#{rule}"


def since_of_health_sk(sk: str) -> str | None:
    """The `since` timestamp an agent-health alert key names, or None for other keys."""
    parts = sk.split("#")
    if len(parts) != 4 or f"{parts[0]}#" != HEALTH_SK_PREFIX or not _TS.fullmatch(parts[2]):
        return None
    return parts[2]
