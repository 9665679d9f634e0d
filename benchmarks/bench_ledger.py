"""Ledger and sealer benchmarks on the embedded endpoint (a plain script, not a test).

    python benchmarks/bench_ledger.py --json OUT [--quick] [--runs N] [--full-verify-only N]

Store-level: boto3 from threads against the embedded AWS endpoint (moto, DynamoDB requests
serialised), the same code the ledger and sealer processes run, without gRPC. Prints one JSON dict:

- `append`: group commit (one drain thread per tenant, like the service) against one conditional
  put per event, same writers and load in the same run; medians over --runs runs of events/s,
  p50/p99 latency, DynamoDB calls per event, CPU ms per event of the appending process and of the
  endpoint; `group_commit_speedup`.
- `inclusion_proof`: per tree size (10^3, 10^4, 10^5; --quick stops at 10^4), median time and the
  tile reads (S3 GetObject) of a proof, and its size against 32·⌈log2 n⌉ bytes.
- `since_checkpoint_verify`: time against the unsealed tail length (10, 100, 1000), and the store
  requests one verification makes by operation (`requests`): one ListObjectVersions of the checkpoint
  prefix, the index Query, two note GetObjects and O(log n) tiles, plus the tail's Query pages;
  nothing proportional to the sealed events.
- `full_verify`: VerifyLedger FULL throughput (events/s, store reads included) over the inclusion
  proofs' ledger once it holds 10^5 events (--quick: 10^4), with the medians of its wall time and
  of the CPU seconds of the verifying process (botocore and the walk) and of the endpoint; the
  in-memory walk (chain + tree) against raw hashlib over the same bytes. The verifier reads through
  its own walk client (`aws.walk_client`), as the ledger service does. `--full-verify-only N` runs
  only this section, on a fresh endpoint with N events filled and sealed (the issue #25 figure:
  `--full-verify-only 100000`).
- `sealer_catch_up`: a burst appended by one writer while a sealer seals in a loop
  (LZ_SEAL_MAX_BATCH=4096): peak pending and time from the burst's end until everything is sealed
  (50,000 events; --quick: 5,000).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.kit import aws, embedded
from services.kit.settings import AwsSettings
from services.ledger import domain, store
from services.ledger.domain import FullWalk
from services.ledger.proofs import SealReader, inclusion
from services.ledger.signing import TenantKeys
from services.ledger.verification import verify_full, verify_since_checkpoint
from services.sealer import sealing
from services.tlog.merkle import leaf_hash
from services.tlog.note import generate_key

ORIGIN = "bench.local/ledger"


def drafts(n: int) -> list[store.EventDraft]:
    return [store.EventDraft("bench", "bench.event", "", {"i": i}) for i in range(n)]


class Operations:
    """Counts requests by operation name (e.g. `s3.ListObjectVersions`) made through some clients."""

    def __init__(self, *clients: Any) -> None:
        self.counts: dict[str, int] = {}
        for client in clients:
            client.meta.events.register("before-call", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.endpoint_prefix}.{model.name}"
        self.counts[name] = self.counts.get(name, 0) + 1


class Calls:
    """Counts DynamoDB calls made through one client."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb", self._seen)

    def _seen(self, **_: Any) -> None:
        with self._lock:
            self.count += 1


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    run: Callable[[], list[float]], events: int, calls: Calls, endpoint_pid: int
) -> dict[str, float]:
    before = (time.perf_counter(), time.process_time(), proc_cpu(endpoint_pid), calls.count)
    latencies = run()
    elapsed = time.perf_counter() - before[0]
    latencies.sort()
    return {
        "events": events,
        "events_per_s": events / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "dynamodb_calls_per_event": (calls.count - before[3]) / events,
        "client_cpu_ms_per_event": 1000 * (time.process_time() - before[1]) / events,
        "endpoint_cpu_ms_per_event": 1000 * (proc_cpu(endpoint_pid) - before[2]) / events,
    }


def single_writers(ddb: Any, table: str, tenant: str, writers: int, per_writer: int) -> list[float]:
    """One conditional put per event from `writers` threads (no batching)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        mine = []
        for _ in range(per_writer):
            t = time.perf_counter()
            store.append(ddb, table, tenant, [store.AppendGroup(drafts(1))], max_attempts=10_000)
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    with ThreadPoolExecutor(writers) as pool:
        for f in [pool.submit(work) for _ in range(writers)]:
            f.result()
    return latencies


def group_writers(ddb: Any, table: str, tenant: str, writers: int, per_writer: int) -> list[float]:
    """The same load through a group committer: one drain thread, calls batched while one is in flight."""
    queue: list[tuple[threading.Event, list[int]]] = []
    cond = threading.Condition()
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def drain() -> None:
        tail = None
        while not stop.is_set() or queue:
            with cond:
                while not queue and not stop.is_set():
                    cond.wait(0.05)
                count = domain.take_batch([(1, "")] * len(queue)) if queue else 0
                batch = [queue.pop(0) for _ in range(count)]
            if not batch:
                continue
            seqs, tail = store.append(ddb, table, tenant, [store.AppendGroup(drafts(1)) for _ in batch], tail=tail)
            for (done, out), got in zip(batch, seqs, strict=True):
                out.extend(got)
                done.set()

    def work() -> None:
        mine = []
        for _ in range(per_writer):
            t = time.perf_counter()
            done, out = threading.Event(), list[int]()
            with cond:
                queue.append((done, out))
                cond.notify()
            done.wait()
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    drainer = threading.Thread(target=drain)
    drainer.start()
    try:
        with ThreadPoolExecutor(writers) as pool:
            for f in [pool.submit(work) for _ in range(writers)]:
                f.result()
    finally:
        stop.set()
        drainer.join()
    return latencies


def fill(ddb: Any, table: str, tenant: str, n: int, tail: store.Tail | None = None) -> store.Tail:
    """Append `n` events in 99-event transactions (one writer, cached tail)."""
    done = 0
    while done < n:
        k = min(99, n - done)
        _, tail = store.append(ddb, table, tenant, [store.AppendGroup(drafts(k))], tail=tail)
        done += k
    assert tail is not None
    return tail


def seal_all(ctx: sealing.SealContext, tenant: str, batch: int, size: int) -> float:
    started = time.perf_counter()
    while sealing.seal_once(ctx, tenant, batch, size).record is not None:
        pass
    return time.perf_counter() - started


def bench_append(ddb: Any, table: str, calls: Calls, pid: int, runs: int, quick: bool) -> dict[str, Any]:
    writers, per = (16, 20) if quick else (32, 50)
    # Racing single puts cost about `writers` attempts per event, so they get fewer events (same
    # writers, same run) to keep the whole benchmark within its time budget.
    single_per = max(per // 10, 1)
    rows: dict[str, list[dict[str, float]]] = {"single_put_per_event": [], "group_commit": []}
    for run in range(runs):
        single = functools.partial(single_writers, ddb, table, f"single-{run}", writers, single_per)
        group = functools.partial(group_writers, ddb, table, f"group-{run}", writers, per)
        rows["single_put_per_event"].append(measure(single, writers * single_per, calls, pid))
        rows["group_commit"].append(measure(group, writers * per, calls, pid))
    out: dict[str, Any] = {"writers": writers, "appends_per_writer": per, "single_appends_per_writer": single_per,
                           "runs": runs}
    for name, got in rows.items():
        out[name] = {k: statistics.median(r[k] for r in got) for k in got[0]}
    out["group_commit_speedup"] = out["group_commit"]["events_per_s"] / out["single_put_per_event"]["events_per_s"]
    return out


def bench_proofs(ctx: sealing.SealContext, reader: SealReader, sizes: list[int], runs: int) -> list[dict[str, Any]]:
    rows = []
    tail: store.Tail | None = None
    for size in sizes:
        tail = fill(ctx.ddb, ctx.table, "proofs", size - (tail.seq if tail else 0), tail)
        seal_all(ctx, "proofs", 8192, size)
        times, reads, lengths = [], [], []
        for seq in (1, size // 2, size):
            for _ in range(runs):
                t = time.perf_counter()
                proof = inclusion(reader, "proofs", seq, 0)
                times.append(time.perf_counter() - t)
                reads.append(proof.tile_reads)
                lengths.append(32 * len(proof.hashes))
        rows.append({"tree_size": size, "median_ms": 1000 * statistics.median(times),
                     "max_tile_reads": max(reads), "max_proof_bytes": max(lengths),
                     "bound_32_ceil_log2_n": 32 * math.ceil(math.log2(size))})
        print(json.dumps({"inclusion_proof": rows[-1]}), file=sys.stderr, flush=True)
    return rows


def bench_since(ctx: sealing.SealContext, reader: SealReader, runs: int) -> list[dict[str, Any]]:
    tenant = "since"
    tail = fill(ctx.ddb, ctx.table, tenant, 1000)
    seal_all(ctx, tenant, 8192, tail.seq)
    rows = []
    for tail_len in (10, 100, 1000):
        tail = fill(ctx.ddb, ctx.table, tenant, tail_len, tail)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            outcome = verify_since_checkpoint(reader, tenant)
            times.append(time.perf_counter() - t)
            assert outcome.ok, outcome
        operations = Operations(reader.ddb, reader.s3)
        assert verify_since_checkpoint(reader, tenant).ok
        rows.append({"tail": tail_len, "median_ms": 1000 * statistics.median(times),
                     "requests": dict(sorted(operations.counts.items()))})
        print(json.dumps({"since_checkpoint_verify": rows[-1]}), file=sys.stderr, flush=True)
        seal_all(ctx, tenant, 8192, tail.seq)
    return rows


def bench_full_verify(
    ctx: sealing.SealContext, reader: SealReader, runs: int, tenant: str, size: int, endpoint_pid: int
) -> dict[str, Any]:
    """VerifyLedger FULL of a tenant whose `size` events are sealed (wall, and CPU of this process and of the
    endpoint: on two cores the two overlap), and the in-memory walk of its events."""
    times, reader_cpu, endpoint_cpu = [], [], []
    for _ in range(runs):
        t, cpu, endpoint = time.perf_counter(), time.process_time(), proc_cpu(endpoint_pid)
        outcome = verify_full(reader, tenant)
        times.append(time.perf_counter() - t)
        reader_cpu.append(time.process_time() - cpu)
        endpoint_cpu.append(proc_cpu(endpoint_pid) - endpoint)
        assert outcome.ok, outcome
    events = [e.canonical for e in store.events_between(ctx.ddb, ctx.table, tenant, 1, size, 5000,
                                                        canonical_only=True)]
    walk_times, raw_times = [], []
    for _ in range(runs):
        t = time.perf_counter()
        walk = FullWalk(tenant, {})
        for canonical in events:
            walk.add(canonical, None)
        assert walk.finish().ok
        walk_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        for canonical in events:  # what the walk must hash at least: the event hash and the leaf hash
            hashlib.sha256(canonical).digest()
            leaf_hash(canonical)
        raw_times.append(time.perf_counter() - t)
    walk_s, raw_s = statistics.median(walk_times), statistics.median(raw_times)
    return {
        "events": size,
        "verify_full_events_per_s": size / statistics.median(times),
        "verify_full_s": statistics.median(times),
        "verify_full_reader_cpu_s": statistics.median(reader_cpu),
        "verify_full_endpoint_cpu_s": statistics.median(endpoint_cpu),
        "in_memory_walk_events_per_s": size / walk_s,
        "raw_hashlib_events_per_s": size / raw_s,
        "raw_hashlib_time_fraction_of_walk": raw_s / walk_s,
        "bytes": sum(len(e) for e in events),
    }


class Burst:
    """One writer appending `total` events in 99-event transactions on a thread of its own."""

    def __init__(self, ctx: sealing.SealContext, tenant: str, total: int) -> None:
        self.ctx, self.tenant, self.total = ctx, tenant, total
        self.appended = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        tail = None
        while self.appended < self.total:
            k = min(99, self.total - self.appended)
            _, tail = store.append(self.ctx.ddb, self.ctx.table, self.tenant, [store.AppendGroup(drafts(k))],
                                   tail=tail)
            self.appended += k
        self.done.set()


def bench_catch_up(ctx: sealing.SealContext, burst: int, runs: int) -> dict[str, Any]:
    rows = []
    for run in range(runs):
        writer = Burst(ctx, f"burst-{run}", burst)
        sealed = peak = 0
        ended = 0.0
        started = time.perf_counter()
        writer.thread.start()
        while True:
            seen = writer.appended
            outcome = sealing.seal_once(ctx, writer.tenant, 4096, seen) if seen > sealed else None
            if outcome is not None and outcome.record is not None:
                sealed = outcome.record.size
            peak = max(peak, writer.appended - sealed)
            if writer.done.is_set():
                ended = ended or time.perf_counter()
                if sealed >= burst:
                    break
            if outcome is None or outcome.record is None:
                time.sleep(0.05)
        writer.thread.join()
        finished = time.perf_counter()
        rows.append({"append_s": ended - started, "catch_up_after_burst_s": finished - ended,
                     "total_s": finished - started, "peak_pending": peak})
        print(json.dumps({"sealer_catch_up": rows[-1]}), file=sys.stderr, flush=True)
    return {"burst": burst, "runs": runs, **{k: statistics.median(r[k] for r in rows) for k in rows[0]}}


@dataclass
class Endpoint:
    """A fresh embedded endpoint and the clients and contexts one section needs."""

    proc: Any
    ddb: Any
    table: str
    calls: Calls
    ctx: sealing.SealContext
    reader: SealReader

    @classmethod
    @contextlib.contextmanager
    def fresh(cls, keys: TenantKeys) -> Iterator[Endpoint]:
        # Each section gets its own endpoint: moto's Query scans the whole table, so a section that
        # follows a 10^5-event one would otherwise measure the emulator's table size, not the design.
        proc, url = embedded.start_endpoint()
        try:
            res = embedded.provision(url)
            settings = AwsSettings(table_name=res.table_name, endpoint_url=url)
            ddb, s3 = aws.client(settings, "dynamodb"), aws.client(settings, "s3")
            ctx = sealing.SealContext(ddb, s3, res.table_name, res.bucket_name, res.retention_days, keys, set())
            reader = SealReader(ddb, s3, res.table_name, res.bucket_name, keys, walker=aws.walk_client(settings))
            yield cls(proc, ddb, res.table_name, Calls(ddb), ctx, reader)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # a large table can keep it busy past SIGTERM
                proc.kill()
                proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full-verify-only", type=int, metavar="N", help="only full_verify, of N events")
    args = parser.parse_args()
    runs = max(args.runs, 1)
    started = time.perf_counter()
    keys = TenantKeys(ORIGIN, [generate_key(ORIGIN)[0]])
    if args.full_verify_only:
        only = full_verify_only(keys, args.full_verify_only, runs)
        return _finish({"mode": "full_verify_only", "full_verify": only}, started, args.json)
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full"}
    with Endpoint.fresh(keys) as e:
        results["append"] = bench_append(e.ddb, e.table, e.calls, e.proc.pid, runs, args.quick)
    print(json.dumps({"append": results["append"]}), file=sys.stderr, flush=True)
    with Endpoint.fresh(keys) as e:
        results["since_checkpoint_verify"] = bench_since(e.ctx, e.reader, runs)
    with Endpoint.fresh(keys) as e:
        burst = 5_000 if args.quick else 50_000
        # A 50,000-event burst takes about a minute here; one run keeps the full run within its budget.
        results["sealer_catch_up"] = bench_catch_up(e.ctx, burst, runs if args.quick else 1)
    with Endpoint.fresh(keys) as e:
        sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
        results["inclusion_proof"] = bench_proofs(e.ctx, e.reader, sizes, runs)
        # The proofs' ledger is sealed at its largest size by now: walking it costs no second fill.
        results["full_verify"] = bench_full_verify(e.ctx, e.reader, runs, "proofs", sizes[-1], e.proc.pid)
    print(json.dumps({"full_verify": results["full_verify"]}), file=sys.stderr, flush=True)
    return _finish(results, started, args.json)


def full_verify_only(keys: TenantKeys, size: int, runs: int) -> dict[str, Any]:
    """The full_verify section alone: `size` events filled and sealed on a fresh endpoint, then verified."""
    with Endpoint.fresh(keys) as e:
        fill(e.ddb, e.table, "verify", size)
        seal_all(e.ctx, "verify", 8192, size)
        return bench_full_verify(e.ctx, e.reader, runs, "verify", size, e.proc.pid)


def _finish(results: dict[str, Any], started: float, out: Path | None) -> int:
    results["wall_seconds"] = time.perf_counter() - started
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
