"""Events shaped like one proven canonical are decided by their shape exactly as the full check decides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_helpers import TENANT

from services.tlog.errors import ChainError
from services.tlog.events import GENESIS_PREV_HASH, ChainVerifier, Event, build_event
from services.tlog.shapes import event_shape_fields

TS = "2026-11-22T02:45:07.000007Z"


def _event(payload: dict[str, Any], seq: int = 1, prev: str = GENESIS_PREV_HASH, **fields: str) -> Event:
    values = {"tenant": TENANT, "actor": "token:t-1", "action": "asset.isolate.requested", "subject": "asset:a-1",
              "ts": TS, **fields}
    return build_event(seq=seq, payload=payload, prev_hash=prev, **values)  # type: ignore[arg-type]


def _proven(payload: dict[str, Any]) -> bytes:
    """Canonical bytes of an event whose shape the check has just proven (and so remembers)."""
    data = _event(payload).canonical_bytes
    ChainVerifier(TENANT).check(data)
    return data


def _outcome(step: Any, data: bytes) -> tuple[str, int | None, str]:
    chain = ChainVerifier(TENANT)
    try:
        step(chain, data)
    except ChainError as exc:
        return ("refused", exc.seq, exc.reason)
    return ("accepted", None, chain.head_hash)


_PAYLOAD = {"command_id": "c-1", "justification": "ticket SEC-42", "rule_count": 14,
            "self_test": {"attempts": [{"port": 50051, "ok": True}], "note": None}}


def test_an_event_shaped_like_a_proven_one_is_decided_by_its_shape() -> None:
    """Another event of a proven event's shape (other strings, other digits) is recognised by its shape."""
    _proven(_PAYLOAD)
    other = _event({**_PAYLOAD, "command_id": "c-9999", "rule_count": 93}, actor="x", subject="").canonical_bytes
    assert event_shape_fields(other) is not None
    assert _outcome(ChainVerifier.check, other) == _outcome(ChainVerifier.add, other) == (
        "accepted", None, _event({**_PAYLOAD, "command_id": "c-9999", "rule_count": 93}, actor="x",
                                 subject="").hash_hex)


@pytest.mark.parametrize("payload", [{"n": 1000000000000000}, {"x": 1.5}, {"s": "a\nb"}, {"s": "\\"},
                                     {"a\nb": 1}])
def test_shapes_with_floats_long_integers_or_escapes_are_not_remembered(payload: dict[str, Any]) -> None:
    """A proven event whose numbers or strings a shape cannot vouch for leaves no shape behind."""
    assert event_shape_fields(_proven(payload)) is None


@pytest.mark.parametrize("hostile", [
    b'{"n":9999999999999999}',  # 16 digits: beyond 2**53, RFC 8785 spells it as a double
    b'{"n":0999999999999999}',
    b'{"n":-0}',
    b'{"n":1.0}',
])
def test_numbers_a_shape_cannot_vouch_for_are_refused_as_the_full_check_refuses_them(hostile: bytes) -> None:
    """Integers too long, zero-led, negative zero or fractional take the full check, which refuses them."""
    proven = _proven({"n": 1000000000000000})
    data = proven.replace(b'"payload":{"n":1000000000000000}', b'"payload":' + hostile)
    assert _outcome(ChainVerifier.check, data) == _outcome(ChainVerifier.add, data)
    assert _outcome(ChainVerifier.check, data)[0] == "refused"


@pytest.mark.parametrize("integer", [b"014", b"-0", b"9999999999999999", b"1e3", b"-"])
def test_an_integer_no_canonical_event_spells_is_refused_in_a_known_shape(integer: bytes) -> None:
    """A zero-led, negative-zero, too long or exponent integer in a known shape is refused as by the full check."""
    proven = _proven({"i": 7})
    data = proven.replace(b'"payload":{"i":7}', b'"payload":{"i":' + integer + b"}")
    assert _outcome(ChainVerifier.check, data) == _outcome(ChainVerifier.add, data)
    assert _outcome(ChainVerifier.check, data)[0] == "refused"


def test_a_known_shape_with_other_integers_of_other_lengths_is_decided_by_its_shape() -> None:
    """Integers of any canonical length up to 15 digits where a known shape has one keep the shape."""
    _proven({"i": 7})
    other = _event({"i": -123456789012345}, seq=1).canonical_bytes
    assert event_shape_fields(other) is not None
    assert _outcome(ChainVerifier.check, other) == _outcome(ChainVerifier.add, other)


def test_a_known_shape_with_other_payload_keys_is_refused_as_the_full_check_refuses_it() -> None:
    """Keys are part of a shape: the same structure with keys out of RFC 8785 order takes the full check."""
    proven = _proven({"a": 1, "b": 2})
    data = proven.replace(b'"a":1,"b":2', b'"c":1,"b":2')
    assert event_shape_fields(data) is None
    assert _outcome(ChainVerifier.check, data) == _outcome(ChainVerifier.add, data)
    assert _outcome(ChainVerifier.check, data)[0] == "refused"


@pytest.mark.parametrize(("field", "value"), [
    ("tenant", b""), ("action", b""), ("ts", b"2026-02-30T02:45:07.000007Z"), ("ts", b"2026-11-22 02:45:07.000007Z"),
    ("ts", b"2026-11-22T24:45:07.000007Z"), ("ts", b"2026-11-22T02:60:07.000007Z"),
    ("ts", b"2026-11-22T02:45:60.000007Z"),
    ("prev_hash", b"F" * 64), ("subject", b"\xff"), ("actor", b"a\x1fb"), ("subject", b"a\\u0041"),
])
def test_a_known_shape_with_a_bad_value_is_refused_as_the_full_check_refuses_it(field: str, value: bytes) -> None:
    """Empty tenant or action, an impossible or misspelt ts, a bad prev_hash, invalid UTF-8, control
    characters and escapes in an event of a known shape are refused for the same reason as by the full check."""
    proven = _proven({"i": 7})
    old = str(getattr(_event({"i": 7}), field)).encode()
    data = proven.replace(f'"{field}":"'.encode() + old + b'"', f'"{field}":"'.encode() + value + b'"')
    assert data != proven
    assert _outcome(ChainVerifier.check, data) == _outcome(ChainVerifier.add, data)
    assert _outcome(ChainVerifier.check, data)[0] == "refused"


_VALUE_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from('"\\\x00\x1f:,{}'),
                      max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_rewriting_the_value_strings_and_digits_of_a_known_shape_is_decided_as_the_full_check_decides(
        data: st.DataObject) -> None:
    """Any text in any value string, any byte in place of a digit: check and add agree on every such event."""
    proven = _proven(_PAYLOAD)
    pieces = proven.split(b'"')
    values = [i for i in range(1, len(pieces) - 1, 2) if pieces[i + 1][:1] != b":"]
    index = data.draw(st.sampled_from(values))
    text = data.draw(_VALUE_TEXT)
    pieces[index] = text.encode("utf-8", "surrogatepass") if data.draw(st.booleans()) else text.encode("latin-1",
                                                                                                      "replace")
    digits = [i for i, byte in enumerate(b'"'.join(pieces)) if 0x30 <= byte <= 0x39]
    rewritten = bytearray(b'"'.join(pieces))
    if digits and data.draw(st.booleans()):
        rewritten[data.draw(st.sampled_from(digits))] = data.draw(st.integers(0, 255))
    assert _outcome(ChainVerifier.check, bytes(rewritten)) == _outcome(ChainVerifier.add, bytes(rewritten))
