"""Exception hierarchy shared by every tlog module.

Two families matter to callers, and ``lz-verify`` maps them to exit codes:
:class:`MalformedError` means the input could not even be parsed (exit 2),
:class:`VerificationError` means it parsed but does not prove what it claims
(exit 1).  Keeping the split in one place stops modules from inventing their
own ad-hoc exceptions that the CLI would have to know about.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "MalformedError",
    "NoteError",
    "PayloadError",
    "ProofError",
    "TileError",
    "TlogError",
    "VerificationError",
]


class TlogError(Exception):
    """Base class of every error raised on purpose by services.tlog."""


class MalformedError(TlogError, ValueError):
    """Input bytes or arguments do not follow the expected format."""


class VerificationError(TlogError):
    """Well-formed input that fails a cryptographic or consistency check."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not verify."""


class NoteError(MalformedError):
    """A signed note, key string, checkpoint or proof file is malformed."""


class TileError(MalformedError):
    """A tile path or tile body does not match the tree it belongs to."""


class PayloadError(MalformedError):
    """An event payload is not canonicalisable or breaks the size limits."""


class ChainError(VerificationError):
    """An event breaks the hash chain; ``seq`` names the first bad position."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason
