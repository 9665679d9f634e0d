"""A credential planted in an agent's configuration never leaves the host, end to end.

The real agent (``lz-agent`` processes) scans a temporary home whose Cursor config gives an MCP server a
GitHub token, spools heartbeats while the control plane is unreachable, then streams to the real stack
until the policy raises mcp-secret-in-config. The token's value is then looked for everywhere it could
leak: the scan's JSON, the spool and state files, the agent's output, every service log and every item
the control plane stored (stored inventories decompressed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from agent.enroll import load_identity
from services.kit import aws
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from tests.agent.agent_homes import Credentials, plant
from tests.agent.conftest import free_port
from tests.cli.cli_helpers import clean_env
from tests.faults.helpers import until
from tests.ingest.agents import IngestTenant, create_tenant

pytestmark = pytest.mark.slow


def _agent(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd()), **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _config(tmp_path: Path, home: Path) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[models]\nhomes = ["{home}"]\nroots = []\n'
        f'[agents]\nhomes = ["{home}"]\npassword_db = false\n'
        '[stream]\nheartbeat_interval = 1\nfirst_reconnect_jitter = 0\n'
    )
    return config


def _stored_text(stack: Stack) -> str:
    """Every item in the control plane's table as text, stored inventories decompressed."""
    assert stack.resources is not None
    ddb = aws.client(AwsSettings(table_name=stack.resources.table_name,
                                 endpoint_url=stack.resources.endpoint_url), "dynamodb")
    parts: list[str] = []
    for page in ddb.get_paginator("scan").paginate(TableName=stack.resources.table_name):
        for item in page["Items"]:
            parts.extend(_attribute_text(value) for value in item.values())
    return "\n".join(parts)


def _attribute_text(value: dict[str, Any]) -> str:
    if "B" in value:
        raw = bytes(value["B"])
        with contextlib.suppress(zlib.error):
            raw = zlib.decompress(raw)
        return raw.decode("utf-8", errors="replace")
    return json.dumps(value, default=str)


@dataclass(frozen=True)
class Streamed:
    """What one real agent run left behind: where to look, and the credentials planted before it."""

    credentials: Credentials
    tenant: IngestTenant
    asset_id: str
    home: Path
    config: Path
    output: str
    spooled: bytes


@pytest.fixture(scope="module")
def streamed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Streamed:
    """Enroll, spool heartbeats with the control plane unreachable, then stream until the secret alert."""
    tmp_path = tmp_path_factory.mktemp("agent-e2e")
    credentials = Credentials.generate()
    home = tmp_path / "home"
    plant("cursor", home, credentials)
    plant("claude-code", home, credentials)
    config = _config(tmp_path, home)
    tenant = create_tenant(stack)
    output = _agent(config, "enroll", "--tenant", tenant.tenant, "--control-plane", stack.addresses["ingest"],
                    env={"LZ_ENROLLMENT_SECRET": tenant.enrollment_secret})
    identity = load_identity(tmp_path / "state")
    assert identity is not None
    output += _agent(config, "run", "--duration", "12", env={"LZ_AGENT_STREAM_ADDRESS": f"127.0.0.1:{free_port()}"})
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    run = subprocess.Popen([sys.executable, "-m", "agent.cli", "--config", str(config), "run", "--duration", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    try:
        until(lambda: "mcp-secret-in-config" in _rules(stack, tenant, identity.asset_id),
              within=60, what="the mcp-secret-in-config finding")
    finally:
        run.terminate()
        output += run.communicate(timeout=30)[0]
    return Streamed(credentials, tenant, identity.asset_id, home, config, output, spooled)


def _asset(stack: Stack, tenant: IngestTenant, asset_id: str) -> common_pb2.Asset:
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        return assets_pb2_grpc.AssetServiceStub(channel).GetAsset(
            assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=tenant.admin(), timeout=10).asset


def _rules(stack: Stack, tenant: IngestTenant, asset_id: str) -> set[str]:
    return {f.rule_id for f in _asset(stack, tenant, asset_id).risk.findings}


def test_the_spool_holds_the_agent_inventory(streamed: Streamed) -> None:
    """Heartbeats spooled while offline carry the MCP servers (by their variable names)."""
    assert b"GITHUB_PERSONAL_ACCESS_TOKEN" in streamed.spooled


def test_a_planted_token_never_leaves_the_host(stack: Stack, streamed: Streamed) -> None:
    """The token's value appears in no scan JSON, spool, agent output, service log or stored item."""
    scan_json = _agent(streamed.config, "scan", "--json")
    assert json.loads(scan_json)["mcp_servers"]
    logs = "".join(p.read_text(errors="replace") for p in stack.log_path("x").parent.glob("*.log"))
    places = {"scan json": scan_json, "agent output": streamed.output,
              "spool and state": streamed.spooled.decode(errors="replace"),
              "service logs": logs, "stored items": _stored_text(stack)}
    leaks = {where: [v for v in streamed.credentials.values() if v in text] for where, text in places.items()}
    assert leaks == {where: [] for where in places}


def test_get_asset_carries_the_agents_and_mcp_servers(stack: Stack, streamed: Streamed) -> None:
    """The asset's stored agent inventory names Cursor's server with the token's fingerprint, no pids."""
    inventory = _asset(stack, streamed.tenant, streamed.asset_id).agent_inventory
    cursor = {s.name: s for s in inventory.mcp_servers if s.agent == "cursor"}
    assert [x.variable for x in cursor["internal-docs"].secrets] == ["header:Authorization"]
    assert {a.kind for a in inventory.agents} >= {"cursor", "claude-code"}
    assert all(not s.pids for s in inventory.mcp_servers)


def test_lz_assets_show_lists_the_mcp_servers(stack: Stack, streamed: Streamed, tmp_path: Path) -> None:
    """`lz assets show` prints the MCP servers table with the GitHub server and its secret variable."""
    (tmp_path / "home").mkdir()
    (tmp_path / ".lz").mkdir()
    shutil.copy(stack.write_state(), tmp_path / ".lz" / "stack.json")
    env = {**clean_env(tmp_path / "home"), "LZ_TOKEN": streamed.tenant.admin_token}
    shown = subprocess.run([sys.executable, "-m", "lz.cli", "assets", "show", streamed.asset_id], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "server-github" in line)
    assert "env:GITHUB_PERSONAL_ACCESS_TOKEN (github-token)" in row
