"""RFC 8785 JSON Canonicalization Scheme (JCS).

Canonical bytes are what get hashed and signed, so two implementations must
produce the same bytes for the same value.  JCS pins down everything JSON
leaves open: member order (by UTF-16 code units, not code points), number
spelling (ECMAScript ``Number.prototype.toString``), and string escaping
(only ``"``, ``\\`` and control characters).

Verification reads far more canonical bytes than writing produces, so checking that stored bytes
are canonical has a fast path (:func:`fast_canonical_object`): parse with the C ``json`` module and
compare with the C encoder's re-encoding, which spells exactly what RFC 8785 spells for the values
it accepts, and leave everything else to the full path.
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from services.tlog.errors import PayloadError

__all__ = ["MAX_SAFE_INTEGER", "canonicalize", "fast_canonical_object", "parse_json"]

MAX_SAFE_INTEGER = (1 << 53) - 1
"""Largest integer every JSON implementation (IEEE double) reads back exactly."""

_MAX_DEPTH = 64
_ESCAPE_RE = re.compile(r'[\x00-\x1f"\\]')
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    return _SHORT_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def _string(s: str) -> str:
    if _SURROGATE_RE.search(s):
        raise PayloadError("string contains a lone surrogate (not valid Unicode)")
    return '"' + _ESCAPE_RE.sub(_escape_char, s) + '"'


def _number(x: float) -> str:
    """ECMAScript Number::toString for a finite double, as RFC 8785 requires."""
    if math.isnan(x) or math.isinf(x):
        raise PayloadError("NaN and Infinity are not JSON numbers")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr gives the shortest round-tripping digits, which is what ES6 picks.
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    exponent = (int(exp_text) if exp_text else 0) - len(frac_part)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + body


def _encode(value: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise PayloadError(f"JSON nesting deeper than {_MAX_DEPTH}")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if abs(value) <= MAX_SAFE_INTEGER:
            out.append(str(int(value)))
        else:
            # JSON numbers are IEEE doubles in JCS: a big integer is fine only
            # if a double holds it exactly, and then it is spelled like one.
            try:
                as_double = float(value)
            except OverflowError:
                as_double = math.inf
            if as_double != value:
                raise PayloadError(f"integer {value} is not exactly representable as an IEEE-754 double")
            out.append(_number(as_double))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise PayloadError(f"object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        raise PayloadError(f"{type(value).__name__} is not a JSON value")


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON-compatible value.

    Raises :class:`PayloadError` for values JCS cannot represent: non-string
    keys, NaN/Infinity, integers beyond 2**53-1, lone surrogates, other types.
    """
    out: list[str] = []
    _encode(value, out, 0)
    return "".join(out).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, val in pairs:
        if key in result:
            raise PayloadError(f"duplicate object key {key!r}")
        result[key] = val
    return result


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not a JSON value")


def _parse_int(text: str) -> int | float:
    """Integers beyond 2**53-1 are doubles in JSON, so read them as such."""
    value = int(text)
    return value if abs(value) <= MAX_SAFE_INTEGER else float(text)


def parse_json(data: bytes) -> Any:
    """Parse UTF-8 JSON strictly: no duplicate keys, no NaN/Infinity, bounded nesting.

    Numbers keep JSON's IEEE-double meaning: integers beyond 2**53-1 come
    back as floats, so re-canonicalising reproduces the ES6 spelling.
    """
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant, parse_int=_parse_int)
    except PayloadError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"invalid JSON: {exc}") from exc


class _Undecided(Exception):
    """The fast path cannot prove the bytes canonical; the full RFC 8785 path decides."""


def _undecided(_: str) -> Any:
    raise _Undecided


_FAST_INT_DIGITS = 15
"""Integers of at most 15 digits are below 2**53, where JCS spells them as Python does."""


def _fast_int(text: str) -> int:
    if len(text) - text.startswith("-") > _FAST_INT_DIGITS:
        raise _Undecided
    return int(text)


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# Floats (ECMAScript spelling differs from repr) and NaN/Infinity are left to the full path. The
# scanner and the encoder are called directly, without the per-call set-up of json.loads/dumps.
_FAST_DECODER = json.JSONDecoder(parse_float=_undecided, parse_int=_fast_int, parse_constant=_undecided)
# JSONDecoder.__init__ sets scan_once (the C scanner when there is one); typeshed does not declare it.
_FAST_SCAN: Callable[[str, int], tuple[Any, int]] = _FAST_DECODER.scan_once  # type: ignore[attr-defined]
_FAST_ENCODE: Callable[[Any, int], Iterable[str]]
try:
    from _json import make_encoder

    _FAST_ENCODE = make_encoder(None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False)
except ImportError:  # an interpreter without the C accelerator: the same spelling, slower
    _PY_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def _FAST_ENCODE(value: Any, _: int) -> Iterable[str]:  # noqa: N802 - stands in for the C encoder
        return _PY_ENCODER.iterencode(value)


# A UTF-8 lead byte of a supplementary-plane character: JCS orders keys by UTF-16 code units, and
# for those characters that order differs from the code-point order the C encoder sorts by.
_SUPPLEMENTARY_LEAD_RE = re.compile(b"[\\xf0-\\xf4]")


def fast_canonical_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object ``data`` encodes, when a fast exact check proves ``data`` RFC 8785 canonical.

    ``None`` means undecided, never "not canonical": the caller then parses with :func:`parse_json`
    and compares with :func:`canonicalize`, which is the definition. The fast path decides only when
    the C encoder's re-encoding of the C decoder's value is byte for byte ``data`` and the value
    holds nothing whose RFC 8785 spelling or order could differ from the C encoder's: no floats, no
    integer of more than 15 digits, no supplementary-plane character, no more containers than the
    depth limit. Duplicate keys, whitespace, escapes RFC 8785 does not use, and any other departure
    from canonical form make the re-encoding differ, so they are left to the full path too.
    """
    if data.count(b"{") + data.count(b"[") > _MAX_DEPTH:
        return None
    if not data.isascii() and _SUPPLEMENTARY_LEAD_RE.search(data):
        return None
    try:
        text = data.decode("utf-8")
        value, end = _FAST_SCAN(text, 0)
        if end != len(text) or not isinstance(value, dict) or "".join(_FAST_ENCODE(value, 0)) != text:
            return None
    except (_Undecided, StopIteration, ValueError, TypeError, RecursionError):
        return None
    return value
