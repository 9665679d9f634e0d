"""The assets domain: containment state machine, validation and the action-required rule.

Pure code: no gRPC, no boto3. The store persists what this module decides; the servicer only
translates between protobuf messages and these types.

Action required
---------------
An asset *needs action* (and is listed by `ListAssets(action_required=true)` through the sparse
`ACTION_REQ` index) exactly while

* its status is ISOLATION_FAILED (an isolation was ordered and the host could not enforce it), or
* its current risk's maximum severity is CRITICAL and it is not contained or on its way to being
  contained, i.e. its status is ACTIVE or RELEASE_PENDING.

ISOLATION_PENDING and ISOLATED assets with CRITICAL risk do not need action: containment is in hand.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import ipaddress
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.kit.errors import FailedPrecondition, InvalidArgument
from services.kit.ids import validate_id
from services.kit.text import check_text, clean_text

MAX_JUSTIFICATION_CHARS = 1000
MAX_TEXT_CHARS = 256
MAX_REASON_CHARS = 1000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
FINGERPRINT_HEX_CHARS = 16


class Status(enum.Enum):
    ACTIVE = "ACTIVE"
    ISOLATION_PENDING = "ISOLATION_PENDING"
    ISOLATED = "ISOLATED"
    RELEASE_PENDING = "RELEASE_PENDING"
    ISOLATION_FAILED = "ISOLATION_FAILED"


class Severity(enum.IntEnum):
    UNSPECIFIED = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3


class CommandKind(enum.Enum):
    ISOLATE = "ISOLATE"
    RELEASE = "RELEASE"


class Outcome(enum.Enum):
    APPLIED = "APPLIED"
    FAILED = "FAILED"


class Trigger(enum.Enum):
    """What can move an asset: an operator's (or policy's) order, or the agent's result of one."""

    ISOLATE = "isolate"
    RELEASE = "release"
    ISOLATION_APPLIED = "isolation applied"
    ISOLATION_FAILED = "isolation failed"
    RELEASE_APPLIED = "release applied"
    RELEASE_FAILED = "release failed"


# The state machine, as a table: (current status, trigger) -> next status. Anything else is illegal.
TRANSITIONS: Mapping[tuple[Status, Trigger], Status] = {
    (Status.ACTIVE, Trigger.ISOLATE): Status.ISOLATION_PENDING,
    (Status.ISOLATION_FAILED, Trigger.ISOLATE): Status.ISOLATION_PENDING,
    (Status.ISOLATION_PENDING, Trigger.ISOLATION_APPLIED): Status.ISOLATED,
    (Status.ISOLATION_PENDING, Trigger.ISOLATION_FAILED): Status.ISOLATION_FAILED,
    (Status.ISOLATED, Trigger.RELEASE): Status.RELEASE_PENDING,
    (Status.ISOLATION_FAILED, Trigger.RELEASE): Status.RELEASE_PENDING,
    (Status.RELEASE_PENDING, Trigger.RELEASE_APPLIED): Status.ACTIVE,
    (Status.RELEASE_PENDING, Trigger.RELEASE_FAILED): Status.ISOLATED,
}

ORDER_TRIGGER = {CommandKind.ISOLATE: Trigger.ISOLATE, CommandKind.RELEASE: Trigger.RELEASE}
RESULT_TRIGGER = {
    (CommandKind.ISOLATE, Outcome.APPLIED): Trigger.ISOLATION_APPLIED,
    (CommandKind.ISOLATE, Outcome.FAILED): Trigger.ISOLATION_FAILED,
    (CommandKind.RELEASE, Outcome.APPLIED): Trigger.RELEASE_APPLIED,
    (CommandKind.RELEASE, Outcome.FAILED): Trigger.RELEASE_FAILED,
}

# Custody ledger actions.
REQUEST_ACTION = {CommandKind.ISOLATE: "asset.isolate.requested", CommandKind.RELEASE: "asset.release.requested"}
RESULT_ACTION = {
    (CommandKind.ISOLATE, Outcome.APPLIED): "asset.isolate.enforced",
    (CommandKind.ISOLATE, Outcome.FAILED): "asset.isolate.failed",
    (CommandKind.RELEASE, Outcome.APPLIED): "asset.release.enforced",
    (CommandKind.RELEASE, Outcome.FAILED): "asset.release.failed",
}


def allowed(current: Status, trigger: Trigger) -> bool:
    return (current, trigger) in TRANSITIONS


def next_status(current: Status, trigger: Trigger) -> Status:
    """The status `trigger` moves an asset in `current` to; FailedPrecondition naming `current` if illegal."""
    target = TRANSITIONS.get((current, trigger))
    if target is None:
        raise FailedPrecondition(
            f"the asset is {current.value}; {trigger.value} is not allowed in that state",
            reason="ILLEGAL_TRANSITION",
            metadata={"current_status": current.value, "trigger": trigger.name},
        )
    return target


def action_required(status: Status, max_severity: Severity) -> bool:
    """The action-required rule of the module docstring."""
    if status is Status.ISOLATION_FAILED:
        return True
    return max_severity is Severity.CRITICAL and status in (Status.ACTIVE, Status.RELEASE_PENDING)


# --- time -----------------------------------------------------------------------------------------


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_ts(when: dt.datetime) -> str:
    """RFC 3339 UTC with six fractional digits: sorts as text, used in keys and items."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


# --- records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Risk:
    """An asset's current risk; findings are plain JSON-compatible dicts."""

    max_severity: Severity = Severity.UNSPECIFIED
    findings: tuple[dict[str, Any], ...] = ()
    evaluate_time: str = ""


@dataclass(frozen=True)
class Asset:
    asset_id: str
    hostname: str
    employee_id: str
    os: str
    agent_version: str
    status: Status = Status.ACTIVE
    status_reason: str = ""
    last_seen_time: str = ""
    risk: Risk = field(default_factory=Risk)
    create_time: str = ""
    update_time: str = ""
    last_custody_seq: int = 0
    # The asset version whose state change wrote the asset's newest custody record (0: none yet); the
    # next record names it, so the sequencer chains an asset's records in order.
    custody_version: int = 0
    # Optimistic concurrency: every write conditions on the version it read and increments it.
    version: int = 0
    current_command_id: str = ""
    # When the asset started to need action ("" while it does not).
    action_since: str = ""
    # The request that created the asset, so a retried CreateAsset answers the same asset.
    create_request_id: str = ""
    # The last agent loss recorded in custody (its request id and the version of its custody record), so a
    # retried report answers the same. `agent_loss_custody_seq` is only set by the old synchronous path.
    agent_loss_request_id: str = ""
    agent_loss_custody_seq: int = 0
    agent_loss_custody_version: int = 0
    # The last enrollment recorded in custody (its request id and the version of its custody record), so a
    # retried RecordEnrollment answers the same and writes no second record.
    enrollment_request_id: str = ""
    enrollment_custody_version: int = 0
    # The distinct engine kinds of the newest engine inventory (set with the risk of the same evaluation),
    # so asset lists can be filtered and counted by kind without reading every ENGINES# item.
    engine_kinds: tuple[str, ...] = ()

    @property
    def needs_action(self) -> bool:
        return action_required(self.status, self.risk.max_severity)


def with_action_since(asset: Asset, when: str) -> Asset:
    """Keep `action_since` consistent with the action-required rule (keeping the first moment)."""
    if asset.needs_action:
        return asset if asset.action_since else replace(asset, action_since=when)
    return replace(asset, action_since="")


@dataclass(frozen=True)
class ContainmentPolicy:
    control_plane_endpoints: tuple[str, ...] = ()
    allowlist_cidrs: tuple[str, ...] = ()
    stop_engines: bool = False
    dns_servers: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandResult:
    outcome: Outcome
    ruleset: str = ""
    ruleset_sha256: str = ""
    rule_count: int = 0
    self_test_passed: bool = False
    self_test_detail: str = ""
    error: str = ""
    finish_time: str = ""


@dataclass(frozen=True)
class Command:
    command_id: str
    asset_id: str
    kind: CommandKind
    issue_time: str
    policy: ContainmentPolicy
    custody_seq: int
    actor: str
    justification: str
    request_id: str
    # The asset as the order left it: what a retry of the same request answers.
    asset_after: Asset | None = None
    result: CommandResult | None = None
    result_custody_seq: int = 0
    # The asset as the result left it: what a repeated result answers.
    asset_after_result: Asset | None = None

    @property
    def pending(self) -> bool:
        return self.result is None


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str
    create_time: str
    enrollment_sha256: str
    enrollment_create_time: str
    allowlist_cidrs: tuple[str, ...] = ()
    stop_engines: bool = False
    dns_servers: tuple[str, ...] = ()


MAX_RESOLVERS = 8


def validate_resolvers(values: Sequence[str]) -> tuple[str, ...]:
    """Normalised unicast resolver addresses, without duplicates, or InvalidArgument naming the bad one."""
    if len(values) > MAX_RESOLVERS:
        raise InvalidArgument.field("dns_servers", f"must hold at most {MAX_RESOLVERS} addresses")
    found: dict[str, None] = {}
    for value in values:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise InvalidArgument.field("dns_servers", f"{value[:64]!r} is not an IP address") from None
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            raise InvalidArgument.field("dns_servers", f"{address} is not a resolver a host can reach")
        found[str(address)] = None
    return tuple(found)


@dataclass(frozen=True)
class EventDraft:
    """A custody event before the ledger gives it a sequence number."""

    actor: str
    action: str
    subject: str
    payload: dict[str, Any]


# --- orders and results ---------------------------------------------------------------------------


def validate_justification(text: str) -> str:
    if not text.strip():
        raise InvalidArgument.field("justification", "is required")
    return check_text("justification", text, MAX_JUSTIFICATION_CHARS)


def validate_reason(text: str) -> str:
    """An operator's reason for an approval: required, one line of plain text."""
    if not text.strip():
        raise InvalidArgument.field("reason", "is required")
    return check_text("reason", text, MAX_REASON_CHARS)


def validate_request_id(request_id: str) -> str:
    """An empty request id is allowed (the request is then not retry-safe)."""
    return validate_id("request_id", request_id) if request_id else ""


def command_id_for(tenant: str, asset_id: str, kind: CommandKind, request_id: str) -> str:
    """Derived from the request id, so a retry finds the command its first attempt wrote."""
    if not request_id:
        return uuid.uuid4().hex
    digest = hashlib.sha256(f"{tenant}\n{asset_id}\n{kind.value}\n{request_id}".encode()).hexdigest()
    return digest[:32]


def subject(asset_id: str) -> str:
    return f"asset:{asset_id}"


def order_event(actor: str, kind: CommandKind, asset_id: str, *, justification: str, command_id: str,
                request_id: str) -> EventDraft:
    return EventDraft(
        actor=actor,
        action=REQUEST_ACTION[kind],
        subject=subject(asset_id),
        payload={"justification": justification, "command_id": command_id, "request_id": request_id},
    )


AGENT_LOSS_ACTION = "asset.agent.lost"
# Statuses in which a host is (or is being) contained: its agent's loss leaves containment unverifiable.
CONTAINED = frozenset({Status.ISOLATION_PENDING, Status.ISOLATED, Status.RELEASE_PENDING})
MAX_LOSS_REASON_CHARS = 64


def agent_loss_event(actor: str, asset: Asset, reason: str, last_seen: str, request_id: str) -> EventDraft:
    """The custody event of a contained host whose agent stopped or was lost."""
    return EventDraft(
        actor=actor,
        action=AGENT_LOSS_ACTION,
        subject=subject(asset.asset_id),
        payload={"status": asset.status.value, "reason": _clip(reason, MAX_LOSS_REASON_CHARS),
                 "last_seen": last_seen, "request_id": request_id,
                 "note": "the agent is gone: containment can no longer be verified"},
    )


def _clip(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore") + "..."


def result_event(actor: str, command: Command, result: CommandResult, applies: bool) -> EventDraft:
    """The second custody event: what the host reported, naming the exact ruleset by its SHA-256."""
    payload: dict[str, Any] = {
        "command_id": command.command_id,
        "outcome": result.outcome.value,
        "ruleset_sha256": result.ruleset_sha256,
        "rule_count": result.rule_count,
        "self_test_passed": result.self_test_passed,
        "self_test_detail": _clip(clean_text(result.self_test_detail, 1024), 1024),
        "error": _clip(clean_text(result.error, 1024), 1024),
        "finish_time": result.finish_time,
    }
    if not applies:
        payload["superseded"] = True
    return EventDraft(actor=actor, action=RESULT_ACTION[(command.kind, result.outcome)],
                      subject=subject(command.asset_id), payload=payload)


class EnrollmentKind(enum.Enum):
    NEW = "new"
    ROTATION = "rotation"
    REENROLL = "reenroll"


ENROLLMENT_ACTION = {
    EnrollmentKind.NEW: "asset.enrolled",
    EnrollmentKind.ROTATION: "asset.credential.rotated",
    EnrollmentKind.REENROLL: "asset.reenrolled",
}
REENROLL_APPROVED_ACTION = "asset.reenroll.approved"
REENROLL_CODE_TTL = dt.timedelta(hours=24)


def enrollment_event(kind: EnrollmentKind, asset: Asset, *, request_id: str, approval_seq: int = 0) -> EventDraft:
    """The custody event of an enrollment: who the host said it is, and on what authority it enrolled."""
    payload: dict[str, Any] = {"hostname": asset.hostname, "os": asset.os, "agent_version": asset.agent_version,
                               "employee_id": asset.employee_id, "request_id": request_id}
    if approval_seq:
        payload["approval_seq"] = approval_seq
    actor = "ingest:enroll" if kind is EnrollmentKind.NEW else f"agent:{asset.asset_id}"
    return EventDraft(actor=actor, action=ENROLLMENT_ACTION[kind], subject=subject(asset.asset_id), payload=payload)


def reenroll_approval_event(actor: str, asset_id: str, *, reason: str, expire_time: str,
                            request_id: str) -> EventDraft:
    return EventDraft(actor=actor, action=REENROLL_APPROVED_ACTION, subject=subject(asset_id),
                      payload={"reason": reason, "expire_time": expire_time, "request_id": request_id})


def with_host_facts(asset: Asset, facts: Asset) -> Asset:
    """`asset` with the facts a re-enrolling host reports (hostname, os, agent version) where it gave them."""
    return replace(asset, hostname=facts.hostname or asset.hostname, os=facts.os or asset.os,
                   agent_version=facts.agent_version or asset.agent_version)


AGENT_EVENT_ACTION = {"break_glass": "asset.isolation.break_glass", "containment_drift": "asset.isolation.drift"}


@dataclass(frozen=True)
class AgentEvent:
    """What an agent reported happening to its containment without a command (all hostile text, clipped)."""

    event_id: str
    kind: str
    occur_time: str
    operator: str = ""
    reason: str = ""
    command_id: str = ""
    expected_ruleset_sha256: str = ""
    found_ruleset_sha256: str = ""
    repaired: bool = False
    detail: str = ""


def agent_event_draft(asset_id: str, event: AgentEvent) -> EventDraft:
    """The custody event of an agent event; the actor is the agent, what it says about people is payload."""
    action = AGENT_EVENT_ACTION.get(event.kind)
    if action is None:
        raise InvalidArgument.field("event.kind", "must be BREAK_GLASS or CONTAINMENT_DRIFT")
    payload: dict[str, Any] = {
        "event_id": event.event_id,
        "occur_time": event.occur_time,
        "operator": _clip(event.operator, 256),
        "reason": _clip(event.reason, 1024),
        "command_id": _clip(event.command_id, 64),
        "expected_ruleset_sha256": _clip(event.expected_ruleset_sha256, 80),
        "found_ruleset_sha256": _clip(event.found_ruleset_sha256, 80),
        "repaired": event.repaired,
        "detail": _clip(event.detail, 1024),
    }
    return EventDraft(actor=f"agent:{asset_id}", action=action, subject=subject(asset_id), payload=payload)


def validate_result(result: CommandResult) -> CommandResult:
    if result.ruleset_sha256 and (
        len(result.ruleset_sha256) != 64 or any(c not in "0123456789abcdef" for c in result.ruleset_sha256)
    ):
        raise InvalidArgument.field("result.ruleset_sha256", "must be 64 lowercase hex characters")
    if result.ruleset and result.ruleset_sha256 and (
        hashlib.sha256(result.ruleset.encode()).hexdigest() != result.ruleset_sha256
    ):
        raise InvalidArgument.field("result.ruleset_sha256", "is not the SHA-256 of result.ruleset")
    if len(result.ruleset.encode()) > 64 * 1024:
        raise InvalidArgument.field("result.ruleset", "must be at most 64 KiB")
    return result


def failure_reason(result: CommandResult) -> str:
    reason = result.error or result.self_test_detail or "the agent reported failure without detail"
    return clean_text(reason, MAX_REASON_CHARS)


def after_result(asset: Asset, command: Command, result: CommandResult, when: str) -> tuple[Asset, bool]:
    """The asset after `result` of `command`, and whether the result moves it at all.

    A result moves the asset only if `command` is the asset's current command and the transition is
    legal; a late result of a superseded command is still recorded (and logged), but changes nothing.
    """
    trigger = RESULT_TRIGGER[(command.kind, result.outcome)]
    if asset.current_command_id != command.command_id or not allowed(asset.status, trigger):
        return asset, False
    status = next_status(asset.status, trigger)
    reason = failure_reason(result) if result.outcome is Outcome.FAILED else command.justification
    moved = replace(asset, status=status, status_reason=reason, update_time=when)
    return with_action_since(moved, when), True


# --- assets ---------------------------------------------------------------------------------------


def _text(name: str, value: str, limit: int = MAX_TEXT_CHARS) -> str:
    return check_text(name, value, limit)


def new_asset(asset_id: str, hostname: str, employee_id: str, *, os: str, agent_version: str, when: str,
              request_id: str = "") -> Asset:
    validate_id("asset.asset_id", asset_id)
    if employee_id:
        validate_id("asset.employee_id", employee_id)
    if not hostname:
        raise InvalidArgument.field("asset.hostname", "is required")
    return Asset(
        asset_id=asset_id,
        hostname=_text("asset.hostname", hostname),
        employee_id=employee_id,
        os=_text("asset.os", os),
        agent_version=_text("asset.agent_version", agent_version),
        create_time=when,
        update_time=when,
        create_request_id=request_id,
    )


@dataclass(frozen=True)
class RiskUpdate:
    asset_id: str
    last_seen_time: str = ""
    risk: Risk | None = None
    hostname: str = ""
    os: str = ""
    agent_version: str = ""
    agent_inventory: StoredInventory | None = None
    engine_inventory: StoredInventory | None = None
    # The kinds of `engine_inventory`'s engines (None: the update carries no engine inventory).
    engine_kinds: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StoredInventory:
    """A part of an asset's inventory (``AgentInventory``, ``EngineInventory``), serialized, opaque to the store."""

    data: bytes
    evaluate_time: str


MAX_ENGINE_KINDS = 16
MAX_ENGINE_KIND_CHARS = 64


def engine_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """The distinct engine kinds an asset list shows: lower case, sorted, printable, bounded in count and length
    (the agent's text: at most MAX_ENGINE_KINDS kinds of MAX_ENGINE_KIND_CHARS each)."""
    cleaned = {kind.strip().lower()[:MAX_ENGINE_KIND_CHARS] for kind in kinds}
    return tuple(sorted(kind for kind in cleaned if kind and kind.isprintable()))[:MAX_ENGINE_KINDS]


def apply_risk_update(asset: Asset, update: RiskUpdate, when: str) -> Asset | None:
    """The asset with a coalesced update applied, or None when the update is older than what is stored."""
    changed = asset
    if update.last_seen_time and update.last_seen_time > asset.last_seen_time:
        changed = replace(changed, last_seen_time=update.last_seen_time)
    if update.risk is not None and update.risk.evaluate_time >= asset.risk.evaluate_time:
        changed = replace(changed, risk=update.risk)
        if update.engine_kinds is not None:
            changed = replace(changed, engine_kinds=update.engine_kinds)
    if update.hostname and update.hostname != changed.hostname:
        changed = replace(changed, hostname=_text("hostname", update.hostname))
    if update.os and update.os != changed.os:
        changed = replace(changed, os=_text("os", update.os))
    if update.agent_version and update.agent_version != changed.agent_version:
        changed = replace(changed, agent_version=_text("agent_version", update.agent_version))
    if changed == asset:
        return None
    return with_action_since(replace(changed, update_time=when), when)


# --- tenants --------------------------------------------------------------------------------------


def severity(value: int) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise InvalidArgument.field("risk.max_severity", "is not a known severity") from None


def validate_display_name(name: str) -> str:
    return _text("display_name", name)


def fingerprint(secret_sha256: str) -> str:
    return secret_sha256[:FINGERPRINT_HEX_CHARS]


# --- paging ---------------------------------------------------------------------------------------


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(kind: str, position: Mapping[str, str]) -> str:
    """An opaque token: which list it belongs to and where the next page starts (ids, never keys)."""
    raw = json.dumps({"k": kind, **position}, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(kind: str, token: str, fields: tuple[str, ...]) -> dict[str, str] | None:
    """The position of a token made by `encode_page_token(kind, ...)`; InvalidArgument for anything else."""
    if not token:
        return None
    bad = InvalidArgument.field("page_token", "is not a page token of this list")
    if len(token) > 1024:
        raise bad
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(decoded, dict) or decoded.get("k") != kind or set(decoded) != {"k", *fields}:
        raise bad
    if not all(isinstance(decoded[f], str) for f in fields):
        raise bad
    return {f: decoded[f] for f in fields}
