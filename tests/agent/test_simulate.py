"""``lz-agent simulate`` against the real stack: a small fleet enrolls, streams and shows up as assets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from agent.enroll import SECRET_ENV, Identity
from agent.simulate import save_identities
from services.kit import certs
from services.kit.auth import Role

pytestmark = pytest.mark.slow


def test_twenty_simulated_hosts_stream_and_appear_as_assets(new_tenant: Any) -> None:
    """Twenty simulated hosts enroll, stay connected, get heartbeats acked and are listed as the tenant's assets."""
    with grpc.insecure_channel(new_tenant.stack.addresses["assets"]) as channel:
        secret = assets_pb2_grpc.AssetServiceStub(channel).CreateTenant(
            assets_pb2.CreateTenantRequest(tenant_id=new_tenant.tenant, display_name="sim"),
            metadata=[("authorization", f"Bearer {new_tenant.stack.bootstrap_token}")],
            timeout=30,
        ).enrollment_secret
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "--count", "20", "--control-plane",
         new_tenant.stack.addresses["ingest"], "--tenant", new_tenant.tenant,
         "--interval", "1", "--duration", "6", "--report-every", "2", "--seed", "7"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, SECRET_ENV: secret},
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["enrolled"], summary["max_connected"]) == (20, 20)
    assert summary["heartbeats_acked"] >= 20 * 3
    assert summary["ack_latency_ms"]["p99"] is not None
    assert "simulate t=" in done.stderr
    with grpc.insecure_channel(new_tenant.stack.addresses["assets"]) as channel:
        listed = assets_pb2_grpc.AssetServiceStub(channel).ListAssets(
            assets_pb2.ListAssetsRequest(page_size=100), metadata=new_tenant.metadata(Role.VIEWER), timeout=30
        )
    hostnames = sorted(a.hostname for a in listed.assets)
    assert len(hostnames) == 20
    assert all(name.endswith(f"-{i:05d}") for i, name in enumerate(sorted(hostnames, key=lambda n: n[-5:])))


class _Acker(ingest_pb2_grpc.IngestServiceServicer):
    """Welcomes any hello and acks every heartbeat: enough to show that a stream got through."""

    def Connect(self, request_iterator: Iterator[ingest_pb2.ConnectRequest], context: Any) -> Iterator[Any]:
        for request in request_iterator:
            if request.HasField("hello"):
                yield ingest_pb2.ConnectResponse(welcome=ingest_pb2.Welcome(heartbeat_interval_seconds=1))
            elif request.HasField("heartbeat"):
                yield ingest_pb2.ConnectResponse(ack=ingest_pb2.Ack(acked_seq=request.heartbeat.seq))


@pytest.fixture
def tls_acker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS-only Connect server with the local CA's ingest certificate; yields its address and the CA file."""
    certs.generate(tmp_path, services=("ingest",))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(_Acker(), server)
    credentials = grpc.ssl_server_credentials(
        [((tmp_path / "ingest.key").read_bytes(), (tmp_path / "ingest.crt").read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}", tmp_path / "ca.crt"
    finally:
        server.stop(0)


def _simulate_against(address: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    identities = tmp_path / "identities.jsonl"
    save_identities(identities, [Identity("t-tls", f"a-tls-{i}", "c" * 43, address) for i in range(3)])
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "--count", "3", "--control-plane", address,
         "--tenant", "t-tls", "--identities", str(identities), "--warm", "--interval", "0.5",
         "--duration", "3", "--report-every", "1", "--first-reconnect-jitter", "0"],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **env},
    )


def test_simulated_hosts_stream_over_tls_with_the_agents_ca(tls_acker: tuple[str, Path], tmp_path: Path) -> None:
    """With the agent configuration's stream TLS and CA file, simulated hosts stream to a TLS-only endpoint."""
    address, ca_file = tls_acker
    done = _simulate_against(address, tmp_path, {"LZ_AGENT_STREAM_TLS": "true",
                                                 "LZ_AGENT_STREAM_CA_FILE": str(ca_file)})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["max_connected"] == 3
    assert summary["heartbeats_acked"] >= 3


def test_simulated_hosts_do_not_reach_a_tls_endpoint_in_plaintext(tls_acker: tuple[str, Path],
                                                                  tmp_path: Path) -> None:
    """Without stream TLS configured, simulated hosts fail to connect to a TLS-only endpoint and say why."""
    address, _ = tls_acker
    done = _simulate_against(address, tmp_path, {"LZ_AGENT_STREAM_TLS": "false"})
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["heartbeats_acked"] == 0
    assert summary["connect_errors"].get("UNAVAILABLE", 0) >= 3
