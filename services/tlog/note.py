"""C2SP signed notes with Ed25519 keys in the Go reference key-string format.

Key strings::

    verifier: <name>+<key id hex8>+<base64(0x01 || 32-byte public key)>
    signer:   PRIVATE+KEY+<name>+<key id hex8>+<base64(0x01 || 32-byte seed)>

where ``key id = SHA-256(name || "\\n" || 0x01 || public key)[:4]``.

A signed note is the text (ending in a newline), a blank line, then one or
more lines ``— <name> <base64(key id || signature)>``.  Parsing is strict on
purpose: every byte of a note that is accepted is either signed text or a
well-formed signature line, so there is nothing an attacker can smuggle in.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.tlog._text import b64decode_strict, decode_utf8
from services.tlog.errors import NoteError, VerificationError

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "Signature",
    "Signer",
    "Verifier",
    "generate_key",
    "open_note",
    "sign",
]

MAX_NOTE_SIZE = 1 << 20
MAX_SIGNATURES = 100
_ALG_ED25519 = 0x01
_SIG_PREFIX = "\u2014 "
_ED25519_SIG_SIZE = 64


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name) and name.isprintable()


def _key_id(name: str, public: bytes) -> int:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([_ALG_ED25519]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def _parse_key_fields(fields: list[str], kind: str) -> tuple[str, int, bytes]:
    name, id_hex, b64 = fields
    if not _valid_name(name):
        raise NoteError(f"invalid key name in {kind} key: {name!r}")
    if len(id_hex) != 8 or id_hex.lower() != id_hex or any(c not in "0123456789abcdef" for c in id_hex):
        raise NoteError(f"invalid key id in {kind} key: {id_hex!r}")
    raw = b64decode_strict(b64)
    if len(raw) != 33 or raw[0] != _ALG_ED25519:
        raise NoteError(f"{kind} key is not an Ed25519 key (want 0x01 + 32 bytes)")
    return name, int(id_hex, 16), raw[1:]


class Verifier:
    """An Ed25519 note verifier parsed from ``<name>+<hex8>+<base64>``."""

    __slots__ = ("_public", "key_id", "name")

    def __init__(self, key: str) -> None:
        fields = key.split("+", 2)
        if len(fields) != 3:
            raise NoteError("verifier key must look like <name>+<hex8>+<base64>")
        self.name, self.key_id, public = _parse_key_fields(fields, "verifier")
        if _key_id(self.name, public) != self.key_id:
            raise NoteError(f"verifier key id {self.key_id:08x} does not match key {self.name!r}")
        try:
            self._public = Ed25519PublicKey.from_public_bytes(public)
        except ValueError as exc:
            raise NoteError("invalid Ed25519 public key") from exc

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True if ``signature`` is this key's Ed25519 signature of ``text``."""
        try:
            self._public.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def renamed(self, name: str) -> Verifier:
        """The same public key under another key name (the key id covers the name, so it changes too)."""
        if not _valid_name(name):
            raise NoteError(f"invalid key name {name!r}")
        public = self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        raw = bytes([_ALG_ED25519]) + public
        return Verifier(f"{name}+{_key_id(name, public):08x}+{base64.b64encode(raw).decode()}")

    @property
    def key_string(self) -> str:
        """The key in the Go reference verifier-key format."""
        raw = bytes([_ALG_ED25519]) + self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.key_id:08x}+{base64.b64encode(raw).decode()}"

    def __repr__(self) -> str:
        return f"Verifier({self.key_string!r})"


class Signer:
    """An Ed25519 note signer parsed from ``PRIVATE+KEY+<name>+<hex8>+<base64>``."""

    __slots__ = ("_private", "key_id", "name")

    def __init__(self, key: str) -> None:
        fields = key.split("+", 4)
        if len(fields) != 5 or fields[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("signer key must look like PRIVATE+KEY+<name>+<hex8>+<base64>")
        self.name, self.key_id, seed = _parse_key_fields(fields[2:], "signer")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if _key_id(self.name, public) != self.key_id:
            raise NoteError(f"signer key id {self.key_id:08x} does not match key {self.name!r}")

    def sign(self, text: bytes) -> bytes:
        """Ed25519 signature of ``text``."""
        return self._private.sign(text)

    def renamed(self, name: str) -> Signer:
        """The same private key under another key name (the key id covers the name, so it changes too)."""
        if not _valid_name(name):
            raise NoteError(f"invalid key name {name!r}")
        seed = self._private.private_bytes_raw()
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        raw = bytes([_ALG_ED25519]) + seed
        return Signer(f"PRIVATE+KEY+{name}+{_key_id(name, public):08x}+{base64.b64encode(raw).decode()}")

    def verifier(self) -> Verifier:
        """The matching verifier."""
        raw = bytes([_ALG_ED25519]) + self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(f"{self.name}+{self.key_id:08x}+{base64.b64encode(raw).decode()}")

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id:08x})"


def generate_key(name: str) -> tuple[str, str]:
    """Create a fresh Ed25519 key pair; returns ``(signer_key, verifier_key)`` strings."""
    if not _valid_name(name):
        raise NoteError(f"invalid key name {name!r}")
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = _key_id(name, public)
    alg = bytes([_ALG_ED25519])
    signer = f"PRIVATE+KEY+{name}+{kid:08x}+{base64.b64encode(alg + seed).decode()}"
    verifier = f"{name}+{kid:08x}+{base64.b64encode(alg + public).decode()}"
    return signer, verifier


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key id and the base64 of ``key id || sig``."""

    name: str
    key_id: int
    base64: str


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the verified signatures and the ignored unknown ones."""

    text: str
    sigs: tuple[Signature, ...]
    unverified_sigs: tuple[Signature, ...]


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    for ch in text:
        if ch < " " and ch != "\n":
            raise NoteError(f"note text contains control character {ord(ch):#04x}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError("note text is not valid Unicode") from exc


def sign(text: str, signers: Sequence[Signer]) -> bytes:
    """Sign ``text`` with each signer and return the encoded note bytes."""
    _check_text(text)
    if not signers:
        raise NoteError("at least one signer is required")
    if len(signers) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signers")
    body = text.encode("utf-8")
    lines = []
    for s in signers:
        sig = s.key_id.to_bytes(4, "big") + s.sign(body)
        lines.append(f"{_SIG_PREFIX}{s.name} {base64.b64encode(sig).decode()}\n")
    out = body + b"\n" + "".join(lines).encode("utf-8")
    if len(out) > MAX_NOTE_SIZE:
        raise NoteError(f"signed note is larger than {MAX_NOTE_SIZE} bytes")
    return out


def open_note(msg: bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse a signed note and verify it against the trusted ``verifiers``.

    Signatures by keys not in ``verifiers`` (name and id must both match) are
    returned unverified and otherwise ignored.  A known key whose signature
    fails, or a note with no signature from any known key, raises
    :class:`VerificationError`; malformed bytes raise :class:`NoteError`.
    """
    decoded = decode_utf8(msg, "note", MAX_NOTE_SIZE)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("note signature block must be non-empty and end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    known = {(v.name, v.key_id): v for v in verifiers}
    body = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("note signature line does not start with an em dash and a space")
        fields = line[len(_SIG_PREFIX) :].split(" ")
        if len(fields) != 2 or not _valid_name(fields[0]) or not fields[1]:
            raise NoteError("malformed note signature line")
        name, b64 = fields
        raw = b64decode_strict(b64)
        if len(raw) < 5:
            raise NoteError("note signature is too short")
        key_id = int.from_bytes(raw[:4], "big")
        sig = Signature(name, key_id, b64)
        verifier = known.get((name, key_id))
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if len(raw) != 4 + _ED25519_SIG_SIZE or not verifier.verify(body, raw[4:]):
            raise VerificationError(f"invalid signature by {name}+{key_id:08x}")
        if (name, key_id) not in seen:
            seen.add((name, key_id))
            verified.append(sig)
    if not verified:
        raise VerificationError("note has no valid signature from a trusted key")
    return Note(text, tuple(verified), tuple(unverified))
