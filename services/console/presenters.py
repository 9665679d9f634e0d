"""Pure shaping of the peers' messages into what the templates show (no I/O, no HTML: Jinja escapes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from lifecyclezero.v1 import common_pb2

STATUS_LABELS = {
    common_pb2.ASSET_STATUS_ACTIVE: "active",
    common_pb2.ASSET_STATUS_ISOLATION_PENDING: "isolation pending",
    common_pb2.ASSET_STATUS_ISOLATED: "isolated",
    common_pb2.ASSET_STATUS_RELEASE_PENDING: "release pending",
    common_pb2.ASSET_STATUS_ISOLATION_FAILED: "isolation failed",
}
# The URL's ?status= values, each the AssetStatus it filters on.
STATUS_FILTERS = {
    "active": common_pb2.ASSET_STATUS_ACTIVE,
    "isolation-pending": common_pb2.ASSET_STATUS_ISOLATION_PENDING,
    "isolated": common_pb2.ASSET_STATUS_ISOLATED,
    "release-pending": common_pb2.ASSET_STATUS_RELEASE_PENDING,
    "isolation-failed": common_pb2.ASSET_STATUS_ISOLATION_FAILED,
}
# How long after a state change the asset page keeps polling for the change's custody event.
SETTLE = timedelta(seconds=15)
PENDING = frozenset({common_pb2.ASSET_STATUS_ISOLATION_PENDING, common_pb2.ASSET_STATUS_RELEASE_PENDING})
CONNECTION_LABELS = {
    common_pb2.CONNECTION_STATE_UNSPECIFIED: "never connected",
    common_pb2.CONNECTION_STATE_ONLINE: "online",
    common_pb2.CONNECTION_STATE_OFFLINE: "offline",
    common_pb2.CONNECTION_STATE_MISSING: "missing",
}
SEVERITY_LABELS = {
    common_pb2.SEVERITY_UNSPECIFIED: "none",
    common_pb2.SEVERITY_INFO: "info",
    common_pb2.SEVERITY_WARNING: "warning",
    common_pb2.SEVERITY_CRITICAL: "critical",
}
EXPOSED_RULE = "exposed-listener"
# The Alerts page's ?since= values.
ALERT_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# The Overview's engines chart draws this many kinds (the most run) and sums the rest as "other".
ENGINE_CHART_KINDS = 8
# The assets page's engine select offers at most this many kinds (the most run); ?engine= takes any.
ENGINE_FILTER_KINDS = 100
# The asset page shows this many custody events, newest first (`lz custody` lists them all).
TIMELINE_SHOWN = 200
# Custody payload fields an analyst reads on the timeline, in this order.
TIMELINE_FACTS = ("justification", "reason", "rule_count", "self_test_passed", "self_test_detail",
                  "ruleset_sha256", "error", "command_id")


@dataclass(frozen=True)
class When:
    """A moment shown relative to now, with the exact UTC time for the hover title."""

    relative: str
    exact: str


@dataclass(frozen=True)
class TimelineEvent:
    seq: int
    when: When
    actor: str
    action: str
    facts: tuple[tuple[str, str], ...]


def when(stamp: Timestamp, now: datetime) -> When:
    if not stamp.seconds and not stamp.nanos:
        return When("never", "")
    moment = stamp.ToDatetime(tzinfo=UTC)
    return When(relative(moment, now), moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


def relative(moment: datetime, now: datetime) -> str:
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def timeline(events: list[common_pb2.LedgerEvent], now: datetime) -> list[TimelineEvent]:
    """Custody events, newest first, with the payload facts an analyst reads."""
    shown = []
    for event in sorted(events, key=lambda e: e.seq, reverse=True):
        payload = json_format.MessageToDict(event.payload)
        facts = tuple((name, _fact(payload[name])) for name in TIMELINE_FACTS if payload.get(name) not in (None, ""))
        shown.append(TimelineEvent(event.seq, when(event.event_time, now), event.actor, event.action, facts))
    return shown


def recent_timeline(events: list[common_pb2.LedgerEvent], now: datetime) -> tuple[list[TimelineEvent], int]:
    """The newest TIMELINE_SHOWN events, newest first, and how many older ones are left out."""
    shown = timeline(events, now)
    return shown[:TIMELINE_SHOWN], max(0, len(shown) - TIMELINE_SHOWN)


def _fact(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def still_settling(asset: common_pb2.Asset, now: datetime) -> bool:
    """Whether the asset page keeps polling: an order is pending, or the state changed so recently that
    its custody event may not be chained yet (the sequencer chains it moments after the change)."""
    if asset.status in PENDING:
        return True
    changed = asset.update_time.ToDatetime(tzinfo=UTC) if asset.update_time.seconds else None
    return changed is not None and now - changed < SETTLE


def exposed(asset: common_pb2.Asset) -> bool:
    """Whether an engine of the asset listens where other hosts reach it: its exposed-listener finding
    (ListAssets carries findings, not inventories) or, on GetAsset's answer, the inventory itself."""
    return any(f.rule_id == EXPOSED_RULE for f in asset.risk.findings) or any(
        endpoint.exposed for engine in asset.engine_inventory.engines for endpoint in engine.listen)


def finding_evidence(finding: common_pb2.Finding) -> str:
    return json_format.MessageToJson(finding.evidence, indent=None, sort_keys=True) if finding.evidence.fields else ""


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: int
    y: int
    width: int
    height: int


def hourly(counts: tuple[int, ...]) -> list[tuple[str, int]]:
    """Hourly counts, oldest first, labelled by how many hours ago their hour began."""
    return [(f"{len(counts) - index - 1} h ago", count) for index, count in enumerate(counts)]


def top(values: Sequence[tuple[str, int]], shown: int) -> list[tuple[str, int]]:
    """The first `shown` (label, count) pairs, and the rest summed as one "other" pair if any are left."""
    rest = sum(count for _, count in values[shown:])
    return list(values[:shown]) + ([("other", rest)] if len(values) > shown else [])


def bars(values: Sequence[tuple[str, int]], width: int = 480, height: int = 120) -> list[Bar]:
    """Bars of a server-drawn SVG chart (no script), scaled to the largest value."""
    top = max((value for _, value in values), default=0) or 1
    slot = width // max(1, len(values))
    shown = []
    for index, (label, value) in enumerate(values):
        tall = round(value / top * (height - 16))
        shown.append(Bar(label, value, index * slot + 2, height - tall, max(1, slot - 4), tall))
    return shown
