"""Settings from the environment: one frozen object per process, checked once at start.

A setting is declared as a dataclass field with `env(...)`; `load` reads them all, collects every
problem, and raises one ConfigError whose message is a single line, so a process with bad settings
says what is wrong and exits 2 instead of failing later with a traceback.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

from services.kit.errors import ConfigError
from services.kit.ids import is_valid_id

T = TypeVar("T")
_MISSING: Any = dataclasses.MISSING


def env(name: str, parse: Callable[[str], Any] = str, default: Any = _MISSING, doc: str = "") -> Any:
    """Declare a dataclass field read from environment variable `name`."""
    meta = {"env": name, "parse": parse, "doc": doc}
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from the environment, raising ConfigError with every problem on one line."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    value = _load(cls, environ, problems)
    if problems:
        raise ConfigError("; ".join(problems))
    return value


def _load(cls: type[T], environ: Mapping[str, str], problems: list[str]) -> T:
    kwargs: dict[str, Any] = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, fld in hints.items():
        nested = fld.metadata.get("nested")
        if nested is not None:
            kwargs[name] = _load(nested, environ, problems)
            continue
        var = fld.metadata.get("env")
        if var is None:
            continue
        raw = environ.get(var)
        if raw is None or raw == "":
            if fld.default is dataclasses.MISSING:
                problems.append(f"{var} is required")
            continue
        try:
            kwargs[name] = fld.metadata["parse"](raw)
        except ValueError as exc:
            problems.append(f"{var}={raw!r}: {exc}")
    if problems:
        return None  # type: ignore[return-value]
    return cls(**kwargs)


def nested(cls: type[Any]) -> Any:
    """Declare a field holding another settings dataclass, loaded from the same environment."""
    return dataclasses.field(metadata={"nested": cls})


def describe(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting of `cls`, for the README's table."""
    rows: list[tuple[str, str, str]] = []
    for fld in dataclasses.fields(cls):
        if "nested" in fld.metadata:
            rows.extend(describe(fld.metadata["nested"]))
        elif "env" in fld.metadata:
            default = "required" if fld.default is dataclasses.MISSING else repr(fld.default)
            rows.append((fld.metadata["env"], default, fld.metadata["doc"]))
    return rows


def port(raw: str) -> int:
    """A TCP port; 0 asks the OS for a free one (tests)."""
    value = integer(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number 0-65535")
    return value


def integer(raw: str) -> int:
    try:
        return int(raw, 10)
    except ValueError:
        raise ValueError("must be a whole number") from None


def positive_int(raw: str) -> int:
    value = integer(raw)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def url(raw: str) -> str:
    """An http(s) URL with a host, such as the embedded AWS endpoint."""
    parsed = urlparse(raw)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parsed.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("has a malformed port") from None
    return raw


tcp_port = port


def address(raw: str) -> str:
    """host:port of a gRPC server."""
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port")
    port(port_text)
    return raw


def address_list(raw: str) -> tuple[str, ...]:
    return tuple(address(part.strip()) for part in raw.split(",") if part.strip())


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw

    return parse


def sha256_hex(raw: str) -> str:
    lowered = raw.strip().lower()
    if len(lowered) != 64 or any(c not in "0123456789abcdef" for c in lowered):
        raise ValueError("must be 64 hex characters (a SHA-256)")
    return lowered


def service_callers(raw: str) -> tuple[tuple[str, str], ...]:
    """`ingest=<sha256>,risk-worker=<sha256>` as (name, sha256) pairs; names and hashes unique."""
    pairs = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, separator, digest = item.partition("=")
        if not separator or not is_valid_id(name.strip()):
            raise ValueError("must list name=<sha256> pairs with valid service names")
        pairs.append((name.strip(), sha256_hex(digest)))
    names, digests = {name for name, _ in pairs}, {digest for _, digest in pairs}
    if len(names) != len(pairs) or len(digests) != len(pairs):
        raise ValueError("each service and each token may be listed once")
    return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What every gRPC server process shares."""

    listen_host: str = env("LZ_LISTEN_HOST", default="127.0.0.1", doc="Address the gRPC server binds.")
    port: int = env("LZ_PORT", tcp_port, default=0, doc="gRPC port; 0 picks a free one (the stack passes one).")
    health_port: int = env(
        "LZ_HEALTH_PORT", tcp_port, default=0,
        doc="Plaintext port serving only gRPC health (kubelet probes cannot speak TLS); 0 turns it off.",
    )
    internal_port: int = env(
        "LZ_INTERNAL_PORT", tcp_port, default=0,
        doc="Port of the service-to-service RPCs (ingest's DeliverCommand(s), RevokeAgent), kept off the public "
            "port and, with TLS, requiring a client certificate of LZ_TLS_CA_FILE naming an allowed service; "
            "0 serves them on LZ_PORT.",
    )
    grace_seconds: float = env(
        "LZ_GRACE_SECONDS", positive_float, default=10.0, doc="How long SIGTERM lets in-flight calls finish."
    )
    max_connection_age_seconds: float = env(
        "LZ_MAX_CONNECTION_AGE_SECONDS", positive_float, default=1800.0,
        doc="A client connection is asked to go away (GOAWAY) after about this long (gRPC jitters it by +-10 %), "
            "so long-lived agent streams reconnect over time and spread over the replicas a scale-out added.",
    )
    max_connection_age_grace_seconds: float = env(
        "LZ_MAX_CONNECTION_AGE_GRACE_SECONDS", positive_float, default=30.0,
        doc="How long calls may go on after the GOAWAY of LZ_MAX_CONNECTION_AGE_SECONDS before the connection "
            "is closed (a stream then ends UNAVAILABLE, `max connection age`, and its agent reconnects at once).",
    )
    max_message_bytes: int = env(
        "LZ_MAX_MESSAGE_BYTES", positive_int, default=4 * 1024 * 1024, doc="Largest gRPC message accepted."
    )
    log_level: str = env(
        "LZ_LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO", doc="Log level."
    )
    otlp_endpoint: str = env(
        "OTEL_EXPORTER_OTLP_ENDPOINT", url, default="", doc="OTLP collector; traces and metrics are off without it."
    )
    otel_console: bool = env(
        "LZ_OTEL_CONSOLE", boolean, default=False, doc="Print spans and metrics to stderr (debugging)."
    )
    service_token: str = env(
        "LZ_SERVICE_TOKEN", default="", doc="Token this service presents to the others (a Kubernetes Secret)."
    )
    service_callers: tuple[tuple[str, str], ...] = env(
        "LZ_SERVICE_CALLERS", service_callers, default=(),
        doc="The services that may call this one, each as name=SHA-256 of its own service token "
            "(comma-separated); each method names which of them may call it.",
    )
    bootstrap_token_sha256: str = env(
        "LZ_BOOTSTRAP_TOKEN_SHA256", sha256_hex, default="",
        doc="SHA-256 of the installation bootstrap token that may create tenants.",
    )
    auth_cache_seconds: float = env(
        "LZ_AUTH_CACHE_SECONDS", positive_float, default=5.0, doc="How long a resolved token is trusted."
    )
    reflection: bool = env(
        "LZ_REFLECTION", boolean, default=False,
        doc="Serve gRPC reflection (it answers without authentication; on in the local stack only).",
    )
    tls_cert_file: str = env("LZ_TLS_CERT_FILE", default="", doc="PEM server certificate; plaintext without.")
    tls_key_file: str = env("LZ_TLS_KEY_FILE", default="", doc="PEM key of the server certificate.")
    tls_ca_file: str = env(
        "LZ_TLS_CA_FILE", default="", doc="PEM CA for calls to other services (and client certs with mTLS)."
    )
    tls_require_client_cert: bool = env(
        "LZ_TLS_REQUIRE_CLIENT_CERT", boolean, default=False, doc="mTLS: demand a client certificate."
    )


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    """Where the table, bucket and queues are; an endpoint URL means the embedded stack."""

    table_name: str = env("LZ_TABLE_NAME", doc="The DynamoDB table.")
    endpoint_url: str = env(
        "LZ_AWS_ENDPOINT_URL", url, default="", doc="Embedded AWS endpoint; empty means real AWS."
    )
    region: str = env("AWS_REGION", default="us-east-1", doc="AWS region.")
