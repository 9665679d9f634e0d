"""`make bench`: run every benchmark, keep the raw results, and write the report.

    python -m benchmarks.run --out bench-results [--quick] [--only NAME ...]

Each benchmark is a script that prints (and writes with --json) one JSON dict and does its own
repeated runs; this harness runs them one after another on the same machine, stores every raw
result in `<out>/raw/<name>.json`, and renders `<out>/REPORT.md` with charts (`<out>/*.png`). Figures
are never asserted: a noisy machine gets a report, not a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import report

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)
    budget_seconds: int = 600


BENCHES = (
    Bench("tlog", "benchmarks/bench_tlog.py", budget_seconds=480),
    Bench("ledger", "benchmarks/bench_ledger.py", budget_seconds=600),
    Bench("fleet", "benchmarks/bench_fleet.py", budget_seconds=780),
    Bench("isolation", "benchmarks/bench_isolation.py", budget_seconds=420),
    # The same orders with three ingest replicas (most nudges forwarded), beside the one-replica figure.
    Bench("isolation-replicas", "benchmarks/bench_isolation.py",
          args=("--ingest-replicas", "3", "--bursts", "1,10,50,50,50,50,50"), budget_seconds=420),
    Bench("capacity", "benchmarks/bench_capacity.py", budget_seconds=300),
    Bench("agents", "benchmarks/bench_agents.py", budget_seconds=400),
    Bench("console", "benchmarks/bench_console.py", budget_seconds=420),
)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    mem_kib = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    versions = {}
    for package in ("grpcio", "protobuf", "boto3", "moto", "cryptography"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": platform.processor() or platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_bench(bench: Bench, out: Path, quick: bool) -> dict[str, Any]:
    raw = out / "raw" / f"{bench.name}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    script = REPO / bench.script
    if not script.exists():
        return {"error": f"{bench.script} does not exist"}
    argv = [sys.executable, str(script), "--json", str(raw), *bench.args, *(bench.quick_args if quick else ())]
    started = time.monotonic()
    log = out / "raw" / f"{bench.name}.log"
    print(f"[{bench.name}] {' '.join(argv[1:])}", flush=True)
    with open(log, "w") as handle:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | str = proc.wait(timeout=bench.budget_seconds)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            code = "timeout"
    elapsed = time.monotonic() - started
    print(f"[{bench.name}] exit {code} in {elapsed:.0f}s", flush=True)
    if code != 0 or not raw.exists():
        tail = log.read_text()[-2000:]
        return {"error": f"exit {code} after {elapsed:.0f}s", "log_tail": tail, "elapsed_seconds": elapsed}
    result: dict[str, Any] = json.loads(raw.read_text())
    result["elapsed_seconds"] = round(elapsed, 1)
    return result


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """End a benchmark that ran out of time together with everything it started.

    A benchmark runs in a session of its own, and the emulator and services it starts stay in its process
    group: killing the script alone left them running and taking CPU from the benchmarks after it.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--quick", action="store_true", help="the reduced set (make bench-quick)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these benchmarks")
    parser.add_argument("--report-only", action="store_true", help="re-render the report from raw results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    started = time.monotonic()
    for bench in BENCHES:
        raw = args.out / "raw" / f"{bench.name}.json"
        if args.report_only or (args.only is not None and bench.name not in args.only):
            if raw.exists():
                results[bench.name] = json.loads(raw.read_text())
            continue
        results[bench.name] = run_bench(bench, args.out, args.quick)
    summary = {"machine": machine(), "quick": args.quick, "total_seconds": round(time.monotonic() - started, 1),
               "results": results}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    path = report.write(summary, args.out)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
