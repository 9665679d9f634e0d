"""Each agent's documented configuration format yields its MCP servers, endpoints and credentials."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from agent.discovery.agent_table import AGENTS
from agent.discovery.secrets import fingerprint
from agent.inventory import McpServer
from tests.agent.agent_homes import FIXTURES, Credentials, plant, scan

# kind -> {server name: capabilities}
SERVERS: dict[str, dict[str, tuple[str, ...]]] = {
    "claude-code": {"github": ("git", "cloud"), "db": ("database",), "sentry": ("cloud",)},
    "claude-desktop": {"filesystem": ("filesystem",)},
    "cursor": {"playwright": ("browser",), "internal-docs": ("unknown",)},
    "vscode": {"git": ("git", "filesystem"), "fetch": ("fetch",), "github": ("git", "cloud")},
    "cline": {"commands": ("shell",)},
    "windsurf": {"brave-search": ("fetch",), "notion": ("cloud",)},
    "codex": {"files": ("filesystem",), "tickets": ("unknown",)},
    "gemini-cli": {"pythonTools": ("unknown",), "http-server": ("unknown",)},
    "continue": {"SQLite": ("database", "filesystem")},
    "goose": {"developer": ("shell", "filesystem"), "github": ("git", "cloud")},
    "zed": {"postgres": ("database",), "fetch-legacy": ("fetch",)},
    "opencode": {"filesystem": ("filesystem",), "context7": ("unknown",)},
    "aider": {},
}


@pytest.fixture
def credentials() -> Credentials:
    return Credentials.generate()


def _planted(kind: str, tmp_path: Path, credentials: Credentials) -> tuple[Path, dict[str, McpServer]]:
    home = tmp_path / "home"
    plant(kind, home, credentials)
    findings = scan(home)
    assert findings.errors == ()
    return home, {s.name: s for s in findings.mcp_servers if s.agent == kind}


def test_every_agent_in_the_table_has_a_fixture_and_an_expectation() -> None:
    """Adding an agent row without its fixture (or the other way round) fails here."""
    kinds = {spec.kind for spec in AGENTS}
    assert kinds == set(SERVERS) == {p.name for p in FIXTURES.iterdir() if p.is_dir()}


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_the_fixture_yields_its_servers_with_their_capabilities(kind: str, tmp_path: Path,
                                                                credentials: Credentials) -> None:
    """The agent's configuration format is read into the servers it declares, each classified."""
    _, servers = _planted(kind, tmp_path, credentials)
    assert {name: s.capabilities for name, s in servers.items()} == SERVERS[kind]


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_the_agent_is_reported_installed_for_the_homes_owner(kind: str, tmp_path: Path,
                                                             credentials: Credentials) -> None:
    """Each fixture makes its agent appear once, for the home it was found in, with its files."""
    home = tmp_path / "home"
    plant(kind, home, credentials)
    agents = [a for a in scan(home).agents if a.kind == kind]
    assert [(a.home, bool(a.config_paths)) for a in agents] == [(str(home), True)]


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_no_planted_credential_appears_in_the_findings(kind: str, tmp_path: Path, credentials: Credentials) -> None:
    """Whatever the format, the values of planted credentials are absent from every reported field."""
    home = tmp_path / "home"
    plant(kind, home, credentials)
    text = json.dumps(asdict(scan(home)))
    assert [v for v in credentials.values() if v in text] == []


def test_claude_code_project_servers_are_project_scoped(tmp_path: Path, credentials: Credentials) -> None:
    """Servers under ``projects`` of ~/.claude.json and in a project's .mcp.json have project scope."""
    _, servers = _planted("claude-code", tmp_path, credentials)
    assert (servers["github"].scope, servers["db"].scope, servers["sentry"].scope) == ("user", "project", "project")


def test_claude_code_settings_point_it_at_a_local_endpoint(tmp_path: Path, credentials: Credentials) -> None:
    """ANTHROPIC_BASE_URL in ~/.claude/settings.json becomes a local endpoint from config."""
    home = tmp_path / "home"
    plant("claude-code", home, credentials)
    agent = next(a for a in scan(home).agents if a.kind == "claude-code")
    assert [(e.host, e.location, e.source) for e in agent.endpoints] == [("127.0.0.1", "local", "config")]


def test_an_env_credential_is_named_detected_and_fingerprinted(tmp_path: Path, credentials: Credentials) -> None:
    """A GitHub token in a server's env is reported by name, detector and salted fingerprint."""
    _, servers = _planted("claude-code", tmp_path, credentials)
    assert [asdict(s) for s in servers["github"].secrets] == [{
        "variable": "env:GITHUB_PERSONAL_ACCESS_TOKEN", "detector": "github-token",
        "fingerprint": fingerprint(credentials.github_token, "test-salt"),
    }]


def test_claude_desktop_roots_are_resolved(tmp_path: Path, credentials: Credentials) -> None:
    """Absolute and ~ roots of the file-system server are reported as absolute paths in the home."""
    home, servers = _planted("claude-desktop", tmp_path, credentials)
    assert servers["filesystem"].roots == (str(home / "Desktop"), str(home / "Downloads"))


def test_a_bearer_header_is_a_secret_and_the_url_is_kept(tmp_path: Path, credentials: Credentials) -> None:
    """Cursor's remote server keeps its URL and reports its Authorization header as a credential."""
    _, servers = _planted("cursor", tmp_path, credentials)
    remote = servers["internal-docs"]
    assert (remote.transport, remote.url) == ("http", "https://mcp.example.com/mcp")
    assert [(s.variable, s.detector) for s in remote.secrets] == [("header:Authorization", "credential-variable")]


def test_vscode_input_references_are_not_secrets(tmp_path: Path, credentials: Credentials) -> None:
    """A ${input:...} reference is resolved by VS Code at run time, so it is not a credential on disk."""
    _, servers = _planted("vscode", tmp_path, credentials)
    assert servers["github"].secrets == ()


def test_codex_docker_server_roots_are_its_bind_mounts(tmp_path: Path, credentials: Credentials) -> None:
    """A containerised file-system server reaches what is mounted, not the paths inside the container."""
    home, servers = _planted("codex", tmp_path, credentials)
    assert (servers["files"].package, servers["files"].roots) == ("mcp/filesystem", (str(home),))


def test_codex_model_provider_is_a_local_endpoint(tmp_path: Path, credentials: Credentials) -> None:
    """A model provider base_url on localhost is the agent's local endpoint."""
    home = tmp_path / "home"
    plant("codex", home, credentials)
    agent = next(a for a in scan(home).agents if a.kind == "codex")
    assert [(e.url, e.location) for e in agent.endpoints] == [("http://localhost:11434/v1", "local")]


def test_continue_model_key_is_an_agent_secret(tmp_path: Path, credentials: Credentials) -> None:
    """An apiKey in Continue's models is reported on the agent, by its setting path."""
    home = tmp_path / "home"
    plant("continue", home, credentials)
    agent = next(a for a in scan(home).agents if a.kind == "continue")
    assert [(s.variable, s.detector) for s in agent.secrets] == [("models.GPT.apiKey", "openai-api-key")]


def test_continue_sqlite_root_is_the_database_file(tmp_path: Path, credentials: Credentials) -> None:
    """The --db-path option of the SQLite server is its root, resolved in the home."""
    home, servers = _planted("continue", tmp_path, credentials)
    assert servers["SQLite"].roots == (str(home / "data" / "test.db"),)


def test_goose_builtin_developer_is_a_shell(tmp_path: Path, credentials: Credentials) -> None:
    """goose's built-in developer extension runs commands, and is reported as a builtin transport."""
    _, servers = _planted("goose", tmp_path, credentials)
    assert (servers["developer"].transport, servers["developer"].capabilities) == ("builtin", ("shell", "filesystem"))


def test_zed_connection_string_password_is_redacted(tmp_path: Path, credentials: Credentials) -> None:
    """A password inside a connection-string argument is cut out of the argument and reported."""
    _, servers = _planted("zed", tmp_path, credentials)
    postgres = servers["postgres"]
    assert postgres.args[-1] == "postgresql://db.internal/app"
    assert [(s.variable, s.detector) for s in postgres.secrets] == [("args[2]", "url-credentials")]


def test_opencode_disabled_server_is_reported_disabled(tmp_path: Path, credentials: Credentials) -> None:
    """A server with enabled: false is still inventoried, marked disabled."""
    _, servers = _planted("opencode", tmp_path, credentials)
    assert (servers["context7"].enabled, servers["filesystem"].roots) == (False, ("/",))


def test_opencode_provider_on_another_host_is_self_hosted(tmp_path: Path, credentials: Credentials) -> None:
    """A provider baseURL on a non-cloud remote host is a self-hosted endpoint."""
    home = tmp_path / "home"
    plant("opencode", home, credentials)
    agent = next(a for a in scan(home).agents if a.kind == "opencode")
    assert [(e.host, e.location) for e in agent.endpoints] == [("gpu-box.internal", "self-hosted")]


def test_aider_key_and_cloud_endpoint(tmp_path: Path, credentials: Credentials) -> None:
    """aider's openai-api-key is an agent secret and its api base is a cloud endpoint."""
    home = tmp_path / "home"
    plant("aider", home, credentials)
    agent = next(a for a in scan(home).agents if a.kind == "aider")
    assert [(s.variable, s.detector) for s in agent.secrets] == [("openai-api-key", "openai-api-key")]
    assert [(e.host, e.location) for e in agent.endpoints] == [("api.openai.com", "cloud")]


def test_agents_without_a_configured_endpoint_report_their_default(tmp_path: Path, credentials: Credentials) -> None:
    """Claude Desktop, with no endpoint setting, reports its provider's API as a default cloud endpoint."""
    home = tmp_path / "home"
    plant("claude-desktop", home, credentials)
    agent = next(a for a in scan(home).agents if a.kind == "claude-desktop")
    assert [(e.host, e.location, e.source) for e in agent.endpoints] == [("api.anthropic.com", "cloud", "default")]


def _scan_cli(home: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(Path.cwd()),
           "LZ_AGENT_STATE_DIR": str(home.parent / "state"), "LZ_AGENT_MODELS_HOMES": str(home),
           "LZ_AGENT_AGENTS_HOMES": str(home), "LZ_AGENT_AGENTS_PASSWORD_DB": "false"}
    done = subprocess.run([sys.executable, "-m", "agent.cli", "scan", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_scan_json_has_the_issue_fields(tmp_path: Path, credentials: Credentials) -> None:
    """``lz-agent scan --json`` lists agents and MCP servers with the documented fields and types."""
    home = tmp_path / "home"
    plant("cursor", home, credentials)
    report = json.loads(_scan_cli(home, "--json"))
    server = next(s for s in report["mcp_servers"] if s["name"] == "internal-docs")
    assert {k: type(server[k]).__name__ for k in ("name", "agent", "config_path", "transport", "command", "url",
                                                  "capabilities", "roots", "running", "secrets")} == {
        "name": "str", "agent": "str", "config_path": "str", "transport": "str", "command": "str", "url": "str",
        "capabilities": "list", "roots": "list", "running": "bool", "secrets": "list"}
    assert set(server["secrets"][0]) == {"variable", "detector", "fingerprint"}
    assert [a["kind"] for a in report["agents"]] == ["cursor"]


def test_scan_text_lists_servers_without_credentials(tmp_path: Path, credentials: Credentials) -> None:
    """The human-readable scan names each server and its secret variables, never their values."""
    home = tmp_path / "home"
    plant("windsurf", home, credentials)
    text = _scan_cli(home)
    assert "windsurf/brave-search stdio @modelcontextprotocol/server-brave-search [fetch]" in text
    assert "env:BRAVE_API_KEY (credential-variable)" in text
    assert credentials.api_token not in text
