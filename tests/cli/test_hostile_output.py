"""Terminal escape injection: hostile strings an agent sends reach `lz` tables inert, and `--json` exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Lz, clean_env
from lifecyclezero.v1 import common_pb2

from tests.faults.helpers import wait_for
from tests.ingest.agents import IngestTenant, TestAgent, create_tenant, enroll, heartbeat

pytestmark = pytest.mark.slow

# Clear the screen, retitle the window, a one-byte CSI (C1) and a right-to-left override.
HOSTILE_KIND = "ollama\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\u202e")


def _exposed() -> common_pb2.Inventory:
    return common_pb2.Inventory(hostname="ws-hostile", os="linux", engines=[common_pb2.Engine(
        kind=HOSTILE_KIND, pid=7, executable="/usr/bin/ollama",
        listen=[common_pb2.Endpoint(address="0.0.0.0", port=11434)])])


@pytest.fixture
async def alerted(stack: Any, tmp_path: Path) -> tuple[Lz, IngestTenant]:
    """A tenant whose agent reported an exposed engine with a hostile kind, once its alert is listed."""
    tenant = create_tenant(stack)
    reply = enroll(stack.addresses["ingest"], tenant, hostname="ws-hostile")
    agent = TestAgent(stack.addresses["ingest"], tenant.tenant, reply.asset_id, reply.agent_credential)
    try:
        await agent.connect()
        await agent.send(heartbeat(1, _exposed()))
        await agent.ack_for(1)
    finally:
        await agent.close()
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    (work / ".lz").mkdir(parents=True)
    (work / ".lz" / "stack.json").write_text(stack.write_state().read_text())
    lz = Lz(work, clean_env(tmp_path / "home")).with_env(LZ_TOKEN=tenant.admin_token)
    await wait_for(lambda: lz("alerts", "list", "--json").json()["alerts"], 60, "the hostile alert")
    return lz, tenant


def test_an_alert_table_shows_no_escape_or_c1_byte(alerted: tuple[Lz, IngestTenant]) -> None:
    """`lz alerts list` renders the hostile engine kind without ESC, BEL, C1 or bidi characters."""
    lz, _ = alerted
    result = lz("alerts", "list")
    assert result.code == 0 and "ollama" in result.out
    assert not [c for c in FORBIDDEN if c in result.out + result.err]


def test_json_output_keeps_the_hostile_string_exactly(alerted: tuple[Lz, IngestTenant]) -> None:
    """`lz alerts list --json` carries the hostile text escaped, and parsing it gives the exact string back."""
    lz, _ = alerted
    result = lz("alerts", "list", "--json")
    summaries = [a["summary"] for a in json.loads(result.out)["alerts"]]
    assert any(HOSTILE_KIND in s for s in summaries)
    assert not [c for c in FORBIDDEN if c in result.out]
