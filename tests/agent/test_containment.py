"""Containment with real nftables inside network namespaces the tests create."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import require_root_and_nft
from tests.agent.netns import CP4, CP6, CP_PORT, OUT4, OUT6, Namespaces, namespaces

pytestmark = pytest.mark.root

ALL_OPEN = {"loopback": True, "cp4": True, "out4": True, "cp6": True, "out6": True}
ISOLATED = {"loopback": True, "cp4": True, "out4": False, "cp6": True, "out6": False}


@pytest.fixture
def ns() -> Iterator[Namespaces]:
    require_root_and_nft()
    with namespaces() as created:
        yield created


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        "[containment]\n"
        f'control_plane = ["{CP4}:{CP_PORT}", "[{CP6}]:{CP_PORT}"]\n'
        "self_test_timeout = 1.0\n"
    )
    return path


def agent(ns: Namespaces, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``lz-agent`` inside the agent namespace, as the helper would run on a host."""
    return ns.in_agent(sys.executable, "-m", "agent.cli", "--config", str(config), *args)


def agent_json(ns: Namespaces, config: Path, *args: str) -> tuple[int, dict[str, object]]:
    done = agent(ns, config, *args, "--json")
    return done.returncode, json.loads(done.stdout)


def test_isolation_admits_only_control_plane_and_loopback(ns: Namespaces, config: Path) -> None:
    """Before isolation everything answers; after it only loopback and the control plane, over v4 and v6."""
    assert ns.reachable() == ALL_OPEN
    code, result = agent_json(ns, config, "contain", "apply", "--command-id", "c1")
    assert (code, result["ok"], result["contained"]) == (0, True, True)
    assert ns.reachable() == ISOLATED


def test_apply_reports_rules_and_self_test_evidence(ns: Namespaces, config: Path) -> None:
    """The apply result carries the ruleset hash, rule count and each self-test attempt."""
    _, result = agent_json(ns, config, "contain", "apply", "--command-id", "c1")
    evidence = result["evidence"]
    assert isinstance(evidence, dict)
    assert str(evidence["ruleset_sha256"]).startswith("sha256:") and int(evidence["rule_count"]) > 10
    assert str(evidence["listing_sha256"]).startswith("sha256:")
    assert [a["ok"] for a in evidence["self_test"]["attempts"]] == [True, True]


def test_release_restores_connectivity_and_forgets_state(
    ns: Namespaces, config: Path, tmp_path: Path
) -> None:
    """After release everything answers again and no containment state remains."""
    agent(ns, config, "contain", "apply", "--command-id", "c1")
    code, result = agent_json(ns, config, "contain", "release", "--command-id", "r1")
    assert (code, result["ok"], result["contained"]) == (0, True, False)
    assert ns.reachable() == ALL_OPEN
    assert not (tmp_path / "state" / "containment.json").exists()


def test_state_is_persisted_and_reconcile_reapplies_it(ns: Namespaces, config: Path, tmp_path: Path) -> None:
    """A restarted agent finding isolation persisted but the table gone (a reboot) re-applies it."""
    agent(ns, config, "contain", "apply", "--command-id", "c1")
    stored = json.loads((tmp_path / "state" / "containment.json").read_text())
    assert stored["command_id"] == "c1"
    ns.in_agent("nft", "delete", "table", "inet", "lz_containment", check=True)
    assert ns.reachable() == ALL_OPEN
    code, result = agent_json(ns, config, "contain", "reconcile")
    assert (code, result["contained"]) == (0, True)
    assert ns.reachable() == ISOLATED


def test_self_test_failure_rolls_back_and_reports(ns: Namespaces, config: Path) -> None:
    """With the control plane unreachable under isolation the table is removed and failure reported."""
    code, result = agent_json(ns, config, "contain", "apply", "--control-plane", f"{CP4}:7999")
    assert (code, result["ok"], result["contained"]) == (1, False, False)
    evidence = result["evidence"]
    assert isinstance(evidence, dict) and evidence["rolled_back"] is True
    assert evidence["self_test"]["attempts"][0]["ok"] is False
    assert not ns.table_present()
    assert ns.reachable() == ALL_OPEN


def test_repeated_command_id_replays_the_first_result(ns: Namespaces, config: Path) -> None:
    """A command re-sent with the same id returns the stored result and does not act again."""
    agent(ns, config, "contain", "apply", "--command-id", "c1")
    agent(ns, config, "contain", "release", "--command-id", "r1")
    code, result = agent_json(ns, config, "contain", "apply", "--command-id", "c1")
    assert (code, result["replayed"]) == (0, True)
    assert not ns.table_present()


def test_break_glass_removes_containment_and_records_it(ns: Namespaces, config: Path, tmp_path: Path) -> None:
    """Local break-glass lifts isolation, logs at CRITICAL and leaves an event for the control plane."""
    agent(ns, config, "contain", "apply", "--command-id", "c1")
    done = agent(ns, config, "break-glass", "--confirm", "--reason", "control plane down")
    assert done.returncode == 0
    assert "CRITICAL" in done.stderr and "BREAK-GLASS" in done.stderr
    assert ns.reachable() == ALL_OPEN
    event = json.loads((tmp_path / "state" / "events.jsonl").read_text().splitlines()[-1])
    assert (event["event"], event["command_id"], event["reason"]) == (
        "break-glass",
        "c1",
        "control plane down",
    )


def test_status_reports_isolation_in_sync(ns: Namespaces, config: Path) -> None:
    """``contain status`` shows the host isolated with persisted state and firewall agreeing."""
    agent(ns, config, "contain", "apply", "--command-id", "c1")
    code, status = agent_json(ns, config, "contain", "status")
    assert (code, status["persisted"], status["installed"], status["in_sync"]) == (0, True, True, True)


def test_dns_passes_only_to_the_resolver_the_host_had_when_isolated(ns: Namespaces, config: Path) -> None:
    """With no resolver named, the host's resolver is pinned: TCP/UDP 53 to any other address is dropped (v4, v6)."""
    with ns.resolv_conf(CP4), ns.dns_servers():
        assert agent(ns, config, "contain", "apply", "--command-id", "c1").returncode == 0
        reachable = ns.dns_reachable()
    assert reachable == {
        f"tcp {CP4}": True, f"udp {CP4}": True, f"tcp {OUT4}": False, f"udp {OUT4}": False,
        f"tcp {CP6}": False, f"udp {CP6}": False, f"tcp {OUT6}": False, f"udp {OUT6}": False,
    }


def test_status_sees_an_accept_rule_inserted_into_the_table(ns: Namespaces, config: Path) -> None:
    """``contain status`` compares the live rules' content: an inserted accept-all rule is out of sync (exit 1)."""
    agent(ns, config, "contain", "apply", "--command-id", "c1")
    ns.in_agent("nft", "insert", "rule", "inet", "lz_containment", "output", "accept", check=True)
    code, status = agent_json(ns, config, "contain", "status")
    assert (code, status["installed"], status["in_sync"]) == (1, True, False)
    assert status["live_listing_sha256"] != status["applied_listing_sha256"]
