"""One discovery pass: engines and models of this host, as an :class:`Inventory`.

This is what ``lz-agent scan`` prints and what the stream client will send in
heartbeats; it talks to nothing but the engines' own ports on this host.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agent.config import Config
from agent.discovery import DiscoverySettings, discover_engines
from agent.inventory import Engine, Inventory, Model
from agent.models import DigestCache, ModelSettings, WalkLimits, inventory_models
from agent.platform import Platform, current_platform


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


def collect(config: Config, platform: Platform | None = None, models: tuple[Model, ...] | None = None) -> Inventory:
    """Take one snapshot; a failing half is reported in ``errors`` rather than losing the other half.

    ``models`` is a model inventory the caller already holds (the stream re-walks disk less often
    than it looks for engines); when given, the model walk is skipped.
    """
    host = platform or current_platform()
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
    return Inventory(
        engines=tuple(engines),
        models=tuple(found) if models is None else models,
        hostname=host.hostname(),
        os=host.os_name(),
        collected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        errors=tuple(errors),
    )
