"""Event shapes: proving stored bytes canonical by their resemblance to an event already proven so.

A log's events come in few shapes: the same action, members and payload keys, in the same structure,
with other strings and other integers. The *shape* of event bytes without a backslash is what
``data.split(b'"')`` leaves once the contents of the value strings other than the action and the
integers are set aside: the text between strings (structure, integers and literals) and the key
strings. Without a backslash every ``"`` opens or closes a string, so the even pieces are exactly the
text between strings and the odd ones the strings' contents; a string is a key exactly when the text
after it starts with ``:``.

A remembered shape is kept as one regular expression spelling it: the text between strings literal
but for each integer, which may be any canonical integer of at most 15 digits (``0`` or
``-?[1-9][0-9]{0,14}``); the keys and the action literal; the ts a timestamp in the one format with
a valid time of day; every other value string any run of bytes other than ``"``, ``\\`` and control
characters. So bytes match it exactly when they have the shape, hold no backslash and no control
character and spell their ts in that format. Shapes are found by their action, the first member
of every event, so a lookup is one dictionary access and a match per shape of that action.

Why a shape decides: take bytes ``A`` proven an RFC 8785 canonical, valid event (by
``chain_fields`` or the full path, in ``ChainVerifier.check``) whose numbers are all integers of at
most 15 digits. Bytes ``B`` matching ``A``'s expression differ from ``A`` only in the contents of
value strings and in integers. If ``B`` is UTF-8, each value string is spelled as RFC 8785 spells it
(only ``"``, ``\\`` and control characters are escaped, and none is there); each integer is spelled
as RFC 8785 spells it (no leading zero, no ``-0``, below 2**53 so exact); the keys, hence member
order, are ``A``'s. So ``B`` is canonical with the same members as ``A``. The values the event check
needs beyond that (tenant, seq, ts, prev_hash) are returned for the caller to check, as they differ
from event to event.
Shapes with a float, a longer integer or anything else in their structure are not remembered.
"""

from __future__ import annotations

import re

__all__ = ["ShapeFields", "event_shape_fields", "remember_event_shape"]

MAX_SHAPE_BYTES = 4 << 20
"""Bytes of shape expressions remembered per process; past that new shapes take the slower checks
(a log whose every event has another shape costs that memory, never more)."""

MAX_SHAPES_PER_ACTION = 16
"""Shapes tried for one action; an action with more takes the slower checks for the rest."""

ShapeFields = tuple[bytes, bytes, bytes, bytes]
"""(prev_hash, seq digits, tenant, ts) of event bytes whose shape is known canonical; ts is in the one
format with a valid time of day, whether its date exists is left to the caller."""

_NOT_IN_A_PLAIN_EVENT = bytes(range(0x20)) + b"\\"
_ONE_FOR_NONZERO = bytes.maketrans(b"23456789", b"11111111")
# The text between strings of a canonical event with integers only: what a remembered shape may hold.
_PLAIN_STRUCTURE_RE = re.compile(rb'(?:[{}\[\],:"]|-?1[01]{0,14}(?![01])|0(?![01])|true|false|null)*')
_NUMBER_RE = re.compile(rb"(-?[0-9]+)")
_INTEGER = rb"(?:0|-?[1-9][0-9]{0,14})"
_VALUE = rb'[^"\\\x00-\x1f]*'
# The one ts format of an event with its hour, minute and second ranges: a ts spelt otherwise leaves the
# shape, so the caller checks only that the date exists.
_TS = rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z"
_ACTION_START = len(b'{"action":"')
# The fixed tail of every event, `,"prev_hash":"H","seq":N,"subject":"S","tenant":"T","ts":"TS"}`, split at
# its quotes, counted from the end: the pieces holding each value the caller checks, in ShapeFields order.
_ACTION, _PREV_HASH, _SEQ, _TENANT, _TS_PIECE = 3, -16, -13, -6, -2

_shapes: dict[bytes, list[re.Pattern[bytes]]] = {}
_remembered_bytes = [0]  # one shared count, kept in a list so no function needs `global`


def _plain(data: bytes) -> bool:
    """No backslash, no control character, valid UTF-8: the precondition of every shape argument."""
    if len(data.translate(None, _NOT_IN_A_PLAIN_EVENT)) != len(data):
        return False
    return data.isascii() or _utf8(data)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _between_strings(text: bytes, capture: bool) -> bytes:
    """The expression of text between strings: literal but for its integers (captured if `capture`)."""
    integer = b"(" + _INTEGER + b")" if capture else _INTEGER
    return b"".join(integer if i % 2 else re.escape(part) for i, part in enumerate(_NUMBER_RE.split(text)))


def _shape_expression(pieces: list[bytes]) -> bytes:
    captured = {len(pieces) + i for i in (_PREV_HASH, _TENANT)}
    seq, ts = len(pieces) + _SEQ, len(pieces) + _TS_PIECE
    spelled = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            spelled.append(_between_strings(piece, i == seq))
        elif i == _ACTION or pieces[i + 1][:1] == b":":
            spelled.append(re.escape(piece))
        elif i == ts:
            spelled.append(b"(" + _TS + b")")
        else:
            spelled.append(b"(" + _VALUE + b")" if i in captured else _VALUE)
    return b'"'.join(spelled)


def remember_event_shape(proven: bytes) -> None:
    """Remember the shape of bytes the caller has proven to be a canonical, valid event."""
    if _remembered_bytes[0] + 2 * len(proven) > MAX_SHAPE_BYTES or not _plain(proven):
        return
    pieces = proven.split(b'"')
    structure = b'"'.join(pieces[0::2]).translate(_ONE_FOR_NONZERO)
    if len(pieces) < -_PREV_HASH or not _PLAIN_STRUCTURE_RE.fullmatch(structure):
        return
    known = _shapes.setdefault(pieces[_ACTION], [])
    expression = _shape_expression(pieces)
    if len(known) >= MAX_SHAPES_PER_ACTION or any(shape.pattern == expression for shape in known):
        return
    known.append(re.compile(expression))
    _remembered_bytes[0] += len(expression)


def event_shape_fields(data: bytes) -> ShapeFields | None:
    """The values to check of `data` when its shape is a remembered one (so it is canonical); None otherwise."""
    for shape in _shapes.get(data[_ACTION_START : data.find(b'"', _ACTION_START)], ()):
        match = shape.fullmatch(data)
        if match is not None:
            return match.groups() if data.isascii() or _utf8(data) else None  # type: ignore[return-value]
    return None
