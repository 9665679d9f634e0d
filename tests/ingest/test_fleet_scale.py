"""A fleet of simulated agents of which some vanish: exactly those are offline, and heartbeats cost no write.

One ingest process of its own sends its DynamoDB calls through a loopback proxy that counts every write
request by what it writes (SQS goes straight to the endpoint), so the test counts the writes ingest
makes while the fleet heartbeats, and when the vanished agents' streams end. `LZ_FLEET_TEST_SIZE`
(default 5,000, the issue's size; a tenth of it vanishes) sets the size.

What bounds it here is the embedded endpoint, which handles DynamoDB requests one at a time: an open write
costs it several ms of CPU (moto validates every update expression), against ingest's few. So the test
waits on the open and close writes it counts rather than reading 5,000 agent items again and again, the
vanished hosts go at SIGUSR1 once the steady window is measured (not after a guessed delay), the heartbeat
interval keeps 1,000 agents' rate, and the processes are killed at the end (a drain writes thousands of
durable seqs and closes nothing here checks). Each phase prints its wall and CPU seconds per process.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import grpc
import pytest
from grpc_health.v1 import health_pb2
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc

from agent.simulate import save_identities
from benchmarks.bench_fleet import cpu_seconds, identities
from services.ingest import health, presence, store
from services.kit import aws, embedded
from services.kit.auth import Role
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from services.kit.tokens import store as token_store
from tests.conftest import running
from tests.faults.helpers import health as service_health
from tests.faults.helpers import until

SIZE = int(os.environ.get("LZ_FLEET_TEST_SIZE", "5000"))
VANISH = SIZE // 10
# A heartbeat every 5 s from 1,000 agents, and as many heartbeats a second from a bigger fleet (every 25 s
# from 5,000): the endpoint and the risk worker share the 2 cores with ingest and the simulator.
INTERVAL = max(5, SIZE // 200)
# How long the whole fleet's opens may take to be written: the simulator starts its hosts over one interval,
# and the embedded endpoint handles DynamoDB requests one at a time (an open write costs it several ms of CPU).
CONNECT_SECONDS = max(120, SIZE // 10)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(CONNECT_SECONDS + 900)]
# The durable-seq write-down (which carries the lease) once per 120 heartbeats of an agent whatever the
# interval (600 s at 5 s): the writes counted per heartbeat are then the same at every size.
PERSIST = 120 * INTERVAL
REPO = Path(__file__).resolve().parents[2]
_TARGET = b"x-amz-target: dynamodb_20120810."
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


class WriteCounter:
    """A loopback HTTP/1.1 forwarder to the endpoint that counts DynamoDB write requests by what they write.

    A write is named by its operation and, for UpdateItem, the first two assignments of its update expression
    (`UpdateItem:durable_seq=:s`; `UpdateItem:conn_state=:on,conn_stream=:id` for an open,
    `UpdateItem:conn_state=:off,conn_since=:now` for a close, `...:off,conn_reason=:reason` for a sweep check).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = embedded.free_port()
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()

    def snapshot(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self.counts)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        reader = client.makefile("rb")
        with contextlib.suppress(OSError, ValueError):
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        upstream.shutdown(socket.SHUT_WR)
                        return
                    head += line
                length = next((int(h.split(b":", 1)[1]) for h in head.lower().split(b"\r\n")
                               if h.startswith(b"content-length:")), 0)
                body = reader.read(length)
                self._count(head.lower(), body)
                upstream.sendall(head + body)

    def _count(self, head: bytes, body: bytes) -> None:
        at = head.find(_TARGET)
        if at < 0:
            return
        operation = head[at + len(_TARGET):].split(b"\r\n", 1)[0].decode()
        if operation.lower() not in {w.lower() for w in _WRITES}:
            return
        name = next(w for w in _WRITES if w.lower() == operation.lower())
        if name == "UpdateItem":
            sets = str(json.loads(body).get("UpdateExpression", "")).split(" REMOVE ", 1)[0].removeprefix("SET ")
            name += ":" + ",".join(part.replace(" ", "") for part in sets.split(", ")[:2])
        with self._lock:
            self.counts[name] += 1

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def scale_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The health sweep every 5 s: nothing here waits for it, and on the embedded endpoint each sweep's due query
    # reads every agent of the tenant (DynamoDB reads only what is due).
    yield from running(Stack(state_dir=tmp_path_factory.mktemp("scale-stack"), extra_env={
        "LZ_LOG_LEVEL": "WARNING", "LZ_HEALTH_SWEEP_SECONDS": "5"}))


class Phases:
    """Wall and CPU seconds of each phase of the test, per process: to tell which one bounds the fleet's size."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.marks = [("start", time.monotonic(), self._cpu())]

    def _cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic(), self._cpu()))
        print(f"fleet {SIZE}: {self}", flush=True)  # as it goes: a phase that times out still shows the others

    def __str__(self) -> str:
        out = []
        for (_, at, cpu), (name, now, cpu_now) in itertools.pairwise(self.marks):
            used = ", ".join(f"{p} {cpu_now[p] - cpu[p]:.0f}" for p in self.pids)
            out.append(f"{name} {now - at:.0f} s (CPU s: {used})")
        return "; ".join(out)


@pytest.fixture
def counted_ingest(scale_stack: Stack, tmp_path: Path) -> Iterator[tuple[str, WriteCounter, int]]:
    """An ingest process whose DynamoDB calls go through a WriteCounter; its address, the counter and its pid."""
    assert scale_stack.resources is not None
    counter = WriteCounter(int(scale_stack.resources.endpoint_url.rsplit(":", 1)[1]))
    counter.start()
    port = embedded.free_port()
    # The ingest service token: its tenant poll and its calls to assets are those of the stack's own ingest.
    env = {**os.environ, **scale_stack.env, "LZ_PORT": str(port),
           "LZ_SERVICE_TOKEN": scale_stack.service_tokens["ingest"],
           "LZ_AWS_ENDPOINT_URL": f"http://127.0.0.1:{counter.port}",
           "LZ_SQS_ENDPOINT_URL": scale_stack.resources.endpoint_url,
           "LZ_HEARTBEAT_INTERVAL_SECONDS": str(INTERVAL), "LZ_SEQ_PERSIST_SECONDS": str(PERSIST)}
    with (tmp_path / "ingest.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        until(lambda: service_health(address, "lifecyclezero.v1.IngestService")
              == health_pb2.HealthCheckResponse.SERVING, 60, "the counted ingest serving")
        yield address, counter, proc.pid
    finally:
        # Killed: nothing is checked after the test, and a drain writes down every stream's durable seq and the
        # simulator's stop closes every stream, thousands of writes the suite would wait for.
        proc.kill()
        proc.wait(30)
        counter.stop()


def _fleet(scale_stack: Stack, tenant: str, address: str, path: Path) -> Any:
    """`SIZE` credentials written straight to the table (as the fleet benchmark does) and saved for the simulator."""
    assert scale_stack.resources is not None
    ddb = aws.client(AwsSettings(table_name=scale_stack.resources.table_name,
                                 endpoint_url=scale_stack.resources.endpoint_url), "dynamodb")
    made, rows = identities(tenant, SIZE, address)
    store.put_agents(ddb, scale_stack.resources.table_name, rows, 1,
                     dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    save_identities(path, made)
    return ddb


def _acked(report: Path) -> int:
    lines = [line for line in report.read_text().splitlines() if line.strip()] if report.exists() else []
    return int(json.loads(lines[-1])["heartbeats_acked"]) if lines else 0


def _states(ddb: Any, table: str, tenant: str) -> dict[str, set[str]]:
    """Asset ids by connection state now, read from the agents' items (empty while the endpoint is too busy)."""
    try:
        return _read_states(ddb, table, tenant)
    except botocore.exceptions.ReadTimeoutError:
        return collections.defaultdict(set)


def _read_states(ddb: Any, table: str, tenant: str) -> dict[str, set[str]]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out: dict[str, set[str]] = collections.defaultdict(set)
    after = ""
    while True:
        found, after = presence.list_connections(ddb, table, tenant, after)
        for connection in found:
            out[health.state_at(connection, now)[0].value].add(connection.asset_id)
        if not after:
            return out


def _opens(counter: WriteCounter) -> int:
    return counter.snapshot()["UpdateItem:conn_state=:on,conn_stream=:id"]


def _closes(counter: WriteCounter) -> int:
    return counter.snapshot()["UpdateItem:conn_state=:off,conn_since=:now"]


def test_vanished_agents_and_only_they_are_offline_and_heartbeats_add_no_write(
        scale_stack: Stack, counted_ingest: tuple[str, WriteCounter, int], tmp_path: Path) -> None:
    """Of a simulated fleet, exactly the vanished tenth is offline; a steady window of heartbeats adds no write."""
    address, counter, ingest_pid = counted_ingest
    assert scale_stack.resources is not None
    table = scale_stack.resources.table_name
    tenant = f"t-scale-{os.getpid()}"
    ids = tmp_path / "ids.jsonl"
    ddb = _fleet(scale_stack, tenant, address, ids)
    report = tmp_path / "report.jsonl"
    with (tmp_path / "simulate.log").open("ab") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "simulate", "--count", str(SIZE), "--control-plane", address,
             "--tenant", tenant, "--identities", str(ids), "--warm", "--interval", str(INTERVAL),
             "--report-every", "2", "--report-file", str(report), "--vanish-count", str(VANISH)],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out, stderr=subprocess.STDOUT)
    assert scale_stack.aws_proc is not None
    phases = Phases({"ingest": ingest_pid, "endpoint": scale_stack.aws_proc.pid, "simulator": sim.pid,
                     "risk worker": scale_stack.procs["risk-worker"].pid, "test and proxy": os.getpid()})
    try:
        # Counted on the way to the table (reading every agent item again and again would load the endpoint).
        until(lambda: _opens(counter) >= SIZE, CONNECT_SECONDS, "every agent's open written", every=1)
        until(lambda: len(_states(ddb, table, tenant)["online"]) == SIZE, 120, "every agent online", every=5)
        phases.mark("connected")
        before, acked_before = counter.snapshot(), _acked(report)
        # As many heartbeats as agents: every agent's heartbeat of one interval, on average.
        until(lambda: _acked(report) >= acked_before + SIZE, 6 * INTERVAL, "a heartbeat per agent acked")
        during = counter.snapshot() - before
        acked_during = _acked(report) - acked_before
        phases.mark("steady window")
        sim.send_signal(signal.SIGUSR1)
        vanished = {json.loads(line)["asset_id"] for line in ids.read_text().splitlines()[:VANISH]}
        until(lambda: _closes(counter) >= VANISH, 120, "the vanished agents' closes written", every=1)
        states = until(lambda: (s := _states(ddb, table, tenant))["offline"] == vanished and s, 120,
                       "the vanished agents offline", every=5)
        phases.mark("vanished offline")
        closes = _closes(counter)
        summary = _summary(scale_stack, ddb, tenant)
    finally:
        phases.mark(f"end ({_opens(counter)} opens, {_closes(counter)} closes written)")
        sim.kill()
        sim.wait(30)
    print(f"fleet {SIZE} (heartbeat every {INTERVAL} s), vanished {VANISH}: {acked_during} heartbeats acked in the "
          f"steady window, ingest writes then {dict(during)}; {closes} closes recorded; phases: {phases}")
    # The only writes while the fleet heartbeats are the durable-seq write-downs that existed before (now
    # carrying the lease), at most one per agent per LZ_SEQ_PERSIST_SECONDS: none per heartbeat.
    assert set(during) <= {"UpdateItem:last_seen=:now,online_until=:until", "UpdateItem:durable_seq=:s"}, dict(during)
    assert sum(during.values()) < acked_during / 20
    assert len(states["online"]) == SIZE - VANISH
    assert closes == VANISH
    assert (summary.online, summary.offline, summary.missing) == (SIZE - VANISH, VANISH, 0)


def _summary(scale_stack: Stack, ddb: Any, tenant: str) -> assets_pb2.GetFleetSummaryResponse:
    assert scale_stack.resources is not None
    token, _ = token_store.issue(ddb, scale_stack.resources.table_name, tenant, Role.VIEWER, "summary")
    with grpc.insecure_channel(scale_stack.addresses["assets"]) as channel:
        reply: assets_pb2.GetFleetSummaryResponse = assets_pb2_grpc.AssetServiceStub(channel).GetFleetSummary(
            assets_pb2.GetFleetSummaryRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=60)
    return reply
