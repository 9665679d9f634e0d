"""RFC 8785 JSON Canonicalization Scheme (JCS).

Canonical bytes are what get hashed and signed, so two implementations must
produce the same bytes for the same value.  JCS pins down everything JSON
leaves open: member order (by UTF-16 code units, not code points), number
spelling (ECMAScript ``Number.prototype.toString``), and string escaping
(only ``"``, ``\\`` and control characters).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from services.tlog.errors import PayloadError

__all__ = ["MAX_SAFE_INTEGER", "canonicalize", "parse_json"]

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
