"""Hostile agent configuration files: the scan never crashes, bounds what it reads and stays in the home."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from agent.discovery.agents import AgentSettings, discover_agents, scan_configs
from agent.discovery.configfiles import ReadLimits
from agent.platform import current_platform
from tests.agent.agent_homes import scan

FILESYSTEM_SERVER = json.dumps({"mcpServers": {"fs": {"command": "npx", "args": ["-y",
                                "@modelcontextprotocol/server-filesystem", "/"]}}})


def _cursor_config(home: Path) -> Path:
    path = home / ".cursor" / "mcp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _only_error(home: Path) -> str:
    findings = scan(home)
    assert findings.mcp_servers == ()
    assert len(findings.errors) == 1
    return findings.errors[0]


def test_a_50_mb_config_is_not_read(tmp_path: Path) -> None:
    """A config file over the size limit is skipped with its size, not read."""
    with open(_cursor_config(tmp_path), "wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    assert "52428800 bytes, over the 1048576-byte limit" in _only_error(tmp_path)


def test_the_size_limit_is_configurable(tmp_path: Path) -> None:
    """A smaller max_bytes refuses a file the default would read."""
    _cursor_config(tmp_path).write_text(FILESYSTEM_SERVER)
    settings = AgentSettings(homes=(str(tmp_path),), password_db=False, limits=ReadLimits(max_bytes=16))
    assert "over the 16-byte limit" in discover_agents(current_platform(), settings).errors[0]


def test_a_deeply_nested_json_document_is_refused(tmp_path: Path) -> None:
    """A JSON bomb of a hundred thousand nested arrays is reported as too deep."""
    _cursor_config(tmp_path).write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in _only_error(tmp_path)


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    """A billion-laughs YAML document is refused at its first alias."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]"
              for i in range(8)]
    path = tmp_path / ".continue" / "config.yaml"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    assert "not valid yaml (ComposerError)" in _only_error(tmp_path)


def test_a_non_utf8_file_is_refused(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported, not guessed at."""
    _cursor_config(tmp_path).write_bytes(b'{"mcpServers": {"\xff\xfe": {}}}')
    assert "not UTF-8" in _only_error(tmp_path)


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    """A config that is a link to itself is reported as unresolvable."""
    path = _cursor_config(tmp_path)
    path.symlink_to(path)
    assert "cannot be resolved" in _only_error(tmp_path)


def test_a_link_out_of_the_home_is_not_followed(tmp_path: Path) -> None:
    """A config linked to a file outside the home is not read, even a valid one."""
    home = tmp_path / "home"
    outside = tmp_path / "elsewhere.json"
    outside.write_text(FILESYSTEM_SERVER)
    _cursor_config(home).symlink_to(outside)
    assert "resolves outside the home" in _only_error(home)


def test_a_linked_project_folder_outside_the_home_is_not_walked(tmp_path: Path) -> None:
    """The project walk does not follow a directory link that leaves the home."""
    home = tmp_path / "home"
    home.mkdir()
    outside = tmp_path / "outside-project"
    _cursor_config(outside).write_text(FILESYSTEM_SERVER)
    (home / "linked").symlink_to(outside)
    assert scan(home).mcp_servers == ()


def test_a_file_owned_by_another_user_is_not_read(tmp_path: Path) -> None:
    """A config in the home owned by neither the home's owner nor root is refused with its uid."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another uid")
    path = _cursor_config(tmp_path)
    path.write_text(FILESYSTEM_SERVER)
    os.chown(path, 54321, 54321)
    assert "owned by uid 54321" in _only_error(tmp_path)


def test_a_fifo_does_not_hang_the_scan(tmp_path: Path) -> None:
    """A FIFO planted under a config's name is refused without blocking on it."""
    os.mkfifo(_cursor_config(tmp_path))
    assert "not a regular file" in _only_error(tmp_path)


@pytest.mark.parametrize("document", [
    '{"mcpServers": [1, 2, 3]}',
    '{"mcpServers": {"x": {"command": 7, "args": "not a list", "env": ["A"]}}}',
    '{"mcpServers": {"x": null, "y": {"args": [null, true, {"a": 1}]}}}',
    '"just a string"',
    "[]",
])
def test_unexpected_shapes_are_skipped_without_error(tmp_path: Path, document: str) -> None:
    """Valid JSON of the wrong shape yields no crash and at most empty entries."""
    _cursor_config(tmp_path).write_text(document)
    findings = scan(tmp_path)
    assert findings.errors == ()
    assert all(s.command == "" for s in findings.mcp_servers)


def test_one_bad_file_does_not_hide_the_others(tmp_path: Path) -> None:
    """A broken Cursor config is reported while Claude Desktop's valid one is still inventoried."""
    _cursor_config(tmp_path).write_text("{not json")
    desktop = tmp_path / ".config" / "Claude" / "claude_desktop_config.json"
    desktop.parent.mkdir(parents=True)
    desktop.write_text(FILESYSTEM_SERVER)
    findings = scan(tmp_path)
    assert [s.agent for s in findings.mcp_servers] == ["claude-desktop"]
    assert len(findings.errors) == 1


def test_errors_never_quote_file_content(tmp_path: Path) -> None:
    """A parse error's reason carries no text of the file (a credential may sit next to the error)."""
    path = tmp_path / ".continue" / "config.yaml"
    path.parent.mkdir()
    path.write_text("models:\n  - apiKey: SECRETVALUE123\n   bad: [\n")
    assert "SECRETVALUE123" not in _only_error(tmp_path)


def test_the_project_walk_is_bounded_in_depth(tmp_path: Path) -> None:
    """A project deeper than the walk's depth is not found."""
    deep = tmp_path.joinpath(*[f"d{i}" for i in range(8)])
    _cursor_config(deep).write_text(FILESYSTEM_SERVER)
    assert scan(tmp_path).mcp_servers == ()


def test_a_rescan_reads_a_changed_file_again(tmp_path: Path) -> None:
    """Given the previous scan, a config whose content changed is parsed again and its new server appears."""
    settings = AgentSettings(homes=(str(tmp_path),), password_db=False)
    path = _cursor_config(tmp_path)
    path.write_text('{"mcpServers": {}}')
    first = scan_configs(settings)
    path.write_text(FILESYSTEM_SERVER)
    assert [s.name for s in scan_configs(settings, first).servers] == ["fs"]


def test_a_rescan_without_a_walk_reuses_the_projects_found(tmp_path: Path) -> None:
    """A scan told not to walk keeps the previous project folders; the next walk finds a new one."""
    settings = AgentSettings(homes=(str(tmp_path),), password_db=False)
    first = scan_configs(settings)
    _cursor_config(tmp_path / "new-project").write_text(FILESYSTEM_SERVER)
    assert scan_configs(settings, first, walk=False).servers == ()
    assert [s.scope for s in scan_configs(settings, first, walk=True).servers] == ["project"]


def test_the_report_stays_within_its_budget_and_keeps_credentials_first(tmp_path: Path) -> None:
    """Many servers are cut to the byte budget, the one with a credential kept, the cut counted."""
    servers = {f"s{i}": {"command": "npx", "args": ["-y", f"pkg-{i}", "x" * 200]} for i in range(150)}
    servers["zz-token"] = {"command": "npx", "args": ["pkg"], "env": {"API_TOKEN": "Zq8vN3kLw9Tr5Yp2Xb7Hm4Jc6Fd1Gs0A"}}
    _cursor_config(tmp_path).write_text(json.dumps({"mcpServers": servers}))
    settings = AgentSettings(homes=(str(tmp_path),), password_db=False, report_budget_bytes=32 * 1024)
    findings = discover_agents(current_platform(), settings)
    reported = sum(len(json.dumps(asdict(s))) for s in findings.mcp_servers)
    assert reported <= 32 * 1024
    assert "zz-token" in {s.name for s in findings.mcp_servers}
    assert "not reported: over the 32768-byte inventory budget" in findings.errors[-1]


def test_server_entries_over_the_per_file_limit_are_counted(tmp_path: Path) -> None:
    """A file declaring more servers than are read says how many it left out."""
    servers = {f"s{i}": {"command": "npx", "args": [f"pkg-{i}"]} for i in range(250)}
    _cursor_config(tmp_path).write_text(json.dumps({"mcpServers": servers}))
    assert scan(tmp_path).errors[0].endswith("50 server entries beyond the first 200 not read")
