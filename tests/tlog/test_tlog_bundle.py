"""Export bundles: writing, verifying, and detecting every kind of tampering."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from tlog_helpers import ORIGIN, TENANT, Log, make_events, make_log

from services.tlog.bundle import BundleError, BundleReport, verify_bundle, write_bundle
from services.tlog.checkpoint import Checkpoint
from services.tlog.events import GENESIS_PREV_HASH, build_event
from services.tlog.jcs import canonicalize

SIZES = (4, 9, 12)


def _write(tmp_path: Path, log: Log, events: list[bytes] | None = None, extra_cps: tuple[bytes, ...] = ()) -> Path:
    path = tmp_path / "bundle"
    write_bundle(
        path,
        tenant=TENANT,
        origin=ORIGIN,
        events=iter(events if events is not None else [e.canonical_bytes for e in log.events]),
        checkpoints=[*(log.checkpoint(s) for s in SIZES), *extra_cps],
        consistency_proofs={(a, b): log.consistency(a, b) for a, b in itertools.pairwise(SIZES)},
        verifier_keys=[log.verifier_key],
    )
    return path


def _verify(log: Log, path: Path) -> BundleReport:
    return verify_bundle(path, [log.verifier])


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(15)


def _lines(path: Path) -> list[bytes]:
    return (path / "events.jsonl").read_bytes().splitlines()


def _set_lines(path: Path, lines: list[bytes]) -> None:
    (path / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def test_valid_bundle_verifies_with_unsealed_tail(tmp_path: Path, log: Log) -> None:
    """A correct bundle verifies and reports events after the last checkpoint as unsealed."""
    report = _verify(log, _write(tmp_path, log))
    assert report.ok, report.reason
    assert (report.events, report.checkpoints_verified, report.unsealed_tail) == (15, 3, 3)


def test_manifest_describes_contents(tmp_path: Path, log: Log) -> None:
    """The manifest names tenant, origin, seq range, checkpoint sizes and files."""
    manifest = json.loads((_write(tmp_path, log) / "manifest.json").read_text())
    assert manifest["tenant"] == TENANT and manifest["origin"] == ORIGIN
    assert (manifest["first_seq"], manifest["last_seq"], manifest["event_count"]) == (1, 15, 15)
    assert manifest["checkpoint_sizes"] == list(SIZES)
    assert manifest["consistency"] == ["4-9.proof", "9-12.proof"]


def test_edited_payload_detected(tmp_path: Path, log: Log) -> None:
    """Editing one event's payload breaks the chain at the next seq."""
    path = _write(tmp_path, log)
    lines = _lines(path)
    doc = json.loads(lines[5])
    doc["payload"]["engine"] = "llama.cpp"
    lines[5] = canonicalize(doc)
    _set_lines(path, lines)
    report = _verify(log, path)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert "prev_hash mismatch" in report.reason


def test_edited_last_sealed_event_detected_by_checkpoint(tmp_path: Path, log: Log) -> None:
    """Editing the final event of a sealed prefix is caught, at the latest by its checkpoint."""
    path = _write(tmp_path, log)
    lines = _lines(path)
    doc = json.loads(lines[11])
    doc["subject"] = "host-x"
    lines[11] = canonicalize(doc)
    _set_lines(path, lines)
    report = _verify(log, path)
    assert not report.ok
    assert report.first_bad_seq == 13 or report.bad_checkpoint == 12


def test_deleted_event_detected(tmp_path: Path, log: Log) -> None:
    """Deleting an event is reported as a seq gap at its seq."""
    path = _write(tmp_path, log)
    lines = _lines(path)
    del lines[3]
    _set_lines(path, lines)
    report = _verify(log, path)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "seq gap" in report.reason


def test_inserted_event_detected(tmp_path: Path, log: Log) -> None:
    """Inserting a forged event with a taken seq is reported at the insertion point."""
    path = _write(tmp_path, log)
    lines = _lines(path)
    forged = make_events(3)[2].canonical_bytes
    lines.insert(3, forged)
    _set_lines(path, lines)
    report = _verify(log, path)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "duplicate seq 3" in report.reason


def test_swapped_events_detected(tmp_path: Path, log: Log) -> None:
    """Swapping two events is reported at the first displaced seq."""
    path = _write(tmp_path, log)
    lines = _lines(path)
    lines[6], lines[7] = lines[7], lines[6]
    _set_lines(path, lines)
    report = _verify(log, path)
    assert (report.ok, report.first_bad_seq) == (False, 7)


def test_truncated_tail_detected(tmp_path: Path, log: Log) -> None:
    """Dropping sealed events at the end is reported against the checkpoint that covers them."""
    path = _write(tmp_path, log)
    _set_lines(path, _lines(path)[:10])
    report = _verify(log, path)
    assert (report.ok, report.bad_checkpoint, report.first_bad_seq) == (False, 12, 11)
    assert "events missing" in report.reason


def test_truncated_unsealed_tail_detected_by_manifest(tmp_path: Path, log: Log) -> None:
    """Dropping unsealed events disagrees with the manifest's event count."""
    path = _write(tmp_path, log)
    _set_lines(path, _lines(path)[:13])
    report = _verify(log, path)
    assert not report.ok and "manifest lists 15" in report.reason


def test_rewritten_chain_detected_by_checkpoint(tmp_path: Path, log: Log) -> None:
    """A whole chain rewritten with recomputed hashes fails at the first checkpoint root."""
    rewritten: list[bytes] = []
    prev_hash = GENESIS_PREV_HASH
    for event in log.events:
        doc = json.loads(event.canonical_bytes)
        forged = build_event(**{**doc, "actor": "mallory", "prev_hash": prev_hash})
        rewritten.append(forged.canonical_bytes)
        prev_hash = forged.hash_hex
    report = _verify(log, _write(tmp_path, log, events=rewritten))
    assert (report.ok, report.bad_checkpoint) == (False, 4)
    assert "root does not match events 1..4" in report.reason


def test_checkpoint_signed_by_other_key_detected(tmp_path: Path, log: Log) -> None:
    """A checkpoint signed by an untrusted key of the same name fails and names its size."""
    path = _write(tmp_path, log)
    (path / "checkpoints" / "9.checkpoint").write_bytes(log.checkpoint(9, signer=log.other_signer))
    report = _verify(log, path)
    assert (report.ok, report.bad_checkpoint) == (False, 9)
    assert "trusted" in report.reason


def test_bundle_keys_are_not_trusted(tmp_path: Path, log: Log) -> None:
    """Verifying with another key fails even though the bundle ships its own key."""
    other = make_log(1)
    report = verify_bundle(_write(tmp_path, log), [other.verifier])
    assert not report.ok


def test_forked_checkpoint_detected(tmp_path: Path, log: Log) -> None:
    """Two validly signed checkpoints of one size with different roots are reported as a fork."""
    fork = Checkpoint(ORIGIN, 9, bytes(32)).sign([log.signer])
    report = _verify(log, _write(tmp_path, log, extra_cps=(fork,)))
    assert (report.ok, report.bad_checkpoint) == (False, 9)
    assert "fork" in report.reason


def test_known_checkpoint_fork_detected(tmp_path: Path, log: Log) -> None:
    """A checkpoint the auditor saw elsewhere that disagrees with the bundle is a fork."""
    fork = Checkpoint(ORIGIN, 12, bytes(32)).sign([log.signer])
    report = verify_bundle(_write(tmp_path, log), [log.verifier], known_checkpoints=[fork])
    assert not report.ok and "fork" in report.reason


def test_wrong_root_checkpoint_detected(tmp_path: Path, log: Log) -> None:
    """A validly signed checkpoint whose root differs from the events fails at its size."""
    path = _write(tmp_path, log)
    (path / "checkpoints" / "9.checkpoint").write_bytes(Checkpoint(ORIGIN, 9, bytes(32)).sign([log.signer]))
    report = _verify(log, path)
    assert (report.ok, report.bad_checkpoint) == (False, 9)
    assert "root does not match" in report.reason


def test_tampered_consistency_proof_detected(tmp_path: Path, log: Log) -> None:
    """A consistency proof that does not link two checkpoints fails and names it."""
    path = _write(tmp_path, log)
    proof = path / "consistency" / "4-9.proof"
    data = bytearray(proof.read_bytes())
    data[0] = ord("A") if data[0] != ord("A") else ord("B")
    proof.write_bytes(bytes(data))
    report = _verify(log, path)
    assert not report.ok and "4-9.proof" in report.reason


def test_deleted_checkpoint_file_detected(tmp_path: Path, log: Log) -> None:
    """A checkpoint listed in the manifest but missing on disk fails verification."""
    path = _write(tmp_path, log)
    (path / "checkpoints" / "9.checkpoint").unlink()
    report = _verify(log, path)
    assert not report.ok and "missing" in report.reason


def test_bundle_without_checkpoint_fails(tmp_path: Path, log: Log) -> None:
    """A bundle with no checkpoint proves nothing and is not accepted."""
    path = tmp_path / "b"
    write_bundle(
        path,
        tenant=TENANT,
        origin=ORIGIN,
        events=[e.canonical_bytes for e in log.events],
        checkpoints=[],
        consistency_proofs={},
        verifier_keys=[],
    )
    report = verify_bundle(path, [log.verifier])
    assert not report.ok and "no checkpoint" in report.reason


def test_unreadable_manifest_raises(tmp_path: Path, log: Log) -> None:
    """A missing or garbled manifest raises BundleError (malformed input)."""
    with pytest.raises(BundleError):
        verify_bundle(tmp_path / "nope", [log.verifier])
    path = _write(tmp_path, log)
    (path / "manifest.json").write_bytes(b"\xff{")
    with pytest.raises(BundleError):
        verify_bundle(path, [log.verifier])
