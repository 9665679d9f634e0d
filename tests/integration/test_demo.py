"""`make demo` (`python -m lz.demo`) as a user runs it: one subprocess, its report and its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lz.demo import STEPS

REPO = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(DEMO_TIMEOUT + 60)]


class DemoRun:
    def __init__(self, code: int, stdout: str, report: dict[str, Any]) -> None:
        self.code = code
        self.stdout = stdout
        self.report = report

    def step(self, title: str) -> dict[str, Any]:
        return next(s for s in self.report["steps"] if s["title"] == title)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo, run once for this module exactly as `make demo` runs it."""
    report = tmp_path_factory.mktemp("demo") / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "lz.demo", "--json-report", str(report)],
        cwd=REPO, env={**os.environ, "PYTHONIOENCODING": "utf-8"}, capture_output=True, text=True,
        encoding="utf-8", timeout=DEMO_TIMEOUT,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-4000:])
    data = json.loads(report.read_text()) if report.exists() else {"steps": []}
    return DemoRun(proc.returncode, proc.stdout, data)


def test_demo_passes_every_step(demo_run: DemoRun) -> None:
    """The demo exits 0 and its report names every step as passed."""
    assert demo_run.code == 0, demo_run.stdout[-3000:]
    for number, title in enumerate(STEPS, start=1):
        assert f"✓ {number:>2}. {title}" in demo_run.stdout
    assert [s["title"] for s in demo_run.report["steps"] if s["ok"]] == list(STEPS)


def test_demo_catches_the_tampered_ledger_item(demo_run: DemoRun) -> None:
    """The ledger item the demo rewrites is named as the first bad seq by `lz ledger verify --full`."""
    tampered = demo_run.step("Tamper with a stored ledger item")
    caught = demo_run.step("Verification catches the tampering")
    assert tampered["ok"] and caught["ok"], caught
    seq = int(tampered["evidence"][0].split("EVENT#", 1)[1].split()[0])
    assert f"ok false, first_bad_seq {seq} " in caught["evidence"][0]
    assert "lz-verify bundle on a fresh export: exit 1" in caught["evidence"][1]
