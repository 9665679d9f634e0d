"""Configuration loading and the CLI's exits, as a user meets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()), **(env or {})},
    )


def test_file_values_are_overridden_by_environment(tmp_path: Path) -> None:
    """A TOML value is used unless an LZ_AGENT_* variable overrides it."""
    path = tmp_path / "agent.toml"
    path.write_text('[containment]\ncontrol_plane = ["cp.example:443"]\nself_test_timeout = 3\n')
    config = load_config(path, {"LZ_AGENT_CONTAINMENT_SELF_TEST_TIMEOUT": "1.5"})
    assert (config.control_plane, config.self_test_timeout) == (("cp.example:443",), 1.5)


def test_unknown_setting_is_an_error(tmp_path: Path) -> None:
    """A misspelt key is rejected with its location."""
    path = tmp_path / "agent.toml"
    path.write_text("[containment]\nallowlsit = []\n")
    with pytest.raises(ConfigError, match=r"\[containment\] allowlsit: unknown setting"):
        load_config(path, {})


def test_bad_value_exits_2_with_one_line() -> None:
    """A bad environment value makes the CLI print one line, no traceback, and exit 2."""
    done = run_cli("scan", env={"LZ_AGENT_DISCOVERY_PROBE_TIMEOUT": "soon"})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "LZ_AGENT_DISCOVERY_PROBE_TIMEOUT" in done.stderr


def test_bad_allowlist_cidr_exits_2() -> None:
    """An invalid allowlist CIDR is a usage error before anything is applied."""
    done = run_cli(
        "contain", "apply", "--dry-run", "--control-plane", "10.0.0.1:443", "--allow", "10.0.0.0/33"
    )
    assert done.returncode == 2
    assert "is not a CIDR" in done.stderr


def test_dry_run_prints_the_ruleset() -> None:
    """``contain apply --dry-run`` prints the nft transaction with the control plane admitted."""
    done = run_cli("contain", "apply", "--dry-run", "--control-plane", "[fd00::7]:8443")
    assert done.returncode == 0
    assert "delete table inet lz_containment" in done.stdout
    assert "ip6 daddr fd00::7 tcp dport 8443 accept" in done.stdout


def test_run_without_enrollment_is_a_usage_error(tmp_path: Path) -> None:
    """``run`` on a host that never enrolled says to enroll first and exits 2."""
    done = run_cli("run", env={"LZ_AGENT_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert "lz-agent enroll" in done.stderr


def test_break_glass_requires_confirm(tmp_path: Path) -> None:
    """``break-glass`` without --confirm changes nothing and exits 2."""
    done = run_cli("break-glass", env={"LZ_AGENT_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert "--confirm" in done.stderr
