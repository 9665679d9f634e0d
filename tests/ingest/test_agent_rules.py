"""Agent and MCP rules: each fires on what the agent reported, with evidence, and the policy configures it."""

from __future__ import annotations

import pytest
from lifecyclezero.v1 import common_pb2

from services.ingest import rules


def _policy(override: str = "") -> rules.Policy:
    base = rules.load_document(rules.DEFAULT_POLICY_FILE.read_text(), "default")
    return rules.build_policy(rules.merge(base, rules.load_document(override, "override")))


def _server(**kw: object) -> common_pb2.McpServer:
    base: dict[str, object] = {"name": "files", "agent": "cursor", "user": "alice", "home": "/home/alice",
                               "config_path": "/home/alice/.cursor/mcp.json", "transport": "stdio",
                               "capabilities": ["filesystem"], "roots": ["/home/alice/project"]}
    base.update(kw)
    return common_pb2.McpServer(**base)  # type: ignore[arg-type]


def _secret() -> common_pb2.ConfigSecret:
    return common_pb2.ConfigSecret(variable="env:GITHUB_TOKEN", detector="github-token",
                                   fingerprint="hmac-sha256:" + "ab" * 16)


def _findings(inventory: common_pb2.Inventory, override: str = "") -> dict[str, rules.Finding]:
    return {f.rule_id: f for f in rules.evaluate(inventory, None, _policy(override))}


def test_a_narrow_filesystem_server_without_secrets_is_quiet() -> None:
    """A file-system server rooted in one project, with no credential, raises nothing under the default policy."""
    assert _findings(common_pb2.Inventory(mcp_servers=[_server()])) == {}


def test_a_secret_in_an_mcp_config_is_critical_and_names_variable_and_fingerprint() -> None:
    """A credential in an MCP server's environment is a CRITICAL finding carrying its name and fingerprint."""
    finding = _findings(common_pb2.Inventory(mcp_servers=[_server(secrets=[_secret()])]))["mcp-secret-in-config"]
    assert finding.severity is rules.Severity.CRITICAL
    assert finding.evidence["configs"][0]["secrets"] == [
        {"variable": "env:GITHUB_TOKEN", "detector": "github-token", "fingerprint": "hmac-sha256:" + "ab" * 16}]


def test_a_secret_in_an_agents_own_settings_is_reported_too() -> None:
    """A model API key in an agent's settings counts as a secret in config."""
    agent = common_pb2.AiAgent(kind="continue", user="alice", secrets=[_secret()])
    assert "mcp-secret-in-config" in _findings(common_pb2.Inventory(agents=[agent]))


def test_the_secret_rule_can_isolate() -> None:
    """A tenant can make mcp-secret-in-config isolate the host."""
    override = "rules: {mcp-secret-in-config: {isolate: true}}"
    finding = _findings(common_pb2.Inventory(mcp_servers=[_server(secrets=[_secret()])]), override)
    assert finding["mcp-secret-in-config"].isolate is True


@pytest.mark.parametrize("root", ["/", "/home/alice", "/home", "/Users/bob", "/root", "C:\\Users\\bob"])
def test_a_filesystem_root_at_a_home_or_the_root_is_broad(root: str) -> None:
    """A file-system server given /, the homes folder or a home directory is mcp-broad-filesystem."""
    finding = _findings(common_pb2.Inventory(mcp_servers=[_server(roots=[root])]))["mcp-broad-filesystem"]
    assert finding.evidence["servers"][0]["roots"] == [root]


def test_a_root_above_the_users_home_is_broad() -> None:
    """A root that contains the server user's home (wherever the home lives) is broad."""
    server = _server(home="/srv/users/alice", roots=["/srv/users"])
    assert "mcp-broad-filesystem" in _findings(common_pb2.Inventory(mcp_servers=[server]))


def test_a_shell_server_is_reported() -> None:
    """A server whose capabilities include shell is mcp-shell."""
    server = _server(name="cmd", capabilities=["shell"], roots=[])
    assert _findings(common_pb2.Inventory(mcp_servers=[server]))["mcp-shell"].severity is rules.Severity.WARNING


def test_a_remote_server_outside_the_allowlist_is_reported_and_an_allowed_one_is_not() -> None:
    """Remote MCP servers are checked against allowlists.mcp_remote_hosts (empty by default)."""
    inventory = common_pb2.Inventory(mcp_servers=[_server(transport="http", url="https://mcp.example.com/sse",
                                                          capabilities=["unknown"], roots=[])])
    assert _findings(inventory)["mcp-remote-server-not-allowed"].evidence["servers"][0]["host"] == "mcp.example.com"
    assert "mcp-remote-server-not-allowed" not in _findings(
        inventory, "allowlists: {mcp_remote_hosts: ['*.example.com']}")


def test_agent_kinds_are_enforced_only_when_listed() -> None:
    """agent-not-allowed is silent while the allowlist is null and names the agent once it is set."""
    inventory = common_pb2.Inventory(agents=[common_pb2.AiAgent(kind="cursor", user="alice")])
    assert "agent-not-allowed" not in _findings(inventory)
    finding = _findings(inventory, "allowlists: {agent_kinds: [claude-code]}")["agent-not-allowed"]
    assert finding.evidence["agents"][0]["agent"] == "cursor"


def test_cloud_endpoints_outside_the_allowlist_are_reported() -> None:
    """agent-cloud-endpoint-not-allowed names a cloud host the tenant did not allow, and not a local one."""
    endpoints = [common_pb2.ModelEndpoint(url="https://api.openai.com", host="api.openai.com", location="cloud"),
                 common_pb2.ModelEndpoint(url="http://127.0.0.1:11434", host="127.0.0.1", location="local")]
    inventory = common_pb2.Inventory(agents=[common_pb2.AiAgent(kind="codex", endpoints=endpoints)])
    finding = _findings(inventory, "allowlists: {agent_cloud_hosts: [api.anthropic.com]}")
    assert [e["host"] for e in finding["agent-cloud-endpoint-not-allowed"].evidence["endpoints"]] == ["api.openai.com"]


def test_a_rule_can_be_disabled() -> None:
    """A disabled agent rule does not fire."""
    server = _server(name="cmd", capabilities=["shell"], roots=[])
    disabled = "rules: {mcp-shell: {enabled: false}}"
    assert "mcp-shell" not in _findings(common_pb2.Inventory(mcp_servers=[server]), disabled)
