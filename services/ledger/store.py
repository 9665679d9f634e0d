"""Ledger items: the only code that builds them. Synchronous boto3; async callers use `aws.call`.

Appending is optimistic: read the tail with a consistent read, build the next events chained by
`prev_hash`, and put each `EVENT#<seq>` with `attribute_not_exists(SK)` in one TransactWriteItems.
Two writers that read the same tail both try to create the same `EVENT#<seq>`; DynamoDB lets exactly
one transaction through and cancels the other, whose caller re-reads the tail and tries again. The
chain can therefore never fork, and a gap can never appear (seq n+1 is only written next to a tail n).

Other services put a ledger append inside their own transaction with `prepare_append` and retry on
`is_append_conflict`; see README.md beside this file.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions

from services.kit import aws
from services.kit.errors import Aborted, InvalidArgument
from services.kit.text import unsafe_character
from services.ledger import keys
from services.tlog.errors import PayloadError
from services.tlog.events import GENESIS_PREV_HASH, Event, build_event, check_payload, event_hash

MAX_EVENTS_PER_TRANSACTION = 99
MAX_TRANSACTION_ITEMS = 100
MAX_ACTOR_CHARS = 128
MAX_ACTION_CHARS = 128
MAX_SUBJECT_CHARS = 256
DEFAULT_MAX_ATTEMPTS = 64
MAX_UNKNOWN_OUTCOMES = 5
_CONDITION_FAILED = "ConditionalCheckFailed"


@dataclass(frozen=True)
class EventDraft:
    """An event to append, before it has a seq, a timestamp and a place in the chain."""

    actor: str
    action: str
    subject: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tail:
    """The newest event of a ledger: its seq (0 when empty) and its hash (the next prev_hash)."""

    seq: int
    hash_hex: str = GENESIS_PREV_HASH


@dataclass(frozen=True)
class AppendGroup:
    """The events of one append call, with the request id that makes its retry safe."""

    drafts: Sequence[EventDraft]
    request_id: str = ""


@dataclass(frozen=True)
class PreparedAppend:
    """Transaction items for an append, the events they hold and the tail after they commit.

    `seqs[i]` are the sequence numbers of group i (one group for `prepare_append`).
    """

    transact_items: list[dict[str, Any]]
    events: list[Event]
    seqs: list[list[int]]
    tail: Tail

    @property
    def all_seqs(self) -> list[int]:
        return [seq for group in self.seqs for seq in group]


@dataclass(frozen=True)
class StoredEvent:
    """A ledger item as stored: the canonical bytes plus the attributes written beside them."""

    seq: int
    canonical: bytes
    hash_hex: str
    prev_hash: str
    ts: str
    actor: str
    action: str
    subject: str


# --- validation ----------------------------------------------------------------------------------


# Custody actions only the services write, on an asset's own transitions (assets commits them in the
# transaction that moves the asset): an operator's event must never read like an agent's evidence.
RESERVED_ACTION_PREFIXES = ("asset.",)


def check_not_reserved(action: str, index: int = 0) -> None:
    """InvalidArgument naming `action` when it is in a namespace reserved for the services."""
    folded = action.strip().casefold()
    if any(folded.startswith(prefix) or folded == prefix.rstrip(".") for prefix in RESERVED_ACTION_PREFIXES):
        reserved = ", ".join(f"{prefix}*" for prefix in RESERVED_ACTION_PREFIXES)
        raise InvalidArgument.field(f"events[{index}].action",
                                    f"{action!r} is reserved for the services' own custody events ({reserved})")


def check_draft(draft: EventDraft, index: int = 0) -> None:
    """Raise InvalidArgument when a draft breaks a size or depth limit (before any write)."""
    where = f"events[{index}]"
    for name, value, limit, required in (
        ("actor", draft.actor, MAX_ACTOR_CHARS, False),
        ("action", draft.action, MAX_ACTION_CHARS, True),
        ("subject", draft.subject, MAX_SUBJECT_CHARS, False),
    ):
        if required and not value:
            raise InvalidArgument.field(f"{where}.{name}", "must not be empty")
        if len(value) > limit or unsafe_character(value) is not None:
            raise InvalidArgument.field(f"{where}.{name}", f"must be at most {limit} printable characters")
    try:
        check_payload(dict(draft.payload))
    except PayloadError as exc:
        raise InvalidArgument.field(f"{where}.payload", str(exc)) from None


def check_request(drafts: Sequence[EventDraft], request_id: str = "") -> None:
    """Raise InvalidArgument for an append that cannot be committed as one transaction."""
    if not drafts:
        raise InvalidArgument.field("events", "must hold at least one event")
    if len(drafts) > MAX_EVENTS_PER_TRANSACTION:
        raise InvalidArgument.field("events", f"at most {MAX_EVENTS_PER_TRANSACTION} events per call")
    if request_id:
        keys.request_sk(request_id)
    for index, draft in enumerate(drafts):
        check_draft(draft, index)


# --- append --------------------------------------------------------------------------------------


def read_tail(ddb: Any, table: str, tenant: str) -> Tail:
    """The newest event of the tenant's ledger, read consistently (one query, one item)."""
    got = ddb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
        ExpressionAttributeValues=aws.to_item({":pk": keys.ledger_pk(tenant), ":sk": keys.EVENT_SK_PREFIX}),
        ScanIndexForward=False,
        Limit=1,
        ConsistentRead=True,
        ProjectionExpression="SK, canonical",
    )
    items = got.get("Items", [])
    if not items:
        return Tail(0)
    stored = _stored(items[0])
    return Tail(stored.seq, derived_hash(stored.canonical))


def derived_hash(canonical: bytes) -> str:
    """The chain hash of stored event bytes: what the next event's prev_hash must be.

    Always computed from the canonical bytes, never taken from the item's `hash` attribute: that
    attribute is a convenience for readers, and an edited one must not decide where the next honest
    append chains from (verification reports an attribute that disagrees with its bytes).
    """
    return event_hash(canonical).hex()


def read_tail_near(ddb: Any, table: str, tenant: str, hint: int, max_probes: int = 4) -> Tail:
    """The ledger's tail, found with a few consistent GetItems from `hint` (a seq that should exist, e.g.
    the tail a lost race started from, or a seq the table's stream reported; 0 for the empty ledger);
    falls back to `read_tail` when the tail is more than `max_probes` events further or the hint is off.

    Events are gapless (seq n+1 is only written next to n), so "n exists and n+1 does not" proves n
    is the tail. On the embedded endpoint a Query scans the whole table, so this is much cheaper
    there; on DynamoDB a lost race usually moved the tail by a batch or less, a few GetItems.
    """
    if hint < 0:
        return read_tail(ddb, table, tenant)
    found = _event_hash(ddb, table, tenant, hint) if hint else GENESIS_PREV_HASH
    if found is None:
        return read_tail(ddb, table, tenant)
    tail = Tail(hint, found)
    for step in range(1, max_probes + 1):
        following = _event_hash(ddb, table, tenant, hint + step)
        if following is None:
            return tail
        tail = Tail(hint + step, following)
    return read_tail(ddb, table, tenant)


def tail_seq_near(ddb: Any, table: str, tenant: str, hint: int, max_probes: int = 4) -> int:
    """The ledger's newest seq, found from `hint` like `read_tail_near`."""
    return read_tail_near(ddb, table, tenant, hint, max_probes).seq


def event_exists(ddb: Any, table: str, tenant: str, seq: int) -> bool:
    """Whether event `seq` is stored (one consistent GetItem of its key only)."""
    return _event_hash(ddb, table, tenant, seq) is not None


def _event_hash(ddb: Any, table: str, tenant: str, seq: int) -> str | None:
    got = ddb.get_item(
        TableName=table, Key=aws.to_item({"PK": keys.ledger_pk(tenant), "SK": keys.event_sk(seq)}),
        ConsistentRead=True, ProjectionExpression="SK, canonical",
    )
    item = got.get("Item")
    return derived_hash(_stored(item).canonical) if item is not None else None


def build_append(
    table: str, tenant: str, tail: Tail, groups: Sequence[AppendGroup], now: datetime | None = None
) -> PreparedAppend:
    """Pure: the transaction items that append `groups` after `tail` (no I/O)."""
    when = now or datetime.now(UTC)
    pk = keys.ledger_pk(tenant)
    items: list[dict[str, Any]] = []
    events: list[Event] = []
    seqs: list[list[int]] = []
    seq, prev = tail.seq, tail.hash_hex
    for group in groups:
        first = seq + 1
        group_seqs: list[int] = []
        for draft in group.drafts:
            seq += 1
            event = build_event(
                tenant=tenant, seq=seq, ts=when, actor=draft.actor, action=draft.action,
                subject=draft.subject, payload=draft.payload, prev_hash=prev,
            )
            prev = event.hash_hex
            events.append(event)
            group_seqs.append(seq)
            items.append(_put(table, _event_item(pk, tenant, event, group.request_id)))
        if group.request_id:
            marker = {
                "PK": pk, "SK": keys.request_sk(group.request_id), "first_seq": first,
                "count": len(group_seqs), "ts": events[-1].ts if events else "",
            }
            items.append(_put(table, marker))
        seqs.append(group_seqs)
    if len(items) > MAX_TRANSACTION_ITEMS:
        raise InvalidArgument.field("events", f"an append needs at most {MAX_TRANSACTION_ITEMS} items")
    return PreparedAppend(items, events, seqs, Tail(seq, prev))


def prepare_append(
    ddb: Any,
    table: str,
    tenant: str,
    drafts: Sequence[EventDraft],
    *,
    request_id: str = "",
    tail: Tail | None = None,
    now: datetime | None = None,
) -> PreparedAppend:
    """Read the tail (unless given) and return Put items for `drafts` to put in a TransactWriteItems.

    The library entry point for other services: put `transact_items` beside your own items (the
    total must stay within 100), and on failure ask `is_append_conflict(exc)`: when true, call
    `prepare_append` again (the tail moved) and retry the whole transaction.
    """
    check_request(drafts, request_id)
    current = tail if tail is not None else read_tail(ddb, table, tenant)
    return build_append(table, tenant, current, [AppendGroup(drafts, request_id)], now)


def commit(ddb: Any, prepared: PreparedAppend) -> None:
    """Write prepared items: one conditional PutItem for a single item, else one transaction."""
    if len(prepared.transact_items) == 1:
        put = prepared.transact_items[0]["Put"]
        ddb.put_item(TableName=put["TableName"], Item=put["Item"], ConditionExpression=put["ConditionExpression"])
        return
    # A botocore retry of a call that did commit replays the same token, which DynamoDB answers
    # as a success instead of a conflict (idempotent for 10 minutes).
    token = hashlib.sha256(b"".join(e.hash for e in prepared.events) or b"-").hexdigest()[:36]
    ddb.transact_write_items(TransactItems=prepared.transact_items, ClientRequestToken=token)


def committed_already(ddb: Any, table: str, tenant: str, prepared: PreparedAppend) -> bool:
    """Whether a write reported as a conflict was in fact our own earlier attempt that committed.

    A timed-out call that reached DynamoDB and is retried by the SDK fails its condition on its own
    items; without this check the append would be retried at new seqs and stored twice.
    """
    if not prepared.events:
        return False
    first = prepared.events[0]
    stored = get_event(ddb, table, tenant, first.seq)
    return stored is not None and stored.canonical == first.canonical_bytes


def is_append_conflict(exc: BaseException) -> bool:
    """Whether a failed write lost the race for a ledger seq, so re-preparing and retrying can succeed."""
    if aws.error_code(exc) == "ConditionalCheckFailedException":
        return True
    return any(keys.seq_of_event_sk(sk) is not None for sk in _failed_ledger_sks(exc))


def is_duplicate_request(exc: BaseException) -> bool:
    """Whether a failed append carried a request_id that an earlier append already committed."""
    return any(sk.startswith(keys.REQUEST_SK_PREFIX) for sk in _failed_ledger_sks(exc))


def find_request(ddb: Any, table: str, tenant: str, request_id: str) -> list[int] | None:
    """The seqs an earlier append with `request_id` got, or None when there was none."""
    got = ddb.get_item(
        TableName=table,
        Key=aws.to_item({"PK": keys.ledger_pk(tenant), "SK": keys.request_sk(request_id)}),
        ConsistentRead=True,
    )
    if "Item" not in got:
        return None
    item = aws.from_item(got["Item"])
    first, count = int(item["first_seq"]), int(item["count"])
    return list(range(first, first + count))


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed write may still have been (or be) applied: a timeout or a dropped connection
    after the request left, or DynamoDB saying the same ClientRequestToken is still in progress."""
    if isinstance(exc, aws.UNAVAILABLE_ERRORS):
        return True
    return aws.error_code(exc) == "TransactionInProgressException"


def append(
    ddb: Any,
    table: str,
    tenant: str,
    groups: Sequence[AppendGroup],
    *,
    tail: Tail | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_unknown: int = MAX_UNKNOWN_OUTCOMES,
) -> tuple[list[list[int]], Tail]:
    """Append groups in one transaction, retrying lost races; returns each group's seqs and the tail.

    Every caller learns the seqs of its events exactly once:
    - a write whose outcome is unknown (timeout, dropped connection) is retried with the *same*
      items (same seqs, bytes and request token), never re-prepared at new seqs, because the first
      attempt may still land; whichever attempt lands, the events are stored once at those seqs;
    - a conflict is first checked against our own earlier attempt (`committed_already`): a retry
      that fails on the items its own timed-out attempt wrote is a success, not a lost race;
    - a group whose request_id was already committed gets its original seqs back and is left out
      of the retry; the other groups are re-prepared.
    `tail` is a cached tail to try first; a lost race re-reads it.
    """
    results: dict[int, list[int]] = {}
    pending = list(enumerate(groups))
    current = tail
    prepared: PreparedAppend | None = None
    unknown = 0
    for attempt in range(max_attempts):
        if not pending:
            break
        if prepared is None:
            if current is None:
                current = read_tail(ddb, table, tenant)
            prepared = build_append(table, tenant, current, [g for _, g in pending])
        try:
            commit(ddb, prepared)
        except Exception as exc:
            if _outcome_unknown(exc):
                unknown += 1
                if unknown > max_unknown:
                    raise
                time.sleep(min(2.0, 0.1 * 2**unknown))
                continue  # the same prepared items again
            conflict, duplicate = is_append_conflict(exc), is_duplicate_request(exc)
            if not (conflict or duplicate):
                raise
            if not committed_already(ddb, table, tenant, prepared):
                if duplicate:
                    pending = _resolve_duplicates(ddb, table, tenant, pending, results)
                    current = None
                else:
                    time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))  # noqa: S311 - jitter only
                    # Another writer moved the tail from where we started: look just past it.
                    current = read_tail_near(ddb, table, tenant, current.seq if current else 0, max_probes=8)
                prepared = None
                unknown = 0
                continue
        for (index, _), seqs in zip(pending, prepared.seqs, strict=True):
            results[index] = seqs
        current = prepared.tail
        pending = []
    if pending:
        raise Aborted("the ledger tail kept moving; retry the append", reason="LEDGER_CONTENDED")
    return [results[i] for i in range(len(groups))], current or read_tail(ddb, table, tenant)


def _resolve_duplicates(
    ddb: Any, table: str, tenant: str, pending: list[tuple[int, AppendGroup]], results: dict[int, list[int]]
) -> list[tuple[int, AppendGroup]]:
    """Answer the groups whose request_id is already committed from their markers; the rest stay pending."""
    still: list[tuple[int, AppendGroup]] = []
    for index, group in pending:
        found = find_request(ddb, table, tenant, group.request_id) if group.request_id else None
        if found is None:
            still.append((index, group))
        else:
            results[index] = found
    return still


def append_events(
    ddb: Any, table: str, tenant: str, drafts: Sequence[EventDraft], request_id: str = ""
) -> list[int]:
    """Append one call's events (validated) and return their seqs; the simple, un-batched path."""
    check_request(drafts, request_id)
    seqs, _ = append(ddb, table, tenant, [AppendGroup(drafts, request_id)])
    return seqs[0]


def _put(table: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": aws.to_item(values),
            "ConditionExpression": "attribute_not_exists(SK)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _event_item(pk: str, tenant: str, event: Event, request_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "PK": pk,
        "SK": keys.event_sk(event.seq),
        "seq": event.seq,
        "canonical": event.canonical_bytes,
        "hash": event.hash_hex,
        "prev_hash": event.prev_hash,
        "ts": event.ts,
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "request_id": request_id or None,
    }
    asset_id = keys.asset_of_subject(event.subject)
    if asset_id is not None:
        item["GSI1PK"] = keys.asset_gsi1pk(tenant, asset_id)
        item["GSI1SK"] = keys.asset_gsi1sk(event.seq)
    return item


def _failed_ledger_sks(exc: BaseException) -> list[str]:
    """Sort keys of ledger items whose condition failed in a cancelled transaction."""
    if aws.error_code(exc) != "TransactionCanceledException":
        return []
    assert isinstance(exc, botocore.exceptions.ClientError)
    out: list[str] = []
    for reason in exc.response.get("CancellationReasons", []):
        if reason.get("Code") != _CONDITION_FAILED:
            continue
        item: dict[str, Any] = dict(reason.get("Item") or {})
        pk = str(item.get("PK", {}).get("S", ""))
        if keys.tenant_of_ledger_pk(pk) is not None:
            out.append(str(item.get("SK", {}).get("S", "")))
    return out


# --- reads ---------------------------------------------------------------------------------------


def get_event(ddb: Any, table: str, tenant: str, seq: int) -> StoredEvent | None:
    got = ddb.get_item(
        TableName=table, Key=aws.to_item({"PK": keys.ledger_pk(tenant), "SK": keys.event_sk(seq)}),
        ConsistentRead=True,
    )
    return _stored(got["Item"]) if "Item" in got else None


def list_events(
    ddb: Any, table: str, tenant: str, start_seq: int, limit: int
) -> tuple[list[StoredEvent], int | None]:
    """Up to `limit` events from `start_seq` in seq order, and the seq to continue from (or None)."""
    got = ddb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk AND SK BETWEEN :a AND :b",
        ExpressionAttributeValues=aws.to_item(
            {":pk": keys.ledger_pk(tenant), ":a": keys.event_sk(start_seq), ":b": keys.event_sk(keys.MAX_SEQ)}
        ),
        Limit=limit,
        ConsistentRead=True,
    )
    events = [_stored(i) for i in got.get("Items", [])]
    more = "LastEvaluatedKey" in got and events
    return events, (events[-1].seq + 1 if more else None)


def events_between(  # noqa: PLR0917 - called positionally through aws.call
    ddb: Any, table: str, tenant: str, first: int, last: int, page: int = 1000, *, canonical_only: bool = False
) -> Iterator[StoredEvent]:
    """Events with first <= seq <= last in seq order, read page by page (stored order, not checked).

    `canonical_only` reads just the key, the canonical bytes and the stored hash attribute (the sealer
    and the verifiers need nothing else; the other attributes of the StoredEvent are then empty).
    """
    if last < first:
        return
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk AND SK BETWEEN :a AND :b",
        "ExpressionAttributeValues": aws.to_item(
            {":pk": keys.ledger_pk(tenant), ":a": keys.event_sk(first), ":b": keys.event_sk(last)}
        ),
        "Limit": page,
        "ConsistentRead": True,
    }
    if canonical_only:
        kwargs["ProjectionExpression"] = "SK, canonical, #h"
        kwargs["ExpressionAttributeNames"] = {"#h": "hash"}
    for item in aws.query_items(ddb, **kwargs):
        yield _stored(item)


WALK_PAGE = 10_000
"""Page size of whole-log walks: DynamoDB ends a page at 1 MB whatever the Limit, so this only saves
round trips where nothing else limits the page (the embedded endpoint scans the table per Query)."""


def walk_events(  # noqa: PLR0917 - called positionally through aws.call
    ddb: Any, table: str, tenant: str, first: int, last: int = keys.MAX_SEQ, page: int = WALK_PAGE,
    prefetch: int = 2,
) -> Iterator[StoredEvent]:
    """Events first..last in stored order, for walks over the whole log (stored order, not checked).

    Reads only `SK, canonical` and the stored `hash` attribute (the verifiers compare it with the
    bytes), in large pages, up to `prefetch` pages ahead on a thread of their own, so the reads
    overlap the checks. The other attributes of the StoredEvent are empty. An item whose attributes
    have their usual types is decoded directly; any other goes through `_stored`, so a damaged
    attribute is read exactly as `events_between` reads it (still evidence).
    """
    if last < first:
        return
    query = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk AND SK BETWEEN :a AND :b",
        "ExpressionAttributeValues": aws.to_item(
            {":pk": keys.ledger_pk(tenant), ":a": keys.event_sk(first), ":b": keys.event_sk(last)}
        ),
        "ProjectionExpression": "SK, canonical, #h",
        "ExpressionAttributeNames": {"#h": "hash"},
        "Limit": page,
        "ConsistentRead": True,
    }
    for items in aws.prefetched(aws.query_pages(ddb, **query), prefetch):
        for item in items:
            yield _walked(item)


def _walked(raw: dict[str, Any]) -> StoredEvent:
    """`_stored` for the projection of `walk_events`, without the generic decoder when the types are usual."""
    data = raw.get("canonical", {}).get("B")
    sk = raw.get("SK", {}).get("S")
    stated = raw.get("hash", {"S": ""}).get("S")
    if not (isinstance(data, bytes) and isinstance(sk, str) and isinstance(stated, str)):
        return _stored(raw)
    seq = keys.seq_of_event_sk(sk)
    return StoredEvent(seq=seq if seq is not None else 0, canonical=data, hash_hex=stated,
                       prev_hash="", ts="", actor="", action="", subject="")


def list_asset_events(  # noqa: PLR0917 - called positionally through aws.call
    ddb: Any, table: str, tenant: str, asset_id: str, after_seq: int, limit: int
) -> tuple[list[StoredEvent], int | None]:
    """Custody events of one asset in seq order (GSI1), after `after_seq`; and where to continue."""
    got = ddb.query(
        TableName=table,
        IndexName="GSI1",
        KeyConditionExpression="GSI1PK = :pk AND GSI1SK BETWEEN :a AND :b",
        ExpressionAttributeValues=aws.to_item(
            {
                ":pk": keys.asset_gsi1pk(tenant, asset_id),
                ":a": keys.asset_gsi1sk(after_seq + 1),
                ":b": keys.asset_gsi1sk(keys.MAX_SEQ),
            }
        ),
        Limit=limit,
    )
    events = [_stored(i) for i in got.get("Items", [])]
    more = "LastEvaluatedKey" in got and events
    return events, (events[-1].seq if more else None)


def _stored(raw: dict[str, Any]) -> StoredEvent:
    item = aws.from_item(raw)
    seq = keys.seq_of_event_sk(str(item["SK"]))
    return StoredEvent(
        seq=seq if seq is not None else 0,
        canonical=_as_bytes(item.get("canonical", b"")),
        hash_hex=str(item.get("hash", "")),
        prev_hash=str(item.get("prev_hash", "")),
        ts=str(item.get("ts", "")),
        actor=str(item.get("actor", "")),
        action=str(item.get("action", "")),
        subject=str(item.get("subject", "")),
    )


def _as_bytes(value: Any) -> bytes:
    """Stored event bytes as they are; a damaged attribute (a string, a number) is still evidence."""
    if isinstance(value, str):
        return value.encode()
    if hasattr(value, "value"):
        value = value.value
    return bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode()
