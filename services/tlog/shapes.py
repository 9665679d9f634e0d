"""Event shapes: proving stored bytes canonical by their resemblance to an event already proven so.

A log's events come in few shapes: the same members and payload keys, in the same structure, with
other strings and other integers. The *shape* of event bytes without a backslash is what
``data.split(b'"')`` leaves once the contents of the value strings are set aside: the text between
strings (structure, numbers and literals, each digit 1-9 written as 1) and the key strings. Without
a backslash every ``"`` opens or closes a string, so the even pieces are exactly the text between
strings and the odd ones the strings' contents; a string is a key exactly when the text after it
starts with ``:``.

Why a shape decides: take bytes ``A`` proven an RFC 8785 canonical, valid event (by
``chain_fields`` or the full path, in ``ChainVerifier.check``) whose numbers are all integers of at
most 15 digits. Bytes ``B`` of the same shape differ from ``A`` only in the contents of value
strings and in which non-zero digit stands where ``A`` has one. If ``B``'s value strings hold no
control character and ``B`` is UTF-8, each is spelled as RFC 8785 spells it (only ``"``, ``\\`` and
control characters are escaped; there is no backslash and no ``"`` inside a piece); each integer
keeps its length and its zeros, so it is still canonical and still below 2**53; the keys, hence
member order, are ``A``'s. So ``B`` is canonical with the same members as ``A``. The values the
event check needs beyond that (tenant, action, seq, ts, prev_hash) are returned for the caller to
check, as they differ from event to event.
Shapes with a float, a longer integer or anything else in their structure are not remembered.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

__all__ = ["ShapeFields", "event_shape_fields", "remember_event_shape"]

MAX_SHAPE_BYTES = 4 << 20
"""Bytes of structure and keys remembered per process; past that new shapes take the slower checks
(a log whose every event has another shape costs that memory, never more)."""

ShapeFields = tuple[bytes, bytes, bytes, bytes, bytes]
"""(action, seq digits, prev_hash, tenant, ts) of event bytes whose shape is known canonical."""

_NOT_IN_A_PLAIN_EVENT = bytes(range(0x20)) + b"\\"
_ONE_FOR_NONZERO = bytes.maketrans(b"23456789", b"11111111")
# The text between strings of a canonical event with integers only: what a remembered shape may hold.
_PLAIN_STRUCTURE_RE = re.compile(rb'(?:[{}\[\],:"]|-?1[01]{0,14}(?![01])|0(?![01])|true|false|null)*')
# The fixed tail of every event, `,"prev_hash":"H","seq":N,"subject":"S","tenant":"T","ts":"TS"}`, split at
# its quotes, counted from the end: the pieces holding each value the caller checks.
_ACTION, _PREV_HASH, _SEQ, _TENANT, _TS = 3, -16, -13, -6, -2

_shapes: dict[bytes, tuple[Callable[[list[bytes]], tuple[bytes, ...]], set[tuple[bytes, ...]]]] = {}
_remembered_bytes = [0]  # one shared count, kept in a list so no function needs `global`


def _structure(pieces: list[bytes]) -> bytes:
    return b'"'.join(pieces[0::2]).translate(_ONE_FOR_NONZERO)


def _key_positions(pieces: list[bytes]) -> list[int]:
    return [i for i in range(1, len(pieces) - 1, 2) if pieces[i + 1][:1] == b":"]


def _plain(data: bytes) -> bool:
    """No backslash, no control character, valid UTF-8: the precondition of every shape argument."""
    if len(data.translate(None, _NOT_IN_A_PLAIN_EVENT)) != len(data):
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def remember_event_shape(proven: bytes) -> None:
    """Remember the shape of bytes the caller has proven to be a canonical, valid event."""
    if _remembered_bytes[0] + len(proven) > MAX_SHAPE_BYTES or not _plain(proven):
        return
    pieces = proven.split(b'"')
    structure = _structure(pieces)
    if len(pieces) < -_PREV_HASH or not _PLAIN_STRUCTURE_RE.fullmatch(structure):
        return
    keys = operator.itemgetter(*_key_positions(pieces))
    known = _shapes.setdefault(structure, (keys, set()))
    named = keys(pieces)
    if named not in known[1]:
        known[1].add(named)
        _remembered_bytes[0] += len(structure) + sum(map(len, named))


def event_shape_fields(data: bytes) -> ShapeFields | None:
    """The values to check of `data` when its shape is a remembered one (so it is canonical); None otherwise."""
    pieces = data.split(b'"')
    known = _shapes.get(b'"'.join(pieces[0::2]).translate(_ONE_FOR_NONZERO))
    if known is None or known[0](pieces) not in known[1] or not _plain(data):
        return None
    return pieces[_ACTION], pieces[_SEQ][1:-1], pieces[_PREV_HASH], pieces[_TENANT], pieces[_TS]
