"""`make up`: every service starts as its own process, reports SERVING, and stops on Ctrl-C; a start that
fails leaves nothing running."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.kit import devstack, embedded
from services.kit.devstack import PROCESSES
from services.kit.table import table_definition


def _read_until_ready(proc: subprocess.Popen[str], timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "LifecycleZero is up" in line:
            return lines
    raise AssertionError(f"no ready line within {timeout}s: {''.join(lines)}")


def test_up_starts_every_service_and_stops_cleanly(tmp_path: Path) -> None:
    """The stack prints a ready line within 60 s; each service is SERVING and reflects; Ctrl-C stops all."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.kit.devstack", "up", "--state-dir", str(tmp_path), "--any-ports"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _read_until_ready(proc, 60)
        state = json.loads((tmp_path / "stack.json").read_text())
        assert (tmp_path / "stack.json").stat().st_mode & 0o077 == 0
        for name, _, service in PROCESSES:
            with grpc.insecure_channel(state["endpoints"][name]) as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert health.status == health_pb2.HealthCheckResponse.SERVING, name
                replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
                names = [s.name for r in replies for s in r.list_services_response.service]
                assert service in names
        pids = state["pids"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        for pid in pids.values():
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        assert not (tmp_path / "stack.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_with_ingest_replicas_lists_and_serves_each(tmp_path: Path) -> None:
    """`up --ingest-replicas 2` serves two ingest processes, listed in endpoints.ingest_replicas, first as ingest."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.kit.devstack", "up", "--state-dir", str(tmp_path), "--any-ports",
         "--ingest-replicas", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _read_until_ready(proc, 90)
        endpoints = json.loads((tmp_path / "stack.json").read_text())["endpoints"]
        replicas = endpoints["ingest_replicas"].split(",")
        assert replicas == [endpoints["ingest"], endpoints["ingest-2"]]
        for address in replicas:
            with grpc.insecure_channel(address) as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="lifecyclezero.v1.IngestService"), timeout=5)
                assert health.status == health_pb2.HealthCheckResponse.SERVING, address
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_refuses_a_replica_count_out_of_range(tmp_path: Path) -> None:
    """`--ingest-replicas 0` is a usage error (exit 2) with one line naming the option."""
    done = subprocess.run([sys.executable, "-m", "services.kit.devstack", "up", "--state-dir", str(tmp_path),
                           "--ingest-replicas", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--ingest-replicas" in done.stderr


def test_embedded_table_matches_the_definition(ddb: object, embedded_aws: object) -> None:
    """The embedded stack's table has exactly the keys, indexes and stream of the one definition."""
    described = ddb.describe_table(TableName="lifecyclezero")["Table"]  # type: ignore[attr-defined]
    wanted = table_definition("lifecyclezero")
    assert described["KeySchema"] == wanted["KeySchema"]
    assert sorted(i["IndexName"] for i in described["GlobalSecondaryIndexes"]) == ["GSI1", "GSI2"]
    for index in described["GlobalSecondaryIndexes"]:
        spec = next(w for w in wanted["GlobalSecondaryIndexes"] if w["IndexName"] == index["IndexName"])
        assert index["KeySchema"] == spec["KeySchema"]
    assert described["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    ttl = ddb.describe_time_to_live(TableName="lifecyclezero")["TimeToLiveDescription"]  # type: ignore[attr-defined]
    assert ttl["AttributeName"] == "expires_at"


def test_a_service_that_loses_its_port_starts_again_on_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When another process takes a port between its pick and the service binding it, the stack starts on new ports."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    held = taken.getsockname()[1]
    picks: list[int] = []

    def pick(preferred: int, fixed: bool) -> int:
        picks.append(preferred)
        return held if picks.count(50051) == 1 and preferred == 50051 else embedded.free_port()

    monkeypatch.setattr(devstack, "_pick", pick)
    stack = devstack.Stack(state_dir=tmp_path)
    try:
        stack.start()
        assert picks.count(50051) == 2
        assert stack.addresses["ledger"] != f"127.0.0.1:{held}"
        assert all(proc.poll() is None for proc in stack.procs.values())
    finally:
        stack.stop()
        taken.close()


def test_a_stack_that_cannot_start_leaves_nothing_running(tmp_path: Path) -> None:
    """A service that refuses its configuration fails the start, and every process started before is stopped."""
    stack = devstack.Stack(state_dir=tmp_path, process_env={"assets": {"LZ_MAX_MESSAGE_BYTES": "-1"}})
    with pytest.raises(RuntimeError, match="assets exited with code 2"):
        stack.start()
    assert stack.aws_proc is not None and stack.aws_proc.poll() is not None
    assert stack.procs and all(proc.poll() is not None for proc in stack.procs.values())
