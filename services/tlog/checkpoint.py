"""C2SP tlog-checkpoint: the signed statement "log <origin> has <size> leaves with <root>".

Note text layout::

    <origin>\\n
    <tree size, decimal, no leading zeros>\\n
    <base64 of the 32-byte root hash>\\n
    <zero or more non-empty extension lines>\\n

Parsing is strict so that a checkpoint has exactly one textual form: the
signature then covers the values themselves, not one of several spellings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.tlog._text import b64decode_strict, b64encode, parse_uint64
from services.tlog.errors import NoteError
from services.tlog.merkle import HASH_SIZE
from services.tlog.note import Signer, sign

__all__ = ["Checkpoint"]

_MAX_UINT64 = (1 << 64) - 1


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint body (signature handling lives in :mod:`services.tlog.note`)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or any(c < " " for c in self.origin):
            raise NoteError(f"invalid checkpoint origin {self.origin!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= _MAX_UINT64:
            raise NoteError(f"invalid checkpoint size {self.size!r}")
        if len(self.root_hash) != HASH_SIZE:
            raise NoteError(f"checkpoint root hash is {len(self.root_hash)} bytes, want {HASH_SIZE}")
        for ext in self.extensions:
            if not ext or any(c < " " for c in ext):
                raise NoteError(f"invalid checkpoint extension line {ext!r}")

    def to_text(self) -> str:
        """The note text to sign."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    def sign(self, signers: Sequence[Signer]) -> bytes:
        """Signed-note bytes of this checkpoint."""
        return sign(self.to_text(), signers)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (the part before the signatures)."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise NoteError("checkpoint origin line is empty")
        size = parse_uint64(size_text, "checkpoint size")
        root = b64decode_strict(root_text)
        if any(not ext for ext in extensions):
            raise NoteError("checkpoint has an empty extension line")
        return cls(origin, size, root, tuple(extensions))
