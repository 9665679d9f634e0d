"""Turn agents' configuration files and processes into :class:`AiAgent` and :class:`McpServer` records.

For every home: each agent's user-scope files, then its project-scope files in
every project folder the bounded walk finds, read through
:func:`agent.discovery.configfiles.read_config` (hostile files are skipped with
a reason in ``errors``). Processes say which agents and which MCP servers run
now. Credentials are turned into :class:`SecretRef` here and their values go no
further: arguments and URLs are redacted before they enter a record.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit, urlunsplit

from agent.discovery import mcp_table
from agent.discovery.agent_processes import MatchCache, running_agents, with_running
from agent.discovery.agent_readers import MAX_SERVERS_PER_FILE, READERS, ConfigFacts, RawServer
from agent.discovery.agent_table import AGENTS, CLOUD_API_HOSTS, PROJECT, AgentSpec, Location
from agent.discovery.configfiles import ReadLimits, read_config, resolve_inside
from agent.discovery.homes import Home, WalkBounds, homes_of, project_dirs, root_home, user_name
from agent.discovery.redaction import REDACTED, note_secret, redact_arg, redact_url
from agent.discovery.secrets import detect, fingerprint
from agent.inventory import AiAgent, Engine, McpServer, ModelEndpoint, SecretRef
from agent.platform import Platform, ProcessInfo


def os_family() -> str:
    if sys.platform == "darwin":
        return "macos"
    return "windows" if sys.platform.startswith("win") else "linux"


@dataclass(frozen=True)
class AgentSettings:
    """Knobs for one agent-discovery pass; ``homes`` are scanned in addition to the password database's."""

    homes: tuple[str, ...] = ()
    password_db: bool = True
    os_family: str = field(default_factory=os_family)
    limits: ReadLimits = field(default_factory=ReadLimits)
    walk: WalkBounds = field(default_factory=WalkBounds)
    fingerprint_salt: str = "lz-unenrolled"
    agents: tuple[AgentSpec, ...] = AGENTS
    # What agents and MCP servers may add to a heartbeat (ingest refuses heartbeats over 128 KiB).
    report_budget_bytes: int = 48 * 1024


@dataclass(frozen=True)
class AgentFindings:
    agents: tuple[AiAgent, ...]
    mcp_servers: tuple[McpServer, ...]
    errors: tuple[str, ...]


@dataclass
class _Found:
    """What the files of one (agent kind, home) said, gathered across files."""

    config_paths: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    secrets: list[SecretRef] = field(default_factory=list)


@dataclass(frozen=True)
class ConfigScan:
    """The file half of discovery: what every home's agent files say (already redacted), reusable across beats."""

    homes: tuple[Home, ...]
    found: dict[tuple[str, str], _Found]
    servers: tuple[McpServer, ...]
    errors: tuple[str, ...]
    # The project walk's result per home, and each file's parse by its stat stamp: a later scan that is
    # handed this one re-walks only when asked and re-parses only files whose stamp changed.
    projects: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    parsed: dict[str, tuple[tuple[int, ...], ConfigFacts | str]] = field(default_factory=dict)
    matching: MatchCache = field(default_factory=MatchCache)


def scan_configs(settings: AgentSettings, previous: ConfigScan | None = None, walk: bool = True) -> ConfigScan:
    """Read every agent's files in every home (the password database's and the configured ones).

    With ``previous``, files whose stat stamp did not change are not parsed again, and with ``walk``
    false the project folders found by ``previous`` are reused instead of walking the homes again.
    """
    from agent.models import user_homes

    homes = homes_of([*(user_homes() + root_home() if settings.password_db else []), *settings.homes])
    errors: list[str] = []
    found: dict[tuple[str, str], _Found] = {}
    servers: list[McpServer] = []
    projects: dict[str, dict[str, frozenset[str]]] = {}
    parsed: dict[str, tuple[tuple[int, ...], ConfigFacts | str]] = {}
    for home in homes:
        known = previous.projects.get(home.real) if previous is not None and not walk else None
        projects[home.real] = known if known is not None else _projects(home, settings)
        for spec, path, location, project in _config_files(home, settings, projects[home.real]):
            facts = _read_cached(path, home, location, settings.limits, previous=previous, parsed=parsed)
            if isinstance(facts, str):
                errors.append(f"agent config {path}: {facts}")
                continue
            if facts.skipped:
                errors.append(f"agent config {path}: {facts.skipped} server entries beyond the first "
                              f"{MAX_SERVERS_PER_FILE} not read")
            record = found.setdefault((spec.kind, home.real), _Found())
            record.config_paths.append(path)
            record.endpoints.extend(facts.endpoints)
            record.secrets.extend(_value_secrets(facts, settings.fingerprint_salt))
            origin = _Origin(spec, path, home, project)
            servers.extend(_server(raw, origin, settings.fingerprint_salt) for raw in facts.servers)
    return ConfigScan(tuple(homes), found, tuple(servers), tuple(errors), projects, parsed)


def discover_agents(
    platform: Platform, settings: AgentSettings, engines: Sequence[Engine] = (), configs: ConfigScan | None = None
) -> AgentFindings:
    """Every agent installed or running, and every MCP server their configurations declare, sorted.

    ``configs`` is a file scan the caller already holds (files change rarely, processes every beat).
    """
    scan = configs if configs is not None else scan_configs(settings)
    processes = platform.processes()
    cache = scan.matching
    cache.bound()
    running = running_agents(processes, settings.agents, cache)
    by_pid = {p.pid: p for p in processes}
    command_lines = [cache.command_line(p) for p in processes if p.pid not in running]
    servers = [with_running(server, command_lines, by_pid, running, cache) for server in scan.servers]
    agents = _agents(scan.found, running, scan.homes, settings, engines)
    kept_agents, kept_servers, dropped = _within_budget(agents, servers, settings.report_budget_bytes, cache)
    errors = scan.errors
    if dropped:
        errors += (f"{dropped} agents or MCP servers not reported: over the {settings.report_budget_bytes}-byte "
                   "inventory budget (those with credentials or running are kept first)",)
    return AgentFindings(
        agents=tuple(sorted(kept_agents, key=lambda a: (a.kind, a.user, a.home))),
        mcp_servers=tuple(sorted(kept_servers, key=lambda s: (s.agent, s.user, s.config_path, s.scope, s.name))),
        errors=errors,
    )


def _within_budget(
    agents: list[AiAgent], servers: list[McpServer], budget: int, cache: MatchCache
) -> tuple[list[AiAgent], list[McpServer], int]:
    """The records that fit ``budget`` (by their JSON size), the riskiest first; how many were left out."""
    ranked: list[tuple[tuple[int, int], AiAgent | McpServer]] = [
        ((0 if s.secrets else 1 if s.running else 2, index), s) for index, s in enumerate(servers)
    ]
    ranked += [((0 if a.secrets else 1, index), a) for index, a in enumerate(agents)]
    kept_agents: list[AiAgent] = []
    kept_servers: list[McpServer] = []
    used = dropped = 0
    for _, record in sorted(ranked, key=lambda pair: pair[0]):
        size = cache.sizes.get(record)
        if size is None:
            size = cache.sizes[record] = len(json.dumps(asdict(record), ensure_ascii=False))
        if used + size > budget:
            dropped += 1
            continue
        used += size
        if isinstance(record, McpServer):
            kept_servers.append(record)
        else:
            kept_agents.append(record)
    return kept_agents, kept_servers, dropped


# ------------------------------------------------------------------------------------------- files


def _projects(home: Home, settings: AgentSettings) -> dict[str, frozenset[str]]:
    """Project folders of the home with the agent entries each holds (Claude Code's remembered ones: all)."""
    markers = frozenset(
        loc.path(settings.os_family).split("/", 1)[0]
        for spec in settings.agents for loc in spec.locations if loc.scope == PROJECT
    )
    projects = project_dirs(home, markers, settings.walk)
    for folder in _claude_projects(home, settings):
        projects.setdefault(os.path.normpath(folder), markers)
    return projects


def _config_files(
    home: Home, settings: AgentSettings, projects: dict[str, frozenset[str]]
) -> list[tuple[AgentSpec, str, Location, str]]:
    """(agent, path, location, project folder) of every candidate file that exists (as a link, too)."""
    files: list[tuple[AgentSpec, str, Location, str]] = []
    seen: set[tuple[str, str]] = set()
    for spec in settings.agents:
        for location in spec.locations:
            relative = location.path(settings.os_family)
            if not relative:
                continue
            if location.scope == PROJECT:
                first = relative.split("/", 1)[0]
                candidates = [(os.path.join(project, relative), project)
                              for project, present in projects.items() if first in present]
            else:
                candidates = [(home.path + relative[1:], "")]
            for path, project in candidates:
                # The home is a project folder too: ~/.cursor/mcp.json is read once, as the user's file.
                if os.path.lexists(path) and (spec.kind, os.path.normpath(path)) not in seen:
                    seen.add((spec.kind, os.path.normpath(path)))
                    files.append((spec, path, location, project))
    return files


def _claude_projects(home: Home, settings: AgentSettings) -> list[str]:
    """Project folders Claude Code remembers (``projects`` in ``~/.claude.json``) that lie inside the home."""
    parsed = read_config(os.path.join(home.path, ".claude.json"), home.real, home.uid, "json", settings.limits)
    projects = parsed.document.get("projects") if isinstance(parsed.document, dict) else None
    if not isinstance(projects, dict):
        return []
    return [p for p in list(projects)[:1000] if isinstance(p, str) and resolve_inside(p, home.real)]


def _read_cached(
    path: str,
    home: Home,
    location: Location,
    limits: ReadLimits,
    *,
    previous: ConfigScan | None,
    parsed: dict[str, tuple[tuple[int, ...], ConfigFacts | str]],
) -> ConfigFacts | str:
    """What the file says (or why it was not read), parsed again only when its stat stamp changed."""
    stamp = _stamp(path)
    cached = previous.parsed.get(path) if previous is not None else None
    result = cached[1] if cached is not None and stamp and cached[0] == stamp else _read(path, home, location, limits)
    parsed[path] = (stamp, result)
    return result


def _stamp(path: str) -> tuple[int, ...]:
    """Identity and version of the file a path leads to (empty when it cannot be stat'ed: never cached)."""
    try:
        info = os.stat(path)
        link = os.lstat(path)
    except (OSError, ValueError):
        return ()
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_uid,
            link.st_ino, link.st_mtime_ns)


def _read(path: str, home: Home, location: Location, limits: ReadLimits) -> ConfigFacts | str:
    parsed = read_config(path, home.real, home.uid, location.fmt, limits)
    if parsed.problem:
        return parsed.problem
    try:
        return READERS[location.reader](parsed.document)
    except RecursionError:
        return "nested too deeply; not read"


def _value_secrets(facts: ConfigFacts, salt: str) -> list[SecretRef]:
    return [
        SecretRef(variable, detector, fingerprint(value, salt))
        for variable, value in facts.values
        if (detector := detect(value, variable)) is not None
    ]


# ----------------------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class _Origin:
    """The file a server entry came from."""

    spec: AgentSpec
    path: str
    home: Home
    project: str


def _server(raw: RawServer, origin: _Origin, salt: str) -> McpServer:
    home = origin.home
    project = raw.project or origin.project
    secrets: list[SecretRef] = []
    for name, value in raw.env.items():
        note_secret(secrets, value, f"env:{name}", salt)
    for name, value in raw.headers.items():
        note_secret(secrets, value, f"header:{name}", salt)
    args = tuple(redact_arg(arg, index, raw.args, secrets, salt) for index, arg in enumerate(raw.args))
    url = redact_url(raw.url, "url", secrets, salt) if raw.url else ""
    launch = mcp_table.parse_launch(raw.command, raw.args) if raw.command else mcp_table.Launch("", ())
    host = (urlsplit(raw.url).hostname or "") if raw.url else ""
    kind, capabilities = mcp_table.classify(launch.package, host)
    base_dir = raw.cwd or project or home.path
    safe_env = {k: v for k, v in raw.env.items() if detect(v, k) is None}
    roots = tuple(dict.fromkeys(
        mcp_table.resolve_root(r, home.path, base_dir, safe_env) for r in mcp_table.root_arguments(kind, launch)
    ))
    return McpServer(
        name=raw.name,
        agent=origin.spec.kind,
        config_path=origin.path,
        user=home.user,
        home=home.path,
        scope=PROJECT if project else "user",
        transport=_transport(raw),
        command=raw.command if detect(raw.command) is None else REDACTED,
        args=args,
        url=url,
        package=launch.package,
        capabilities=capabilities,
        roots=tuple(r if detect(r) is None else REDACTED for r in roots),
        running=False,
        enabled=raw.enabled,
        env_names=tuple(sorted(raw.env)),
        secrets=tuple(secrets),
    )


def _transport(raw: RawServer) -> str:
    if raw.command.startswith("goose-builtin:"):
        return "builtin"
    if raw.url:
        return "sse" if "sse" in raw.transport.lower() else "http"
    return "stdio"


# ------------------------------------------------------------------------------------------ agents


def _agents(
    found: dict[tuple[str, str], _Found],
    running: dict[int, tuple[str, ProcessInfo]],
    homes: Sequence[Home],
    settings: AgentSettings,
    engines: Sequence[Engine],
) -> list[AiAgent]:
    by_uid = {h.uid: h for h in homes}
    pids: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pid, (kind, process) in running.items():
        home = by_uid.get(process.uid)
        pids[(kind, home.real if home else f"uid:{process.uid}")].append(pid)
    specs = {s.kind: s for s in settings.agents}
    homes_by_real = {h.real: h for h in homes}
    agents = []
    for key in sorted(set(found) | set(pids)):
        kind, home_key = key
        record = found.get(key, _Found())
        home = homes_by_real.get(home_key)
        uid = int(home_key.removeprefix("uid:")) if home is None else home.uid
        urls = record.endpoints or ([specs[kind].default_endpoint] if specs[kind].default_endpoint else [])
        source = "config" if record.endpoints else "default"
        agents.append(AiAgent(
            kind=kind,
            user=home.user if home else user_name(uid),
            home=home.path if home else "",
            config_paths=tuple(record.config_paths),
            running=bool(pids.get(key)),
            pids=tuple(sorted(pids.get(key, []))),
            endpoints=tuple(dict.fromkeys(_endpoint(u, source, engines) for u in urls)),
            secrets=tuple(record.secrets),
        ))
    return agents


def _endpoint(url: str, source: str, engines: Sequence[Engine]) -> ModelEndpoint:
    text = url if "://" in url else f"http://{url}"
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ModelEndpoint(url=REDACTED, host="", location="self-hosted", source=source)
    clean = urlunsplit((parts.scheme, (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else ""),
                        parts.path, "", ""))
    if _is_local(host):
        engine = next((e.kind for e in engines if any(ep.port == port for ep in e.listen)), "")
        return ModelEndpoint(url=clean, host=host, location="local", engine=engine, source=source)
    cloud = any(mcp_table.glob_host(pattern, host) for pattern in CLOUD_API_HOSTS)
    return ModelEndpoint(url=clean, host=host, location="cloud" if cloud else "self-hosted", source=source)


def _is_local(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain", "host.docker.internal") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified
