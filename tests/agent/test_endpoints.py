"""Several control-plane endpoints: parsing, which one each session dials, and the server's max-age close."""

from __future__ import annotations

import collections
import random
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from agent.endpoints import EndpointPicker, parse_endpoints
from agent.stream import ended_at_max_age

ENDPOINTS = ("10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051")


class TestParseEndpoints:
    def test_success(self) -> None:
        """Repeated and comma-separated values give every endpoint once, in order."""
        assert parse_endpoints(["a:1,b:2", " c:3 ", "a:1"]) == ("a:1", "b:2", "c:3")

    def test_fail(self) -> None:
        """An entry without a port is refused, naming it."""
        with pytest.raises(ValueError, match="b"):
            parse_endpoints(["a:1,b"])

    def test_empty(self) -> None:
        """No endpoint at all is refused."""
        with pytest.raises(ValueError, match="at least one"):
            parse_endpoints([" , "])


class TestEndpointPicker:
    def test_spreads(self) -> None:
        """Over many sessions every endpoint is dialled about as often as the others."""
        picker = EndpointPicker(ENDPOINTS, random.Random(1))
        counts = collections.Counter(picker.pick() for _ in range(3000))
        assert all(900 < counts[i] < 1100 for i in range(len(ENDPOINTS)))

    def test_failed_moves_on(self) -> None:
        """After a failed connect the next session dials a different endpoint."""
        picker = EndpointPicker(ENDPOINTS, random.Random(2))
        for _ in range(200):
            first = picker.pick()
            picker.failed()
            assert picker.pick() != first

    def test_single(self) -> None:
        """With one endpoint a failure dials it again."""
        picker = EndpointPicker(ENDPOINTS[:1])
        picker.failed()
        assert picker.pick() == 0


async def test_a_server_max_age_close_is_recognised() -> None:
    """A stream that gRPC ends at the server's max connection age reads as such (this gRPC's wording)."""
    server = grpc.aio.server(options=[("grpc.max_connection_age_ms", 500), ("grpc.max_connection_age_grace_ms", 200)])
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in watch:
                    pass
    finally:
        await server.stop(0)
    assert ended_at_max_age(caught.value)


def test_other_unavailable_errors_are_not_max_age() -> None:
    """An UNAVAILABLE for another reason (a draining server) is not a max-age close."""
    error = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                 details="the server is shutting down; reconnect")
    assert not ended_at_max_age(error)


def test_run_refuses_a_malformed_control_plane_in_one_line(tmp_path: Path) -> None:
    """`lz-agent run --control-plane a:1,b` exits 2 with one line naming the option and the bad entry."""
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--control-plane", "a:1,b", "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()), "LZ_AGENT_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "--control-plane" in done.stderr and "'b'" in done.stderr
