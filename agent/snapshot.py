"""One discovery pass: engines and models of this host, as an :class:`Inventory`.

This is what ``lz-agent scan`` prints and what the stream client will send in
heartbeats; it talks to nothing but the engines' own ports on this host.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agent.config import Config
from agent.discovery import DiscoverySettings, discover_engines
from agent.discovery.agents import AgentFindings, AgentSettings, ConfigScan, discover_agents
from agent.discovery.configfiles import ReadLimits
from agent.discovery.homes import WalkBounds
from agent.enroll import NotEnrolledError, load_identity
from agent.inventory import Engine, Inventory, Model
from agent.models import DigestCache, ModelSettings, WalkLimits, inventory_models
from agent.platform import Handles, Platform, ProcessInfo, SocketInfo, current_platform


def discovery_settings(config: Config) -> DiscoverySettings:
    return DiscoverySettings(
        probe_timeout=config.probe_timeout,
        engine_deadline=config.engine_deadline,
        sensitive_patterns=config.sensitive_patterns + config.extra_sensitive_patterns,
    )


def model_settings(config: Config) -> ModelSettings:
    return ModelSettings(
        homes=config.model_homes,
        roots=config.model_roots,
        limits=WalkLimits(max_depth=config.model_max_depth, max_files=config.model_max_files),
        compute_digests=config.compute_digests,
    )


class _ProcessesOnce:
    """A platform whose process list is read once per snapshot: engines and agents match the same list."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._processes: list[ProcessInfo] | None = None

    def processes(self) -> list[ProcessInfo]:
        if self._processes is None:
            self._processes = self._platform.processes()
        return self._processes

    def tcp_sockets(self, pid: int) -> list[SocketInfo]:
        return self._platform.tcp_sockets(pid)

    def handles(self, pid: int) -> Handles:
        return self._platform.handles(pid)

    def shares_network(self, pid: int) -> bool:
        return self._platform.shares_network(pid)

    def read_text(self, path: str, limit: int) -> str:
        return self._platform.read_text(path, limit)

    def hostname(self) -> str:
        return self._platform.hostname()

    def os_name(self) -> str:
        return self._platform.os_name()


def agent_settings(config: Config) -> AgentSettings:
    """Agent discovery's settings; credentials are fingerprinted under the configured salt or the tenant id.

    The tenant id is the default salt so that every host of a tenant fingerprints one token alike, and
    two tenants do not.
    """
    salt = config.agent_fingerprint_salt
    if not salt:
        try:
            identity = load_identity(config.state_dir)
        except (NotEnrolledError, OSError):
            identity = None
        salt = f"lz-tenant:{identity.tenant_id}" if identity else "lz-unenrolled"
    return AgentSettings(
        homes=config.agent_homes,
        password_db=config.agent_password_db,
        limits=ReadLimits(max_bytes=config.agent_max_config_bytes),
        walk=WalkBounds(max_depth=config.agent_project_depth),
        fingerprint_salt=salt,
    )


def collect(
    config: Config,
    platform: Platform | None = None,
    models: tuple[Model, ...] | None = None,
    agent_configs: ConfigScan | None = None,
) -> Inventory:
    """Take one snapshot; a failing half is reported in ``errors`` rather than losing the other half.

    ``models`` is a model inventory the caller already holds (the stream re-walks disk less often
    than it looks for engines); when given, the model walk is skipped. ``agent_configs`` is the same
    for agents' configuration files: their processes are still matched on every snapshot.
    """
    host = _ProcessesOnce(platform or current_platform())
    errors: list[str] = []
    engines: list[Engine] = []
    found: list[Model] = []
    try:
        engines = discover_engines(host, discovery_settings(config))
    except Exception as exc:  # the model half still goes out
        errors.append(f"engine discovery failed: {type(exc).__name__}: {exc}")
    if models is None:
        try:
            digests = DigestCache(config.state_dir) if config.compute_digests else None
            found = inventory_models(model_settings(config), digests)
        except Exception as exc:  # the engine half still goes out
            errors.append(f"model inventory failed: {type(exc).__name__}: {exc}")
    agents = AgentFindings((), (), ())
    if config.agents_enabled:
        try:
            agents = discover_agents(host, agent_settings(config), engines, agent_configs)
        except Exception as exc:  # engines and models still go out
            errors.append(f"agent discovery failed: {type(exc).__name__}: {exc}")
    return Inventory(
        engines=tuple(engines),
        models=tuple(found) if models is None else models,
        hostname=host.hostname(),
        os=host.os_name(),
        collected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        errors=tuple(errors) + agents.errors,
        agents=agents.agents,
        mcp_servers=agents.mcp_servers,
    )
