"""The RFC 9162 and signed-note test vectors of tests/vectors, case by case."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from tlog_helpers import VECTORS

from services.tlog.errors import NoteError, ProofError, VerificationError
from services.tlog.merkle import leaf_hash, root_hash, verify_consistency, verify_inclusion
from services.tlog.note import Signer, Verifier, open_note, sign

RFC = VECTORS / "rfc9162"
INCLUSION = sorted((RFC / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((RFC / "consistency").rglob("*.json"))
GO_NOTE = json.loads((VECTORS / "signed-note" / "go-reference.json").read_text())


def _b(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _ids(paths: list[Path], sub: str) -> list[str]:
    return [str(p.relative_to(RFC / sub)) for p in paths]


def test_vectors_are_present() -> None:
    """The vector directory inside the repository holds the inclusion and consistency cases."""
    assert len(INCLUSION) > 50
    assert len(CONSISTENCY) > 50


@pytest.mark.parametrize("path", INCLUSION, ids=_ids(INCLUSION, "inclusion"))
def test_inclusion_vector(path: Path) -> None:
    """verify_inclusion accepts or rejects the case exactly as the vector says."""
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (_b(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_ids(CONSISTENCY, "consistency"))
def test_consistency_vector(path: Path) -> None:
    """verify_consistency accepts or rejects the case exactly as the vector says."""
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (case["size1"], case["size2"], proof, _b(case["root1"]), _b(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_classic_eight_leaf_roots() -> None:
    """root_hash gives the classic RFC 6962 tree head for every prefix of the eight leaves."""
    case = json.loads((RFC / "classic-8-leaf-roots.json").read_text())
    hashes = [leaf_hash(bytes.fromhex(x)) for x in case["leaves_hex"]]
    got = [root_hash(hashes[: i + 1]).hex() for i in range(len(hashes))]
    assert got == case["roots_hex_by_size"]


def test_go_note_signs_byte_for_byte() -> None:
    """Signing the Go reference text with its key reproduces the reference note exactly."""
    assert sign(GO_NOTE["text"], [Signer(GO_NOTE["signer_key"])]) == GO_NOTE["signed_note"].encode()


def test_go_note_verifies() -> None:
    """The Go reference note verifies with the reference verifier key."""
    note = open_note(GO_NOTE["signed_note"].encode(), [Verifier(GO_NOTE["verifier_key"])])
    assert note.text == GO_NOTE["text"]
    assert [s.name for s in note.sigs] == ["PeterNeumann"]


def test_go_note_signer_derives_reference_verifier() -> None:
    """The reference signer key derives exactly the reference verifier key string."""
    assert Signer(GO_NOTE["signer_key"]).verifier().key_string == GO_NOTE["verifier_key"]


def test_go_note_any_changed_byte_fails() -> None:
    """Changing any single byte of the reference note makes opening it fail."""
    msg = GO_NOTE["signed_note"].encode()
    verifier = Verifier(GO_NOTE["verifier_key"])
    for i in range(len(msg)):
        for delta in (1, 0x80):
            changed = bytearray(msg)
            changed[i] ^= delta
            with pytest.raises((NoteError, VerificationError)):
                open_note(bytes(changed), [verifier])
