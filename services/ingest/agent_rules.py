"""The risk rules about AI agents and their MCP servers, pure like the rest of `rules`.

`agent_hits` looks at the agents and MCP servers of one inventory (hostile text from the host) and
returns, per enabled rule, one summary and its evidence; `rules.evaluate` turns them into findings with
the policy's severity and isolation. Evidence carries what the agent reported (names, paths, detectors,
fingerprints), never a credential: the agent never sends one.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lifecyclezero.v1 import common_pb2

if TYPE_CHECKING:
    from services.ingest.rules import Policy

MAX_EVIDENCE_ITEMS = 20
SECRET_IN_CONFIG = "mcp-secret-in-config"  # noqa: S105 - a rule id, not a password
BROAD_FILESYSTEM = "mcp-broad-filesystem"
SHELL = "mcp-shell"
REMOTE_NOT_ALLOWED = "mcp-remote-server-not-allowed"
AGENT_NOT_ALLOWED = "agent-not-allowed"
CLOUD_NOT_ALLOWED = "agent-cloud-endpoint-not-allowed"

Hit = tuple[str, str, dict[str, Any]]
# A root this broad hands a model every user's files: the file system, the homes folder, a home.
_BROAD_ROOT = re.compile(
    r"^(/|/home/?|/Users/?|/root|/home/[^/]+|/Users/[^/]+|[A-Za-z]:[\\/]?|[A-Za-z]:[\\/]Users[\\/][^\\/]+)/?$"
)


MAX_AGENTS_KEPT = 100
MAX_SERVERS_KEPT = 300
# What assets accepts (services/assets/servicer.py MAX_AGENT_INVENTORY_BYTES), less room for the timestamp.
MAX_KEPT_BYTES = 340_000


def agent_inventory(inventory: common_pb2.Inventory) -> common_pb2.AgentInventory:
    """What assets keeps of an inventory's agents and MCP servers: bounded, process ids left out."""
    kept = common_pb2.AgentInventory(agents=inventory.agents[:MAX_AGENTS_KEPT],
                                     mcp_servers=inventory.mcp_servers[:MAX_SERVERS_KEPT])
    for item in [*kept.agents, *kept.mcp_servers]:
        item.ClearField("pids")
    while kept.ByteSize() > MAX_KEPT_BYTES and (kept.mcp_servers or kept.agents):
        del (kept.mcp_servers or kept.agents)[-1]
    return kept


def agent_hits(inventory: common_pb2.Inventory, policy: Policy, enabled: set[str]) -> list[Hit]:
    """(rule id, summary, evidence) for each enabled agent rule that finds something in ``inventory``."""
    hits: list[Hit | None] = []
    if SECRET_IN_CONFIG in enabled:
        hits.append(_secrets(inventory))
    if BROAD_FILESYSTEM in enabled:
        hits.append(_broad_filesystem(inventory))
    if SHELL in enabled:
        hits.append(_shell(inventory))
    if REMOTE_NOT_ALLOWED in enabled and policy.mcp_remote_hosts is not None:
        hits.append(_remote(inventory, policy.mcp_remote_hosts))
    if AGENT_NOT_ALLOWED in enabled and policy.agent_kinds is not None:
        hits.append(_agent_kinds(inventory, policy.agent_kinds))
    if CLOUD_NOT_ALLOWED in enabled and policy.agent_cloud_hosts is not None:
        hits.append(_cloud(inventory, policy.agent_cloud_hosts))
    return [hit for hit in hits if hit is not None]


def _server_ref(server: common_pb2.McpServer) -> dict[str, Any]:
    return {"name": server.name, "agent": server.agent, "user": server.user, "config_path": server.config_path,
            "running": server.running}


def _more(count: int) -> str:
    return f" (and {count - 1} more)" if count > 1 else ""


def _secrets(inventory: common_pb2.Inventory) -> Hit | None:
    found: list[dict[str, Any]] = []
    for server in inventory.mcp_servers:
        if server.secrets:
            found.append({**_server_ref(server), "secrets": _secret_refs(server.secrets)})
    for agent in inventory.agents:
        if agent.secrets:
            found.append({"agent": agent.kind, "user": agent.user, "config_paths": list(agent.config_paths)[:5],
                          "secrets": _secret_refs(agent.secrets)})
    if not found:
        return None
    first = found[0]
    where = f"MCP server {first['name']} of {first['agent']}" if "name" in first else f"{first['agent']} settings"
    summary = f"{first['secrets'][0]['detector']} in {where} ({first['secrets'][0]['variable']})" + _more(len(found))
    return SECRET_IN_CONFIG, summary, {"configs": found[:MAX_EVIDENCE_ITEMS]}


def _secret_refs(secrets: Any) -> list[dict[str, str]]:
    return [{"variable": s.variable, "detector": s.detector, "fingerprint": s.fingerprint}
            for s in list(secrets)[:MAX_EVIDENCE_ITEMS]]


def _broad_filesystem(inventory: common_pb2.Inventory) -> Hit | None:
    found = []
    for server in inventory.mcp_servers:
        broad = [root for root in server.roots if _is_broad(root, server.home)]
        if broad and "filesystem" in server.capabilities:
            found.append({**_server_ref(server), "roots": broad[:MAX_EVIDENCE_ITEMS]})
    if not found:
        return None
    first = found[0]
    summary = f"MCP server {first['name']} of {first['agent']} reaches {first['roots'][0]}" + _more(len(found))
    return BROAD_FILESYSTEM, summary, {"servers": found[:MAX_EVIDENCE_ITEMS]}


def _is_broad(root: str, home: str) -> bool:
    normal = root.rstrip("/") or "/"
    if _BROAD_ROOT.match(normal):
        return True
    home = home.rstrip("/")
    return bool(home) and (normal == home or home.startswith(normal + "/"))


def _shell(inventory: common_pb2.Inventory) -> Hit | None:
    found = [_server_ref(s) | {"package": s.package} for s in inventory.mcp_servers if "shell" in s.capabilities]
    if not found:
        return None
    summary = f"MCP server {found[0]['name']} of {found[0]['agent']} runs commands" + _more(len(found))
    return SHELL, summary, {"servers": found[:MAX_EVIDENCE_ITEMS]}


def _host(url: str) -> str:
    try:
        return (urlsplit(url if "://" in url else f"https://{url}").hostname or "").lower()
    except ValueError:
        return ""


def _allowed(host: str, patterns: tuple[str, ...]) -> bool:
    return bool(host) and any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns)


def _remote(inventory: common_pb2.Inventory, allowed: tuple[str, ...]) -> Hit | None:
    found = [
        {**_server_ref(s), "url": s.url, "host": _host(s.url)}
        for s in inventory.mcp_servers
        if s.url and not _allowed(_host(s.url), allowed)
    ]
    if not found:
        return None
    first = found[0]
    summary = f"MCP server {first['name']} of {first['agent']} is remote at {first['host']}" + _more(len(found))
    return REMOTE_NOT_ALLOWED, summary, {"servers": found[:MAX_EVIDENCE_ITEMS], "allowed_hosts": list(allowed)}


def _agent_kinds(inventory: common_pb2.Inventory, allowed: frozenset[str]) -> Hit | None:
    found = [{"agent": a.kind, "user": a.user, "running": a.running} for a in inventory.agents
             if a.kind.lower() not in allowed]
    if not found:
        return None
    summary = f"agent {found[0]['agent']} is not on the allowlist" + _more(len(found))
    return AGENT_NOT_ALLOWED, summary, {"agents": found[:MAX_EVIDENCE_ITEMS], "allowed_kinds": sorted(allowed)}


def _cloud(inventory: common_pb2.Inventory, allowed: tuple[str, ...]) -> Hit | None:
    found = [
        {"agent": a.kind, "user": a.user, "url": e.url, "host": e.host, "source": e.source}
        for a in inventory.agents for e in a.endpoints
        if e.location == "cloud" and not _allowed(e.host.lower(), allowed)
    ]
    if not found:
        return None
    summary = f"agent {found[0]['agent']} sends prompts to {found[0]['host']}" + _more(len(found))
    return CLOUD_NOT_ALLOWED, summary, {"endpoints": found[:MAX_EVIDENCE_ITEMS], "allowed_hosts": list(allowed)}
