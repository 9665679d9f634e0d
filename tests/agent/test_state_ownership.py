"""State files stay the agent user's whoever ran the command, and a start gives back any that are not (finding 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.process import REPO

pytestmark = pytest.mark.root

AGENT_UID = 65534  # stands in for the unit's `lz-agent` system user


def _state_dir(tmp_path: Path) -> tuple[Path, Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run commands as root and as another user")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, AGENT_UID, AGENT_UID)
    config = tmp_path / "agent.toml"
    config.write_text(f'state_dir = "{state}"\n[containment]\nnft = "{tmp_path / "no-nft"}"\n')
    return state, config


def _as_agent_user(*args: str) -> list[str]:
    """The command as the agent's user with the read-only capability the systemd unit grants it."""
    return ["setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_UID}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *args]


def _owners(state: Path) -> set[tuple[str, int, int, str]]:
    return {
        (str(p.relative_to(state)), p.stat().st_uid, p.stat().st_gid, oct(p.stat().st_mode & 0o777))
        for p in state.rglob("*")
        if p.is_file()
    }


def test_a_break_glass_run_as_root_leaves_files_the_agent_user_owns(tmp_path: Path) -> None:
    """`sudo lz-agent break-glass` writes its event and lock as the state directory's owner, mode 0600."""
    state, config = _state_dir(tmp_path)
    subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config), "break-glass", "--confirm"],
                   cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert _owners(state) == {
        ("events.jsonl", AGENT_UID, AGENT_UID, "0o600"),
        ("containment.lock", AGENT_UID, AGENT_UID, "0o600"),
    }


def test_the_agent_user_takes_back_a_root_owned_events_file_at_start(tmp_path: Path) -> None:
    """A root-owned events.jsonl left by an older break-glass is the agent user's again after `contain reconcile`."""
    state, config = _state_dir(tmp_path)
    event = json.dumps({"event": "break-glass", "at": "2026-01-01T00:00:00+00:00", "reason": "old"}) + "\n"
    (state / "events.jsonl").write_text(event)
    os.chmod(state / "events.jsonl", 0o644)
    done = subprocess.run(
        _as_agent_user(sys.executable, "-m", "agent.cli", "--config", str(config), "contain", "reconcile"),
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _owners(state) >= {("events.jsonl", AGENT_UID, AGENT_UID, "0o600")}
    assert (state / "events.jsonl").read_text() == event
