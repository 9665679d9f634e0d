"""Pinned checkpoints: an auditor's earlier checkpoint binds bundles, proofs and consistency proofs, so a
rolled-back or forked log fails even when everything inside the artefact is self-consistent. Also:
findings recorded by the exporter, and damaged event bytes written as they are."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from tlog_helpers import ORIGIN, TENANT, Log, make_log, memory_reader

from services.tlog.bundle import verify_bundle, write_bundle
from services.tlog.checkpoint import Checkpoint
from services.tlog.cli import main
from services.tlog.events import build_event
from services.tlog.merkle import inclusion_proof
from services.tlog.proof import TlogProof, format_consistency_proof

SIZES = (4, 9, 12)


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(15)


def _bundle(path: Path, log: Log, events: list[bytes], sizes: tuple[int, ...] = SIZES, **extra: object) -> Path:
    write_bundle(
        path,
        tenant=TENANT,
        origin=ORIGIN,
        events=iter(events),
        checkpoints=[log.checkpoint(s) for s in sizes],
        consistency_proofs={(a, b): log.consistency(a, b) for a, b in itertools.pairwise(sizes)},
        verifier_keys=[log.verifier_key],
        **extra,  # type: ignore[arg-type]
    )
    return path


def _rechained_after(log: Log, size: int) -> list[bytes]:
    """The log's events, with every event after `size` replaced and re-chained (a doctored tail)."""
    events = [e.canonical_bytes for e in log.events[:size]]
    prev = log.events[size - 1].hash_hex
    for original in log.events[size:]:
        forged = build_event(tenant=original.tenant, seq=original.seq, ts=original.ts, actor=original.actor,
                             action="forged", subject=original.subject, payload={}, prev_hash=prev)
        events.append(forged.canonical_bytes)
        prev = forged.hash_hex
    return events


@pytest.fixture
def doctored(tmp_path: Path, log: Log) -> Path:
    """A bundle whose newest checkpoint (12) was removed and whose events after 9 were re-chained."""
    return _bundle(tmp_path / "doctored", log, _rechained_after(log, 9), sizes=(4, 9))


def test_a_doctored_bundle_verifies_on_its_own(doctored: Path, log: Log) -> None:
    """Without a pin, a bundle rolled back behind its newest checkpoint is self-consistent (why pins exist)."""
    assert verify_bundle(doctored, [log.verifier]).ok


def test_a_doctored_bundle_fails_with_the_real_newest_checkpoint_pinned(doctored: Path, log: Log) -> None:
    """Pinning the real checkpoint 12 makes the doctored bundle fail, naming checkpoint 12."""
    report = verify_bundle(doctored, [log.verifier], known_checkpoints=[log.checkpoint(12)])
    assert (report.ok, report.bad_checkpoint) == (False, 12), report


def test_a_pin_beyond_the_bundle_fails_naming_it(tmp_path: Path, log: Log) -> None:
    """A bundle cut short before a pinned checkpoint fails, naming the pinned size."""
    short = _bundle(tmp_path / "short", log, [e.canonical_bytes for e in log.events[:9]], sizes=(4, 9))
    report = verify_bundle(short, [log.verifier], known_checkpoints=[log.checkpoint(12)])
    assert (report.ok, report.bad_checkpoint) == (False, 12) and "pinned checkpoint 12" in report.reason


def test_a_pin_between_the_bundles_checkpoints_needs_no_proof_of_its_own(tmp_path: Path, log: Log) -> None:
    """A pinned size the bundle has no checkpoint for is checked against the rebuilt tree; no extra proof is needed."""
    bundle = _bundle(tmp_path / "b", log, [e.canonical_bytes for e in log.events])
    assert verify_bundle(bundle, [log.verifier], known_checkpoints=[log.checkpoint(7)]).ok


def test_a_pin_under_a_retired_key_still_pins(doctored: Path, log: Log) -> None:
    """A checkpoint signed by a retired key (still passed with --key) pins like any other."""
    retired = log.other_signer
    pin = log.checkpoint(12, signer=retired)
    keys = [log.verifier, retired.verifier()]
    report = verify_bundle(doctored, keys, known_checkpoints=[pin])
    assert (report.ok, report.bad_checkpoint) == (False, 12), report


def test_findings_recorded_by_the_exporter_fail_the_bundle(tmp_path: Path, log: Log) -> None:
    """A finding in the manifest fails an otherwise valid bundle, naming its checkpoint."""
    bundle = _bundle(tmp_path / "b", log, [e.canonical_bytes for e in log.events],
                     findings=[{"checkpoint": 9, "reason": "checkpoint 9: the index item is damaged: no compact"}])
    report = verify_bundle(bundle, [log.verifier])
    assert (report.ok, report.bad_checkpoint) == (False, 9) and "no compact" in report.reason


@pytest.mark.parametrize("damage", [b"\x00not json", b"", b'{"seq": 6}'], ids=["garbage", "empty", "invalid"])
def test_damaged_event_bytes_are_written_as_they_are_and_named(tmp_path: Path, log: Log, damage: bytes) -> None:
    """write_bundle keeps damaged event bytes as given, and the verifier names their seq."""
    events = [e.canonical_bytes for e in log.events]
    events[5] = damage
    bundle = _bundle(tmp_path / "b", log, events)
    assert (bundle / "events.jsonl").read_bytes().splitlines()[5] == damage
    report = verify_bundle(bundle, [log.verifier])
    assert (report.ok, report.first_bad_seq) == (False, 6), report


class TestCli:
    """lz-verify --checkpoint (bundle, proof, consistency)."""

    @pytest.fixture
    def files(self, tmp_path: Path, log: Log) -> dict[str, Path]:
        out = {name: tmp_path / name for name in ("key", "cp9", "cp12", "cp12-retired", "cons9-12", "entry", "proof")}
        out["key"].write_text(f"{log.verifier_key}\n{log.other_signer.verifier().key_string}\n")
        out["cp9"].write_bytes(log.checkpoint(9))
        out["cp12"].write_bytes(log.checkpoint(12))
        out["cp12-retired"].write_bytes(log.checkpoint(12, signer=log.other_signer))
        out["cons9-12"].write_bytes(format_consistency_proof(log.consistency(9, 12)))
        out["entry"].write_bytes(log.events[2].canonical_bytes)
        hashes = inclusion_proof(2, 9, memory_reader(log.leaf_hashes[:9]))
        out["proof"].write_bytes(TlogProof(2, tuple(hashes), log.checkpoint(9)).to_bytes())
        return out

    def test_bundle_with_a_pin_fails_naming_it(self, doctored: Path, files: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """`lz-verify bundle --checkpoint` exits 1 on a doctored bundle and names the pinned checkpoint."""
        code = main(["bundle", "--key", str(files["key"]), "--checkpoint", str(files["cp12"]), str(doctored)])
        assert code == 1
        assert "12" in capsys.readouterr().out

    def test_proof_against_an_older_checkpoint_needs_a_consistency_proof(self, files: dict[str, Path]) -> None:
        """A proof against checkpoint 9 with checkpoint 12 pinned fails without a consistency proof linking them."""
        argv = ["proof", "--key", str(files["key"]), "--entry", str(files["entry"]),
                "--checkpoint", str(files["cp12"]), str(files["proof"])]
        assert main(argv) == 1

    def test_proof_with_a_consistency_proof_to_the_pin_verifies(self, files: dict[str, Path]) -> None:
        """The same proof verifies once a consistency proof from 9 to the pinned 12 is given."""
        argv = ["proof", "--key", str(files["key"]), "--entry", str(files["entry"]), "--checkpoint",
                str(files["cp12-retired"]), "--consistency-proof", str(files["cons9-12"]), str(files["proof"])]
        assert main(argv) == 0

    def test_consistency_with_a_forked_pin_fails(self, files: dict[str, Path], tmp_path: Path, log: Log,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
        """`lz-verify consistency` fails when a pinned checkpoint of the new size has another root."""
        forged = tmp_path / "forged12"
        forged.write_bytes(Checkpoint(ORIGIN, 12, bytes(32)).sign([log.signer]))
        code = main(["consistency", "--json", "--key", str(files["key"]), "--checkpoint", str(forged),
                     str(files["cp9"]), str(files["cp12"]), str(files["cons9-12"])])
        assert code == 1
        assert "fork" in json.loads(capsys.readouterr().out)["message"]
