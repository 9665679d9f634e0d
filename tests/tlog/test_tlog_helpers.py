"""Small public helpers: keys under another name, and a tree root from complete-subtree hashes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.tlog.errors import NoteError, ProofError
from services.tlog.merkle import EMPTY_ROOT, NodeId, leaf_hash, root_from_hash_reader, root_hash
from services.tlog.note import Signer, Verifier, generate_key, open_note, sign

SK, VK = generate_key("deployment.example")
TEXT = "deployment.example/t1\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def test_renamed_signer_is_verified_by_renamed_verifier() -> None:
    """A signer renamed for a log signs notes that the verifier renamed the same way accepts."""
    signer = Signer(SK).renamed("deployment.example/t1")
    verifier = Verifier(VK).renamed("deployment.example/t1")
    note = open_note(sign(TEXT, [signer]), [verifier])
    assert [s.name for s in note.sigs] == ["deployment.example/t1"]


def test_renamed_key_gets_the_key_id_of_its_new_name() -> None:
    """A renamed key's id is the one a freshly generated key of that name and public key would have."""
    renamed = Signer(SK).renamed("other.example")
    assert renamed.verifier().key_string == Verifier(VK).renamed("other.example").key_string
    assert renamed.key_id != Signer(SK).key_id


def test_renamed_rejects_an_invalid_name() -> None:
    """Renaming a key to a name with a '+' or whitespace raises NoteError."""
    with pytest.raises(NoteError):
        Verifier(VK).renamed("bad+name")


def _reader(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    def read(nodes: Sequence[NodeId]) -> list[bytes]:
        return [root_hash(leaves[i << level : (i + 1) << level]) for level, i in nodes]

    return read


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 13, 256, 300])
def test_root_from_hash_reader_matches_the_naive_root(size: int) -> None:
    """The root built from complete subtrees equals RFC 9162's MTH of the same leaves."""
    leaves = [leaf_hash(bytes([i % 256, i // 256])) for i in range(size)]
    assert root_from_hash_reader(size, _reader(leaves)) == (root_hash(leaves) if size else EMPTY_ROOT)


def test_root_from_hash_reader_rejects_a_short_answer() -> None:
    """A reader that returns fewer hashes than subtrees asked for raises ProofError."""
    with pytest.raises(ProofError):
        root_from_hash_reader(3, lambda nodes: [])
