"""Proof file formats: C2SP tlog-proof (single entry) and plain consistency proofs.

tlog-proof (``c2sp.org/tlog-proof@v1``)::

    c2sp.org/tlog-proof@v1
    extra <base64>            (optional, unauthenticated)
    index <decimal>
    <base64 hash>             (zero or more, leaf sibling first)
    <empty line>
    <signed checkpoint note, verbatim>

Consistency proof file: one base64 hash per line, each line ending in a
newline, in RFC 9162 order; an empty file is the (valid) proof between equal
sizes.  Both parsers are strict so the bytes have one meaning only.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.tlog._text import b64decode_strict, b64encode, decode_utf8, parse_uint64
from services.tlog.errors import NoteError
from services.tlog.merkle import HASH_SIZE
from services.tlog.note import MAX_NOTE_SIZE

__all__ = [
    "TLOG_PROOF_HEADER",
    "TlogProof",
    "format_consistency_proof",
    "parse_consistency_proof",
]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_MAX_PROOF_HASHES = 64
_MAX_CONSISTENCY_HASHES = 128
_MAX_EXTRA = 64 * 1024


def _parse_hash(line: str) -> bytes:
    raw = b64decode_strict(line)
    if len(raw) != HASH_SIZE:
        raise NoteError(f"proof hash is {len(raw)} bytes, want {HASH_SIZE}")
    return raw


@dataclass(frozen=True)
class TlogProof:
    """An inclusion proof of entry ``index`` bundled with the signed checkpoint it proves into."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        """Encode as a ``.tlog-proof`` file."""
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(b64encode(h) for h in self.hashes)
        return ("\n".join(lines) + "\n\n").encode("utf-8") + self.checkpoint

    @classmethod
    def parse(cls, data: bytes) -> TlogProof:
        """Parse a ``.tlog-proof`` file; the checkpoint note is returned unverified."""
        text = decode_utf8(data, "tlog-proof", MAX_NOTE_SIZE + _MAX_EXTRA * 2)
        head, sep, note = text.partition("\n\n")
        if not sep or not note:
            raise NoteError("tlog-proof has no checkpoint after an empty line")
        lines = head.split("\n")
        if lines[0] != TLOG_PROOF_HEADER:
            raise NoteError(f"tlog-proof must start with {TLOG_PROOF_HEADER!r}")
        pos = 1
        extra: bytes | None = None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = b64decode_strict(lines[pos][len("extra ") :])
            if not extra or len(extra) > _MAX_EXTRA:
                raise NoteError("tlog-proof extra data must be 1..64 KiB")
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise NoteError("tlog-proof is missing its 'index N' line")
        index = parse_uint64(lines[pos][len("index ") :], "tlog-proof index")
        hash_lines = lines[pos + 1 :]
        if len(hash_lines) > _MAX_PROOF_HASHES:
            raise NoteError(f"tlog-proof has more than {_MAX_PROOF_HASHES} hashes")
        hashes = tuple(_parse_hash(line) for line in hash_lines)
        return cls(index, hashes, note.encode("utf-8"), extra)


def format_consistency_proof(hashes: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Encode a consistency proof as one base64 hash per line."""
    return "".join(b64encode(h) + "\n" for h in hashes).encode("ascii")


def parse_consistency_proof(data: bytes) -> list[bytes]:
    """Parse a consistency proof file strictly (every line a 32-byte base64 hash)."""
    text = decode_utf8(data, "consistency proof", (_MAX_CONSISTENCY_HASHES + 1) * 46)
    if not text:
        return []
    if not text.endswith("\n"):
        raise NoteError("consistency proof must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) > _MAX_CONSISTENCY_HASHES:
        raise NoteError(f"consistency proof has more than {_MAX_CONSISTENCY_HASHES} hashes")
    return [_parse_hash(line) for line in lines]
