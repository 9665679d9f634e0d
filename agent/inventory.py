"""What the agent reports: engines, models and the host, as frozen values.

The inventory is the payload of heartbeats. :meth:`Inventory.digest` lets a
heartbeat carry only a hash when nothing changed, so the digest covers the
facts an operator cares about and leaves out what changes on its own (the
collection time, process ids, ephemeral local ports, list order).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

CONFIRMED = "high"
UNCONFIRMED = "low"


@dataclass(frozen=True)
class Endpoint:
    """A TCP port an engine listens on; ``exposed`` when reachable from beyond loopback."""

    address: str
    port: int
    exposed: bool


@dataclass(frozen=True)
class Connection:
    """An established TCP connection from an engine to a non-loopback peer."""

    local_address: str
    local_port: int
    remote_address: str
    remote_port: int


@dataclass(frozen=True)
class Engine:
    """A running AI engine.

    ``confirmed`` means the process signature and an HTTP probe agree; an engine
    matched by signature alone is still reported, with ``confidence`` "low", so
    the control plane can tell a detection from a lead.
    """

    kind: str
    pid: int
    exe: str
    user: str
    version: str | None
    listen: tuple[Endpoint, ...]
    confirmed: bool
    confidence: str
    models_loaded: tuple[str, ...] = ()
    models_installed: tuple[str, ...] = ()
    open_sensitive_files: tuple[str, ...] = ()
    outbound: tuple[Connection, ...] = ()
    auth_required: bool = False
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    """A model found on disk; ``digest`` is ``sha256:<hex>`` when known (hashing is optional, cached)."""

    name: str
    format: str
    path: str
    digest: str | None
    size_bytes: int
    architecture: str | None
    quantization: str | None
    parameter_count: int | None
    context_length: int | None
    source: str
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecretRef:
    """A credential present in an agent's configuration: where and how recognised, never its value."""

    variable: str
    detector: str
    fingerprint: str


@dataclass(frozen=True)
class ModelEndpoint:
    """Where an agent sends prompts.

    ``location`` is "local" (this host; ``engine`` names the engine found listening there, if any),
    "self-hosted" (another host that is not a known cloud API) or "cloud"; ``source`` is "config"
    when a file names it and "default" when it is the agent's built-in provider.
    """

    url: str
    host: str
    location: str
    engine: str = ""
    source: str = "config"


@dataclass(frozen=True)
class AiAgent:
    """An AI agent installed (configuration or state files found) or running for one user."""

    kind: str
    user: str
    home: str
    config_paths: tuple[str, ...]
    running: bool
    pids: tuple[int, ...] = ()
    endpoints: tuple[ModelEndpoint, ...] = ()
    secrets: tuple[SecretRef, ...] = ()


@dataclass(frozen=True)
class McpServer:
    """One MCP server an agent's configuration declares.

    ``args`` and ``url`` are as configured with credentials replaced by ``[redacted]``; ``roots`` are the
    file-system roots it was given, resolved (``~``, environment variables, relative paths);
    ``running`` means a process whose command line matches runs now (``parent_agent`` is the agent
    process above it, if any).
    """

    name: str
    agent: str
    config_path: str
    user: str
    home: str
    scope: str
    transport: str
    command: str
    args: tuple[str, ...]
    url: str
    package: str
    capabilities: tuple[str, ...]
    roots: tuple[str, ...]
    running: bool
    enabled: bool = True
    pids: tuple[int, ...] = ()
    parent_agent: str = ""
    env_names: tuple[str, ...] = ()
    secrets: tuple[SecretRef, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """One discovery snapshot of a host."""

    engines: tuple[Engine, ...]
    models: tuple[Model, ...]
    hostname: str
    os: str
    collected_at: str
    errors: tuple[str, ...] = field(default=())
    agents: tuple[AiAgent, ...] = ()
    mcp_servers: tuple[McpServer, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        return asdict(self)

    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical form: equal for snapshots differing only in volatile fields."""
        try:
            canonical = json.dumps(
                _canonical(self), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
            )
        except (TypeError, ValueError):
            # Values no discovery produces (the types are checked on the wire path); still a digest, never a raise.
            canonical = repr(self)
        # surrogatepass: a file name that is not UTF-8 must not make the digest (and so the heartbeat) fail.
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(inventory: Inventory) -> dict[str, Any]:
    engines = []
    for engine in inventory.engines:
        item = asdict(engine)
        del item["pid"]
        item["outbound"] = sorted([c["remote_address"], c["remote_port"]] for c in item["outbound"])
        item["listen"] = sorted(item["listen"], key=lambda e: (e["address"], e["port"]))
        for key in ("models_loaded", "models_installed", "open_sensitive_files", "evidence"):
            item[key] = sorted(item[key])
        engines.append(item)
    engines.sort(key=lambda e: json.dumps(e, sort_keys=True))
    models = sorted((asdict(m) for m in inventory.models), key=lambda m: (m["path"], m["name"]))
    canonical = {
        "engines": engines,
        "models": models,
        "hostname": inventory.hostname,
        "os": inventory.os,
        "errors": sorted(inventory.errors),
    }
    # Absent when empty, so the digest of an inventory without agents is what it was before agents existed.
    if inventory.agents:
        canonical["agents"] = _sorted_without_pids(inventory.agents)
    if inventory.mcp_servers:
        canonical["mcp_servers"] = _sorted_without_pids(inventory.mcp_servers)
    return canonical


def _sorted_without_pids(items: tuple[AiAgent, ...] | tuple[McpServer, ...]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        record = asdict(item)
        del record["pids"]
        out.append(record)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))
