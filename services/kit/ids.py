"""Identifier validation: the one gate every identifier passes before it can reach a key.

Keys are built by joining parts with `#`; an identifier holding `#` could forge another entity's key,
so identifiers are restricted to `[A-Za-z0-9._-]{1,64}` and checked before any key builder sees them.
"""

from __future__ import annotations

import re

from services.kit.errors import InvalidArgument

_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def is_valid_id(value: object) -> bool:
    """Whether `value` is a well-formed identifier (and not a path trick like `.` or `..`)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None and value not in {".", ".."}


def validate_id(field: str, value: object) -> str:
    """Return `value` if it is a well-formed identifier, else raise InvalidArgument naming `field`."""
    if is_valid_id(value):
        assert isinstance(value, str)
        return value
    shown = value if isinstance(value, str) and len(value) <= 80 else f"<{type(value).__name__}>"
    raise InvalidArgument.field(field, f"must match [A-Za-z0-9._-]{{1,64}} (got {shown!r})")

