"""Containment evidence reaches the control plane: drift repaired by `lz-agent run`, break-glass reported later.

The firewall is real nftables in a network namespace the test creates; the agent process runs beside the
real local control plane and drives that namespace's nft through a wrapper (the stack listens on the
host's loopback, which a namespace cannot reach).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.kit.devstack import Stack
from tests.agent.conftest import require_root_and_nft
from tests.agent.netns import CP4, CP_PORT, Namespaces, namespaces
from tests.agent.process import AgentHost
from tests.faults.helpers import until

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def ns() -> Iterator[Namespaces]:
    require_root_and_nft()
    with namespaces() as created:
        yield created


@pytest.fixture
def host(stack: Stack, tmp_path: Path) -> AgentHost:
    return AgentHost(stack, tmp_path)


def _isolate_in(ns: Namespaces, host: AgentHost) -> Path:
    """Isolate the namespace with `lz-agent contain apply` run inside it; the host's nft wrapper for later."""
    config = host.state / "netns.toml"
    config.write_text(f'state_dir = "{host.state}"\n[containment]\ncontrol_plane = ["{CP4}:{CP_PORT}"]\n')
    done = ns.in_agent(sys.executable, "-m", "agent.cli", "--config", str(config), "contain", "apply",
                       "--command-id", "c1")
    assert done.returncode == 0, done.stderr
    wrapper = host.state / "nft-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.agent} nft "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _status(ns: Namespaces, host: AgentHost) -> dict[str, object]:
    done = ns.in_agent(sys.executable, "-m", "agent.cli", "--config", str(host.state / "netns.toml"),
                       "contain", "status", "--json")
    return dict(json.loads(done.stdout))


def test_run_removes_an_inserted_accept_rule_and_reports_the_drift(ns: Namespaces, host: AgentHost) -> None:
    """While isolated, `run` puts back rules someone changed and the drift becomes a custody event of the asset."""
    wrapper = _isolate_in(ns, host)
    with host.running(containment_nft=str(wrapper), containment_drift_check_interval="1"):
        until(lambda: host.acked_seq() >= 1, 60, "the agent streaming")
        ns.in_agent("nft", "insert", "rule", "inet", "lz_containment", "output", "accept", check=True)
        until(lambda: _status(ns, host)["in_sync"], 30, "the isolation rules put back")
        until(lambda: "asset.isolation.drift" in host.custody_actions(), 60, "the drift in the custody log")
    assert ns.reachable()["out4"] is False


def test_a_break_glass_made_while_the_agent_was_down_reaches_the_custody_log(ns: Namespaces, host: AgentHost) -> None:
    """`lz-agent break-glass` with no agent running is kept on disk and reported by the next `run`."""
    wrapper = _isolate_in(ns, host)
    done = ns.in_agent(sys.executable, "-m", "agent.cli", "--config", str(host.state / "netns.toml"),
                       "break-glass", "--confirm", "--reason", "control plane down")
    assert done.returncode == 0, done.stderr
    with host.running(containment_nft=str(wrapper)):
        until(lambda: "asset.isolation.break_glass" in host.custody_actions(), 60, "the break-glass in the log")
