"""Events: RFC 8785 canonical JSON, event building, payload limits and chain checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_helpers import TENANT, make_events

from services.tlog.errors import PayloadError
from services.tlog.events import (
    GENESIS_PREV_HASH,
    build_event,
    check_payload,
    event_hash,
    format_ts,
    parse_event,
    verify_chain,
)
from services.tlog.jcs import canonicalize, parse_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (123.456, "123.456"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (0.1 + 0.2, "0.30000000000000004"),
        (9007199254740991, "9007199254740991"),
        (333333333.3333333, "333333333.3333333"),
        (1e23, "1e+23"),
    ],
)
def test_jcs_numbers_follow_es6(value: float, expected: str) -> None:
    """Numbers serialise exactly as ECMAScript Number.prototype.toString does."""
    assert canonicalize(value) == expected.encode()


def test_jcs_sorts_keys_by_utf16_code_units() -> None:
    """Object members sort by UTF-16 code units, as in the RFC 8785 example."""
    value = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    keys = list(json.loads(canonicalize(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_jcs_string_escaping() -> None:
    """Only quote, backslash and control characters are escaped, with short forms where defined."""
    assert canonicalize('\u2028\x7f\x1f\n"\\\u00e9') == '"\u2028\x7f\\u001f\\n\\"\\\\\u00e9"'.encode()


def test_jcs_rfc_example() -> None:
    """The RFC 8785 section 3.2.2 style sample canonicalises to compact sorted JSON."""
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(value) == expected.encode()


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {1: 2}, "\ud800", 2**53 + 1, 10**400, {"a": object()}, b"x"]
)
def test_jcs_rejects_unrepresentable_values(value: Any) -> None:
    """NaN, Infinity, non-string keys, lone surrogates, unsafe integers and other types are refused."""
    with pytest.raises(PayloadError):
        canonicalize(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_jcs_round_trips_through_json(value: Any) -> None:
    """Canonical bytes parse back to an equal value and re-canonicalise identically."""
    data = canonicalize(value)
    assert canonicalize(parse_json(data)) == data


def test_parse_json_rejects_duplicate_keys() -> None:
    """Duplicate member names are refused rather than silently resolved."""
    with pytest.raises(PayloadError, match="duplicate"):
        parse_json(b'{"a":1,"a":2}')


def test_build_event_fields_and_hash() -> None:
    """build_event produces canonical bytes with sorted members and their SHA-256 hash."""
    event = build_event(
        tenant="t",
        seq=1,
        ts=datetime(2026, 11, 22, 2, 45, 6, 123456, tzinfo=UTC),
        actor="a",
        action="x",
        subject="s",
        payload={"b": 1, "a": [1.5]},
        prev_hash=GENESIS_PREV_HASH,
    )
    assert event.canonical_bytes == (
        b'{"action":"x","actor":"a","payload":{"a":[1.5],"b":1},"prev_hash":"'
        + b"0" * 64
        + b'","seq":1,"subject":"s","tenant":"t","ts":"2026-11-22T02:45:06.123456Z"}'
    )
    assert event.hash == event_hash(event.canonical_bytes)
    assert event.leaf_index == 0
    assert parse_event(event.canonical_bytes) == event


def test_format_ts_converts_to_utc() -> None:
    """Aware datetimes in other zones are converted to UTC with microseconds."""
    when = datetime(2026, 1, 1, 3, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_ts(when) == "2026-01-01T01:00:00.000000Z"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ts", "2026-11-22T02:45:06Z"),
        ("ts", "2026-13-22T02:45:06.000000Z"),
        ("seq", 0),
        ("seq", True),
        ("prev_hash", "A" * 64),
        ("prev_hash", "0" * 63),
        ("tenant", ""),
        ("actor", 5),
    ],
)
def test_build_event_rejects_bad_fields(field: str, value: Any) -> None:
    """Malformed timestamps, seqs, hashes and names are refused at build time."""
    args: dict[str, Any] = {
        "tenant": "t",
        "seq": 1,
        "ts": "2026-11-22T02:45:06.000000Z",
        "actor": "a",
        "action": "x",
        "subject": "s",
        "payload": {},
        "prev_hash": GENESIS_PREV_HASH,
    }
    args[field] = value
    with pytest.raises(PayloadError):
        build_event(**args)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"k": "x" * 4097}, "string"),
        ({"k" * 129: 1}, "key"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}, "deeper"),
        ({f"k{i}": "x" * 4000 for i in range(5)}, "16384"),
        ([1], "object"),
    ],
)
def test_check_payload_limits(payload: Any, match: str) -> None:
    """Payloads over the string, key, depth or size limits are refused with the limit named."""
    with pytest.raises(PayloadError, match=match):
        check_payload(payload)


def test_check_payload_accepts_depth_eight() -> None:
    """A payload nested exactly eight containers deep is accepted."""
    check_payload({"a": {"b": {"c": {"d": {"e": {"f": {"g": [1]}}}}}}})


def test_verify_chain_accepts_valid_chain() -> None:
    """A valid chain verifies, counting events and returning the head hash."""
    events = make_events(20)
    result = verify_chain((e.canonical_bytes for e in events), TENANT)
    assert (result.ok, result.count, result.head_hash) == (True, 20, events[-1].hash_hex)


def test_verify_chain_streams() -> None:
    """Chain verification consumes an iterator lazily and stops at the first bad event."""
    events = make_events(5)
    consumed: list[int] = []

    def stream() -> Iterator[bytes]:
        for e in events:
            consumed.append(e.seq)
            yield e.canonical_bytes
        consumed.append(-1)
        yield b"garbage"
        raise AssertionError("read past the first bad event")

    result = verify_chain(stream(), TENANT)
    assert (result.ok, result.first_bad_seq, result.count) == (False, 6, 5)


def _lines() -> list[bytes]:
    return [e.canonical_bytes for e in make_events(6)]


def _mutate(kind: str) -> list[bytes]:
    lines = _lines()
    if kind == "bad json":
        lines[2] = b"{not json"
    elif kind == "not canonical":
        lines[2] = json.dumps(json.loads(lines[2]), indent=1).encode()
    elif kind == "wrong tenant":
        lines = [e.canonical_bytes for e in make_events(6, tenant="other")]
    elif kind == "gap":
        del lines[2]
    elif kind == "duplicate":
        lines.insert(3, lines[2])
    elif kind == "order":
        lines[2], lines[3] = lines[3], lines[2]
    elif kind == "prev_hash":
        doc = json.loads(lines[2])
        doc["payload"]["pid"] = 1
        lines[2] = canonicalize(doc)
    return lines


@pytest.mark.parametrize(
    ("kind", "seq", "reason"),
    [
        ("bad json", 3, "bad JSON"),
        ("not canonical", 3, "not canonical"),
        ("wrong tenant", 1, "wrong tenant"),
        ("gap", 3, "seq gap"),
        ("duplicate", 4, "duplicate seq 3"),
        ("order", 3, "seq gap"),
        ("prev_hash", 4, "prev_hash mismatch"),
    ],
)
def test_verify_chain_names_first_bad_seq(kind: str, seq: int, reason: str) -> None:
    """Each kind of chain damage is reported at the first bad seq with its reason."""
    result = verify_chain(_mutate(kind), TENANT)
    assert not result.ok
    assert result.first_bad_seq == seq
    assert reason in result.reason


def test_verify_chain_out_of_order_backwards() -> None:
    """An event whose seq goes backwards by more than one is reported as out of order."""
    lines = _lines()
    lines.insert(4, lines[0])
    result = verify_chain(lines, TENANT)
    assert (result.first_bad_seq, "out of order" in result.reason) == (5, True)
