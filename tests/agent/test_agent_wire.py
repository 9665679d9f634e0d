"""Agents and MCP servers in the inventory: covered by the digest (pids aside) and carried on the wire."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from agent.inventory import AiAgent, Inventory, McpServer, SecretRef
from agent.stream import inventory_proto

SECRET = SecretRef("env:GITHUB_TOKEN", "github-token", "hmac-sha256:" + "0" * 32)
SERVER = McpServer(name="files", agent="cursor", config_path="/home/a/.cursor/mcp.json", user="a", home="/home/a",
                   scope="user", transport="stdio", command="npx", args=("-y", "pkg", "/home/a"), url="",
                   package="pkg", capabilities=("filesystem",), roots=("/home/a",), running=False,
                   secrets=(SECRET,))
AGENT = AiAgent(kind="cursor", user="a", home="/home/a", config_paths=("/home/a/.cursor/mcp.json",), running=True,
                pids=(10,))


def _inventory(*servers: McpServer, agents: tuple[AiAgent, ...] = (AGENT,)) -> Inventory:
    return Inventory(engines=(), models=(), hostname="h", os="linux", collected_at="2026-01-01T00:00:00+00:00",
                     agents=agents, mcp_servers=servers)


def test_process_ids_do_not_change_the_digest() -> None:
    """The same servers and agents under other pids have the same digest."""
    moved = replace(SERVER, running=True, pids=(1,))
    again = replace(SERVER, running=True, pids=(2,))
    assert _inventory(moved).digest() == _inventory(again, agents=(replace(AGENT, pids=(99,)),)).digest()


def test_a_server_starting_changes_the_digest() -> None:
    """A configured server that starts running is a change the control plane must see."""
    assert _inventory(SERVER).digest() != _inventory(replace(SERVER, running=True, pids=(1,))).digest()


def test_an_inventory_without_agents_keeps_its_digest() -> None:
    """Without agents the canonical form is the one from before agents existed, so acked digests still match."""
    before = {"engines": [], "models": [], "hostname": "h", "os": "linux", "errors": []}
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert _inventory(agents=()).digest() == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_the_wire_inventory_carries_servers_agents_and_secret_references() -> None:
    """inventory_proto fills agents and mcp_servers, secrets by variable, detector and fingerprint."""
    message = inventory_proto(_inventory(SERVER))
    assert [(s.name, list(s.roots), [x.fingerprint for x in s.secrets]) for s in message.mcp_servers] == [
        ("files", ["/home/a"], [SECRET.fingerprint])]
    assert [(a.kind, a.running, list(a.pids)) for a in message.agents] == [("cursor", True, [10])]
