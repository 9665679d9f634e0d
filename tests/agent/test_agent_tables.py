"""The agent and MCP tables and the credential detectors, case by case."""

from __future__ import annotations

import pytest

from agent.discovery.agent_table import AGENTS
from agent.discovery.mcp_table import classify, parse_launch
from agent.discovery.secrets import detect, fingerprint
from agent.discovery.signatures import match
from agent.platform import ProcessInfo
from agent.platform.linux import LinuxPlatform


def _process(*cmdline: str, name: str = "") -> ProcessInfo:
    return ProcessInfo(pid=4242, name=name or cmdline[0].rsplit("/", 1)[-1][:15], exe="", cmdline=cmdline,
                       uid=1000, user="alice", cwd="/home/alice")


@pytest.mark.parametrize(("cmdline", "kind"), [
    (("node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"), "claude-code"),
    (("/home/alice/.claude/local/claude",), "claude-code"),
    (("node", "/usr/local/lib/node_modules/@openai/codex/bin/codex.js", "exec"), "codex"),
    (("node", "/usr/lib/node_modules/@google/gemini-cli/dist/index.js"), "gemini-cli"),
    (("/usr/share/cursor/cursor",), "cursor"),
    (("/Applications/Cursor.app/Contents/MacOS/Cursor",), "cursor"),
    (("/usr/share/code/code", "--unity-launch"), "vscode"),
    (("/usr/bin/goose", "session"), "goose"),
    (("/usr/bin/python3", "/home/alice/.local/bin/aider", "--model", "gpt-4o"), "aider"),
    (("/opt/zed/zed-editor",), "zed"),
    (("/home/alice/.opencode/bin/opencode",), "opencode"),
])
def test_agent_processes_are_recognised(cmdline: tuple[str, ...], kind: str) -> None:
    """Each agent's usual command line is named by its signature."""
    signature = match(_process(*cmdline), LinuxPlatform(), [spec.process for spec in AGENTS])
    assert signature is not None and signature.kind == kind


@pytest.mark.parametrize("cmdline", [
    ("/usr/share/cursor/cursor", "--type=renderer"),
    ("npm", "install", "-g", "@anthropic-ai/claude-code"),
    ("node", "/srv/app/server.js"),
])
def test_helpers_and_unrelated_processes_are_not_agents(cmdline: tuple[str, ...]) -> None:
    """Electron helpers, installers and other Node programs match no agent."""
    assert match(_process(*cmdline), LinuxPlatform(), [spec.process for spec in AGENTS]) is None


@pytest.mark.parametrize(("command", "args", "package"), [
    ("npx", ("-y", "@modelcontextprotocol/server-filesystem@2025.1.1", "/tmp"),
     "@modelcontextprotocol/server-filesystem"),
    ("uvx", ("--from", "mcp-server-git==0.6", "mcp-server-git", "--repository", "."), "mcp-server-git"),
    ("docker", ("run", "-i", "--rm", "-e", "GITHUB_TOKEN", "ghcr.io/github/github-mcp-server"),
     "ghcr.io/github/github-mcp-server"),
    ("node", ("/opt/mcp/node_modules/@playwright/mcp/cli.js",), "@playwright/mcp"),
    ("pnpm", ("dlx", "@browsermcp/mcp"), "@browsermcp/mcp"),
    ("/usr/local/bin/github-mcp-server", ("stdio",), "github-mcp-server"),
])
def test_the_launched_package_is_found(command: str, args: tuple[str, ...], package: str) -> None:
    """Launchers (npx, uvx, docker, node, pnpm dlx) and plain binaries yield the package they run."""
    assert parse_launch(command, args).package == package


def test_an_unknown_package_is_unknown_and_a_known_url_host_is_classified() -> None:
    """A package no row names is "unknown"; a remote server is classified by its URL host."""
    assert classify("my-private-mcp")[1] == ("unknown",)
    assert classify("", "api.githubcopilot.com")[1] == ("git", "cloud")


@pytest.mark.parametrize(("value", "variable", "detector"), [
    ("ghp_" + "a1" * 18, "X", "github-token"),
    ("github_pat_" + "B2" * 20, "X", "github-fine-grained-token"),
    ("xoxb-1234567890-abcdefghij", "X", "slack-token"),
    ("sk-ant-api03-" + "x9" * 20, "X", "anthropic-api-key"),
    ("sk-proj-" + "Q7" * 20, "X", "openai-api-key"),
    ("AKIA" + "ABCDEFGH12345678", "X", "aws-access-key-id"),
    ("AIza" + "c" * 35, "X", "google-api-key"),
    ("postgres://app:hunter2@db/app", "X", "url-credentials"),
    ("s3cr3tvalue", "DB_PASSWORD", "credential-variable"),
    ("Zq8vN3kLw9Tr5Yp2Xb7Hm4Jc6Fd1Gs0A", "SOMETHING", "high-entropy"),
])
def test_credentials_are_detected(value: str, variable: str, detector: str) -> None:
    """Vendor prefixes, connection strings, credential-named variables and high-entropy strings are found."""
    assert detect(value, variable) == detector


@pytest.mark.parametrize(("value", "variable"), [
    ("${GITHUB_TOKEN}", "GITHUB_TOKEN"),
    ("{env:OPENAI_API_KEY}", "OPENAI_API_KEY"),
    ("/home/alice/projects/some-long-directory-name-2024", "ROOT"),
    ("info", "LOG_LEVEL"),
    ("true", "ENABLE_AUTH"),
])
def test_references_paths_and_plain_settings_are_not_credentials(value: str, variable: str) -> None:
    """Environment references, paths and short plain values are not reported."""
    assert detect(value, variable) is None


def test_fingerprints_match_under_one_salt_and_differ_under_another() -> None:
    """One token under one salt has one fingerprint; another salt (tenant) gives another."""
    token = "ghp_" + "a1" * 18
    assert fingerprint(token, "t1") == fingerprint(token, "t1") != fingerprint(token, "t2")
    assert token not in fingerprint(token, "t1")
