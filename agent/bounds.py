"""Ranges for the numbers the agent reads from files and probes, and text the wire can carry.

Everything here comes from files and processes a user controls, so a value is
checked before it reaches a record: a number outside its plausible range is
dropped (``None``) with a reason the record carries, and text is made valid
UTF-8 and cut to a length the heartbeat can afford. None of these functions
raise for any input.
"""

from __future__ import annotations

from dataclasses import dataclass

INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class Range:
    """An inclusive range of plausible values for one named fact."""

    name: str
    low: int
    high: int

    def check(self, value: object) -> tuple[int | None, str | None]:
        """``(value, None)`` when it is an int in range, else ``(None, reason)``; None stays None silently."""
        if value is None:
            return None, None
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"{self.name} dropped: not an integer ({type(value).__name__})"
        if not self.low <= value <= self.high:
            shown = str(value) if abs(value) < 1 << 100 else f"{'-' if value < 0 else ''}~2^{abs(value).bit_length()}"
            return None, f"{self.name} dropped: {shown} outside {self.low}..{self.high}"
        return value, None


# A trillion-parameter model is large today; a hundred times that is not a model file.
PARAMETER_COUNT = Range("parameter_count", 1, 10**14)
# Context windows in the millions exist; a billion tokens does not.
CONTEXT_LENGTH = Range("context_length", 1, 1 << 30)
# One model file or store entry; a pebibyte is far past any disk a workstation has.
SIZE_BYTES = Range("size_bytes", 0, 1 << 50)
# Pids, ports and counts that go into int64/uint32 fields.
PID = Range("pid", 0, (1 << 31) - 1)
PORT = Range("port", 0, 65535)

MAX_TEXT = 4096
MAX_LIST = 256


def text(value: object, limit: int = MAX_TEXT) -> str:
    """``value`` as valid UTF-8 text of at most ``limit`` characters (undecodable bytes escaped)."""
    if value is None:
        return ""
    try:
        raw = value if isinstance(value, str) else str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
    clean = raw.encode("utf-8", "backslashreplace").decode("utf-8")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def texts(values: object, limit: int = MAX_LIST) -> list[str]:
    """Up to ``limit`` items of ``values`` as clean text (a non-iterable gives nothing)."""
    try:
        items = list(values)  # type: ignore[call-overload]
    except TypeError:
        return []
    return [text(item) for item in items[:limit]]
