"""Isolation latency: IsolateAsset -> the agent's confirmation recorded, with a connected fleet.

    python benchmarks/bench_isolation.py --json OUT [--quick] [--agents N] [--isolations M] [--bursts 1,10,50,50,500]
        [--ingest-replicas R]

The local stack starts; a tenant is made through AssetService.CreateTenant; `lz-agent simulate` (dry-run
executor, `--warm`) enrolls N hosts through IngestService.Enroll (enrollment throughput is reported
from the time the identities file took to appear) and keeps their streams open. Then M operator
IsolateAsset calls go one after another to M distinct assets spread over the fleet; each latency runs
from the call to the moment GetAsset (polled every 5 ms) shows ASSET_STATUS_ISOLATED, i.e. the agent's
CommandResult is recorded: assets -> nudge (DeliverCommand) -> the stream -> the agent applies (dry run)
-> its result -> ingest -> RecordCommandResult. A heartbeat interval is 5 s, so anything near it means
the nudge did not work; the target is p99 < 1 s. One run of M isolations (`method` in the JSON).

With `--ingest-replicas R` the stack runs R ingest processes, the simulated hosts spread over them
(each session picks one of the R addresses) and assets nudges the first only, so about (R-1)/R of the
orders are forwarded to the replica holding the stream (`make bench` runs R = 1 and R = 3 in the same
run: `isolation` and `isolation-replicas`). The JSON counts each order's delivery path from assets'
log (`delivery_paths`). Routing adds no write per heartbeat: the holder's address rides on the
stream-open write (tests/ingest/test_fleet_scale.py counts the writes of a heartbeating fleet).

Orders start once the fleet is in its steady state: ingest has written every connected agent's online
state (it writes the opens in the background, a few at a time), the heartbeat queue is nearly empty,
and at most 1 % of the assets were written in each of two seconds in a row (the risk worker's
first-sight writes, a last-seen update per new asset, are done).

Then bursts: for each size B, B operator IsolateAsset calls to B fresh assets of the one tenant start
at once (B threads), each from a quiet stack: the orders and results before it have their custody events
chained and sealed (`_wait_quiet`; a burst landing on the previous one's chaining and seal would measure
the two together). Per burst: the RPC latency of each call, order -> ISOLATED for each asset (one
poller reads the waiting assets' status from the table every 20 ms, or every 0.8 ms per waiting asset
when more than 25 wait, so a figure is at most that much late plus one read) and the failures (any RPC
error, or not ISOLATED within --timeout). A size given more than once (50, five times by default) is
reported as one figure: failures summed, and each latency the median of its bursts' values, with every
burst's value beside it (`p99_runs`): a burst's p99 comes from its own 50 calls, and one busy moment of
this shared machine moves it by a hundred milliseconds. The targets: 50 at once with 0 failures, RPC
p99 < 250 ms and order -> ISOLATED p99 < 1 s; 500 at once with 0 failures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from agent.enroll import SECRET_ENV
from agent.simulate import load_identities
from services.assets import keys
from services.assets.domain import Status
from services.ingest import keys as ingest_keys
from services.ingest.health import ONLINE
from services.kit import aws
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from services.ledger import seals
from services.ledger import store as ledger_store
from services.ledger.outbox import keys as outbox_keys
from services.ledger.outbox import store as outbox_store

REPO = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))], 2)


def _connected(report: Path) -> int:
    if not report.exists():
        return 0
    lines = [line for line in report.read_text().splitlines() if line.strip()]
    return int(json.loads(lines[-1])["connected"]) if lines else 0


def _queue_depth(stack: Stack) -> int:
    assert stack.resources is not None
    settings = AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url)
    attrs = aws.client(settings, "sqs").get_queue_attributes(
        QueueUrl=stack.resources.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _delivery_paths(stack: Stack) -> dict[str, int]:
    """How many nudges each delivery path answered (assets logs every answer)."""
    paths = dict.fromkeys(("DELIVERY_PATH_LOCAL", "DELIVERY_PATH_FORWARDED", "DELIVERY_PATH_NOT_HELD"), 0)
    for line in stack.log_path("assets").read_text(errors="replace").splitlines():
        if line.startswith("{") and '"nudge answered"' in line:
            path = json.loads(line).get("path", "")
            paths[path] = paths.get(path, 0) + 1
    return paths


def _online_recorded(ddb: Any, table: str, tenant: str) -> int:
    """How many of the tenant's agents ingest has recorded online (its open writes run in the background)."""
    query: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "PK = :pk",
        "ExpressionAttributeValues": aws.to_item({":pk": ingest_keys.agent_pk(tenant)}),
        "ProjectionExpression": "conn_state", "ConsistentRead": True}
    return sum(item.get("conn_state", {}).get("S") == ONLINE for item in aws.query_items(ddb, **query))


def _asset_updates(stub: Any, admin: list[tuple[str, str]]) -> dict[str, str]:
    """Each of the tenant's assets with its last update time (ListAssets)."""
    updated, token = dict[str, str](), ""
    while True:
        page = stub.ListAssets(assets_pb2.ListAssetsRequest(page_size=500, page_token=token), metadata=admin,
                               timeout=30)
        updated.update((asset.asset_id, asset.update_time.ToJsonString()) for asset in page.assets)
        token = page.next_page_token
        if not token:
            return updated


def _isolated_now(ddb: Any, table: str, tenant: str, waiting: set[str]) -> set[str]:
    """Which of the waiting assets are ISOLATED now: their status read from the table (consistent).

    Only the waiting assets' status attributes, 100 per BatchGetItem: the instrument reads a few bytes per
    asset it still waits for, where ListAssets(ISOLATED) every 20 ms read the tenant's whole asset range
    and took much of the one-request-at-a-time embedded endpoint away from the burst it measures.
    """
    wanted = sorted(waiting)
    found: set[str] = set()
    for start in range(0, len(wanted), 100):
        request: dict[str, Any] = {
            "Keys": [aws.to_item({"PK": keys.tenant_pk(tenant), "SK": keys.asset_sk(a)}) for a in wanted[start:start + 100]],
            "ProjectionExpression": "asset_id, #status", "ExpressionAttributeNames": {"#status": "status"},
            "ConsistentRead": True}
        while request:
            got = ddb.batch_get_item(RequestItems={table: request})
            found.update(str(i["asset_id"]["S"]) for i in got["Responses"].get(table, [])
                         if i["status"]["S"] == Status.ISOLATED.value)
            request = got.get("UnprocessedKeys", {}).get(table)
    return found


def _wait_quiet(ddb: Any, table: str, tenant: str, timeout: float = 60.0) -> float:
    """Wait until no custody record of the tenant is pending and the newest checkpoint covers its ledger;
    returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pending = (record for shard in range(outbox_keys.PENDING_SHARDS)
                   for record in outbox_store.pending_records(ddb, table, shard))
        if not any(record.tenant == tenant for record in pending):
            checkpoint = seals.latest_checkpoint_record(ddb, table, tenant)
            if checkpoint is not None and checkpoint.size >= ledger_store.read_tail(ddb, table, tenant).seq:
                break
        time.sleep(0.25)
    return time.monotonic() - started


def _poll_interval(waiting: int) -> float:
    """20 ms, longer while more than 25 assets are waiting: the poll costs the endpoint it measures about the
    same per second (one key per 0.8 ms) whatever the burst, where 500 keys every 20 ms took a tenth of it."""
    return 0.02 * max(1.0, waiting / 25)


def _burst(stub: Any, admin: list[tuple[str, str]], targets: list[str], timeout: float,
           table: tuple[Any, str, str]) -> dict[str, Any]:
    """Isolate every target at once; RPC and order -> ISOLATED latencies and failures of the burst."""
    started: dict[str, float] = {}
    call_ms: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    go = threading.Event()

    def order(asset_id: str) -> None:
        go.wait()
        t0 = time.perf_counter()
        with lock:
            started[asset_id] = t0
        try:
            stub.IsolateAsset(assets_pb2.IsolateAssetRequest(
                asset_id=asset_id, justification="isolation burst benchmark", request_id=f"burst-{asset_id}"),
                metadata=admin, timeout=60)
        except grpc.RpcError as exc:
            with lock:
                failures.append(f"{asset_id}: IsolateAsset {exc.code().name}")
            return
        with lock:
            call_ms.append((time.perf_counter() - t0) * 1000)

    isolated_ms: dict[str, float] = {}
    with ThreadPoolExecutor(len(targets)) as pool:
        calls = [pool.submit(order, a) for a in targets]
        time.sleep(0.2)  # every thread waiting on the start line
        began = time.perf_counter()
        go.set()
        waiting = set(targets)
        while waiting and time.perf_counter() - began < timeout:
            time.sleep(_poll_interval(len(waiting)))
            try:
                seen = _isolated_now(*table, waiting)
            except botocore.exceptions.ClientError:
                continue
            now = time.perf_counter()
            for asset_id in seen:
                isolated_ms[asset_id] = (now - started.get(asset_id, began)) * 1000
            waiting -= seen
        for call in calls:
            call.result()
    failed_calls = {f.split(":", 1)[0] for f in failures}
    failures += [f"{a}: not ISOLATED after {timeout:g}s" for a in sorted(waiting - failed_calls)]
    wall = time.perf_counter() - began
    return {
        "orders": len(targets),
        "failures": len(failures),
        "failure_examples": failures[:5],
        "rpc_ms": {"p50": _percentile(call_ms, 0.5), "p99": _percentile(call_ms, 0.99),
                   "max": round(max(call_ms), 2) if call_ms else None},
        "isolated_ms": {"p50": _percentile(list(isolated_ms.values()), 0.5),
                        "p99": _percentile(list(isolated_ms.values()), 0.99),
                        "max": round(max(isolated_ms.values()), 2) if isolated_ms else None},
        "confirmed": len(isolated_ms),
        "wall_seconds": round(wall, 2),
    }


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The bursts of one size as one figure: orders and failures summed, each latency the median of the bursts'
    (one burst of 50 gives its p99 from 50 calls, and this machine is noisy), every burst's value beside it."""
    measured = [run for run in runs if "skipped" not in run]
    if not measured:
        return runs[0]
    combined: dict[str, Any] = {
        "bursts": len(measured),
        "orders": sum(run["orders"] for run in measured),
        "failures": sum(run["failures"] for run in measured),
        "failure_examples": [example for run in measured for example in run["failure_examples"]][:5],
        "confirmed": sum(run["confirmed"] for run in measured),
        "wall_seconds_runs": [run["wall_seconds"] for run in measured],
        "quiet_wait_seconds_runs": [run["quiet_wait_seconds"] for run in measured],
    }
    for latency in ("rpc_ms", "isolated_ms"):
        combined[latency] = {}
        for stat in ("p50", "p99", "max"):
            values = [run[latency][stat] for run in measured if run[latency][stat] is not None]
            combined[latency][stat] = round(statistics.median(values), 2) if values else None
            combined[latency][f"{stat}_runs"] = values
    return combined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="100 agents, 20 isolations, bursts of 1, 10 and 50")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--isolations", type=int, default=100)
    parser.add_argument("--bursts", default="1,10,50,50,50,50,50,500",
                        help="burst sizes, comma-separated; a size given several times is reported as the median")
    parser.add_argument("--timeout", type=float, default=20.0, help="give up on one isolation after this long")
    parser.add_argument("--ingest-replicas", type=int, default=1, help="ingest processes; hosts spread over them")
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.isolations, args.bursts = 100, 20, "1,10,50"
    sizes = [int(n) for n in args.bursts.split(",") if n.strip()]
    if args.agents < args.isolations + sum(sizes):
        parser.error(f"--agents must be at least --isolations + the bursts ({args.isolations + sum(sizes)})")
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    stack = Stack(state_dir=workdir / "stack", extra_env={"LZ_LOG_LEVEL": "WARNING"},
                  ingest_replicas=args.ingest_replicas, process_env={"assets": {"LZ_LOG_LEVEL": "INFO"}})
    stack.start()
    sim: subprocess.Popen[bytes] | None = None
    latencies: list[float] = []
    call_ms: list[float] = []
    failures: list[str] = []
    result: dict[str, Any] = {}
    try:
        tenant = f"iso-{secrets.token_hex(3)}"
        with grpc.insecure_channel(stack.addresses["assets"]) as channel:
            reply = assets_pb2_grpc.AssetServiceStub(channel).CreateTenant(
                assets_pb2.CreateTenantRequest(tenant_id=tenant, display_name=tenant),
                metadata=[("authorization", f"Bearer {stack.bootstrap_token}")], timeout=10)
        admin = [("authorization", f"Bearer {reply.admin_token}")]
        identities_file = workdir / "identities.jsonl"
        report = workdir / "report.jsonl"
        log = open(workdir / "simulate.log", "ab")  # noqa: SIM115 - handed to the child
        started = time.monotonic()
        sim = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "simulate", "--count", str(args.agents),
             "--control-plane", stack.state()["endpoints"]["ingest_replicas"], "--tenant", tenant,
             "--identities", str(identities_file), "--warm", "--report-every", "1", "--report-file", str(report),
             "--seed", "11"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, SECRET_ENV: reply.enrollment_secret})
        while not identities_file.exists() and sim.poll() is None and time.monotonic() - started < 240:
            time.sleep(0.2)
        enroll_seconds = time.monotonic() - started
        while _connected(report) < args.agents and sim.poll() is None and time.monotonic() - started < 300:
            time.sleep(0.5)
        connect_seconds = time.monotonic() - started - enroll_seconds
        connected = _connected(report)
        assets = [i.asset_id for i in load_identities(identities_file)] if identities_file.exists() else []
        print(f"[isolation] {len(assets)} enrolled in {enroll_seconds:.1f}s, {connected} connected", flush=True)
        targets = assets[: args.isolations]
        burst_targets = assets[args.isolations:]
        assert stack.resources is not None
        table = stack.resources.table_name
        ddb = aws.client(AwsSettings(table_name=table, endpoint_url=stack.resources.endpoint_url), "dynamodb")
        # Every stream past its Welcome and first heartbeat with its online state written (ingest writes
        # the opens in the background, a few at a time), and the risk worker through its first-sight burst
        # (a last-seen update per new asset: then at most 1 % of the assets are written in each of two
        # seconds in a row), so the isolations are measured in the steady state.
        settle_started = time.monotonic()
        time.sleep(6.0)
        with grpc.insecure_channel(stack.addresses["assets"]) as channel:
            settled, before = 0, dict[str, str]()
            while settled < 2 and time.monotonic() - settle_started < 120:
                time.sleep(1.0)
                updated = _asset_updates(assets_pb2_grpc.AssetServiceStub(channel), admin)
                rewritten = sum(updated[a] != before.get(a) for a in updated)
                calm = _queue_depth(stack) <= 20 and _online_recorded(ddb, table, tenant) >= connected \
                    and rewritten <= max(1, connected // 100)
                settled, before = (settled + 1 if calm else 0), updated
        settle_seconds = time.monotonic() - settle_started
        with grpc.insecure_channel(stack.addresses["assets"]) as channel:
            stub = assets_pb2_grpc.AssetServiceStub(channel)
            for number, asset_id in enumerate(targets):
                t0 = time.perf_counter()
                try:
                    stub.IsolateAsset(assets_pb2.IsolateAssetRequest(
                        asset_id=asset_id, justification="isolation latency benchmark",
                        request_id=f"bench-{number}"), metadata=admin, timeout=30)
                except grpc.RpcError as exc:
                    failures.append(f"{asset_id}: IsolateAsset {exc.code().name}")
                    continue
                call_ms.append((time.perf_counter() - t0) * 1000)
                while True:
                    try:
                        got = stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=admin,
                                            timeout=args.timeout)
                        status = got.asset.status
                    except grpc.RpcError:
                        status = common_pb2.ASSET_STATUS_UNSPECIFIED
                    elapsed = time.perf_counter() - t0
                    if status == common_pb2.ASSET_STATUS_ISOLATED:
                        latencies.append(elapsed * 1000)
                        break
                    if elapsed > args.timeout:
                        failures.append(f"{asset_id}: {common_pb2.AssetStatus.Name(status)} after "
                                        f"{args.timeout:g}s")
                        break
                    time.sleep(0.005)
            runs: dict[str, list[dict[str, Any]]] = {}
            for size in sizes:
                if len(burst_targets) < size:
                    runs.setdefault(str(size), []).append({"skipped": f"only {len(burst_targets)} fresh assets left"})
                    continue
                chosen, burst_targets = burst_targets[:size], burst_targets[size:]
                quiet_seconds = _wait_quiet(ddb, table, tenant)
                run = _burst(stub, admin, chosen, args.timeout, (ddb, table, tenant))
                run["quiet_wait_seconds"] = round(quiet_seconds, 2)
                runs.setdefault(str(size), []).append(run)
                print(f"[isolation] burst {size}: {json.dumps(run)}", flush=True)
            bursts = {size: _combined(size_runs) for size, size_runs in runs.items()}
        result = {
            "ingest_replicas": args.ingest_replicas,
            "delivery_paths": _delivery_paths(stack),
            "method": f"one run: {len(targets)} sequential isolations of distinct assets, {connected} agents "
                      "connected (lz-agent simulate, dry-run executor); latency = IsolateAsset call to GetAsset "
                      "showing ISOLATED (polled every 5 ms)",
            "agents": args.agents,
            "connected": connected,
            "enrollment": {"hosts": len(assets), "seconds": round(enroll_seconds, 1),
                           "per_second": round(len(assets) / enroll_seconds, 1) if enroll_seconds else None,
                           "note": "wall time from starting lz-agent simulate to its identities file (64 "
                                   "concurrent Enroll calls)"},
            "connect_seconds": round(connect_seconds, 1),
            "settle_seconds": round(settle_seconds, 1),
            "isolations": len(targets),
            "confirmed": len(latencies),
            "failures": failures[:5],
            "latency_ms": {"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99),
                           "max": round(max(latencies), 2) if latencies else None,
                           "mean": round(statistics.mean(latencies), 2) if latencies else None},
            "isolate_call_ms": {"p50": _percentile(call_ms, 0.5), "p99": _percentile(call_ms, 0.99)},
            "bursts": bursts,
            "bursts_method": "B IsolateAsset calls to B fresh assets of one tenant released at once from B "
                             "threads; isolated_ms from each call's start to a poll (every 20 ms, or 0.8 ms per "
                             "waiting asset above 25: the waiting assets' status read from the table, 100 per "
                             "BatchGetItem) showing ISOLATED; each burst from a quiet stack (the custody "
                             "events before it chained and sealed: quiet_wait_seconds)",
            "target_p99_ms": 1000,
            "meets_target": bool(latencies) and not failures and (_percentile(latencies, 0.99) or 1e9) < 1000,
        }
    finally:
        if sim is not None and sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(20)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        stack.stop()
    result["elapsed_seconds"] = round(time.monotonic() - began, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
