"""Signed notes: keys, multiple signatures, unknown keys and strict parsing."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tlog.errors import NoteError, VerificationError
from services.tlog.note import Signer, Verifier, generate_key, open_note, sign

SK, VK = generate_key("example.com/log")
SK2, VK2 = generate_key("witness.example")
SIGNER, VERIFIER = Signer(SK), Verifier(VK)
SIGNER2, VERIFIER2 = Signer(SK2), Verifier(VK2)
TEXT = "example.com/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def test_generated_key_signs_and_verifies() -> None:
    """A generated key pair signs a note that its verifier accepts."""
    note = open_note(sign(TEXT, [SIGNER]), [VERIFIER])
    assert note.text == TEXT
    assert [(s.name, s.key_id) for s in note.sigs] == [("example.com/log", VERIFIER.key_id)]


def test_key_id_is_sha256_prefix() -> None:
    """The key id is the first four bytes of SHA-256(name, newline, 0x01, public key)."""
    typed_public = base64.b64decode(VK.split("+", 2)[2])
    assert typed_public[0] == 0x01
    digest = hashlib.sha256(b"example.com/log\n" + typed_public).digest()
    assert VERIFIER.key_id == int.from_bytes(digest[:4], "big")


def test_several_signatures_all_verified() -> None:
    """A note signed by two known keys reports both signatures as verified."""
    note = open_note(sign(TEXT, [SIGNER, SIGNER2]), [VERIFIER, VERIFIER2])
    assert {s.name for s in note.sigs} == {"example.com/log", "witness.example"}


def test_unknown_signature_is_ignored() -> None:
    """A signature by an unknown key is returned as unverified, not rejected."""
    note = open_note(sign(TEXT, [SIGNER, SIGNER2]), [VERIFIER])
    assert [s.name for s in note.unverified_sigs] == ["witness.example"]


def test_no_known_signature_fails() -> None:
    """A note with no signature from a trusted key raises VerificationError."""
    with pytest.raises(VerificationError, match="trusted"):
        open_note(sign(TEXT, [SIGNER2]), [VERIFIER])


def test_same_name_other_key_is_unknown() -> None:
    """A key with the trusted name but another id does not count as trusted."""
    other_sk, _ = generate_key("example.com/log")
    with pytest.raises(VerificationError):
        open_note(sign(TEXT, [Signer(other_sk)]), [VERIFIER])


def test_bad_signature_from_known_key_fails() -> None:
    """A known key's signature over different text raises VerificationError."""
    msg = sign(TEXT, [SIGNER]).replace(b"42", b"43")
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(msg, [VERIFIER])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6))
def test_any_bit_flip_fails(bit: int) -> None:
    """Flipping any bit of a signed note makes it malformed or unverifiable."""
    msg = bytearray(sign(TEXT, [SIGNER]))
    msg[(bit // 8) % len(msg)] ^= 1 << (bit % 8)
    with pytest.raises((NoteError, VerificationError)):
        open_note(bytes(msg), [VERIFIER])


@pytest.mark.parametrize(
    "msg",
    [
        b"no blank line\n\xe2\x80\x94 a AAAA\n",
        b"text\n\nnot a signature\n",
        b"text\n\n",
        b"text\n\n\xe2\x80\x94 name c2lnbmF0dXJl",
        b"te\x01xt\n\n\xe2\x80\x94 name c2lnbmF0dXJlc2ln\n",
        b"\xff\n\n\xe2\x80\x94 name c2lnbmF0dXJlc2ln\n",
        b"text\n\n\xe2\x80\x94 na+me c2lnbmF0dXJlc2ln\n",
        b"text\n\n\xe2\x80\x94 name c2lnbmF0dXJlc2ln=\n",
        b"text\n\n\xe2\x80\x94 name AAAA\n",
        b"text\n\n\xe2\x80\x94 name  c2lnbmF0dXJlc2ln\n",
    ],
)
def test_malformed_notes_raise_note_error(msg: bytes) -> None:
    """Structurally malformed notes raise NoteError."""
    with pytest.raises(NoteError):
        open_note(msg, [VERIFIER])


def test_too_many_signatures_rejected() -> None:
    """More than 100 signature lines are refused before any verification."""
    line = sign(TEXT, [SIGNER]).split(b"\n\n", 1)[1]
    with pytest.raises(NoteError, match="100"):
        open_note(TEXT.encode() + b"\n" + line * 101, [VERIFIER])


def test_oversized_note_rejected() -> None:
    """Notes above 1 MiB are refused."""
    with pytest.raises(NoteError, match="larger"):
        open_note(b"a" * (1 << 20) + b"\n\n", [VERIFIER])


def test_sign_requires_trailing_newline() -> None:
    """Text that does not end in a newline cannot be signed."""
    with pytest.raises(NoteError):
        sign("no newline", [SIGNER])


@pytest.mark.parametrize(
    "key",
    [
        "",
        "name+deadbeef",
        "name+deadbeef+AAAA",
        "na me+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_verifier_keys_rejected(key: str) -> None:
    """Malformed verifier keys, wrong ids and non-Ed25519 types raise NoteError."""
    with pytest.raises(NoteError):
        Verifier(key)


def test_bad_signer_key_rejected() -> None:
    """A signer key without the PRIVATE+KEY prefix is refused."""
    with pytest.raises(NoteError):
        Signer(VK)


def test_invalid_key_name_rejected() -> None:
    """Key names with spaces or plus signs cannot be generated."""
    for name in ("a b", "a+b", ""):
        with pytest.raises(NoteError):
            generate_key(name)
