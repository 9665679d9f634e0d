"""`make bench`'s harness: a benchmark that runs out of time takes what it started with it."""

from __future__ import annotations

from pathlib import Path

from benchmarks.run import Bench, run_bench


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_benchmark_out_of_time_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    """A benchmark past its budget is ended together with the processes it started (as a stack's would be)."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "slow.py"
    script.write_text(
        "import pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    result = run_bench(Bench("slow", str(script), budget_seconds=3), tmp_path / "out", quick=False)
    assert result["error"].startswith("exit timeout")
    assert not _alive(int(pid_file.read_text()))
