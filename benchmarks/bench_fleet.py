"""Fleet benchmark: simulated agents (`lz-agent simulate`) on real streams to one ingest process, next to echo.

    python benchmarks/bench_fleet.py --json OUT [--quick] [--sizes 1000,5000,10000] [--window S] [--windows N]

Set-up (not measured as streaming): the local stack (embedded AWS, every service, the risk worker) starts,
and the agent credentials of the largest size are written straight into the table with ingest's own store
function (`store.put_agents`, BatchWriteItem) instead of N Enroll calls; the identities go to JSON-lines
files that `lz-agent simulate --identities` reads, so no simulated host enrolls (enrollment throughput
is in bench_isolation, where the hosts do enroll). The hosts run `--warm`: digest-only heartbeats, the
steady state of a fleet whose inventories the control plane already holds.

Load: the fleet grows in steps (1,000 -> 5,000 -> 10,000 streams); each step adds `--procs` simulator
processes (the load generator never shares a process with a server), waits until every stream is
connected and one window has passed, then measures `--windows` windows of `--window` seconds. Per
window: heartbeats acked per second and p50/p99 ack latency (from every simulator's report of that
window), ingest CPU per heartbeat (CPU seconds of the ingest process only, from /proc/<pid>/stat,
over the acked heartbeats of the window) and memory per stream (RSS growth since before the first
stream / streams). Then the stack stops and the same simulators, with the same identities and sizes,
drive a bare grpc.aio echo server (same proto, no auth, no queue). Figures are the median over the
windows with the lowest and highest (`method` in the JSON says so): one run per size, not three.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifecyclezero.v1 import ingest_pb2, ingest_pb2_grpc

from agent.enroll import Identity
from agent.simulate import save_identities
from services.ingest import keys, store
from services.kit import auth, aws, embedded
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
FULL_SIZES = (1000, 5000, 10000)
QUICK_SIZES = (300,)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


# ------------------------------------------------------------------------------------------ echo server


class _Echo(ingest_pb2_grpc.IngestServiceServicer):
    """The baseline: answers a hello with a Welcome and each heartbeat with its ack, and nothing else."""

    async def Connect(self, requests: Any, context: Any) -> Any:  # noqa: N802
        async for request in requests:
            kind = request.WhichOneof("message")
            if kind == "hello":
                yield ingest_pb2.ConnectResponse(welcome=ingest_pb2.Welcome(heartbeat_interval_seconds=5))
            elif kind == "heartbeat":
                yield ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=request.heartbeat.seq))


def _echo_main(listen: str) -> None:
    """Serve the echo baseline on `listen`: a port (on loopback) or HOST:PORT (to drive it from other machines)."""
    address = f"127.0.0.1:{listen}" if listen.isdigit() else listen

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.keepalive_permit_without_calls", 1),
                                          ("grpc.http2.min_ping_interval_without_data_ms", 10_000)])
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(_Echo(), server)  # type: ignore[abstract]
        server.add_insecure_port(address)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


# ------------------------------------------------------------------------------------------- load


@dataclass
class Simulators:
    """The simulator processes driving one server, and their report files."""

    address: str
    tenant: str
    interval: float
    window: float
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    hosts: int = 0

    def add(self, identity_file: Path, count: int, tag: str) -> None:
        report = self.workdir / f"report-{tag}.jsonl"
        report.unlink(missing_ok=True)
        log = open(self.workdir / f"sim-{tag}.log", "ab")  # noqa: SIM115 - handed to the child
        argv = [sys.executable, "-m", "agent.cli", "simulate", "--count", str(count),
                "--control-plane", self.address, "--tenant", self.tenant, "--identities", str(identity_file),
                "--warm", "--interval", str(self.interval), "--report-every", str(self.window),
                "--report-file", str(report), "--seed", "7"]
        self.procs.append(subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
        self.reports.append(report)
        self.hosts += count

    def lines(self) -> list[list[dict[str, Any]]]:
        """Every simulator's complete report lines (one being written is left for the next read)."""
        out = []
        for path in self.reports:
            text = _complete(path.read_text() if path.exists() else "")
            out.append([json.loads(line) for line in text.splitlines() if line.strip()])
        return out

    def wait_for_lines(self, end: float, timeout: float = 4.0) -> None:
        """Wait until every running simulator has written its line for the window ending at `end` (a loaded
        machine can delay one by seconds; a fixed pause once dropped half the fleet from some windows)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(proc.poll() is not None or _last_time(path) > end - self.window / 2
                   for proc, path in zip(self.procs, self.reports, strict=True)):
                return
            time.sleep(0.1)

    def connected(self) -> int:
        return sum(lines[-1]["connected"] for lines in self.lines() if lines)

    def connect_errors(self) -> dict[str, int]:
        """Failed connects so far, by reason, over every simulator of this fleet."""
        total: Counter[str] = Counter()
        for lines in self.lines():
            if lines:
                total.update(lines[-1].get("connect_errors", {}))
        return dict(total.most_common())

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _complete(text: str) -> str:
    """`text` up to its last newline: a simulator writes a long line in several writes."""
    return text[:text.rfind("\n") + 1]


def _last_time(report: Path) -> float:
    """The time of a report's last complete line (0 when it has none): one line parsed, not the whole run's."""
    text = report.read_text() if report.exists() else ""
    complete = _complete(text).rstrip().rsplit("\n", 1)[-1]
    return float(json.loads(complete)["time"]) if complete else 0.0


def _sleep_to_boundary(every: float, after: float = 0.15) -> float:
    """Sleep until just after the next wall-clock multiple of `every`; that multiple."""
    now = time.time()
    boundary = (int(now / every) + 1) * every
    time.sleep(boundary + after - now)
    return boundary


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


def queue_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def measure_step(sims: Simulators, server_pid: int, others: dict[str, list[int]], size: int, windows: int,
                 rss_base: int, connect_timeout: float, queue: tuple[Any, str] | None,
                 settle_timeout: float = 15.0) -> dict[str, Any]:
    """Wait for `size` connected streams, a settling window and the worker's first-sight burst of the new
    assets (queue down to 100 messages, at most `settle_timeout`), then measure `windows` windows."""
    started = time.monotonic()
    while sims.connected() < size and time.monotonic() - started < connect_timeout:
        time.sleep(0.5)
    connect_seconds = time.monotonic() - started
    connected = sims.connected()
    connect_errors = sims.connect_errors()
    _sleep_to_boundary(sims.window)  # the first boundary after every stream is up: settling window starts
    drained_at = time.monotonic()
    while queue is not None and queue_depth(*queue) > 100 and time.monotonic() - drained_at < settle_timeout:
        time.sleep(1.0)
    settle_seconds = time.monotonic() - drained_at
    _sleep_to_boundary(sims.window)
    boundary = _sleep_to_boundary(sims.window)
    cpu0, busy0 = cpu_seconds(server_pid), machine_busy()
    other0 = {name: _cpu(pids) for name, pids in others.items()}
    sims0 = _cpu(sims.pids())
    rows: list[dict[str, Any]] = []
    for _ in range(windows):
        end = _sleep_to_boundary(sims.window)
        sims.wait_for_lines(end)
        cpu1, busy1 = cpu_seconds(server_pid), machine_busy()
        other1 = {name: _cpu(pids) for name, pids in others.items()}
        sims1 = _cpu(sims.pids())
        latencies: list[float] = []
        connected_now = 0
        for lines in sims.lines():
            for line in lines:
                if abs(line["time"] - end) < sims.window / 2:
                    latencies.extend(line["latencies_ms"])
                    connected_now += line["connected"]
        seconds = end - boundary
        acked = len(latencies)
        rows.append({
            "connected": connected_now,
            "heartbeats_acked": acked,
            "heartbeats_per_second": round(acked / seconds, 1),
            "ack_p50_ms": _percentile(latencies, 0.50),
            "ack_p99_ms": _percentile(latencies, 0.99),
            "server_cpu_ms_per_heartbeat": round(1000 * (cpu1 - cpu0) / max(1, acked), 4),
            "server_cpu_cores": round((cpu1 - cpu0) / seconds, 3),
            "machine_busy_cores": round((busy1[0] - busy0[0]) / seconds, 3),
            "load_generator_cores": round((sims1 - sims0) / seconds, 3),
            **{f"{name}_cores": round((other1[name] - other0[name]) / seconds, 3) for name in others},
        })
        boundary, cpu0, busy0, other0, sims0 = end, cpu1, busy1, other1, sims1
    rss = rss_bytes(server_pid)

    def summary(key: str) -> dict[str, Any]:
        values: list[float] = [float(r[key]) for r in rows if r[key] is not None]
        if not values:
            return {"median": None, "min": None, "max": None}
        return {"median": round(statistics.median(values), 4), "min": min(values), "max": max(values)}

    return {
        "streams": size,
        "connected": connected,
        "connect_seconds": round(connect_seconds, 1),
        "failed_connects": sum(connect_errors.values()),
        "failed_connects_by_reason": connect_errors,
        "worker_settle_seconds": round(settle_seconds, 1),
        "heartbeats_per_second": summary("heartbeats_per_second"),
        "ack_p50_ms": summary("ack_p50_ms"),
        "ack_p99_ms": summary("ack_p99_ms"),
        "cpu_ms_per_heartbeat": summary("server_cpu_ms_per_heartbeat"),
        "server_cpu_cores": summary("server_cpu_cores"),
        "machine_busy_cores": summary("machine_busy_cores"),
        "memory_kib_per_stream": round((rss - rss_base) / 1024 / max(1, size), 2),
        "server_rss_mib": round(rss / 2**20, 1),
        "windows": rows,
    }


def run_fleet(address: str, server_pid: int, others: dict[str, list[int]], tenant: str, files: list[list[Path]],
              steps: list[int], args: argparse.Namespace, workdir: Path, name: str,
              queue: tuple[Any, str] | None = None) -> dict[str, Any]:
    sims = Simulators(address, tenant, args.interval, args.window, workdir)
    rss_base = rss_bytes(server_pid)
    results: dict[str, Any] = {}
    try:
        previous = 0
        for step, size in enumerate(steps):
            if time.monotonic() > args.deadline:
                results[str(size)] = {"skipped": "the benchmark's time budget ran out"}
                continue
            added = size - previous
            for proc_index, path in enumerate(files[step]):
                sims.add(path, added // len(files[step]) + (1 if proc_index < added % len(files[step]) else 0),
                         f"{name}-{size}-{proc_index}")
            print(f"[fleet] {name}: {size} streams", flush=True)
            results[str(size)] = measure_step(sims, server_pid, others, size, args.windows, rss_base,
                                              args.connect_timeout, queue)
            row = results[str(size)]
            print(f"[fleet] {name} {size}: connected {row['connected']} in {row['connect_seconds']}s, "
                  f"{row['heartbeats_per_second']['median']} hb/s, p99 {row['ack_p99_ms']['median']} ms, "
                  f"{row['cpu_ms_per_heartbeat']['median']} ms CPU/hb", flush=True)
            previous = size
    finally:
        sims.stop()
    return results


# --------------------------------------------------------------------------------------------- main


def identities(tenant: str, count: int, control_plane: str) -> tuple[list[Identity], list[tuple[str, str, str]]]:
    made, rows = [], []
    for i in range(count):
        credential = auth.new_secret()
        asset = f"a-bench-{i:06d}"
        made.append(Identity(tenant, asset, credential, control_plane, heartbeat_interval_seconds=5))
        rows.append((tenant, asset, auth.sha256_hex(credential)))
    return made, rows


def telemetry_write_units(ddb: Any, table: str, tenant: str, shards: int) -> tuple[int, int]:
    items = units = 0
    for shard in range(shards):
        kwargs: dict[str, Any] = {"TableName": table, "KeyConditionExpression": "PK = :pk",
                                  "ExpressionAttributeValues": {":pk": {"S": keys.telemetry_pk(tenant, shard)}}}
        while True:
            got = ddb.query(**kwargs)
            for raw in got.get("Items", []):
                items += 1
                units += store.write_units(aws.from_item(raw))
            if "LastEvaluatedKey" not in got:
                break
            kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]
    return items, units


def _write(path: Path, result: dict[str, Any]) -> None:
    """Write what has been measured so far (a benchmark cut off by its budget still leaves its figures)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="300 streams, short windows")
    parser.add_argument("--sizes", default=",".join(map(str, FULL_SIZES)))
    parser.add_argument("--window", type=float, default=8.0, help="seconds per measurement window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=2, help="simulator processes per step")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--budget", type=float, default=720.0, help="seconds; later steps are skipped past it")
    parser.add_argument("--no-echo", action="store_true")
    args = parser.parse_args(argv)
    steps = sorted({int(s) for s in args.sizes.split(",")})
    if args.quick:
        steps, args.window, args.windows, args.procs = list(QUICK_SIZES), 4.0, 3, 1
    began = time.monotonic()
    args.deadline = began + args.budget - 60 * len(steps)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    stack = Stack(state_dir=workdir / "stack", extra_env={"LZ_LOG_LEVEL": "WARNING"})
    stack.start()
    tenant = f"bench-{secrets.token_hex(3)}"
    result: dict[str, Any] = {
        "method": (f"one run per size, the fleet growing in steps; {args.windows} windows of {args.window:g} s "
                   "per size after every stream connected and one settling window; figures are the median "
                   "over the windows with min/max; ingest and echo driven by the same `lz-agent simulate` "
                   f"processes ({args.procs} per step), echo after the stack stopped"),
        "interval_seconds": args.interval,
        "sizes": {},
    }
    try:
        assert stack.resources is not None
        settings = AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url)
        ddb = aws.client(settings, "dynamodb")
        setup_started = time.monotonic()
        made, rows = identities(tenant, steps[-1], stack.addresses["ingest"])
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        store.put_agents(ddb, settings.table_name, rows, 1, now)
        files: list[list[Path]] = []
        previous = 0
        for step, size in enumerate(steps):
            chunk = made[previous:size]
            per = [chunk[i::args.procs] for i in range(args.procs)]
            files.append([])
            for index, part in enumerate(per):
                if part:
                    path = workdir / f"identities-{step}-{index}.jsonl"
                    save_identities(path, part)
                    files[step].append(path)
            previous = size
        result["setup"] = {"credentials_written": len(rows),
                           "credential_write_seconds": round(time.monotonic() - setup_started, 1),
                           "how": "store.put_agents (BatchWriteItem) in the benchmark, not Enroll"}
        ingest_pid = stack.procs["ingest"].pid
        others = {"embedded_aws": [stack.aws_proc.pid] if stack.aws_proc else [],
                  "risk_worker": [stack.procs["risk-worker"].pid],
                  "assets": [stack.procs["assets"].pid]}
        sqs = aws.client(settings, "sqs")
        ingest = run_fleet(stack.addresses["ingest"], ingest_pid, others, tenant, files, steps, args, workdir,
                           "ingest", (sqs, stack.resources.queue_url))
        time.sleep(3)
        items, units = telemetry_write_units(ddb, settings.table_name, tenant, 10)
        heartbeats = sum(w["heartbeats_acked"] for r in ingest.values() for w in r["windows"])
        result["dynamodb_unchanged_heartbeat"] = {
            "telemetry_items_written": items,
            "telemetry_write_units": units,
            "note": "a run of minutes is dominated by each asset's first keepalive record and first "
                    "durable-seq write; the steady state is the model (and bench_capacity)",
            "steady_state_model_units_per_heartbeat": round(
                2 * args.interval / 300.0 + args.interval / 120.0, 4),
            "steady_state_model": {
                "keepalive_record_every_300s_2_units": round(2 * args.interval / 300.0, 4),
                "durable_seq_every_120s_1_unit": round(args.interval / 120.0, 4),
            },
            "measured_heartbeats_in_windows": heartbeats,
        }
    finally:
        stack.stop()
    for size in steps:
        result["sizes"][str(size)] = {"ingest": ingest[str(size)]}
    _write(args.json, result)
    args.deadline = began + args.budget - 45 * len(steps)
    if not args.no_echo:
        port = embedded.free_port()
        echo = subprocess.Popen([sys.executable, __file__, "--echo", str(port)])
        try:
            time.sleep(1.5)
            baseline = run_fleet(f"127.0.0.1:{port}", echo.pid, {}, tenant, files, steps, args, workdir, "echo")
        finally:
            echo.terminate()
            echo.wait(10)
        for size in steps:
            entry = result["sizes"][str(size)]
            entry["echo"] = baseline[str(size)]
            if "skipped" in entry["ingest"] or "skipped" in entry["echo"]:
                continue
            entry["ratio_cpu_per_heartbeat"] = _ratio(entry["ingest"]["cpu_ms_per_heartbeat"]["median"],
                                                      entry["echo"]["cpu_ms_per_heartbeat"]["median"])
            entry["ratio_p99"] = _ratio(entry["ingest"]["ack_p99_ms"]["median"],
                                        entry["echo"]["ack_p99_ms"]["median"])
    result["targets"] = {"streams": 10000, "heartbeats_per_second": 2000, "ack_p99_ms": 50,
                         "ratio_cpu_per_heartbeat": 2.0}
    result["elapsed_seconds"] = round(time.monotonic() - began, 1)
    _write(args.json, result)
    print(json.dumps({k: v for k, v in result.items() if k != "sizes"} | {"sizes": {
        s: {side: {k: v for k, v in r.items() if k != "windows"} if isinstance(r, dict) else r
                   for side, r in entry.items()} for s, entry in result["sizes"].items()}}, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo":
        _echo_main(sys.argv[2])
    else:
        raise SystemExit(main())
