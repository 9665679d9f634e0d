"""Strict scalar encodings shared by the text formats (private helpers).

Every format here accepts exactly one spelling per value, so a verifier and
a writer can never disagree about what a file says.
"""

from __future__ import annotations

import base64
import binascii

from services.tlog.errors import NoteError

_MAX_UINT64 = (1 << 64) - 1


def b64decode_strict(text: str) -> bytes:
    """Decode standard padded base64, refusing any non-canonical spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise NoteError(f"invalid base64: {text[:40]!r}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"non-canonical base64: {text[:40]!r}")
    return raw


def b64encode(raw: bytes) -> str:
    """Standard padded base64 as str."""
    return base64.b64encode(raw).decode("ascii")


def parse_uint64(text: str, what: str) -> int:
    """Parse an ASCII decimal without sign or leading zeros that fits in uint64."""
    if not text or not text.isascii() or not text.isdigit() or (text[0] == "0" and len(text) > 1):
        raise NoteError(f"{what} is not a canonical decimal: {text[:40]!r}")
    value = int(text)
    if value > _MAX_UINT64:
        raise NoteError(f"{what} does not fit in 64 bits")
    return value


def decode_utf8(data: bytes, what: str, limit: int) -> str:
    """Decode UTF-8 text with a size limit and no control characters except newline."""
    if len(data) > limit:
        raise NoteError(f"{what} is larger than {limit} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"{what} is not valid UTF-8") from exc
    for ch in text:
        if ch < " " and ch != "\n":
            raise NoteError(f"{what} contains control character {ord(ch):#04x}")
    return text
