"""The fast canonical-form checks decide exactly as the full RFC 8785 path, or leave the decision to it."""

from __future__ import annotations

import contextlib
import itertools
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tlog_helpers import TENANT, make_events

from services.tlog.errors import ChainError, PayloadError
from services.tlog.events import GENESIS_PREV_HASH, ChainVerifier, build_event, chain_fields, parse_event
from services.tlog.jcs import canonicalize, fast_canonical_object, parse_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=5), json_values, max_size=5)


def _spellings(value: Any) -> list[bytes]:
    """Canonical and near-canonical encodings of `value`: what a fast path could mistake for canonical."""
    out = [json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"),
           json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
           json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"),
           json.dumps(value, sort_keys=True).encode()]
    with contextlib.suppress(PayloadError):
        out.append(canonicalize(value))
    return out


def _full_verdict(data: bytes) -> Any:
    """What the full path says: the value when `data` is canonical, else None."""
    try:
        value = parse_json(data)
        return value if canonicalize(value) == data else None
    except PayloadError:
        return None


@settings(max_examples=300, deadline=None)
@given(json_objects)
@example({"a": 1.0})
@example({"a": 1e21, "b": 1e-7})
@example({"\ue000": 1, "\U0001f600": 2})
@example({"a": 2**53 + 1, "b": 2**60, "c": 123456789012345, "d": -1234567890123456})
@example({"a": "\x1f\x7f\u2028\"\\/\n"})
@example({"a": -0.0})
def test_the_fast_check_never_accepts_what_the_full_path_refuses(value: dict[str, Any]) -> None:
    """For every spelling of a generated object, the fast check is undecided or agrees with RFC 8785."""
    for data in _spellings(value):
        fast = fast_canonical_object(data)
        if fast is not None:
            assert _full_verdict(data) == fast


_BMP_TEXT = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_BMP_TEXT, st.none() | st.booleans() | st.integers(-(10**15) + 1, 10**15 - 1) | _BMP_TEXT,
                       max_size=6))
def test_the_fast_check_decides_objects_of_strings_and_small_integers(value: dict[str, Any]) -> None:
    """Canonical bytes of an object of (BMP) strings, small integers and literals are decided, not left undecided."""
    assert fast_canonical_object(canonicalize(value)) == value


@pytest.mark.parametrize(("value", "python_spelling"), [
    ({"a": 1.0}, b'{"a":1.0}'),
    ({"a": 1e-7}, b'{"a":1e-07}'),
    ({"\ue000": 1, "\U0001f600": 2}, '{"\ue000":1,"\U0001f600":2}'.encode()),
    ({"a": 2**60}, b'{"a":1152921504606846976}'),
])
def test_where_python_and_rfc_8785_spell_differently_the_fast_check_steps_aside(
        value: dict[str, Any], python_spelling: bytes) -> None:
    """Floats, supplementary-plane keys and unsafe integers, which Python spells unlike RFC 8785, are left undecided."""
    assert json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == python_spelling
    assert canonicalize(value) != python_spelling
    assert fast_canonical_object(python_spelling) is None


@pytest.mark.parametrize("data", [
    b'{"a":1,"a":1}', b'{"b":1,"a":2}', b'{"a": 1}', b' {"a":1}', b'{"a":"\\u00e9"}', b'{"a":"\\/"}',
    b'{"a":01}', b'{"a":-0}', b'{"a":NaN}', b'{"a":1} ', b'[1]', b'{"a":"\xff"}',
    b"{" + b'"a":[' * 64 + b"]" * 64 + b"}",
])
def test_non_canonical_or_unusual_bytes_are_left_to_the_full_path(data: bytes) -> None:
    """Duplicates, disorder, whitespace, needless escapes, odd numbers, non-objects and deep nesting are not decided."""
    assert fast_canonical_object(data) is None


def _payloads() -> st.SearchStrategy[dict[str, Any]]:
    leaves = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=12)
    values = st.recursive(leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                         max_size=3), max_leaves=6)
    return st.dictionaries(st.text(max_size=6), values, max_size=4)


@settings(max_examples=200, deadline=None)
@given(payload=_payloads(), actor=st.text(max_size=12), subject=st.text(max_size=12),
       tenant=st.text(min_size=1, max_size=8), seq=st.integers(1, 2**53 - 1))
def test_chain_fields_agree_with_the_full_parse_of_an_event(payload: dict[str, Any], actor: str, subject: str,
                                                           tenant: str, seq: int) -> None:
    """chain_fields is undecided or gives exactly the tenant, seq and prev_hash the full parse gives."""
    try:
        event = build_event(tenant=tenant, seq=seq, ts="2026-02-28T23:59:59.999999Z", actor=actor,
                            action="asset.isolate.requested", subject=subject, payload=payload,
                            prev_hash=GENESIS_PREV_HASH)
    except PayloadError:
        return
    fields = chain_fields(event.canonical_bytes)
    assert fields is None or fields == (event.tenant, event.seq, event.prev_hash)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_check_and_add_reach_the_same_verdict_on_damaged_bytes(data: st.DataObject) -> None:
    """On events with one byte changed, ChainVerifier.check and .add accept or refuse alike, for the same reason."""
    events = make_events(3)
    index = data.draw(st.integers(0, 2))
    raw = bytearray(events[index].canonical_bytes)
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] = data.draw(st.integers(0, 255))
    stream = [e.canonical_bytes for e in events]
    stream[index] = bytes(raw)
    assert _outcome(ChainVerifier.check, stream) == _outcome(ChainVerifier.add, stream)


def _outcome(step: Any, stream: list[bytes]) -> tuple[str, int | None, str]:
    chain = ChainVerifier(TENANT)
    try:
        for canonical in stream:
            step(chain, canonical)
    except ChainError as exc:
        return ("refused", exc.seq, exc.reason)
    return ("accepted", None, chain.head_hash)


# Short texts of JSON's structural characters, so keys and values look like each other's boundaries.
_STRUCTURAL_TEXT = st.lists(st.sampled_from([",", ":", "!", "-", "z", "{", '"', "\u00e9"]), max_size=2).map("".join)
_FLAT_VALUES = _STRUCTURAL_TEXT | st.none() | st.booleans() | st.integers(-(10**16), 10**16)
_EVENT_PREFIX = b'{"action":"x","actor":"a","payload":'
_EVENT_SUFFIX = (b',"prev_hash":"' + GENESIS_PREV_HASH.encode() + b'","seq":1,"subject":"s","tenant":"'
                 + TENANT.encode() + b'","ts":"2026-11-22T02:45:07.000007Z"}')


def _member_spelling(members: list[tuple[str, Any]]) -> bytes:
    """An object spelled member by member in the given order, duplicates kept: canonical only by luck."""
    inner = ",".join(json.dumps(key, ensure_ascii=False) + ":" + json.dumps(value, ensure_ascii=False)
                     for key, value in members)
    return ("{" + inner + "}").encode()


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(_STRUCTURAL_TEXT, _FLAT_VALUES), max_size=5))
@example([("!", "x,"), (":z", 1), ("-", 2)])
@example([("a", "x,"), ("", 1)])
@example([("b", "{"), ("a", 1)])
@example([("a", 1), ("a", 1)])
def test_chain_fields_never_accept_a_payload_the_full_path_refuses(members: list[tuple[str, Any]]) -> None:
    """Whatever the order, duplicates and structural characters of its keys, a payload passes chain_fields only
    when the full RFC 8785 path accepts the event, with the same tenant, seq and prev_hash."""
    payload = _member_spelling(members)
    event = _EVENT_PREFIX + payload + _EVENT_SUFFIX
    fields = chain_fields(event)
    if fields is not None:
        assert _full_verdict(event) is not None
        assert fields == (TENANT, 1, GENESIS_PREV_HASH)
    fast = fast_canonical_object(payload)
    if fast is not None:
        assert _full_verdict(payload) == fast


_BOUNDARY_KEYS = ("", "!", ",", "-", ":", ":z", "{", "a")
_BOUNDARY_VALUES = ("x,", "{", ",", 1)


def test_chain_fields_agree_with_the_full_path_on_every_small_payload_of_boundary_text() -> None:
    """Every payload of up to three members whose keys and values imitate member boundaries is decided right."""
    wrongly_accepted = []
    for size in range(4):
        for keys, values in itertools.product(itertools.product(_BOUNDARY_KEYS, repeat=size),
                                              itertools.product(_BOUNDARY_VALUES, repeat=size)):
            event = _EVENT_PREFIX + _member_spelling(list(zip(keys, values, strict=True))) + _EVENT_SUFFIX
            if chain_fields(event) is not None and _full_verdict(event) is None:
                wrongly_accepted.append(event)
    assert wrongly_accepted == []


def test_chain_fields_decide_the_events_the_ledger_writes() -> None:
    """Custody events as assets and the ledger write them (ASCII strings, small integers) take the fast path."""
    prev = GENESIS_PREV_HASH
    for seq, payload in enumerate([
        {"justification": "exposed Ollama with SSH keys open, ticket SEC-42", "command_id": "c-1", "request_id": "r-1"},
        {"command_id": "c-1", "outcome": "APPLIED", "ruleset_sha256": "ab" * 32, "rule_count": 14,
         "self_test": {"ok": True, "attempts": [{"address": "10.0.0.5", "port": 50051, "ok": True}]}},
        {"i": 7},
    ], start=1):
        event = build_event(tenant="acme", seq=seq, ts="2026-11-22T02:45:07.000007Z", actor="token:t-1",
                            action="asset.isolate.requested", subject="asset:a-1", payload=payload, prev_hash=prev)
        assert chain_fields(event.canonical_bytes) == ("acme", seq, prev)
        assert parse_event(event.canonical_bytes) == event
        prev = event.hash_hex


def _strptime_accepts(ts: str) -> bool:
    try:
        datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return False
    return True


def _builds(ts: str) -> bool:
    try:
        build_event(tenant="acme", seq=1, ts=ts, actor="a", action="x", subject="s", payload={},
                    prev_hash=GENESIS_PREV_HASH)
    except PayloadError:
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
       st.integers(0, 99), st.integers(0, 999999))
@example(2024, 2, 29, 23, 59, 59, 0)
@example(2023, 2, 29, 0, 0, 0, 0)
@example(1900, 2, 29, 0, 0, 0, 0)
@example(2000, 2, 29, 0, 0, 0, 0)
@example(0, 1, 1, 0, 0, 0, 0)
@example(2026, 12, 31, 24, 0, 0, 0)
@example(2026, 4, 31, 0, 0, 0, 0)
@example(2026, 1, 1, 0, 60, 60, 0)
def test_the_fixed_format_timestamp_check_agrees_with_strptime(year: int, month: int, day: int, hour: int,
                                                               minute: int, second: int, micro: int) -> None:
    """A timestamp of the fixed shape is accepted exactly when strptime accepts it."""
    ts = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}Z"
    assert _builds(ts) == _strptime_accepts(ts)


def test_a_timestamp_with_non_ascii_digits_is_refused() -> None:
    """Digits of other scripts do not pass for the fixed ASCII format."""
    fullwidth_year = "".join(chr(0xFF10 + int(d)) for d in "2026")
    assert not _builds(f"{fullwidth_year}-11-22T02:45:07.000007Z")


@pytest.mark.parametrize("payload", [b'{"b":1,"a":2}', b'{"a":1,"a":1}', b'{"a":01}', b'{"a":-0}', b'{"a":1,}',
                                     b'{"a":"\\u0041"}', b'{"a": 1}', b'{"a":1.50}'])
def test_a_payload_out_of_canonical_form_is_refused_by_check_as_by_add(payload: bytes) -> None:
    """An event whose payload is out of canonical form is not decided fast, and check refuses it as add does."""
    event = build_event(tenant=TENANT, seq=1, ts="2026-11-22T02:45:07.000007Z", actor="a", action="x", subject="s",
                        payload={"a": 1}, prev_hash=GENESIS_PREV_HASH)
    damaged = event.canonical_bytes.replace(b'"payload":{"a":1}', b'"payload":' + payload)
    assert chain_fields(damaged) is None
    assert _outcome(ChainVerifier.check, [damaged]) == _outcome(ChainVerifier.add, [damaged])
    assert _outcome(ChainVerifier.check, [damaged])[0] == "refused"
