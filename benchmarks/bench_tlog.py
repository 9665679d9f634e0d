"""Benchmarks for services.tlog: proof verification, tree building speed and frontier size.

Usage: python benchmarks/bench_tlog.py --json OUT [--quick]

Figures are medians over several runs.  Tree-building throughput is compared
with raw hashlib over the same bytes in the same run: the interior-node
messages (0x01 || left || right, 65 bytes each) that building the tree
has to hash, one ``sha256(...).digest()`` per message, which is the floor any
Python implementation pays.  A bulk one-call hash of the concatenated bytes
is reported too, for context only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.tlog.compact import CompactRange
from services.tlog.merkle import inclusion_proof, leaf_hash, verify_inclusion
from services.tlog.tiles import TileBuilder, tile_hash_reader


def _median(values: list[float]) -> float:
    return statistics.median(values)


def bench_inclusion(size: int, samples: int, runs: int) -> dict[str, float]:
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
    builder = TileBuilder()
    store = {t.tile_id: t.data for t in builder.add(leaves)}
    root = builder.root()
    reader = tile_hash_reader(size, store.__getitem__)
    step = max(1, size // samples)
    cases = [(i, leaves[i], inclusion_proof(i, size, reader)) for i in range(0, size, step)][:samples]
    gen_start = time.perf_counter()
    for i, _, _ in cases[:200]:
        inclusion_proof(i, size, reader)
    gen_us = (time.perf_counter() - gen_start) / min(200, len(cases)) * 1e6
    per_run = []
    for _ in range(runs):
        timings = []
        for i, leaf, proof in cases:
            t0 = time.perf_counter()
            verify_inclusion(leaf, i, size, proof, root)
            timings.append(time.perf_counter() - t0)
        per_run.append(_median(timings) * 1e6)
    return {
        "tree_size": size,
        "proofs": len(cases),
        "verify_median_us": round(_median(per_run), 2),
        "verify_runs_us": [round(v, 2) for v in per_run],
        "generate_from_tiles_mean_us": round(gen_us, 1),
    }


def bench_build(n: int, runs: int) -> dict[str, float]:
    leaves = [hashlib.sha256(os.urandom(8)).digest() for _ in range(n)]
    # The same bytes the tree hashes: every interior node's 65-byte message.
    messages: list[bytes] = []
    row = leaves
    while len(row) > 1:
        nxt = []
        for a, b in zip(row[0::2], row[1::2], strict=False):
            m = b"\x01" + a + b
            messages.append(m)
            nxt.append(hashlib.sha256(m).digest())
        if len(row) % 2:
            nxt.append(row[-1])
        row = nxt
    build, raw, bulk = [], [], []
    sha = hashlib.sha256
    blob = b"".join(messages)
    for _ in range(runs):
        t0 = time.perf_counter()
        cr = CompactRange()
        cr.extend(leaves)
        cr.root()
        build.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _ = [sha(m).digest() for m in messages]
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sha(blob).digest()
        bulk.append(time.perf_counter() - t0)
    b, r, k = _median(build), _median(raw), _median(bulk)
    return {
        "leaves": n,
        "node_hashes": len(messages),
        "build_seconds": round(b, 4),
        "leaves_per_second": round(n / b),
        "raw_hashlib_seconds": round(r, 4),
        "fraction_of_raw_hashlib": round(r / b, 3),
        "fraction_of_raw_hashlib_runs": [round(ri / bi, 3) for ri, bi in zip(raw, build, strict=True)],
        "leaves_per_second_runs": [round(n / bi) for bi in build],
        "bulk_hashlib_seconds": round(k, 4),
        "fraction_of_bulk_hashlib": round(k / b, 3),
    }


def bench_memory(max_exp: int) -> list[dict[str, int]]:
    out = []
    cr = CompactRange()
    filler = hashlib.sha256(b"x").digest()
    for exp in range(3, max_exp + 1):
        target = 10**exp
        cr.extend(filler for _ in range(target - cr.size))
        out.append({"size": cr.size, "frontier_hashes": len(cr.hashes), "serialised_bytes": len(cr.to_bytes())})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", help="also write the results to this file")
    parser.add_argument("--quick", action="store_true", help="smaller trees and fewer runs")
    args = parser.parse_args()
    runs = 3 if args.quick else 5
    results = {
        "python": sys.version.split()[0],
        "quick": args.quick,
        "runs": runs,
        "inclusion": bench_inclusion(100_000 if args.quick else 1_000_000, 500 if args.quick else 2000, runs),
        "build": bench_build(100_000 if args.quick else 1_000_000, runs),
        "compact_range_memory": bench_memory(5 if args.quick else 6),
    }
    results["targets"] = {
        "verify_under_50us": results["inclusion"]["verify_median_us"] < 50,
        "build_at_least_half_raw_hashlib": results["build"]["fraction_of_raw_hashlib"] >= 0.5,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
