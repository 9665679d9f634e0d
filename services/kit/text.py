"""Free text is data: the characters a terminal or a text renderer would obey instead of showing.

Services refuse them in every free-text field they accept (`check_text`), clean them out of text they
must keep anyway (`clean_text`: an agent's error message), and `lz` strips them from what it renders
(`printable`). Refused: C0 controls (tab, newline and carriage return included: every field here is
one line), DEL, C1 controls (U+0080-U+009F, where U+009B is a one-byte CSI), the bidirectional
overrides and isolates that reorder what a reader sees (Trojan Source, CVE-2021-42574), and the line
and paragraph separators.
"""

from __future__ import annotations

import re

from services.kit.errors import InvalidArgument

_UNSAFE_CLASS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_UNSAFE_CLASS}]")
# json.dumps already escapes C0 controls inside strings; raw newlines and spaces outside them are layout.
_UNSAFE_AFTER_JSON = re.compile(f"[{_UNSAFE_CLASS.removeprefix(chr(0) + '-' + chr(0x1f))}]")


def unsafe_character(value: str) -> str | None:
    """The first character of `value` a terminal would act on, or None when it is plain text."""
    found = _UNSAFE.search(value)
    return found.group() if found else None


def check_text(field: str, value: str, limit: int) -> str:
    """`value` when it is at most `limit` characters of plain text; InvalidArgument naming `field` otherwise."""
    if len(value) > limit:
        raise InvalidArgument.field(field, f"must be at most {limit} characters")
    bad = unsafe_character(value)
    if bad is not None:
        raise InvalidArgument.field(field, f"must not contain control or bidi characters (U+{ord(bad):04X})")
    return value


def clean_text(value: str, limit: int) -> str:
    """`value` with every unsafe character replaced by U+FFFD, cut to `limit` characters (`…` marks a cut)."""
    cleaned = _UNSAFE.sub("\ufffd", value)
    return cleaned if len(cleaned) <= limit else cleaned[: max(0, limit - 1)] + "\u2026"


def printable(value: str) -> str:
    """`value` as a terminal may show it: every unsafe character becomes U+FFFD."""
    return _UNSAFE.sub("\ufffd", value)


def json_escaped(document: str) -> str:
    """A JSON text with every unsafe character written as a `\\uXXXX` escape: the same value, nothing raw.

    `document` comes from json.dumps, which escapes C0 controls inside strings itself; the rest can only
    be inside strings, where an escape denotes the same character.
    """
    return _UNSAFE_AFTER_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", document)
