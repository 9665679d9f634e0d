"""``lz-agent simulate`` against the real stack: a small fleet enrolls, streams and shows up as assets."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc

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
         new_tenant.stack.addresses["ingest"], "--tenant", new_tenant.tenant, "--secret", secret,
         "--interval", "1", "--duration", "6", "--report-every", "2", "--seed", "7"],
        capture_output=True, text=True, timeout=120, check=False,
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
