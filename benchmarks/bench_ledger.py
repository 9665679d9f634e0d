"""Ledger and sealer benchmarks on the embedded stack (a plain script, not a test).

    python benchmarks/bench_ledger.py [--quick] [--json OUT]

Measures, with medians over --runs runs: group-commit append throughput per tenant against one put
per event, p50/p99 append latency, inclusion-proof time and tile reads by tree size, since-checkpoint
verification time by tail length, and sealer catch-up time after a burst. Store-level (boto3 from
threads against the embedded endpoint), so the numbers are about the design, not gRPC.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from services.kit import aws, embedded
from services.kit.settings import AwsSettings
from services.ledger import domain, store
from services.ledger.proofs import SealReader, inclusion
from services.ledger.verification import verify_since_checkpoint
from services.sealer import sealing
from services.sealer.signing import TenantKeys
from services.tlog.note import generate_key

ORIGIN = "bench.local/ledger"


def drafts(n: int) -> list[store.EventDraft]:
    return [store.EventDraft("bench", "bench.event", "", {"i": i}) for i in range(n)]


def throughput_single(ddb: Any, table: str, tenant: str, writers: int, per_writer: int) -> dict[str, float]:
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

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        for f in [pool.submit(work) for _ in range(writers)]:
            f.result()
    elapsed = time.perf_counter() - started
    return _summary(writers * per_writer, elapsed, latencies)


def throughput_group(ddb: Any, table: str, tenant: str, writers: int, per_writer: int) -> dict[str, float]:
    """The same load through a group committer (one drain thread per tenant, like the service)."""
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
            done, out = threading.Event(), []
            with cond:
                queue.append((done, out))
                cond.notify()
            done.wait()
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    drainer = threading.Thread(target=drain)
    drainer.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        for f in [pool.submit(work) for _ in range(writers)]:
            f.result()
    elapsed = time.perf_counter() - started
    stop.set()
    drainer.join()
    return _summary(writers * per_writer, elapsed, latencies)


def _summary(n: int, elapsed: float, latencies: list[float]) -> dict[str, float]:
    latencies.sort()
    return {
        "events": n,
        "events_per_s": n / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def fill(ddb: Any, table: str, tenant: str, n: int) -> None:
    tail = None
    done = 0
    while done < n:
        k = min(99, n - done)
        _, tail = store.append(ddb, table, tenant, [store.AppendGroup(drafts(k))], tail=tail)
        done += k


def seal_all(ctx: sealing.SealContext, tenant: str, batch: int) -> float:
    started = time.perf_counter()
    while sealing.seal_once(ctx, tenant, batch).record is not None:
        pass
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    proc, url = embedded.start_endpoint()
    results: dict[str, Any] = {}
    try:
        res = embedded.provision(url)
        settings = AwsSettings(table_name=res.table_name, endpoint_url=url)
        ddb, s3 = aws.client(settings, "dynamodb"), aws.client(settings, "s3")
        signer, _ = generate_key(ORIGIN)
        keys = TenantKeys(ORIGIN, [signer])
        ctx = sealing.SealContext(ddb, s3, res.table_name, res.bucket_name, 1, keys, set())
        reader = SealReader(ddb, s3, res.table_name, res.bucket_name, keys)
        writers, per = (16, 20) if args.quick else (32, 50)
        runs: dict[str, list[dict[str, float]]] = {"single": [], "group": []}
        for run in range(args.runs):
            runs["single"].append(throughput_single(ddb, res.table_name, f"single-{run}", writers, per))
            runs["group"].append(throughput_group(ddb, res.table_name, f"group-{run}", writers, per))
        for name, rows in runs.items():
            results[f"append_{name}"] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        results["group_commit_speedup"] = (
            results["append_group"]["events_per_s"] / results["append_single"]["events_per_s"]
        )
        sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
        proof_rows = []
        grown = 0
        tenant = "proofs"
        for size in sizes:
            fill(ddb, res.table_name, tenant, size - grown)
            grown = size
            seal_all(ctx, tenant, 8192)
            times, reads = [], []
            for seq in (1, size // 2, size):
                for _ in range(args.runs):
                    t = time.perf_counter()
                    proof = inclusion(reader, tenant, seq, 0)
                    times.append(time.perf_counter() - t)
                    reads.append(proof.tile_reads)
            proof_rows.append({"tree_size": size, "median_ms": 1000 * statistics.median(times),
                               "max_tile_reads": max(reads)})
            print(json.dumps(proof_rows[-1]), flush=True)
        results["inclusion_proof"] = proof_rows
        since_rows = []
        for tail_len in ([10, 100, 1000] if args.quick else [10, 100, 1000, 5000]):
            fill(ddb, res.table_name, tenant, tail_len)
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                outcome = verify_since_checkpoint(reader, tenant)
                times.append(time.perf_counter() - t)
                assert outcome.ok, outcome
            since_rows.append({"tail": tail_len, "median_s": statistics.median(times)})
            print(json.dumps(since_rows[-1]), flush=True)
            seal_all(ctx, tenant, 8192)
        results["since_checkpoint_verify"] = since_rows
        burst = 2_000 if args.quick else 20_000
        catch = []
        for run in range(args.runs):
            t_name = f"burst-{run}"
            fill(ddb, res.table_name, t_name, burst)
            catch.append(seal_all(ctx, t_name, 4096))
        results["sealer_catch_up"] = {"burst": burst, "median_s": statistics.median(catch)}
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
