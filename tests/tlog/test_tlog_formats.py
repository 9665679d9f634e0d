"""Checkpoint, tlog-proof and consistency-proof text formats."""

from __future__ import annotations

import base64

import pytest

from services.tlog.checkpoint import Checkpoint
from services.tlog.errors import NoteError
from services.tlog.proof import TlogProof, format_consistency_proof, parse_consistency_proof

ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()


def test_checkpoint_round_trip() -> None:
    """A checkpoint formats to the C2SP text and parses back to itself."""
    cp = Checkpoint("lz.example/acme", 1234, ROOT, ("ext one",))
    assert cp.to_text() == f"lz.example/acme\n1234\n{ROOT_B64}\next one\n"
    assert Checkpoint.parse(cp.to_text()) == cp


@pytest.mark.parametrize(
    "text",
    [
        f"o\n0012\n{ROOT_B64}\n",
        f"o\n+12\n{ROOT_B64}\n",
        f"o\n12\n{ROOT_B64}",
        f"o\n12\n{ROOT_B64}\n\n",
        f"o\n12\n{ROOT_B64[:-1]}\n",
        f"o\n12\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"o\n12\n{ROOT_B64.replace('=', '')}\n",
        f"\n12\n{ROOT_B64}\n",
        f"o\n18446744073709551616\n{ROOT_B64}\n",
        "o\n12\n",
        f"o\n\u0661\u0662\n{ROOT_B64}\n",
    ],
)
def test_checkpoint_parse_is_strict(text: str) -> None:
    """Leading zeros, bad base64, short hashes, bad newlines and huge sizes are refused."""
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


def test_checkpoint_non_canonical_base64_rejected() -> None:
    """A root hash whose base64 has non-zero padding bits is refused."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    b64 = ROOT_B64[:-2] + alphabet[alphabet.index(ROOT_B64[-2]) | 1] + "="
    assert base64.b64decode(b64) == ROOT
    with pytest.raises(NoteError, match="canonical"):
        Checkpoint.parse(f"o\n1\n{b64}\n")


def test_tlog_proof_round_trip() -> None:
    """A tlog-proof encodes to the C2SP layout and parses back."""
    proof = TlogProof(7, (ROOT, ROOT[::-1]), b"o\n8\nROOT\n\n\xe2\x80\x94 o AAAA\n", extra=b"hi")
    data = proof.to_bytes()
    assert data.startswith(b"c2sp.org/tlog-proof@v1\nextra aGk=\nindex 7\n")
    assert TlogProof.parse(data) == proof


def test_tlog_proof_without_extra_or_hashes() -> None:
    """A proof for a one-leaf tree has no hash lines and no extra line."""
    proof = TlogProof(0, (), b"cp\n")
    assert proof.to_bytes() == b"c2sp.org/tlog-proof@v1\nindex 0\n\ncp\n"
    assert TlogProof.parse(proof.to_bytes()) == proof


@pytest.mark.parametrize(
    "data",
    [
        b"c2sp.org/tlog-proof@v2\nindex 0\n\ncp\n",
        b"c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n",
        b"c2sp.org/tlog-proof@v1\n\ncp\n",
        b"c2sp.org/tlog-proof@v1\nextra \nindex 0\n\ncp\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\ncp\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n\n",
        b"\xff",
    ],
)
def test_tlog_proof_parse_is_strict(data: bytes) -> None:
    """Wrong header, leading zeros, missing parts and short hashes are refused."""
    with pytest.raises(NoteError):
        TlogProof.parse(data)


def test_consistency_file_round_trip() -> None:
    """A consistency proof file is one base64 hash per line and parses back."""
    data = format_consistency_proof([ROOT, ROOT])
    assert data == f"{ROOT_B64}\n{ROOT_B64}\n".encode()
    assert parse_consistency_proof(data) == [ROOT, ROOT]
    assert parse_consistency_proof(b"") == []


@pytest.mark.parametrize("data", [ROOT_B64.encode(), b"\n", ROOT_B64.encode() + b"\n\n", b"AAAA\n"])
def test_consistency_file_parse_is_strict(data: bytes) -> None:
    """Missing final newline, blank lines and short hashes are refused."""
    with pytest.raises(NoteError):
        parse_consistency_proof(data)
