"""Agent health, pure: connection state at read time, what a due check of the sweep does, versions.

An agent's connection is kept on its `AGENT` item and written only when something happens to its
stream (open, goodbye or close) and, while it stays open, with the durable-seq write-down that already
exists (at most every `LZ_SEQ_PERSIST_SECONDS`): never per heartbeat. Time does the rest: the tenant's
grace period is applied when the state is read (`state_at`), and the health sweep (`next_check`)
raises the alerts a disconnection deserves once it is due.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from lifecyclezero.v1 import ingest_pb2

from services.ingest import keys

ONLINE, OFFLINE = "online", "offline"
LOST = "lost"

AGENT_SILENT = "agent-silent"
AGENT_MISSING = "agent-missing"
AGENT_STOPPED_WHILE_ISOLATED = "agent-stopped-while-isolated"
AGENT_OUTDATED = "agent-outdated"

# Goodbye reasons as they are stored and shown.
GOODBYE_REASONS = {
    ingest_pb2.GOODBYE_REASON_SERVICE_STOP: "service-stop",
    ingest_pb2.GOODBYE_REASON_SYSTEM_SHUTDOWN: "system-shutdown",
    ingest_pb2.GOODBYE_REASON_UPGRADE: "upgrade",
    ingest_pb2.GOODBYE_REASON_UNINSTALL: "uninstall",
}
# A host that shuts down or an agent being upgraded is expected to be away: not "silent" (missing still applies).
EXPECTED_ABSENCES = frozenset({"system-shutdown", "upgrade"})
MAX_PLATFORM_CHARS = 64
MAX_VERSION_CHARS = 64

_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)")


class State(enum.StrEnum):
    NEVER = "never"
    ONLINE = "online"
    OFFLINE = "offline"
    MISSING = "missing"


class Stage(enum.StrEnum):
    """What the sweep checks next for an agent (the `watch_stage` of its item)."""

    LEASE = "lease"  # online: the replica holding the stream must refresh it before `online_until`
    LOST = "lost"  # closed: not back by the due time, it is lost (alerts)
    MISSING = "missing"  # offline: beyond the grace period it is missing (alert)


@dataclass(frozen=True)
class HealthSettings:
    """The tenant's agent-health policy (`agent_health` in the risk policy)."""

    missing_after_seconds: float = 86_400.0
    lost_after_heartbeats: float = 2.0
    minimum_version: str = ""


@dataclass(frozen=True)
class Connection:
    """The connection fields of an agent's item (empty strings where never written)."""

    asset_id: str
    state: str = ""
    stream_id: str = ""
    since: str = ""
    reason: str = ""
    last_seen: str = ""
    online_until: str = ""
    missing_at: str = ""
    agent_version: str = ""
    platform: str = ""
    outdated: bool = False
    outdated_since: str = ""
    stage: str = ""
    due: str = ""
    open_alerts: tuple[tuple[str, str], ...] = ()


def state_at(connection: Connection, now: str) -> tuple[State, str]:
    """The connection state at `now` (a key timestamp) and why the agent is away ("" while online).

    An open stream counts only while its replica keeps refreshing it (`online_until`): a replica that
    died without closing its streams leaves them "lost", not online for ever.
    """
    if not connection.state:
        return State.NEVER, ""
    if connection.state == ONLINE and now < connection.online_until:
        return State.ONLINE, ""
    reason = connection.reason if connection.state == OFFLINE else LOST
    if connection.missing_at and now >= connection.missing_at:
        return State.MISSING, reason or LOST
    return State.OFFLINE, reason


@dataclass(frozen=True)
class Check:
    """What a due sweep check does: the alerts to raise, the reason to record and the next stage."""

    raise_rules: tuple[str, ...]
    reason: str
    next_stage: Stage | None
    next_due: str
    ask_isolation: bool


def next_check(connection: Connection, now: str) -> Check | None:
    """The check due for `connection` at `now`, or None when nothing is due (yet, or any more)."""
    if not connection.due or connection.due > now:
        return None
    stage = connection.stage
    if stage == Stage.LEASE and connection.state == ONLINE:
        return _lost(connection, LOST)
    if stage == Stage.LOST and connection.state == OFFLINE:
        return _lost(connection, connection.reason or LOST)
    if stage == Stage.MISSING and connection.state == OFFLINE:
        return Check((AGENT_MISSING,), connection.reason or LOST, None, "", ask_isolation=False)
    return None


def _lost(connection: Connection, reason: str) -> Check:
    rules = () if reason in EXPECTED_ABSENCES else (AGENT_SILENT,)
    # Whatever the reason, an isolated host whose agent is gone can no longer show its containment holds.
    return Check(rules, reason, Stage.MISSING, connection.missing_at, ask_isolation=True)


@dataclass(frozen=True)
class OutdatedChange:
    """What a stream's open does to the agent's open health alerts."""

    resolve: list[str]  # alert sort keys to resolve
    returned_rules: list[str]  # the absence alerts (their rules) the return resolves
    outdated_since: str  # when the open agent-outdated alert was raised ("" when the version is accepted)


def outdated_change(open_alerts: tuple[tuple[str, str], ...], outdated: bool, now: str) -> OutdatedChange:
    """An open resolves the alerts the agent's absence raised; agent-outdated's stays open while the version is
    still older than the minimum (raised now when it was not yet), and is resolved once it is not."""
    absent = [(rule, sk) for rule, sk in open_alerts if rule != AGENT_OUTDATED]
    held = dict(open_alerts).get(AGENT_OUTDATED, "")
    resolve = [sk for _, sk in absent]
    if held and not outdated:
        resolve.append(held)
    since = ""
    if outdated:
        since = (keys.since_of_health_sk(held) or now) if held else now
    return OutdatedChange(resolve, [rule for rule, _ in absent], since)


def goodbye_reason(goodbye: ingest_pb2.Goodbye) -> str:
    """The stored name of a goodbye's reason ("service-stop" when the agent named none it knows)."""
    return GOODBYE_REASONS.get(goodbye.reason, "service-stop")


def version_key(version: str) -> tuple[int, ...] | None:
    """`1.4.2` (or `v1.4.2-rc1`: the numeric prefix) as a tuple to compare; None when it has no number."""
    match = _VERSION.match(version.strip())
    if match is None:
        return None
    return tuple(int(part) for part in match.group(1).split(".")[:6])


def is_outdated(version: str, minimum: str) -> bool:
    """True when both versions have numbers and `version` is older than `minimum`."""
    have, want = version_key(version), version_key(minimum)
    if have is None or want is None:
        return False
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) < want + (0,) * (width - len(want))


def clip(text: str, limit: int) -> str:
    """Hostile text from an agent cut to `limit` characters, without control characters."""
    return "".join(c for c in text[:limit] if c.isprintable())
