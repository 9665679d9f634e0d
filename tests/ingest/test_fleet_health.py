"""Fleet health against real processes: agents that stop, are killed, come back, and an isolated host's agent.

The stack here is its own (heartbeats every 2 s, the health sweep every half second), so that "within
three heartbeat intervals" is seconds; `lz-agent run` and `lz-agent simulate` run as processes and
are stopped with real signals.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2, ingest_pb2

from agent.enroll import AGENT_VERSION
from services.kit.devstack import Stack
from tests.conftest import running
from tests.faults.helpers import kill9, restart, until, wait_for
from tests.ingest.agents import IngestTenant, TestAgent, create_tenant, enroll, heartbeat

pytestmark = pytest.mark.slow

INTERVAL = 2
# Leases run out 2 x 2 + 30 s after the last write-down, so a crashed ingest's streams are lost within a minute.
PERSIST = 2
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def health_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own whose ingest asks for a heartbeat every 2 s and sweeps health twice a second."""
    yield from running(Stack(state_dir=tmp_path_factory.mktemp("health-stack"), extra_env={
        "LZ_HEARTBEAT_INTERVAL_SECONDS": str(INTERVAL), "LZ_HEALTH_SWEEP_SECONDS": "0.5",
        "LZ_COMMAND_POLL_SECONDS": "1", "LZ_COMMAND_IDLE_POLL_SECONDS": "1", "LZ_SEQ_PERSIST_SECONDS": str(PERSIST)}))


@pytest.fixture
def tenant(health_stack: Stack) -> IngestTenant:
    return create_tenant(health_stack)


class AgentProcess:
    """An enrolled host's `lz-agent run`, started and stopped as a process of its own."""

    def __init__(self, stack: Stack, tenant: IngestTenant, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env = {**os.environ, "LZ_AGENT_STATE_DIR": str(state_dir), "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", "enroll", "--tenant", tenant.tenant,
             "--control-plane", stack.addresses["ingest"]],
            env={**self.env, "LZ_ENROLLMENT_SECRET": tenant.enrollment_secret},
            capture_output=True, text=True, timeout=60, check=True)
        self.asset_id = done.stdout.split("asset ", 1)[1].split()[0]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.state_dir / "agent.log").open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def signal(self, sig: signal.Signals) -> int:
        """Send `sig` and wait for the process to end; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _assets(stack: Stack) -> assets_pb2_grpc.AssetServiceStub:
    return assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))


def get_asset(stack: Stack, tenant: IngestTenant, asset_id: str) -> common_pb2.Asset:
    reply = _assets(stack).GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=tenant.admin(), timeout=10)
    return reply.asset


def agent_alerts(stack: Stack, tenant: IngestTenant, asset_id: str) -> dict[str, common_pb2.Alert]:
    """The asset's alerts by rule id (the newest of each)."""
    reply = _assets(stack).ListAlerts(assets_pb2.ListAlertsRequest(asset_id=asset_id, page_size=100),
                                      metadata=tenant.admin(), timeout=10)
    found: dict[str, common_pb2.Alert] = {}
    for alert in reply.alerts:
        found.setdefault(alert.rule_id, alert)
    return found


def custody_actions(stack: Stack, tenant: IngestTenant, asset_id: str) -> list[str]:
    reply = _assets(stack).GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id, page_size=100),
                                         metadata=tenant.admin(), timeout=10)
    return [event.action for event in reply.events]


def is_online(stack: Stack, tenant: IngestTenant, asset_id: str) -> bool:
    return get_asset(stack, tenant, asset_id).connection_state == common_pb2.CONNECTION_STATE_ONLINE


def _seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


@pytest.fixture
def agent(health_stack: Stack, tenant: IngestTenant, tmp_path: Path) -> Iterator[AgentProcess]:
    """An enrolled `lz-agent run` process, online (killed afterwards if still alive)."""
    process = AgentProcess(health_stack, tenant, tmp_path)
    process.start()
    try:
        until(lambda: is_online(health_stack, tenant, process.asset_id), 60, "the agent online")
        yield process
    finally:
        process.stop()


def test_an_agent_stopped_with_sigterm_says_goodbye_and_shows_offline_with_its_reason(
        health_stack: Stack, tenant: IngestTenant, agent: AgentProcess) -> None:
    """SIGTERM makes the agent send a goodbye; the asset shows offline with reason service-stop."""
    assert agent.signal(signal.SIGTERM) == 0
    asset = until(lambda: (a := get_asset(health_stack, tenant, agent.asset_id)).connection_state
                  == common_pb2.CONNECTION_STATE_OFFLINE and a, 30, "the asset offline")
    assert asset.disconnect_reason == "service-stop"


def test_an_agent_killed_with_sigkill_raises_agent_silent_within_three_heartbeat_intervals(
        health_stack: Stack, tenant: IngestTenant, agent: AgentProcess) -> None:
    """SIGKILL leaves no goodbye: the asset goes offline as lost and agent-silent is raised within 3 intervals."""
    agent.signal(signal.SIGKILL)
    alert = until(lambda: agent_alerts(health_stack, tenant, agent.asset_id).get("agent-silent"), 60,
                  "agent-silent raised")
    asset = get_asset(health_stack, tenant, agent.asset_id)
    assert (asset.connection_state, asset.disconnect_reason) == (common_pb2.CONNECTION_STATE_OFFLINE, "lost")
    assert alert.severity == common_pb2.SEVERITY_WARNING
    assert _seconds(alert.observe_time) - _seconds(asset.connection_change_time) <= 3 * INTERVAL


def test_an_agent_that_comes_back_is_online_and_its_silent_alert_resolved(
        health_stack: Stack, tenant: IngestTenant, agent: AgentProcess) -> None:
    """A killed agent that starts again is online, and the agent-silent alert it raised is resolved."""
    agent.signal(signal.SIGKILL)
    until(lambda: agent_alerts(health_stack, tenant, agent.asset_id).get("agent-silent"), 60, "agent-silent raised")
    agent.start()
    resolved = until(lambda: agent_alerts(health_stack, tenant, agent.asset_id)["agent-silent"].HasField(
        "resolve_time"), 60, "agent-silent resolved")
    assert resolved
    assert is_online(health_stack, tenant, agent.asset_id)


def simulate_one(stack: Stack, tenant: IngestTenant, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`lz-agent simulate --count 1` as a process of its own, once its host is online; the process and asset id."""
    workdir.mkdir(parents=True, exist_ok=True)
    identities = workdir / "ids.jsonl"
    with (workdir / "simulate.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "simulate", "--count", "1", "--control-plane",
             stack.addresses["ingest"], "--tenant", tenant.tenant,
             "--interval", str(INTERVAL), "--identities", str(identities), "--first-reconnect-jitter", "0"],
            env={**os.environ, "PYTHONPATH": str(REPO), "LZ_ENROLLMENT_SECRET": tenant.enrollment_secret},
            stdout=out, stderr=subprocess.STDOUT)
    try:
        asset_id = until(lambda: identities.exists() and json.loads(identities.read_text())["asset_id"], 60,
                         "the simulated host enrolled")
        until(lambda: is_online(stack, tenant, asset_id), 60, "the host online")
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc, asset_id


def isolate(stack: Stack, tenant: IngestTenant, asset_id: str) -> None:
    """Isolate the asset and wait until its agent has enforced it."""
    _assets(stack).IsolateAsset(assets_pb2.IsolateAssetRequest(asset_id=asset_id, justification="test: exposed engine",
                                                               request_id="iso-1"), metadata=tenant.admin(), timeout=30)
    until(lambda: get_asset(stack, tenant, asset_id).status == common_pb2.ASSET_STATUS_ISOLATED, 60,
          "the host isolated")


@contextlib.contextmanager
def isolated_host(stack: Stack, tenant: IngestTenant, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A simulated host, isolated by its agent; its process (killed at the end if still alive) and asset id."""
    proc, asset_id = simulate_one(stack, tenant, workdir)
    try:
        isolate(stack, tenant, asset_id)
        yield proc, asset_id
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def stopped_while_isolated(stack: Stack, tenant: IngestTenant, asset_id: str, within: float) -> common_pb2.Alert:
    """The asset's agent-stopped-while-isolated alert, once raised within `within` seconds."""
    return until(lambda: agent_alerts(stack, tenant, asset_id).get("agent-stopped-while-isolated"), within,
                 "agent-stopped-while-isolated raised")


def test_the_killed_agent_of_an_isolated_host_raises_a_critical_alert_and_a_custody_event(
        health_stack: Stack, tenant: IngestTenant, tmp_path: Path) -> None:
    """An isolated host whose agent is killed gets agent-stopped-while-isolated (CRITICAL) and `asset.agent.lost`."""
    with isolated_host(health_stack, tenant, tmp_path) as (proc, asset_id):
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        alert = stopped_while_isolated(health_stack, tenant, asset_id, 60)
    assert alert.severity == common_pb2.SEVERITY_CRITICAL
    until(lambda: custody_actions(health_stack, tenant, asset_id)[-1:] == ["asset.agent.lost"], 60,
          "asset.agent.lost chained")


def _tenant_policy(stack: Stack, tenant: IngestTenant, text: str) -> None:
    """The tenant's policy override (LZ_POLICY_DIR/<tenant>.yaml), read by ingest and the risk worker."""
    directory = stack.state_dir / "policies"
    directory.mkdir(exist_ok=True)
    (directory / f"{tenant.tenant}.yaml").write_text(text)


def lz(stack: Stack, tenant: IngestTenant, *args: str) -> Any:
    """`lz <args> --json` against the stack as the tenant's admin; its JSON answer."""
    done = subprocess.run([sys.executable, "-m", "lz.cli", *args, "--json", "--assets", stack.addresses["assets"],
                           "--token", tenant.admin_token],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
                          check=True)
    return json.loads(done.stdout)


@pytest.fixture
def strict_tenant(health_stack: Stack) -> IngestTenant:
    """A tenant whose policy wants agents of version 99 or later and calls one missing 8 s after it was seen."""
    made = create_tenant(health_stack)
    _tenant_policy(health_stack, made, "agent_health:\n  missing_after_seconds: 8\n  minimum_version: '99.0'\n")
    return made


@pytest.fixture
def strict_agent(health_stack: Stack, strict_tenant: IngestTenant, tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(health_stack, strict_tenant, tmp_path)
    process.start()
    try:
        until(lambda: is_online(health_stack, strict_tenant, process.asset_id), 60, "the agent online")
        yield process
    finally:
        process.stop()


def test_an_agent_gone_beyond_the_grace_period_is_missing_and_raises_agent_missing(
        health_stack: Stack, strict_tenant: IngestTenant, strict_agent: AgentProcess) -> None:
    """Past the tenant's grace period a killed agent's asset is listed as missing and agent-missing is raised."""
    strict_agent.signal(signal.SIGKILL)
    alert = until(lambda: agent_alerts(health_stack, strict_tenant, strict_agent.asset_id).get("agent-missing"), 60,
                  "agent-missing raised")
    listed = lz(health_stack, strict_tenant, "assets", "list", "--state", "missing")
    assert [a["asset_id"] for a in listed["assets"]] == [strict_agent.asset_id]
    assert alert.severity == common_pb2.SEVERITY_WARNING


def test_an_agent_older_than_the_tenant_minimum_is_listed_as_outdated(
        health_stack: Stack, strict_tenant: IngestTenant, strict_agent: AgentProcess) -> None:
    """An agent below the tenant's minimum version is flagged, listed by --outdated and counted by the summary."""
    listed = lz(health_stack, strict_tenant, "assets", "list", "--outdated")
    summary = lz(health_stack, strict_tenant, "assets", "summary")
    assert [(a["asset_id"], a["agent_outdated"]) for a in listed["assets"]] == [(strict_agent.asset_id, True)]
    assert (summary["online"], summary["outdated"], summary["versions"]) == (
        1, 1, [{"agent_version": AGENT_VERSION, "count": 1, "outdated": True}])


async def _connect_as(stack: Stack, tenant: IngestTenant, enrolled: Any, version: str) -> TestAgent:
    """A stream of the enrolled host whose hello reports `version`, recorded online (it sent a heartbeat)."""
    agent = TestAgent(stack.addresses["ingest"], tenant.tenant, enrolled.asset_id, enrolled.agent_credential)
    await agent.start(ingest_pb2.ConnectRequest(hello=ingest_pb2.Hello(
        tenant_id=tenant.tenant, asset_id=enrolled.asset_id, agent_credential=enrolled.agent_credential,
        agent_version=version, platform="linux-x86_64")))
    seq = (await agent.next_of("welcome")).welcome.acked_seq + 1
    await agent.send(heartbeat(seq))
    await agent.ack_for(seq)
    return agent


async def test_an_agent_older_than_the_tenant_minimum_raises_agent_outdated(
        health_stack: Stack, strict_tenant: IngestTenant) -> None:
    """An agent connecting with a version below the tenant's minimum raises agent-outdated (WARNING), listed by
    ListAlerts and `lz alerts list`."""
    enrolled = enroll(health_stack.addresses["ingest"], strict_tenant)
    agent = await _connect_as(health_stack, strict_tenant, enrolled, "1.0.0")
    try:
        alert = await wait_for(lambda: agent_alerts(health_stack, strict_tenant, enrolled.asset_id).get(
            "agent-outdated"), 30, "agent-outdated raised")
    finally:
        await agent.close()
    listed = lz(health_stack, strict_tenant, "alerts", "list")
    assert (alert.severity, alert.HasField("resolve_time")) == (common_pb2.SEVERITY_WARNING, False)
    assert [(a["asset_id"], a["rule_id"]) for a in listed["alerts"]] == [(enrolled.asset_id, "agent-outdated")]


async def test_an_updated_agent_resolves_its_agent_outdated_alert(
        health_stack: Stack, strict_tenant: IngestTenant) -> None:
    """The outdated alert stays one across reconnects of the old version and is resolved once the agent
    connects with a version at or above the minimum."""
    enrolled = enroll(health_stack.addresses["ingest"], strict_tenant)
    for version in ("1.0.0", "1.0.0", "99.1.0"):
        await (await _connect_as(health_stack, strict_tenant, enrolled, version)).close()
        if version == "1.0.0":
            await wait_for(lambda: agent_alerts(health_stack, strict_tenant, enrolled.asset_id).get(
                "agent-outdated"), 30, "agent-outdated raised")
    resolved = await wait_for(lambda: (a := _outdated_alerts(health_stack, strict_tenant, enrolled.asset_id))
                              and all(x.HasField("resolve_time") for x in a) and a, 30, "agent-outdated resolved")
    assert len(resolved) == 1
    assert not get_asset(health_stack, strict_tenant, enrolled.asset_id).agent_outdated


async def test_a_raised_minimum_raises_agent_outdated_for_an_agent_already_connected(
        health_stack: Stack, tenant: IngestTenant) -> None:
    """An agent connected before its tenant raises the minimum version gets agent-outdated from the health sweep,
    without reconnecting."""
    enrolled = enroll(health_stack.addresses["ingest"], tenant)
    agent = await _connect_as(health_stack, tenant, enrolled, "1.0.0")
    try:
        _tenant_policy(health_stack, tenant, "agent_health:\n  minimum_version: '99.0'\n")
        alert = await wait_for(lambda: agent_alerts(health_stack, tenant, enrolled.asset_id).get("agent-outdated"),
                               60, "agent-outdated raised by the sweep")
        assert not agent.ended.is_set()
    finally:
        await agent.close()
    assert (alert.severity, alert.evidence["minimum_version"]) == (common_pb2.SEVERITY_WARNING, "99.0")


async def test_a_lowered_minimum_resolves_the_agent_outdated_alert_of_a_connected_agent(
        health_stack: Stack, strict_tenant: IngestTenant) -> None:
    """When the tenant lowers its minimum below a connected agent's version, the sweep resolves its agent-outdated
    alert without the agent reconnecting."""
    enrolled = enroll(health_stack.addresses["ingest"], strict_tenant)
    agent = await _connect_as(health_stack, strict_tenant, enrolled, "1.0.0")
    try:
        await wait_for(lambda: agent_alerts(health_stack, strict_tenant, enrolled.asset_id).get("agent-outdated"),
                       30, "agent-outdated raised")
        _tenant_policy(health_stack, strict_tenant, "agent_health:\n  minimum_version: '0.9'\n")
        resolved = await wait_for(lambda: all(a.HasField("resolve_time") for a in _outdated_alerts(
            health_stack, strict_tenant, enrolled.asset_id)), 60, "agent-outdated resolved by the sweep")
    finally:
        await agent.close()
    assert resolved


async def test_a_raised_minimum_raises_agent_outdated_for_an_offline_agent(
        health_stack: Stack, tenant: IngestTenant) -> None:
    """An agent offline when its tenant raises the minimum version gets agent-outdated from the health sweep,
    judged on the version it last reported."""
    enrolled = enroll(health_stack.addresses["ingest"], tenant)
    await (await _connect_as(health_stack, tenant, enrolled, "1.0.0")).close()
    await wait_for(lambda: get_asset(health_stack, tenant, enrolled.asset_id).connection_state
                   == common_pb2.CONNECTION_STATE_OFFLINE, 30, "the agent offline")
    _tenant_policy(health_stack, tenant, "agent_health:\n  minimum_version: '99.0'\n")
    alert = await wait_for(lambda: agent_alerts(health_stack, tenant, enrolled.asset_id).get("agent-outdated"),
                           60, "agent-outdated raised by the sweep")
    assert (alert.severity, alert.evidence["agent_version"]) == (common_pb2.SEVERITY_WARNING, "1.0.0")
    assert get_asset(health_stack, tenant, enrolled.asset_id).agent_outdated


def _outdated_alerts(stack: Stack, tenant: IngestTenant, asset_id: str) -> list[common_pb2.Alert]:
    reply = _assets(stack).ListAlerts(assets_pb2.ListAlertsRequest(asset_id=asset_id, page_size=100),
                                      metadata=tenant.admin(), timeout=10)
    return [a for a in reply.alerts if a.rule_id == "agent-outdated"]


def test_the_agents_of_a_crashed_ingest_replica_are_lost_once_their_lease_runs_out(
        health_stack: Stack, tenant: IngestTenant, tmp_path: Path) -> None:
    """An agent whose ingest replica died without closing its stream, and which never came back, is lost."""
    survivor, _ = simulate_one(health_stack, tenant, tmp_path / "survivor")
    victim, asset_id = simulate_one(health_stack, tenant, tmp_path / "victim")
    try:
        kill9(health_stack, "ingest")
        victim.kill()
        victim.wait(10)
        restart(health_stack, "ingest")
        alert = until(lambda: agent_alerts(health_stack, tenant, asset_id).get("agent-silent"), 120,
                      "agent-silent raised after the lease ran out")
    finally:
        for proc in (survivor, victim):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    asset = get_asset(health_stack, tenant, asset_id)
    assert (asset.connection_state, asset.disconnect_reason) == (common_pb2.CONNECTION_STATE_OFFLINE, "lost")
    assert alert.evidence["reason"] == "lost"


def test_a_restarted_ingest_sweeps_a_tenant_none_of_whose_agents_came_back(
        health_stack: Stack, tenant: IngestTenant, tmp_path: Path) -> None:
    """An isolated host whose agent died while ingest was down raises agent-stopped-while-isolated after ingest
    restarts, though no agent of its tenant connects again."""
    with isolated_host(health_stack, tenant, tmp_path) as (proc, asset_id):
        kill9(health_stack, "ingest")
        proc.kill()
        proc.wait(10)
        restart(health_stack, "ingest")
        # The lease the dead ingest last wrote runs out first (2 x 2 + 30 s).
        alert = stopped_while_isolated(health_stack, tenant, asset_id, 120)
    assert (alert.severity, alert.evidence["reason"]) == (common_pb2.SEVERITY_CRITICAL, "lost")
