"""Capacity model: DynamoDB write units per heartbeat and per ledger event, and the busiest key.

    python benchmarks/bench_capacity.py --json OUT [--quick]

Runs the local stack, a simulated fleet whose inventories do not change (the steady state), and a
burst of ledger appends. Every write is observed on the table's DynamoDB Stream, and its write
units are computed from the item's size with DynamoDB's rules (1 WCU per started KiB, again for each
GSI the item is projected into, twice for a transactional write), because the emulator's
ConsumedCapacity is not size-accurate.

An unchanged heartbeat writes nothing by itself; the writes it causes are periodic (a telemetry
keepalive, the agent's durable seq, the asset's last-seen), minutes apart by default. To measure them
in a short run the fleet runs with those periods shortened to `SHORT_PERIOD` seconds, and each kind
of write is then scaled back to its default period: measured, not modelled, but compressed in time.
Write units per heartbeat are those writes divided by the heartbeats acknowledged in the same
windows; the busiest partition key's write units per second are scaled linearly to the
10,000-agent target and compared with DynamoDB's 1,000 per partition. Reads are modelled from the code paths (one credential read per connect; one pending-command
query per tenant and ingest process every `LZ_COMMAND_POLL_SECONDS` while the tenant has pending
commands, every `LZ_COMMAND_IDLE_POLL_SECONDS` otherwise) and stated as a model.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, ledger_pb2, ledger_pb2_grpc

from agent.enroll import SECRET_ENV
from services.ingest.settings import StreamSettings
from services.kit import aws
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings

TARGET_AGENTS = 10_000
HEARTBEAT_SECONDS = 5.0
PARTITION_WCU_LIMIT = 1_000
# entity -> (setting that sets its period, default period in seconds)
PERIODIC_WRITES = {
    "telemetry": ("LZ_TELEMETRY_KEEPALIVE_SECONDS", 300.0),
    "agent": ("LZ_SEQ_PERSIST_SECONDS", 120.0),
    "asset": ("LZ_LAST_SEEN_SECONDS", 180.0),
}
_LINE = re.compile(r"simulate t=(\d+)s connected (\d+)/(\d+) heartbeats sent (\d+) acked (\d+)")


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value by DynamoDB's item size rules."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(str(inner).lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in inner)
    return 0


def item_size(image: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in image.items())


def write_units(image: dict[str, Any], transactional: bool) -> float:
    units = math.ceil(max(item_size(image), 1) / 1024)
    indexes = sum(1 for gsi in ("GSI1PK", "GSI2PK") if gsi in image)
    return float(units * (1 + indexes) * (2 if transactional else 1))


def entity(pk: str, sk: str) -> str:
    """A coarse name for an item's kind, from its keys, for the breakdown."""
    if "#TELEMETRY#" in pk:
        return "telemetry"
    if pk.endswith("#LEDGER"):
        return "ledger"
    if pk.endswith("#SEAL"):
        return "checkpoint"
    return sk.split("#", 1)[0].lower() or "other"


class StreamWatcher:
    """Reads every record of the table's stream from now on, in a thread, and gives each written item's image.

    The stream carries keys only (the sealer needs no more), so the watcher reads each written item
    back (BatchGetItem, as soon as its record arrives) and attaches it as the record's `NewImage`.
    """

    def __init__(self, settings: AwsSettings) -> None:
        self.ddb = aws.client(settings, "dynamodb")
        self.table = settings.table_name
        self.streams = aws.client(settings, "dynamodbstreams")
        self.arn = self.ddb.describe_table(TableName=settings.table_name)["Table"]["LatestStreamArn"]
        self.records: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()
        shards = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self.iterators = [
            self.streams.get_shard_iterator(StreamArn=self.arn, ShardId=s["ShardId"],
                                            ShardIteratorType="LATEST")["ShardIterator"]
            for s in shards
        ]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            fresh = []
            for iterator in self.iterators:
                got = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                now = time.monotonic()
                self._attach_images(got.get("Records", []))
                self.records.extend((now, r) for r in got.get("Records", []))
                fresh.append(got.get("NextShardIterator") or iterator)
            self.iterators = fresh
            time.sleep(0.2)

    def _attach_images(self, records: list[dict[str, Any]]) -> None:
        written = [r for r in records if r.get("eventName") in ("INSERT", "MODIFY")]
        keys = {_key_of(r["dynamodb"]["Keys"]): r["dynamodb"]["Keys"] for r in written}
        images: dict[tuple[str, str], dict[str, Any]] = {}
        pending = list(keys.values())
        while pending:
            chunk, pending = pending[:100], pending[100:]
            got = self.ddb.batch_get_item(RequestItems={self.table: {"Keys": chunk}})
            for item in got["Responses"].get(self.table, []):
                images[_key_of(item)] = item
            pending.extend(got.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", []))
        for record in written:
            record["dynamodb"]["NewImage"] = images.get(_key_of(record["dynamodb"]["Keys"]), {})

    def close(self) -> list[tuple[float, dict[str, Any]]]:
        self.stop.set()
        self.thread.join(5)
        return self.records


def _key_of(item: dict[str, Any]) -> tuple[str, str]:
    return item["PK"]["S"], item["SK"]["S"]


def summarise(records: list[tuple[float, dict[str, Any]]], start: float, end: float,
              transactional: set[str], scale: dict[str, float] | None = None) -> tuple[Counter[str], dict[str, float]]:
    """Write units by entity and by partition key over [start, end], each entity times its scale."""
    scale = scale or {}
    by_entity: Counter[str] = Counter()
    by_pk: dict[str, float] = defaultdict(float)
    for seen, record in records:
        if not start <= seen <= end or record.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        image = record["dynamodb"].get("NewImage", {})
        pk, sk = image.get("PK", {}).get("S", ""), image.get("SK", {}).get("S", "")
        kind = entity(pk, sk)
        units = write_units(image, kind in transactional) * scale.get(kind, 1.0)
        by_entity[kind] += units
        by_pk[pk] += units
    return by_entity, by_pk


def fleet_windows(stack: Stack, settings: AwsSettings, tenant: str, secret: str, agents: int,
                  warmup: float, windows: int, window_seconds: float, short_period: float) -> dict[str, Any]:
    watcher = StreamWatcher(settings)
    duration = warmup + windows * window_seconds + 3
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "simulate", "--count", str(agents), "--control-plane",
         stack.addresses["ingest"], "--tenant", tenant, "--interval", str(HEARTBEAT_SECONDS),
         "--duration", str(duration), "--change-probability", "0", "--report-every", "1", "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, SECRET_ENV: secret},
    )
    acked: list[tuple[float, int, int]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        match = _LINE.search(line)
        if match:
            acked.append((time.monotonic(), int(match.group(2)), int(match.group(5))))
    proc.wait()
    records = watcher.close()
    first_full = next((t for t, connected, _ in acked if connected >= agents), None)
    if first_full is None:
        return {"error": f"only {max((c for _, c, _ in acked), default=0)}/{agents} agents connected"}
    results = []
    busiest: list[float] = []
    busiest_keys: Counter[str] = Counter()
    breakdown: Counter[str] = Counter()
    for k in range(windows):
        start = first_full + warmup + k * window_seconds
        end = start + window_seconds
        inside = [(t, a) for t, _, a in acked if start <= t <= end]
        if len(inside) < 2:
            continue
        heartbeats = inside[-1][1] - inside[0][1]
        span = inside[-1][0] - inside[0][0]
        scale = {kind: short_period / default for kind, (_, default) in PERIODIC_WRITES.items()}
        by_entity, by_pk = summarise(records, inside[0][0], inside[-1][0], transactional={"ledger"}, scale=scale)
        total = sum(by_entity.values())
        breakdown.update(by_entity)
        results.append(total / heartbeats if heartbeats else float("nan"))
        if by_pk and span > 0:
            key, units = max(by_pk.items(), key=lambda kv: kv[1])
            busiest.append(units / span)
            busiest_keys[key.replace(f"TENANT#{tenant}", "TENANT#<t>")] += 1
    if not results:
        return {"error": "no complete measurement window"}
    scale = TARGET_AGENTS / agents
    busiest_at_target = [b * scale for b in busiest]
    return {
        "agents": agents,
        "windows": len(results),
        "window_seconds": window_seconds,
        "short_period_seconds": short_period,
        "default_periods_seconds": {kind: default for kind, (_, default) in PERIODIC_WRITES.items()},
        "wcu_per_heartbeat": {"median": statistics.median(results), "min": min(results), "max": max(results),
                              "runs": results},
        "wcu_by_entity_total": dict(breakdown),
        "busiest_key_wcu_per_s_at_10k": {"median": statistics.median(busiest_at_target) if busiest_at_target
                                         else 0.0,
                                         "min": min(busiest_at_target, default=0.0),
                                         "max": max(busiest_at_target, default=0.0)},
        "busiest_key": busiest_keys.most_common(1)[0][0] if busiest_keys else "",
        "partition_limit_wcu_per_s": PARTITION_WCU_LIMIT,
        "heartbeats_per_s_at_10k": TARGET_AGENTS / HEARTBEAT_SECONDS,
    }


def ledger_units(stack: Stack, settings: AwsSettings, token: str, events: int) -> dict[str, Any]:
    watcher = StreamWatcher(settings)
    start = time.monotonic()
    with grpc.insecure_channel(stack.addresses["ledger"]) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        md = [("authorization", f"Bearer {token}")]
        per_call = 10
        for call in range(events // per_call):
            stub.AppendEvents(ledger_pb2.AppendEventsRequest(
                request_id=f"cap-{call}",
                events=[ledger_pb2.EventInput(actor="bench", action="asset.isolate.requested",
                                              subject=f"asset:host-{call % 50}",
                                              payload={"justification": "capacity model " * 4, "n": i})
                        for i in range(per_call)]), metadata=md, timeout=30)
    time.sleep(1.5)
    end = time.monotonic()
    records = watcher.close()
    by_entity, _ = summarise(records, start, end, transactional={"ledger"})
    ledger_records = [r for t, r in records if start <= t <= end
                      and r["dynamodb"].get("NewImage", {}).get("PK", {}).get("S", "").endswith("#LEDGER")]
    sizes = [item_size(r["dynamodb"]["NewImage"]) for r in ledger_records
             if "EVENT#" in r["dynamodb"]["NewImage"].get("SK", {}).get("S", "")]
    return {
        "events": events,
        "wcu_per_event": by_entity.get("ledger", 0.0) / events,
        "event_item_bytes_median": statistics.median(sizes) if sizes else None,
        "wcu_by_entity_total": dict(by_entity),
        "note": "ledger writes are transactional (group commit): 2 WCU per started KiB, again for GSI1 "
                "when the subject is an asset; request-id markers included",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    agents, windows, window_seconds, events = (60, 3, 12.0, 100) if args.quick else (300, 3, 30.0, 500)
    short_period = window_seconds / 2
    with tempfile.TemporaryDirectory() as tmp:
        periods = {setting: str(short_period) for setting, _ in PERIODIC_WRITES.values()}
        stack = Stack(state_dir=Path(tmp), extra_env=periods)
        stack.start()
        try:
            assert stack.resources is not None
            settings = AwsSettings(table_name=stack.resources.table_name,
                                   endpoint_url=stack.resources.endpoint_url)
            with grpc.insecure_channel(stack.addresses["assets"]) as channel:
                created = assets_pb2_grpc.AssetServiceStub(channel).CreateTenant(
                    assets_pb2.CreateTenantRequest(tenant_id="capacity", display_name="capacity model",
                                                   request_id="capacity"),
                    metadata=[("authorization", f"Bearer {stack.bootstrap_token}")], timeout=30)
            fleet = fleet_windows(stack, settings, "capacity", created.enrollment_secret, agents,
                                  warmup=HEARTBEAT_SECONDS * 2 + short_period, windows=windows,
                                  window_seconds=window_seconds, short_period=short_period)
            ledger = ledger_units(stack, settings, created.admin_token, events)
        finally:
            stack.stop()
    busy_poll, idle_poll = StreamSettings.command_poll_seconds, StreamSettings.command_idle_poll_seconds
    heartbeats_per_s = TARGET_AGENTS / HEARTBEAT_SECONDS
    reads_model = {
        "reads_per_connect": 1,
        "pending_command_queries_per_tenant_per_ingest_per_s": {"with_pending_commands": round(1 / busy_poll, 4),
                                                                "idle": round(1 / idle_poll, 4)},
        # An eventually consistent query of under 4 KiB costs half a read unit.
        "rcu_per_heartbeat_steady_at_10k_one_tenant": {"with_pending_commands": round(0.5 / busy_poll / heartbeats_per_s, 7),
                                                       "idle": round(0.5 / idle_poll / heartbeats_per_s, 7)},
        "note": "model from the code paths: heartbeats themselves read nothing",
    }
    result = {"method": "size-based write units from DynamoDB Stream records, per measurement window",
              "fleet": fleet, "ledger": ledger, "reads": reads_model}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
