"""Custody events: canonical bytes, hash chain and streaming chain verification.

An event is the RFC 8785 canonical JSON of exactly these members::

    {tenant, seq, ts, actor, action, subject, payload, prev_hash}

``seq`` starts at 1, ``prev_hash`` is the lowercase-hex SHA-256 of the previous
event's canonical bytes (:data:`GENESIS_PREV_HASH` for seq 1) and ``ts`` is an
RFC 3339 UTC timestamp with exactly six fractional digits.  The canonical
bytes are also the Merkle leaf data, at leaf index ``seq - 1``; so one
encoding feeds both the hash chain and the transparency log.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.tlog.errors import ChainError, PayloadError
from services.tlog.jcs import MAX_SAFE_INTEGER, canonicalize, fast_canonical_object, parse_json
from services.tlog.shapes import event_shape_fields, remember_event_shape

__all__ = [
    "GENESIS_PREV_HASH",
    "MAX_PAYLOAD_BYTES",
    "MAX_PAYLOAD_DEPTH",
    "MAX_PAYLOAD_KEY_CHARS",
    "MAX_PAYLOAD_STRING_BYTES",
    "ChainResult",
    "ChainVerifier",
    "Event",
    "build_event",
    "chain_fields",
    "check_payload",
    "event_hash",
    "format_ts",
    "parse_event",
    "verify_chain",
]

GENESIS_PREV_HASH = "0" * 64
MAX_PAYLOAD_DEPTH = 8
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_PAYLOAD_STRING_BYTES = 4 * 1024
MAX_PAYLOAD_KEY_CHARS = 128

_FIELDS = frozenset({"tenant", "seq", "ts", "actor", "action", "subject", "payload", "prev_hash"})
_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_sha256 = hashlib.sha256
# One canonical event whose top-level strings need no escapes, members in RFC 8785 order (the
# payload, checked on its own, is the only part that can hold a nested value). A string value cannot
# hold a raw `"`, so the payload group ends at the one `},"prev_hash":"` the rest can follow.
_EVENT_RE = re.compile(
    rb'\{"action":"([^"\\\x00-\x1f]+)","actor":"[^"\\\x00-\x1f]*","payload":(\{.*\}),'
    rb'"prev_hash":"([0-9a-f]{64})","seq":([1-9][0-9]{0,14}),"subject":"[^"\\\x00-\x1f]*",'
    rb'"tenant":"([^"\\\x00-\x1f]+)","ts":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)"\}',
    re.DOTALL,
)
_MAX_CONTAINERS = 64
# A flat payload with printable-ASCII keys and no escapes: in canonical form exactly when its keys
# strictly increase (byte order is RFC 8785 order for ASCII), so no JSON round trip is needed.
_FLAT_MEMBER = rb'"([ !#-\[\]-~]*)":(?:"[^"\\\x00-\x1f]*"|-?[1-9][0-9]{0,14}|0|true|false|null)'
_FLAT_PAYLOAD_RE = re.compile(rb"\{(?:" + _FLAT_MEMBER + rb"(?:," + _FLAT_MEMBER + rb")*)?\}")
# The keys are read member by member from the start, each match beginning where the previous one
# ended: a search for key-like text anywhere (`[{,]"...":`) can start inside a value that ends in `,`
# and read `","` as a key, so an unsorted payload could pass as sorted.
_FLAT_MEMBER_RE = re.compile(rb"[{,]" + _FLAT_MEMBER)


def event_hash(canonical: bytes) -> bytes:
    """SHA-256 of an event's canonical bytes; its hex is the next event's ``prev_hash``."""
    return hashlib.sha256(canonical).digest()


def format_ts(when: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise PayloadError("timestamp must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=4096)
def _date_exists(date: str | bytes) -> bool:
    """Whether ``YYYY-MM-DD`` (ASCII digits, as text or bytes) names a real day; a log's events share few dates."""
    year, month, day = int(date[:4]), int(date[5:7]), int(date[8:10])
    return year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


def _check_ts(ts: object) -> str:
    """``ts`` in the one fixed format, naming a real instant (what ``strptime`` would accept).

    Fixed positions instead of ``strptime``: the check runs once per event on every verification.
    """
    if not isinstance(ts, str) or not _TS_RE.fullmatch(ts):
        raise PayloadError(f"ts must be RFC 3339 UTC with microseconds, got {ts!r}")
    if not (_date_exists(ts[:10]) and ts[11:13] < "24" and ts[14:16] < "60" and ts[17:19] < "60"):
        raise PayloadError(f"ts is not a valid date/time: {ts!r}")
    return ts


def _walk_payload(value: Any, depth: int) -> None:
    if isinstance(value, dict):
        if depth > MAX_PAYLOAD_DEPTH:
            raise PayloadError(f"payload nesting deeper than {MAX_PAYLOAD_DEPTH}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(f"payload key {key!r} is not a string")
            if len(key) > MAX_PAYLOAD_KEY_CHARS:
                raise PayloadError(f"payload key longer than {MAX_PAYLOAD_KEY_CHARS} characters")
            _walk_payload(item, depth + 1)
    elif isinstance(value, list | tuple):
        if depth > MAX_PAYLOAD_DEPTH:
            raise PayloadError(f"payload nesting deeper than {MAX_PAYLOAD_DEPTH}")
        for item in value:
            _walk_payload(item, depth + 1)
    elif isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_STRING_BYTES:
        raise PayloadError(f"payload string longer than {MAX_PAYLOAD_STRING_BYTES} bytes")


def check_payload(payload: Mapping[str, Any]) -> bytes:
    """Enforce the write-side payload limits and return the payload's canonical bytes.

    The payload must be a JSON object, nested at most 8 containers deep
    (the payload object itself is depth 1), at most 16 KiB canonical, with
    strings of at most 4 KiB (UTF-8) and keys of at most 128 characters.
    Limits are applied when events are written, never when verifying, so
    tightening them later cannot invalidate an existing log.
    """
    if not isinstance(payload, dict):
        raise PayloadError("payload must be a JSON object")
    _walk_payload(payload, 1)
    canonical = canonicalize(payload)
    if len(canonical) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload is {len(canonical)} bytes canonical, limit {MAX_PAYLOAD_BYTES}")
    return canonical


@dataclass(frozen=True)
class Event:
    """A custody event with its canonical bytes and hash precomputed."""

    tenant: str
    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    canonical_bytes: bytes
    hash: bytes

    @property
    def hash_hex(self) -> str:
        """Lowercase hex of :attr:`hash`, i.e. the next event's ``prev_hash``."""
        return self.hash.hex()

    @property
    def leaf_index(self) -> int:
        """Index of this event's leaf in the Merkle tree (``seq - 1``)."""
        return self.seq - 1


def _check_fields(doc: Any) -> None:
    """Check an event object's members, their types and formats."""
    if not isinstance(doc, dict):
        raise PayloadError("event is not a JSON object")
    if set(doc) != _FIELDS:
        missing = sorted(_FIELDS - set(doc))
        extra = sorted(set(doc) - _FIELDS)
        raise PayloadError(f"event members wrong (missing {missing}, unexpected {extra})")
    for name in ("tenant", "actor", "action", "subject"):
        if not isinstance(doc[name], str):
            raise PayloadError(f"{name} must be a string")
    if not doc["tenant"] or not doc["action"]:
        raise PayloadError("tenant and action must not be empty")
    seq = doc["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SAFE_INTEGER:
        raise PayloadError(f"seq must be an integer from 1, got {seq!r}")
    _check_ts(doc["ts"])
    if not isinstance(doc["payload"], dict):
        raise PayloadError("payload must be a JSON object")
    prev = doc["prev_hash"]
    if not isinstance(prev, str) or not _HEX64_RE.fullmatch(prev):
        raise PayloadError("prev_hash must be 64 lowercase hex digits")


def _event(doc: dict[str, Any], canonical: bytes) -> Event:
    """The Event of a checked event object whose canonical bytes are ``canonical``."""
    return Event(
        tenant=doc["tenant"],
        seq=doc["seq"],
        ts=doc["ts"],
        actor=doc["actor"],
        action=doc["action"],
        subject=doc["subject"],
        payload=doc["payload"],
        prev_hash=doc["prev_hash"],
        canonical_bytes=canonical,
        hash=event_hash(canonical),
    )


def _validated(doc: Any) -> Event:
    """Check an event object's shape and build the Event (canonical bytes included)."""
    _check_fields(doc)
    return _event(doc, canonicalize(doc))


def _fast_event(canonical: bytes) -> Event | None:
    """The event of stored bytes the fast path proves canonical; None when only the full path can tell.

    Raises :class:`PayloadError` when the bytes are canonical JSON but not a valid event.
    """
    doc = fast_canonical_object(canonical)
    if doc is None:
        return None
    _check_fields(doc)
    return _event(doc, canonical)


def build_event(
    *,
    tenant: str,
    seq: int,
    ts: datetime | str,
    actor: str,
    action: str,
    subject: str,
    payload: Mapping[str, Any],
    prev_hash: str | bytes,
) -> Event:
    """Build an event for appending; enforces the payload limits.

    Arguments are keyword-only because five of them are strings that would
    be silently swappable if passed by position.

    ``ts`` may be an aware datetime (formatted with :func:`format_ts`) or an
    already formatted string; ``prev_hash`` may be the previous hash as bytes
    or lowercase hex (:data:`GENESIS_PREV_HASH` for seq 1).
    """
    check_payload(payload)
    doc = {
        "tenant": tenant,
        "seq": seq,
        "ts": format_ts(ts) if isinstance(ts, datetime) else ts,
        "actor": actor,
        "action": action,
        "subject": subject,
        "payload": dict(payload),
        "prev_hash": prev_hash.hex() if isinstance(prev_hash, bytes) else prev_hash,
    }
    return _validated(doc)


def chain_fields(canonical: bytes) -> tuple[str, int, str] | None:
    """(tenant, seq, prev_hash) of stored bytes proven to be a canonical, valid event; None: undecided.

    The walk over a whole log needs only these three and the proof of canonical form, so the fixed
    top level is matched in one pass and only the payload goes through the JSON fast path. Anything
    it cannot prove (escapes in a top-level string, an invalid date, ...) is left to :meth:`ChainVerifier.add`,
    which decides and names the reason.
    """
    match = _EVENT_RE.fullmatch(canonical)
    if match is None or canonical.count(b"{") + canonical.count(b"[") > _MAX_CONTAINERS:
        return None
    if not canonical.isascii():
        try:
            canonical.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not _flat_canonical(match.group(2)) and fast_canonical_object(match.group(2)) is None:
        return None
    try:
        _check_ts(match.group(6).decode("ascii"))
    except PayloadError:
        return None
    return match.group(5).decode("utf-8"), int(match.group(4)), match.group(3).decode("ascii")


def _flat_canonical(payload: bytes) -> bool:
    """Whether `payload` is a flat object in canonical form (False: not flat, or not provably so)."""
    if _FLAT_PAYLOAD_RE.fullmatch(payload) is None:
        return False
    keys: list[bytes] = []
    end = 0
    while payload[end + 1 : end + 2] == b'"':  # a member follows the `{` or `,` at `end`
        member = _FLAT_MEMBER_RE.match(payload, end)
        if member is None:
            return False
        keys.append(member.group(1))
        end = member.end()
    return all(a < b for a, b in itertools.pairwise(keys))


def parse_event(canonical: bytes) -> Event:
    """Parse stored event bytes, insisting they are already canonical."""
    fast = _fast_event(canonical)
    if fast is not None:
        return fast
    event = _validated(parse_json(canonical))
    if event.canonical_bytes != canonical:
        raise PayloadError("event bytes are not RFC 8785 canonical JSON")
    return event


@dataclass(frozen=True)
class ChainResult:
    """Outcome of :func:`verify_chain`; ``first_bad_seq`` is None when ``ok``."""

    ok: bool
    first_bad_seq: int | None
    reason: str
    count: int
    head_hash: str


class ChainVerifier:
    """Checks events one at a time against the hash chain (O(1) memory).

    ``first_seq``/``prev_hash`` let verification start after a trusted point
    (e.g. a checkpoint) instead of at genesis.  Each :meth:`add` either
    returns the parsed event or raises :class:`ChainError` naming the seq
    the chain breaks at (the position's expected seq, which is what an
    operator can look up even when the bytes there are garbage).
    """

    __slots__ = ("_first_seq", "_head", "_head_bytes", "_next_seq", "_tenant", "_tenant_bytes")

    def __init__(self, tenant: str, first_seq: int = 1, prev_hash: str = GENESIS_PREV_HASH) -> None:
        self._tenant = tenant
        self._first_seq = self._next_seq = first_seq
        # The starting prev_hash, which stays the head when it is not a hash: no event can follow it.
        self._head = prev_hash
        # The head as a known-shape event's prev_hash bytes must spell it; None (never equal) where no
        # event may match. Only this is updated per event: the text is derived when asked for.
        self._head_bytes = prev_hash.encode() if _HEX64_RE.fullmatch(prev_hash) else None
        self._tenant_bytes = tenant.encode("utf-8", "surrogatepass") if tenant else None

    @property
    def count(self) -> int:
        """Events accepted so far."""
        return self._next_seq - self._first_seq

    @property
    def head_hash(self) -> str:
        """Hex hash of the last accepted event (or the starting prev_hash)."""
        return self._head if self._head_bytes is None else self._head_bytes.decode("ascii")

    @property
    def next_seq(self) -> int:
        """Seq the next event must have."""
        return self._next_seq

    @staticmethod
    def _full_parse(want: int, canonical: bytes) -> Event:
        """The RFC 8785 definition, for bytes the fast path leaves undecided."""
        try:
            doc = parse_json(canonical)
        except PayloadError as exc:
            raise ChainError(want, f"bad JSON: {exc}") from exc
        event = _validated(doc)
        if event.canonical_bytes != canonical:
            raise ChainError(want, "not canonical JSON (RFC 8785)")
        return event

    def add(self, canonical: bytes) -> Event:
        """Verify the next event's bytes and advance, or raise :class:`ChainError`."""
        want = self._next_seq
        try:
            event = _fast_event(canonical) or self._full_parse(want, canonical)
        except PayloadError as exc:
            raise ChainError(want, f"invalid event: {exc}") from exc
        self._advance(want, event.tenant, event.seq, event.prev_hash, event.hash_hex)
        return event

    def check(self, canonical: bytes) -> None:
        """Like :meth:`add` without building the :class:`Event`: the walk of a whole log needs none.

        An event shaped like one already proven canonical (:mod:`services.tlog.shapes`) needs only
        its own values checked; anything else takes :func:`chain_fields`, then :meth:`add`, which
        decide and name the reason, and a proven event's shape is remembered.
        """
        shaped = event_shape_fields(canonical)
        if (shaped is not None and shaped[2] == self._tenant_bytes and shaped[0] == self._head_bytes
                and int(shaped[1]) == self._next_seq and _date_exists(shaped[3][:10])):
            self._head_bytes = _sha256(canonical).hexdigest().encode()
            self._next_seq += 1
            return
        fields = chain_fields(canonical)
        if fields is None:
            self.add(canonical)
        else:
            tenant, seq, prev_hash = fields
            self._advance(self._next_seq, tenant, seq, prev_hash, hashlib.sha256(canonical).hexdigest())
        remember_event_shape(canonical)

    def _advance(self, want: int, tenant: str, seq: int, prev_hash: str, hash_hex: str) -> None:
        if tenant != self._tenant:
            raise ChainError(want, f"wrong tenant {tenant!r}, expected {self._tenant!r}")
        if seq != want:
            if seq == want - 1:
                raise ChainError(want, f"duplicate seq {seq}")
            if seq > want:
                raise ChainError(want, f"seq gap: expected {want}, got {seq} (missing or reordered)")
            raise ChainError(want, f"seq out of order: expected {want}, got {seq}")
        if prev_hash != self.head_hash:
            raise ChainError(
                want, f"prev_hash mismatch: not the hash of seq {want - 1} (seq {want - 1} or {want} altered)"
            )
        self._head_bytes = hash_hex.encode()
        self._next_seq = want + 1


def verify_chain(events: Iterable[bytes], tenant: str) -> ChainResult:
    """Verify canonical event bytes in seq order from genesis, streaming.

    Stops at the first bad event and reports its seq and the reason (bad
    JSON, not canonical, wrong tenant, seq gap/duplicate/out of order,
    prev_hash mismatch).
    """
    chain = ChainVerifier(tenant)
    for canonical in events:
        try:
            chain.add(canonical)
        except ChainError as exc:
            return ChainResult(False, exc.seq, exc.reason, chain.count, chain.head_hash)
    return ChainResult(True, None, "ok", chain.count, chain.head_hash)
