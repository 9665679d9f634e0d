"""The real ``@modelcontextprotocol/server-filesystem`` from npm, configured in Cursor and Claude Desktop.

npm installs the server once per test session into a temporary folder; the tests skip, saying so, only
when npm itself is missing. The server runs as a real process over a temporary home, started by a
process that looks like Cursor, so the scan must find it configured, running, under its parent agent.
A real engine process (the fake Ollama) shows an agent's local endpoint linked to the engine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.discovery import DiscoverySettings, discover_engines
from agent.discovery.agents import AgentFindings, AgentSettings, discover_agents
from agent.platform.linux import LinuxPlatform
from tests.agent.agent_homes import Credentials, scan
from tests.agent.conftest import EngineLauncher, free_port
from tests.faults.helpers import until

PACKAGE = "@modelcontextprotocol/server-filesystem"


@pytest.fixture(scope="session")
def filesystem_server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed server's executable (``node_modules/.bin/mcp-server-filesystem``)."""
    npm = shutil.which("npm")
    if npm is None:
        print(f"SKIP: npm is not installed, so {PACKAGE} cannot be installed for the real-server test")
        pytest.skip(f"npm is not installed: cannot install {PACKAGE}")
    prefix = tmp_path_factory.mktemp("npm-mcp")
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), PACKAGE],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"npm install {PACKAGE} failed: {done.stderr[-2000:]}"
    return prefix / "node_modules" / ".bin" / "mcp-server-filesystem"


def _configure(home: Path, server: Path, token: str) -> None:
    """Cursor runs the server through npx (with a token in its env), Claude Desktop by its path."""
    cursor = home / ".cursor" / "mcp.json"
    cursor.parent.mkdir(parents=True)
    cursor.write_text(json.dumps({"mcpServers": {"files": {
        "command": "npx", "args": ["-y", PACKAGE, str(home)], "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": token}}}}))
    desktop = home / ".config" / "Claude" / "claude_desktop_config.json"
    desktop.parent.mkdir(parents=True)
    desktop.write_text(json.dumps({"mcpServers": {"filesystem": {"command": str(server), "args": [str(home)]}}}))


@pytest.fixture
def running_server(filesystem_server: Path, tmp_path: Path) -> Iterator[tuple[Path, Credentials]]:
    """A temporary home configured for the server, and the server running over it under a "cursor" parent."""
    home = tmp_path / "home"
    home.mkdir()
    credentials = Credentials.generate()
    _configure(home, filesystem_server, credentials.github_token)
    # argv[0] "cursor": the process signature sees the Cursor app; it spawns the server on its own stdin pipe.
    parent = subprocess.Popen(
        ["cursor", "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])", str(filesystem_server), str(home)],
        executable=sys.executable, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        yield home, credentials
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        try:
            parent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            parent.kill()
            parent.wait()


def _running_scan(home: Path) -> AgentFindings:
    def found() -> AgentFindings | None:
        findings = scan(home)
        return findings if findings.mcp_servers and all(s.running for s in findings.mcp_servers) else None

    return until(found, within=30, what="the file-system server running")


def test_both_configurations_report_the_running_filesystem_server(running_server: tuple[Path, Credentials]) -> None:
    """Cursor's and Claude Desktop's entries are configured, running, file-system capable, rooted at the home."""
    home, _ = running_server
    findings = _running_scan(home)
    assert sorted((s.agent, s.running, s.capabilities, s.roots) for s in findings.mcp_servers) == [
        ("claude-desktop", True, ("filesystem",), (str(home),)),
        ("cursor", True, ("filesystem",), (str(home),)),
    ]


def test_the_running_server_is_attributed_to_its_parent_agent(running_server: tuple[Path, Credentials]) -> None:
    """The server process descends from the Cursor-like process, which is reported as a running agent."""
    home, _ = running_server
    findings = _running_scan(home)
    assert {s.parent_agent for s in findings.mcp_servers} == {"cursor"}
    assert [a.running for a in findings.agents if a.kind == "cursor"] == [True]


def test_a_stopped_server_is_configured_but_not_running(filesystem_server: Path, tmp_path: Path) -> None:
    """Without the process, the same configuration is reported with running false."""
    home = tmp_path / "home"
    home.mkdir()
    _configure(home, filesystem_server, Credentials.generate().github_token)
    assert [s.running for s in scan(home).mcp_servers] == [False, False]


def test_a_local_endpoint_is_linked_to_the_engine_listening_there(launch_engine: EngineLauncher,
                                                                  tmp_path: Path) -> None:
    """Codex pointed at a port where a real (fake-Ollama) engine listens names that engine."""
    port = free_port()
    process = launch_engine("ollama", port)
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(
        f'model_provider = "local"\n[model_providers.local]\nbase_url = "http://127.0.0.1:{port}/v1"\n')
    engines = [e for e in discover_engines(LinuxPlatform(), DiscoverySettings()) if e.pid == process.pid]
    settings = AgentSettings(homes=(str(home),), password_db=False)
    agent = discover_agents(LinuxPlatform(), settings, engines).agents[0]
    assert [(e.location, e.engine) for e in agent.endpoints] == [("local", "ollama")]
