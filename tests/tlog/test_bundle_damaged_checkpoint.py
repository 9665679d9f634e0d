"""A bundle can carry a checkpoint too damaged to parse, and the verifier names it."""

from __future__ import annotations

from pathlib import Path

from services.tlog.bundle import verify_bundle, write_bundle
from services.tlog.checkpoint import Checkpoint
from services.tlog.events import GENESIS_PREV_HASH, build_event
from services.tlog.merkle import leaf_hash, root_hash
from services.tlog.note import Signer, Verifier, generate_key

ORIGIN = "test.example/ledger/acme"


def _bundle(tmp_path: Path, damaged: bytes) -> tuple[Path, Verifier]:
    signer_key, verifier_key = generate_key(ORIGIN)
    event = build_event(tenant="acme", seq=1, ts="2026-11-22T00:00:00.000000Z", actor="a", action="x",
                        subject="s", payload={}, prev_hash=GENESIS_PREV_HASH)
    good = Checkpoint(ORIGIN, 1, root_hash([leaf_hash(event.canonical_bytes)])).sign([Signer(signer_key)])
    path = tmp_path / "bundle"
    write_bundle(path, tenant="acme", origin=ORIGIN, events=[event], checkpoints=[(1, good), (1, damaged)],
                 consistency_proofs={}, verifier_keys=[verifier_key])
    return path, Verifier(verifier_key)


def test_a_damaged_checkpoint_is_written_under_its_stored_size(tmp_path: Path) -> None:
    """A note that does not parse is kept as evidence, named by the size it was stored under."""
    path, _ = _bundle(tmp_path, b"not a checkpoint at all")
    assert (path / "checkpoints" / "1.1.checkpoint").read_bytes() == b"not a checkpoint at all"


def test_the_verifier_names_the_damaged_checkpoint(tmp_path: Path) -> None:
    """Verification fails and the report names the damaged checkpoint's size."""
    path, verifier = _bundle(tmp_path, b"not a checkpoint at all")
    report = verify_bundle(path, [verifier])
    assert not report.ok
    assert "checkpoints/1.1.checkpoint" in report.reason
