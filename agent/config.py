"""Agent configuration: a TOML file, then ``LZ_AGENT_*`` environment overrides.

Every setting has one name in both places: ``[section] key`` in the file and
``LZ_AGENT_<SECTION>_<KEY>`` in the environment (top-level keys drop the
section; lists are comma-separated). Unknown keys and bad values are errors
with one clear line, because a typo in a containment allowlist must not pass
silently.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.containment.policy import PolicyError, split_host_port
from agent.discovery.sensitive import DEFAULT_PATTERNS

DEFAULT_CONFIG_PATH = Path("/etc/lz-agent/agent.toml")
ENV_PREFIX = "LZ_AGENT_"


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who has to fix it."""


@dataclass(frozen=True)
class Config:
    """Every setting the agent reads, with its default."""

    state_dir: Path = Path("/var/lib/lz-agent")
    probe_timeout: float = 2.0
    engine_deadline: float = 5.0
    scan_deadline: float = 20.0
    sensitive_patterns: tuple[str, ...] = DEFAULT_PATTERNS
    extra_sensitive_patterns: tuple[str, ...] = ()
    model_homes: tuple[str, ...] = ()
    model_roots: tuple[str, ...] = ("~/models", "~/Downloads", "~/.local/share/nomic.ai", "~/jan")
    model_max_depth: int = 6
    model_max_files: int = 50_000
    model_rescan_interval: float = 300.0
    compute_digests: bool = False
    nft: str = "/usr/sbin/nft"
    table: str = "lz_containment"
    control_plane: tuple[str, ...] = ()
    resolvers: tuple[str, ...] = ()
    allowlist: tuple[str, ...] = ()
    self_test_timeout: float = 2.0
    drift_check_interval: float = 5.0
    stop_engines: bool = False
    stream_address: str = ""
    heartbeat_interval: float = 0.0
    spool_max_bytes: int = 64 * 1024 * 1024
    first_reconnect_jitter: float = 10.0
    stream_tls: bool = False
    stream_ca_file: Path | None = None
    # Plaintext to a control plane that is not loopback is refused unless this (or --insecure) says so.
    stream_insecure: bool = False
    agents_enabled: bool = True
    agent_homes: tuple[str, ...] = ()
    agent_password_db: bool = True
    agent_fingerprint_salt: str = ""
    agent_max_config_bytes: int = 1024 * 1024
    agent_project_depth: int = 5


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    number = float(value)
    if not 0 < number <= 60:
        raise ValueError("expected a number of seconds between 0 and 60")
    return number


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected an integer")
    number = int(value)
    if number < 0:
        raise ValueError("expected a non-negative integer")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError("expected true or false")


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("expected a list of strings")


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _path(value: Any) -> Path:
    return Path(_text(value))


def _endpoints(value: Any) -> tuple[str, ...]:
    entries = _strings(value)
    for entry in entries:
        try:
            split_host_port(entry)
        except PolicyError as exc:
            raise ValueError(str(exc)) from exc
    return entries


def _endpoint(value: Any) -> str:
    entry = _text(value)
    try:
        split_host_port(entry)
    except PolicyError as exc:
        raise ValueError(str(exc)) from exc
    return entry


def _interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    number = float(value)
    if number != 0 and not 1 <= number <= 3600:
        raise ValueError("expected 0 (the control plane decides) or seconds between 1 and 3600")
    return number


def _jitter(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    number = float(value)
    if not 0 <= number <= 600:
        raise ValueError("expected seconds between 0 and 600")
    return number


def _rescan(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    number = float(value)
    if not 1 <= number <= 86400:
        raise ValueError("expected seconds between 1 and 86400")
    return number


def _spool_bytes(value: Any) -> int:
    number = _int(value)
    if number < 64 * 1024:
        raise ValueError("expected at least 65536 bytes")
    return number


def _table(value: Any) -> str:
    name = _text(value)
    if not name.replace("_", "").isalnum():
        raise ValueError("expected letters, digits and underscores")
    return name


# (section, key) -> (Config field, parser)
_FIELDS: Mapping[tuple[str, str], tuple[str, Callable[[Any], Any]]] = {
    ("", "state_dir"): ("state_dir", _path),
    ("discovery", "probe_timeout"): ("probe_timeout", _float),
    ("discovery", "engine_deadline"): ("engine_deadline", _float),
    ("discovery", "scan_deadline"): ("scan_deadline", _float),
    ("discovery", "sensitive_patterns"): ("sensitive_patterns", _strings),
    ("discovery", "extra_sensitive_patterns"): ("extra_sensitive_patterns", _strings),
    ("models", "homes"): ("model_homes", _strings),
    ("models", "roots"): ("model_roots", _strings),
    ("models", "max_depth"): ("model_max_depth", _int),
    ("models", "max_files"): ("model_max_files", _int),
    ("models", "rescan_interval"): ("model_rescan_interval", _rescan),
    ("models", "compute_digests"): ("compute_digests", _bool),
    ("containment", "nft"): ("nft", _text),
    ("containment", "table"): ("table", _table),
    ("containment", "control_plane"): ("control_plane", _endpoints),
    ("containment", "resolvers"): ("resolvers", _strings),
    ("containment", "allowlist"): ("allowlist", _strings),
    ("containment", "self_test_timeout"): ("self_test_timeout", _float),
    ("containment", "drift_check_interval"): ("drift_check_interval", _float),
    ("containment", "stop_engines"): ("stop_engines", _bool),
    ("stream", "address"): ("stream_address", _endpoint),
    ("stream", "heartbeat_interval"): ("heartbeat_interval", _interval),
    ("stream", "spool_max_bytes"): ("spool_max_bytes", _spool_bytes),
    ("stream", "first_reconnect_jitter"): ("first_reconnect_jitter", _jitter),
    ("stream", "tls"): ("stream_tls", _bool),
    ("stream", "ca_file"): ("stream_ca_file", _path),
    ("stream", "insecure"): ("stream_insecure", _bool),
    ("agents", "enabled"): ("agents_enabled", _bool),
    ("agents", "homes"): ("agent_homes", _strings),
    ("agents", "password_db"): ("agent_password_db", _bool),
    ("agents", "fingerprint_salt"): ("agent_fingerprint_salt", _text),
    ("agents", "max_config_bytes"): ("agent_max_config_bytes", _int),
    ("agents", "project_depth"): ("agent_project_depth", _int),
}


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the file (``path``, ``$LZ_AGENT_CONFIG`` or the default path if it exists), then env."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    explicit = path or (Path(env["LZ_AGENT_CONFIG"]) if env.get("LZ_AGENT_CONFIG") else None)
    file_path = explicit or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    if file_path is not None:
        values.update(_from_file(file_path))
    values.update(_from_env(env))
    return Config(**values)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                values.update(_parse((key, sub_key), sub_value, f"{path}: [{key}] {sub_key}"))
        else:
            values.update(_parse(("", key), value, f"{path}: {key}"))
    return values


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    names = {ENV_PREFIX + "_".join(p for p in key if p).upper(): key for key in _FIELDS}
    values: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == "LZ_AGENT_CONFIG":
            continue
        if name not in names:
            raise ConfigError(f"{name}: unknown setting")
        values.update(_parse(names[name], raw, name))
    return values


def _parse(key: tuple[str, str], value: Any, where: str) -> dict[str, Any]:
    spec = _FIELDS.get(key)
    if spec is None:
        raise ConfigError(f"{where}: unknown setting")
    field, parser = spec
    try:
        return {field: parser(value)}
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} (got {value!r})") from exc
