"""Fleet benchmark: N agent streams at a 5 s heartbeat against one ingest process, next to a bare echo stream.

    python benchmarks/bench_fleet.py --json OUT --agents N [--quick] [--duration S]

Starts the local stack (embedded AWS, every service, the risk worker), writes N agent credentials,
then drives N Connect streams from client processes. The same load runs against a bare grpc.aio echo
server (same proto, no auth, no queue) in the same run. Reports heartbeats/s, p50/p99 ack latency,
server CPU per heartbeat (from /proc/<pid>/stat), memory per stream (RSS delta / N), the ratio to the
echo server, and DynamoDB write units per unchanged heartbeat (measured over the run, plus the
steady-state model from the coalescing intervals).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifecyclezero.v1 import ingest_pb2, ingest_pb2_grpc

from services.ingest import keys, store
from services.kit import auth, aws, embedded
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings

TICK = os.sysconf("SC_CLK_TCK")
DIGEST = "ab" * 32


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------------------------------ echo server


class _Echo(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]
    async def Connect(self, requests: Any, context: Any) -> Any:  # noqa: N802
        async for request in requests:
            if request.WhichOneof("message") == "hello":
                yield ingest_pb2.ConnectResponse(welcome=ingest_pb2.Welcome(heartbeat_interval_seconds=5))
            elif request.WhichOneof("message") == "heartbeat":
                yield ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=request.heartbeat.seq))


def _echo_main(port: int) -> None:
    async def serve() -> None:
        server = grpc.aio.server()
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(_Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


# ------------------------------------------------------------------------------------------- clients


async def _one_agent(address: str, tenant: str, asset: str, credential: str, stop_at: float, start_at: float,
                     interval: float, latencies: list[float], failures: list[str]) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    async with grpc.aio.insecure_channel(address, options=[("grpc.keepalive_time_ms", 30_000)]) as channel:
        call = ingest_pb2_grpc.IngestServiceStub(channel).Connect()
        await call.write(ingest_pb2.ConnectRequest(hello=ingest_pb2.Hello(
            tenant_id=tenant, asset_id=asset, agent_credential=credential)))
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("message") != "welcome":
            failures.append(f"no welcome: {await call.code()}")
            return
        seq = first.welcome.acked_seq
        next_at = time.monotonic()
        while next_at < stop_at:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            seq += 1
            hb = ingest_pb2.Heartbeat(seq=seq, inventory_digest=DIGEST)
            hb.observe_time.FromDatetime(dt.datetime.now(dt.UTC))
            sent = time.perf_counter()
            await call.write(ingest_pb2.ConnectRequest(heartbeat=hb))
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    failures.append(f"stream ended: {await call.code()}")
                    return
                if reply.WhichOneof("message") == "ack" and reply.ack.acked_seq >= seq:
                    latencies.append(time.perf_counter() - sent)
                    break
            next_at += interval
        await call.done_writing()


def _client_main(address: str, agents: list[tuple[str, str, str]], ramp: float, duration: float,
                 interval: float, out: Any) -> None:
    async def run() -> tuple[list[float], list[str]]:
        latencies: list[float] = []
        failures: list[str] = []
        now = time.monotonic()
        stop_at = now + ramp + duration
        tasks = [
            _one_agent(address, t, a, c, stop_at, now + ramp * i / max(1, len(agents)), interval, latencies, failures)
            for i, (t, a, c) in enumerate(agents)
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures += [repr(r) for r in results if isinstance(r, BaseException)]
        return latencies, failures

    out.put(asyncio.run(run()))


def drive(address: str, agents: list[tuple[str, str, str]], processes: int, ramp: float, duration: float,
          interval: float, server_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    chunks = [agents[i::processes] for i in range(processes)]
    rss_before = rss_bytes(server_pid)
    procs = [ctx.Process(target=_client_main, args=(address, chunk, ramp, duration, interval, queue))
             for chunk in chunks if chunk]
    for proc in procs:
        proc.start()
    time.sleep(ramp + 1.0)  # every stream open
    rss_open = rss_bytes(server_pid)
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    latencies: list[float] = []
    failures: list[str] = []
    for _ in procs:
        lat, fail = queue.get()
        latencies += lat
        failures += fail
    cpu1, t1 = cpu_seconds(server_pid), time.monotonic()
    for proc in procs:
        proc.join()
    window_heartbeats = len(agents) * (t1 - t0) / interval
    latencies.sort()
    return {
        "streams": len(agents),
        "heartbeats_acked": len(latencies),
        "heartbeats_per_second": round(len(latencies) / (ramp + duration), 1),
        "ack_p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
        "ack_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        "cpu_ms_per_heartbeat": round(1000 * (cpu1 - cpu0) / max(1.0, window_heartbeats), 3),
        "memory_kib_per_stream": round((rss_open - rss_before) / 1024 / max(1, len(agents)), 1),
        "failures": len(failures),
        "failure_examples": sorted(set(failures))[:3],
    }


# --------------------------------------------------------------------------------------------- main


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 agents, 20 s")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)))
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.duration = min(args.agents, 200), 20.0
    ramp = min(args.interval, 5.0)

    state = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    stack = Stack(state_dir=state, extra_env={"LZ_LOG_LEVEL": "WARNING"})
    stack.start()
    echo = None
    try:
        assert stack.resources is not None
        settings = AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url)
        ddb = aws.client(settings, "dynamodb")
        tenant = f"bench-{secrets.token_hex(3)}"
        agents = []
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for i in range(args.agents):
            credential = auth.new_secret()
            store.put_agent(ddb, settings.table_name, tenant, f"a-{i:06d}", auth.sha256_hex(credential), 1, now)
            agents.append((tenant, f"a-{i:06d}", credential))
        ingest_pid = stack.procs["ingest"].pid
        ingest = drive(stack.addresses["ingest"], agents, args.clients, ramp, args.duration, args.interval,
                       ingest_pid)
        time.sleep(5)  # let the worker drain
        items, units = telemetry_write_units(ddb, settings.table_name, tenant, 10)

        echo_port = embedded.free_port()
        echo = subprocess.Popen([sys.executable, __file__, "--echo", str(echo_port)])
        time.sleep(1.5)
        baseline = drive(f"127.0.0.1:{echo_port}", agents, args.clients, ramp, args.duration, args.interval,
                         echo.pid)
    finally:
        if echo is not None:
            echo.terminate()
        stack.stop()

    heartbeats = max(1, ingest["heartbeats_acked"])
    run_seconds = ramp + args.duration
    model = {
        "keepalive_record_units": 2 * args.interval / 300.0,
        "durable_seq_units": 1 * args.interval / 120.0,
        "last_seen_units_via_assets": 3 * args.interval / 180.0,
    }
    result = {
        "agents": args.agents,
        "interval_seconds": args.interval,
        "duration_seconds": run_seconds,
        "ingest": ingest,
        "echo": baseline,
        "ratio_cpu_per_heartbeat": round(ingest["cpu_ms_per_heartbeat"] / max(1e-9, baseline["cpu_ms_per_heartbeat"]),
                                         2),
        "ratio_p99": round((ingest["ack_p99_ms"] or 0) / max(1e-9, baseline["ack_p99_ms"] or 1e-9), 2),
        "dynamodb_unchanged_heartbeat": {
            "telemetry_items_written": items,
            "telemetry_write_units_measured": units,
            "durable_seq_writes_estimated": args.agents * int(run_seconds // 120 + 1),
            "measured_units_per_heartbeat_over_run": round(
                (units + args.agents * int(run_seconds // 120 + 1)) / heartbeats, 3),
            "note": "a short run is dominated by the first keepalive record and first seq write per asset; "
                    "the steady state is the model",
            "steady_state_model_units_per_heartbeat": round(sum(model.values()), 3),
            "steady_state_model": {k: round(v, 4) for k, v in model.items()},
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo":
        _echo_main(int(sys.argv[2]))
    else:
        raise SystemExit(main())
