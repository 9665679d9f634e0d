"""Server bootstrap shared by every service: one way to build, start, watch and stop a gRPC server.

`build_server` makes a grpc.aio server with the service interceptor, health and (with LZ_REFLECTION)
reflection, bound to the configured port (port 0 in tests); `run_service` is what each `__main__` calls: it loads
settings, reports bad configuration as one line with exit code 2, keeps the health status honest
(NOT_SERVING until dependencies answer, and again while draining) and stops gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.kit import auth, heap, logs, telemetry
from services.kit.authenticator import Authenticator
from services.kit.errors import ConfigError, PermissionDenied
from services.kit.interceptors import ServiceInterceptor
from services.kit.settings import ServerSettings

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 3.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Service:
    """What a service hands the bootstrap: its servicers, who may call what, and its dependencies."""

    name: str
    # (add_XServicer_to_server, servicer instance, full service name)
    servicers: Sequence[tuple[Callable[[Any, Any], None], Any, str]]
    policy: Mapping[str, frozenset[auth.Role]]
    authenticator: Authenticator | None
    # Raises when a dependency does not answer; health stays NOT_SERVING until it returns.
    check_ready: Callable[[], Awaitable[None]] | None = None
    # Long-running tasks started with the server and cancelled when it stops.
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    on_stop: Callable[[], Awaitable[None]] | None = None
    ready_interval_seconds: float = 2.0
    # Methods (full names) for other services only, each with the services that may call it: with an
    # internal port configured they are served there and refused on the public port, which a load
    # balancer may expose to the internet; with TLS, the caller's certificate must name such a service.
    internal: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Methods (full names) open to the service role, each with the services whose own service token may
    # call it (LZ_SERVICE_CALLERS); a method not listed refuses every service.
    callers: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    service: Service
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    health_server: grpc.aio.Server | None = None
    internal_server: grpc.aio.Server | None = None
    internal_port: int = 0

    async def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        await self.health.set("", status)
        for _, _, name in self.service.servicers:
            await self.health.set(name, status)


class TlsFiles:
    """The server's certificate, key and CA, read again when they change on disk, without a restart.

    cert-manager renews a certificate by swapping the files of its mounted Secret; gRPC asks `fetch`
    before each new TLS handshake, and it answers a new configuration only when a file's identity
    (inode, size, mtime) changed and the new key matches the new certificate. A half-written or
    mismatched set is skipped (the old one keeps serving) and tried again at the next handshake.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self._paths = [Path(settings.tls_cert_file), Path(settings.tls_key_file)]
        if settings.tls_ca_file:
            self._paths.append(Path(settings.tls_ca_file))
        self._stamp = self._identity()
        try:
            self.initial = self._configuration()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot use the TLS files: {exc}") from None

    def _identity(self) -> tuple[tuple[int, int, int], ...]:
        stats = [path.stat() for path in self._paths]
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, *ca = (path.read_bytes() for path in self._paths)
        _check_pair(cert, key)
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca[0] if ca else None)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = self._identity()
            if stamp == self._stamp:
                return None
            configuration = self._configuration()
        except (OSError, ValueError) as exc:
            log.warning("TLS files changed but cannot be used yet, keeping the current ones: %s", exc)
            return None
        self._stamp = stamp
        log.info("TLS files reloaded")
        return configuration


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """ValueError unless `key_pem` is the private key of the certificate `cert_pem`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    key = serialization.load_pem_private_key(key_pem, password=None)
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, raw) != public.public_bytes(
            serialization.Encoding.DER, raw):
        raise ValueError("the TLS key does not belong to the TLS certificate")


def _credentials(settings: ServerSettings, require_client_cert: bool) -> grpc.ServerCredentials | None:
    if not settings.tls_cert_file:
        return None
    try:
        files = TlsFiles(settings)
    except OSError as exc:
        raise ConfigError(f"cannot read TLS files: {exc}") from None
    return grpc.dynamic_ssl_server_credentials(files.initial, files.fetch,
                                               require_client_authentication=require_client_cert)


def _server_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", 0),
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_seconds * 1000)),
    ]


def _bind(server: grpc.aio.Server, settings: ServerSettings, port: int, require_client_cert: bool) -> int:
    target = f"{settings.listen_host}:{port}"
    _check_port_free(settings.listen_host, port)
    credentials = _credentials(settings, require_client_cert)
    try:
        bound = server.add_secure_port(target, credentials) if credentials else server.add_insecure_port(target)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"cannot listen on {target}: the port is in use or the address is not local")
    return int(bound)


class CallerCertificate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """On the internal port: a method runs only for a client certificate naming a service allowed to call it.

    Each service's certificate names the bare service (`assets`) among its DNS names (services.kit.certs,
    README step 6), which no other service's certificate does. The service token is still required: this
    runs inside ServiceInterceptor, which maps the refusal to PERMISSION_DENIED.
    """

    def __init__(self, callers: Mapping[str, frozenset[str]]) -> None:
        self._callers = callers

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        allowed = self._callers.get(details.method)
        if handler is None or allowed is None or not handler.unary_unary:
            return handler
        behaviour = handler.unary_unary

        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            names = {name.decode() for name in context.auth_context().get("x509_subject_alternative_name", [])}
            if not names & allowed:
                raise PermissionDenied(f"{details.method} is for {', '.join(sorted(allowed))} only")
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(checked, handler.request_deserializer,
                                                   handler.response_serializer)


async def _start_internal_server(service: Service, settings: ServerSettings) -> tuple[grpc.aio.Server, int]:
    """The same servicers on the internal port, open only for the internal methods.

    With TLS on, callers there must present a certificate of the control plane's CA (mTLS) that names
    a service allowed to call the method, so the service token alone calls nothing internal.
    """
    if settings.tls_cert_file and not settings.tls_ca_file:
        raise ConfigError("LZ_INTERNAL_PORT with TLS needs LZ_TLS_CA_FILE to check the callers' certificates")
    if any(service.policy.get(method) == auth.PUBLIC for method in service.internal):
        raise ConfigError("an internal method cannot be public: it authenticates in-band, not by certificate")
    policy = {method: roles for method, roles in service.policy.items() if method in service.internal}
    interceptors: list[Any] = [ServiceInterceptor(policy, service.authenticator, callers=service.callers)]
    if settings.tls_cert_file:
        interceptors.append(CallerCertificate(service.internal))
    server = grpc.aio.server(interceptors=interceptors, options=_server_options(settings))
    for add, servicer, _ in service.servicers:
        add(servicer, server)
    port = _bind(server, settings, settings.internal_port, require_client_cert=True)
    await server.start()
    return server, port


async def build_server(service: Service, settings: ServerSettings) -> RunningServer:
    """A started server with health (NOT_SERVING until ready), reflection and the interceptor."""
    split = bool(settings.internal_port and service.internal)
    policy = {method: roles for method, roles in service.policy.items() if not (split and method in service.internal)}
    server = grpc.aio.server(
        interceptors=[ServiceInterceptor(policy, service.authenticator, callers=service.callers)],
        options=_server_options(settings),
    )
    for add, servicer, _ in service.servicers:
        add(servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if settings.reflection:
        # Off unless asked for: reflection answers unauthenticated and maps the whole API for a prober.
        names = [name for _, _, name in service.servicers]
        reflection.enable_server_reflection([*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                             reflection.SERVICE_NAME], server)
    running = RunningServer(server, _bind(server, settings, settings.port, settings.tls_require_client_cert),
                            health, service)
    await running.set_serving(False)
    # "liveness" answers SERVING while the process runs: an AWS outage makes a pod unready, not restarted.
    await health.set("liveness", SERVING)
    await server.start()
    if settings.health_port:
        running.health_server = await _start_health_server(health, settings)
    if split:
        running.internal_server, running.internal_port = await _start_internal_server(service, settings)
    running.tasks.append(asyncio.create_task(_watch_readiness(running)))
    running.tasks.extend(asyncio.create_task(job()) for job in service.background)
    return running


async def start_health_only(service: Service, settings: ServerSettings) -> RunningServer:
    """For a process without a gRPC API (the risk worker): only the plaintext health server on the health
    port, kept as honest as a server's (SERVING while `check_ready` passes, `liveness` always); stop it
    with `stop_server`."""
    health = HealthServicer()
    server = await _start_health_server(health, settings)
    running = RunningServer(server, settings.health_port, health, service)
    await running.set_serving(False)
    await health.set("liveness", SERVING)
    running.tasks.append(asyncio.create_task(_watch_readiness(running)))
    return running


async def _start_health_server(health: HealthServicer, settings: ServerSettings) -> grpc.aio.Server:
    """A plaintext server holding only the health service, for kubelet's native gRPC probes."""
    _check_port_free(settings.listen_host, settings.health_port)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"{settings.listen_host}:{settings.health_port}")
    await server.start()
    return server


def _check_port_free(host: str, port: int) -> None:
    """Fail with one clear line before gRPC core logs its own multi-line bind error."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Like gRPC's own bind: a port left in TIME_WAIT by a crashed predecessor is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def _watch_readiness(running: RunningServer) -> None:
    """Keep health honest: SERVING only while the dependencies answer, and answer quickly.

    A check that has not finished within READY_TIMEOUT_SECONDS counts as not ready; it is left to
    finish rather than started again, so a hung backend holds one thread, not one per interval.
    """
    check = running.service.check_ready
    serving: bool | None = None
    pending: asyncio.Future[None] | None = None
    while True:
        ok = True
        if check is not None:
            if pending is None:
                pending = asyncio.ensure_future(check())
            done, _ = await asyncio.wait({pending}, timeout=READY_TIMEOUT_SECONDS)
            if pending in done:
                error = pending.exception()
                pending = None
                ok = error is None
                if error is not None and serving is not False:
                    log.warning("not ready: %s", error)
            else:
                ok = False
                if serving is not False:
                    log.warning("not ready: dependencies did not answer within %ss", READY_TIMEOUT_SECONDS)
        if ok != serving:
            await running.set_serving(ok)
            if ok:
                log.info("serving")
            serving = ok
        await asyncio.sleep(running.service.ready_interval_seconds)


async def stop_server(running: RunningServer, grace: float) -> None:
    """Drain: report NOT_SERVING, let in-flight calls finish within `grace`, then stop the tasks."""
    await running.health.enter_graceful_shutdown()
    await asyncio.gather(*(server.stop(grace) for server in (running.server, running.internal_server) if server))
    if running.health_server is not None:
        await running.health_server.stop(0)
    for task in running.tasks:
        task.cancel()
    for task in running.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if running.service.on_stop is not None:
        await running.service.on_stop()


async def serve_until_signalled(
    make_service: Callable[[], Awaitable[Service]], settings: ServerSettings, announce: str = ""
) -> None:
    service = await make_service()
    heap.settle()  # before serving: a full collection of the start-up heap would stall the first callers
    running = await build_server(service, settings)
    log.info("listening", extra={"port": running.port, "address": f"{settings.listen_host}:{running.port}"})
    print(f"{service.name} listening on {settings.listen_host}:{running.port}{announce}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"grace_seconds": settings.grace_seconds})
    await stop_server(running, settings.grace_seconds)


def run_service(name: str, load_settings: Callable[[], Any], make_service: Callable[[Any], Awaitable[Service]]) -> None:
    """Entry point of a service process: settings, logs, telemetry, serve; bad config exits 2."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"lz-{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    server_settings: ServerSettings = settings.server
    logs.configure(name, server_settings.log_level)
    telemetry.configure(name, server_settings)
    try:
        asyncio.run(serve_until_signalled(lambda: make_service(settings), server_settings))
    except ConfigError as exc:
        print(f"lz-{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass
