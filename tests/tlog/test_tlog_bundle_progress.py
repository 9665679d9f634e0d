"""lz-verify bundle at audit scale: progress while it walks, and its figures with --json."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from tlog_helpers import ORIGIN, TENANT, Log, make_log

from services.tlog.bundle import PROGRESS_EVERY, verify_bundle, write_bundle

REPO = Path(__file__).resolve().parents[2]
EVENTS = PROGRESS_EVERY + 5


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(EVENTS)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, log: Log) -> Path:
    path = tmp_path_factory.mktemp("progress") / "bundle"
    write_bundle(path, tenant=TENANT, origin=ORIGIN, events=[e.canonical_bytes for e in log.events],
                 checkpoints=[log.checkpoint(EVENTS)], consistency_proofs={}, verifier_keys=[log.verifier_key])
    return path


def _lz_verify(*args: str, stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.tlog.cli", *args], stdout=subprocess.PIPE, stderr=stderr,
                          text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def test_progress_hears_every_stretch_of_the_walk(bundle: Path, log: Log) -> None:
    """The progress callback is told the events checked so far and the manifest's total, every stretch."""
    heard: list[tuple[int, int]] = []
    report = verify_bundle(bundle, [log.verifier], progress=lambda done, total: heard.append((done, total)))
    assert report.ok
    assert heard == [(PROGRESS_EVERY, EVENTS)]


def test_json_output_carries_the_walk_figures(bundle: Path, log: Log) -> None:
    """--json reports the events, the seconds, the events per second and the peak memory of the run."""
    result = _lz_verify("bundle", "--json", "--key", log.verifier_key, str(bundle))
    doc = json.loads(result.stdout)
    assert (result.returncode, doc["status"], doc["events"]) == (0, "verified", EVENTS)
    assert doc["seconds"] > 0 and doc["events_per_second"] > 0 and doc["peak_rss_mib"] > 0
    assert result.stderr == ""


def test_a_terminal_sees_progress_and_stdout_keeps_one_line(bundle: Path, log: Log) -> None:
    """With stderr on a terminal the walk shows events, rate and ETA there; stdout still gets one line."""
    controller, terminal = pty.openpty()
    try:
        result = _lz_verify("bundle", "--key", log.verifier_key, str(bundle), stderr=terminal)
        shown = os.read(controller, 1 << 16).decode()
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1 and result.stdout.startswith(f"verified: bundle {bundle}: {EVENTS} events")
    assert f"{PROGRESS_EVERY:,} of {EVENTS:,} events" in shown and "events/s, ETA" in shown
    assert shown.endswith("\r\x1b[K")


def test_the_peak_memory_reported_is_the_verifiers_own_not_its_parents(bundle: Path, log: Log) -> None:
    """Run from a process holding 256 MiB, lz-verify reports its own peak memory, far below its parent's."""
    held = bytearray(256 << 20)
    held[:: 1 << 12] = b"\x01" * len(range(0, len(held), 1 << 12))  # touch every page, so it is resident
    result = _lz_verify("bundle", "--json", "--key", log.verifier_key, str(bundle))
    assert len(held) == 256 << 20
    assert 0 < json.loads(result.stdout)["peak_rss_mib"] < 128
