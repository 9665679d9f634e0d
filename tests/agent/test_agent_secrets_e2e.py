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
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc

from agent.enroll import load_identity
from services.kit import aws
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from tests.agent.agent_homes import Credentials, plant
from tests.agent.conftest import free_port
from tests.faults.helpers import until
from tests.ingest.agents import create_tenant

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


def _finding_rules(stack: Stack, admin: list[tuple[str, str]], asset_id: str) -> set[str]:
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        asset = assets_pb2_grpc.AssetServiceStub(channel).GetAsset(
            assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=admin, timeout=10).asset
    return {f.rule_id for f in asset.risk.findings}


def test_a_planted_token_is_reported_but_never_leaves_the_host(stack: Stack, tmp_path: Path) -> None:
    """The alert fires on the token while its value appears in no JSON, spool, log or stored byte."""
    credentials = Credentials.generate()
    home = tmp_path / "home"
    plant("cursor", home, credentials)
    plant("claude-code", home, credentials)
    config = _config(tmp_path, home)
    tenant = create_tenant(stack)
    output = _agent(config, "enroll", "--tenant", tenant.tenant, "--secret", tenant.enrollment_secret,
                    "--control-plane", stack.addresses["ingest"])
    identity = load_identity(tmp_path / "state")
    assert identity is not None

    output += _agent(config, "run", "--duration", "4", env={"LZ_AGENT_STREAM_ADDRESS": f"127.0.0.1:{free_port()}"})
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert b"GITHUB_PERSONAL_ACCESS_TOKEN" in spooled

    run = subprocess.Popen([sys.executable, "-m", "agent.cli", "--config", str(config), "run", "--duration", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    try:
        until(lambda: "mcp-secret-in-config" in _finding_rules(stack, tenant.admin(), identity.asset_id),
              within=60, what="the mcp-secret-in-config finding")
    finally:
        run.terminate()
        output += run.communicate(timeout=30)[0]
    scan_json = _agent(config, "scan", "--json")
    assert json.loads(scan_json)["mcp_servers"]
    logs = "".join(p.read_text(errors="replace") for p in stack.log_path("x").parent.glob("*.log"))
    places = {"scan json": scan_json, "agent output": output, "spool and state": spooled.decode(errors="replace"),
              "service logs": logs, "stored items": _stored_text(stack)}
    leaks = {where: [v for v in credentials.values() if v in text] for where, text in places.items()}
    assert leaks == {where: [] for where in places}
