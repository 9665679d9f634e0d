"""Where the services are and who we are: endpoints, tokens, TLS, the config and state files, channels.

Every setting is looked up in this order, first hit wins:

1. flags (`--assets`, `--token`, `--tls-ca`, ...; `--endpoint-file` supplies addresses at this level),
2. environment (`LZ_ASSETS_ADDRESS`, `LZ_LEDGER_ADDRESS`, `LZ_SEALER_ADDRESS`, `LZ_TOKEN`,
   `LZ_BOOTSTRAP_TOKEN`, `LZ_TLS_CA`, `LZ_TLS_CERT`, `LZ_TLS_KEY`, `LZ_TIMEOUT`; `LZ_ENDPOINT_FILE`),
3. the config file (`--config`, `LZ_CONFIG`, or `$XDG_CONFIG_HOME/lz/config.toml`, by default
   `~/.config/lz/config.toml`),
4. the local stack's state file `.lz/stack.json` (written by `make up`), looked for in the current
   directory and its parents.

The config file is TOML::

    token = "lz1:..."             # operator token (`lz login` writes it, mode 0600)
    endpoint_file = "path/to/stack.json"
    timeout = 30
    [endpoints]
    assets = "host:port"
    ledger = "host:port"
    sealer = "host:port"
    [tls]
    ca = "ca.pem"                 # enables TLS; cert and key add a client certificate (mTLS)
    cert = "client.pem"
    key = "client-key.pem"
    insecure = false              # true: allow plaintext to addresses that are not loopback

Without TLS, `lz` talks only to loopback addresses: a bearer token must never cross a network in the
clear unless `--insecure` (`LZ_INSECURE=1`, `[tls] insecure = true`) says so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from google.protobuf.message import Message
from lifecyclezero.v1 import assets_pb2_grpc, ledger_pb2_grpc, sealer_pb2_grpc

from lz.errors import CliError, UsageError, from_rpc_error
from services.kit.addresses import plaintext_refusal

SERVICES = ("assets", "ledger", "sealer")
STATE_FILE = Path(".lz") / "stack.json"
DEFAULT_TIMEOUT = 30.0
LONG_TIMEOUT = 900.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_MAX_FILE_BYTES = 1024 * 1024

Auth = Literal["operator", "bootstrap", "none"]

_STUBS: dict[str, Any] = {
    "assets": assets_pb2_grpc.AssetServiceStub,
    "ledger": ledger_pb2_grpc.LedgerServiceStub,
    "sealer": sealer_pb2_grpc.SealerServiceStub,
}


@dataclass(frozen=True)
class Options:
    """What the command line said about the connection (None: not given)."""

    assets: str | None = None
    ledger: str | None = None
    sealer: str | None = None
    endpoint_file: str | None = None
    config: str | None = None
    token: str | None = None
    bootstrap_token: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout: float | None = None
    insecure: bool = False


@dataclass
class Settings:
    """The resolved connection settings, with where each came from (for `lz config`)."""

    endpoints: dict[str, str] = field(default_factory=dict)
    token: str = ""
    bootstrap_token: str = ""
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    timeout: float | None = None
    insecure: bool = False
    config_path: Path = field(default_factory=lambda: default_config_path({}))
    state_path: Path | None = None
    origin: str = ""
    sources: dict[str, str] = field(default_factory=dict)


def default_config_path(env: Mapping[str, str]) -> Path:
    if env.get("LZ_CONFIG"):
        return Path(env["LZ_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base).expanduser() / "lz" / "config.toml"


def _read_small(path: Path, what: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise UsageError(f"{what} {path} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None


def load_config(path: Path, *, must_exist: bool = False) -> dict[str, Any]:
    """The config file as a dict ({} when it does not exist and was not asked for explicitly)."""
    if not must_exist and not path.exists():
        return {}
    text = _read_small(path, "config file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    for table in ("endpoints", "tls"):
        if table in data and not isinstance(data[table], dict):
            raise UsageError(f"config file {path}: [{table}] must be a table")
    return data


def load_state(path: Path) -> dict[str, Any]:
    """The local stack's state file (`make up` writes it) as a dict, checked for shape."""
    text = _read_small(path, "endpoint file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"endpoint file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise UsageError(f"endpoint file {path} must hold a JSON object")
    endpoints = data.get("endpoints", {})
    if not isinstance(endpoints, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in endpoints.items()
    ):
        raise UsageError(f"endpoint file {path}: `endpoints` must map service names to \"host:port\" strings")
    for key in ("bootstrap_token", "origin"):
        if key in data and not isinstance(data[key], str):
            raise UsageError(f"endpoint file {path}: `{key}` must be a string")
    return data


def find_state_file(start: Path) -> Path | None:
    """`.lz/stack.json` in `start` or the nearest parent that has one."""
    for directory in (start, *start.parents):
        candidate = directory / STATE_FILE
        if candidate.is_file():
            return candidate
    return None


def _str_setting(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{where}: `{name}` must be a string")
    return value


def _timeout(value: Any, where: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: timeout must be a number of seconds, not {value!r}") from None
    if not 0 < seconds <= 86400:
        raise UsageError(f"{where}: timeout must be between 0 and 86400 seconds")
    return seconds


def resolve(options: Options, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Merge flags, environment, config file and state file into one `Settings`."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    settings = Settings()
    explicit_config = options.config or env.get("LZ_CONFIG")
    settings.config_path = Path(options.config).expanduser() if options.config else default_config_path(env)
    config = load_config(settings.config_path, must_exist=bool(explicit_config))
    where = f"config file {settings.config_path}"
    config_endpoints = config.get("endpoints", {})
    config_tls = config.get("tls", {})

    # The state file: explicit flag, environment, config file, then the default search.
    state: dict[str, Any] = {}
    state_source = ""
    if options.endpoint_file:
        settings.state_path, state_source = Path(options.endpoint_file).expanduser(), "--endpoint-file"
    elif env.get("LZ_ENDPOINT_FILE"):
        settings.state_path, state_source = Path(env["LZ_ENDPOINT_FILE"]).expanduser(), "LZ_ENDPOINT_FILE"
    elif "endpoint_file" in config:
        raw = Path(_str_setting(config["endpoint_file"], "endpoint_file", where)).expanduser()
        settings.state_path = raw if raw.is_absolute() else settings.config_path.parent / raw
        state_source = where
    else:
        settings.state_path = find_state_file(cwd)
        state_source = "state file"
    if settings.state_path is not None:
        state = load_state(settings.state_path)
        state_source = f"{state_source} {settings.state_path}" if state_source != "state file" else (
            f"state file {settings.state_path}")
        settings.origin = str(state.get("origin", ""))
    state_endpoints: dict[str, str] = state.get("endpoints", {})

    for name in SERVICES:
        candidates: list[tuple[str | None, str]] = [(getattr(options, name), f"--{name}")]
        if options.endpoint_file:
            candidates.append((state_endpoints.get(name), state_source))
        candidates += [
            (env.get(f"LZ_{name.upper()}_ADDRESS"), f"LZ_{name.upper()}_ADDRESS"),
            (config_endpoints.get(name), where),
        ]
        if not options.endpoint_file:
            candidates.append((state_endpoints.get(name), state_source))
        for value, source in candidates:
            if value:
                settings.endpoints[name] = _str_setting(value, f"endpoints.{name}", source)
                settings.sources[name] = source
                break

    def pick(key: str, flag: str | None, env_name: str, fallback: tuple[Any, str]) -> str:
        flag_name = "--" + key.replace("_", "-")
        for value, source in ((flag, flag_name), (env.get(env_name), env_name), fallback):
            if value:
                settings.sources[key] = source
                return _str_setting(value, key, source)
        return ""

    settings.token = pick("token", options.token, "LZ_TOKEN", (config.get("token"), where))
    settings.bootstrap_token = pick("bootstrap_token", options.bootstrap_token, "LZ_BOOTSTRAP_TOKEN",
                                    (state.get("bootstrap_token"), state_source))
    settings.tls_ca = pick("tls_ca", options.tls_ca, "LZ_TLS_CA", (config_tls.get("ca"), where))
    settings.tls_cert = pick("tls_cert", options.tls_cert, "LZ_TLS_CERT", (config_tls.get("cert"), where))
    settings.tls_key = pick("tls_key", options.tls_key, "LZ_TLS_KEY", (config_tls.get("key"), where))
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise UsageError("a client certificate needs both --tls-cert and --tls-key")
    enabled = config_tls.get("enabled", False)
    settings.tls = bool(options.tls or env.get("LZ_TLS", "") in ("1", "true", "yes") or enabled
                        or settings.tls_ca or settings.tls_cert)
    settings.insecure = bool(options.insecure or env.get("LZ_INSECURE", "") in ("1", "true", "yes")
                             or config_tls.get("insecure") is True)
    if options.timeout is not None:
        settings.timeout = _timeout(options.timeout, "--timeout")
    elif env.get("LZ_TIMEOUT"):
        settings.timeout = _timeout(env["LZ_TIMEOUT"], "LZ_TIMEOUT")
    elif "timeout" in config:
        settings.timeout = _timeout(config["timeout"], where)
    return settings


# --- the config file, written ---------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise UsageError(f"cannot write a {type(value).__name__} to the config file")


def _toml_key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else json.dumps(key)


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for a config dict: scalars first, then one table per nested dict."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines.append("")
            lines.append(f"[{_toml_key(key)}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines).lstrip("\n") + "\n"


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


def save_token(path: Path, token: str) -> None:
    """Store `token` as the default operator token, keeping the rest of the config file."""
    data = load_config(path)
    data["token"] = token
    try:
        write_private(path, dump_toml(data))
    except OSError as exc:
        raise UsageError(f"cannot write config file {path}: {exc.strerror or exc}") from None


# --- channels and calls ---------------------------------------------------------------------------


class Client:
    """Channels to the services, opened on first use, and calls that fail as `CliError`s."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channels: dict[str, grpc.Channel] = {}

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def address(self, service: str) -> str:
        address = self.settings.endpoints.get(service)
        if not address:
            raise UsageError(
                f"no address for the {service} service: pass --{service} HOST:PORT or --endpoint-file, "
                f"set LZ_{service.upper()}_ADDRESS, add it to {self.settings.config_path}, "
                "or start the local stack with `make up`"
            )
        return address

    def _credentials(self) -> grpc.ChannelCredentials:
        def read(name: str, flag: str) -> bytes | None:
            if not name:
                return None
            try:
                return Path(name).expanduser().read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {flag} file {name}: {exc.strerror or exc}") from None

        root = read(self.settings.tls_ca, "--tls-ca")
        chain = read(self.settings.tls_cert, "--tls-cert")
        key = read(self.settings.tls_key, "--tls-key")
        for data, flag in ((root, "--tls-ca"), (chain, "--tls-cert"), (key, "--tls-key")):
            if data is not None and b"-----BEGIN" not in data:
                raise UsageError(f"{flag} file is not PEM")
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)

    def channel(self, service: str) -> grpc.Channel:
        address = self.address(service)
        if address not in self._channels:
            options = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.primary_user_agent", "lz-cli"),
            ]
            if self.settings.tls:
                self._channels[address] = grpc.secure_channel(address, self._credentials(), options=options)
            else:
                refusal = None if self.settings.insecure else plaintext_refusal(
                    address, "pass --insecure (LZ_INSECURE=1, [tls] insecure = true) if you mean it")
                if refusal is not None:
                    raise UsageError(refusal)
                self._channels[address] = grpc.insecure_channel(address, options=options)
        return self._channels[address]

    def _metadata(self, auth: Auth) -> list[tuple[str, str]]:
        if auth == "none":
            return []
        if auth == "bootstrap":
            if not self.settings.bootstrap_token:
                raise UsageError(
                    "no bootstrap token: pass --bootstrap-token, set LZ_BOOTSTRAP_TOKEN, "
                    "or run against a local stack whose state file holds one"
                )
            return [("authorization", f"Bearer {self.settings.bootstrap_token}")]
        if not self.settings.token:
            raise UsageError(
                "no operator token: pass --token, set LZ_TOKEN, or store one with `lz login --token TOKEN`"
            )
        return [("authorization", f"Bearer {self.settings.token}")]

    def _timeout(self, default: float) -> float:
        return self.settings.timeout if self.settings.timeout is not None else default

    def call(self, service: str, method: str, request: Message, *, auth: Auth = "operator",
             timeout: float = DEFAULT_TIMEOUT) -> Any:
        """One unary call; any gRPC failure becomes a `CliError` with a clear message."""
        metadata = self._metadata(auth)
        stub = _STUBS[service](self.channel(service))
        limit = self._timeout(timeout)
        try:
            return getattr(stub, method)(request, metadata=metadata, timeout=limit)
        except grpc.RpcError as error:
            raise from_rpc_error(error, service=service, address=self.address(service), method=method,
                                 timeout=limit) from None

    def stream(self, service: str, method: str, request: Message, *, auth: Auth = "operator",
               timeout: float = LONG_TIMEOUT) -> Iterator[Any]:
        """A server-streaming call's responses; failures (also mid-stream) become `CliError`s."""
        metadata = self._metadata(auth)
        stub = _STUBS[service](self.channel(service))
        limit = self._timeout(timeout)
        responses = getattr(stub, method)(request, metadata=metadata, timeout=limit)
        try:
            yield from responses
        except grpc.RpcError as error:
            raise from_rpc_error(error, service=service, address=self.address(service), method=method,
                                 timeout=limit) from None
        finally:
            if hasattr(responses, "cancel"):
                responses.cancel()


def paged(fetch: Any, items_field: str, *, all_pages: bool, page_token: str = "") -> tuple[list[Any], str]:
    """Items of one page (or of every page with `all_pages`) and the token of the page after them.

    `fetch(page_token)` returns a list response with `items_field` and `next_page_token`.
    """
    items: list[Any] = []
    seen: set[str] = set()
    while True:
        response = fetch(page_token)
        items.extend(getattr(response, items_field))
        page_token = str(response.next_page_token)
        if not all_pages or not page_token:
            return items, page_token
        if page_token in seen:
            raise CliError(f"the server repeated page token {page_token!r}; stopping")
        seen.add(page_token)
