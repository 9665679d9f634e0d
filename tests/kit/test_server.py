"""The server bootstrap: honest health, reflection, error mapping, roles, graceful drain."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from lifecyclezero.v1 import ledger_pb2, ledger_pb2_grpc

from services.kit import auth, embedded
from services.kit.authenticator import Authenticator
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.kit.server import RunningServer, Service, build_server, stop_server
from services.kit.settings import ServerSettings
from services.tlog.note import generate_key

SERVICE = "lifecyclezero.v1.LedgerService"
SERVICE_TOKEN = "service-token-for-tests-0123456789"  # the assets service's own token
OTHER_SERVICE_TOKEN = "sealer-token-for-tests-0123456789"


class _ErrorServicer(ledger_pb2_grpc.LedgerServiceServicer):
    """Answers GetEvent by raising the domain error chosen by the requested seq."""

    async def GetEvent(self, request: Any, context: Any) -> Any:
        if request.seq == 1:
            raise NotFound("event 1 does not exist")
        if request.seq == 2:
            raise InvalidArgument.field("seq", "must be positive")
        if request.seq == 3:
            raise FailedPrecondition("asset is ISOLATED")
        if request.seq == 4:
            raise RuntimeError("secret internal detail")
        return ledger_pb2.GetEventResponse(event={"seq": request.seq, "actor": auth.current_principal().subject})


class _Harness:
    def __init__(self) -> None:
        self.ready = False
        self.running: RunningServer | None = None

    async def start(self, internal: dict[str, frozenset[str]] | None = None, reflection: bool = True) -> RunningServer:
        async def check_ready() -> None:
            if not self.ready:
                raise ConnectionError("dependency down")

        policy = {
            f"/{SERVICE}/GetEvent": auth.at_least(auth.Role.VIEWER) | {auth.Role.SERVICE},
            f"/{SERVICE}/AppendEvents": auth.at_least(auth.Role.OPERATOR),
        }
        service = Service(
            name="test",
            servicers=[(ledger_pb2_grpc.add_LedgerServiceServicer_to_server, _ErrorServicer(), SERVICE)],
            policy=policy,
            authenticator=Authenticator(None, "unused", service_callers={
                "assets": auth.sha256_hex(SERVICE_TOKEN), "sealer": auth.sha256_hex(OTHER_SERVICE_TOKEN)}),
            check_ready=check_ready,
            ready_interval_seconds=0.05,
            internal=internal or {},
            callers={f"/{SERVICE}/GetEvent": frozenset({"assets"})},
        )
        internal_port = embedded.free_port() if internal else 0
        self.running = await build_server(service, ServerSettings(port=0, internal_port=internal_port,
                                                                  reflection=reflection))
        return self.running


@pytest.fixture
async def harness() -> AsyncIterator[_Harness]:
    h = _Harness()
    await h.start()
    yield h
    assert h.running is not None
    await stop_server(h.running, 0.5)


def _channel(h: _Harness) -> grpc.aio.Channel:
    assert h.running is not None
    return grpc.aio.insecure_channel(f"127.0.0.1:{h.running.port}")


def _service_md(tenant: str = "acme") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {SERVICE_TOKEN}"), (auth.TENANT_METADATA_KEY, tenant)]


async def _health(h: _Harness, service: str = SERVICE) -> int:
    async with _channel(h) as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)


async def _wait_health(h: _Harness, want: int) -> None:
    for _ in range(100):
        if await _health(h) == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"health never became {want}")


async def test_health_is_not_serving_until_dependencies_answer(harness: _Harness) -> None:
    """Health reports NOT_SERVING while the readiness check fails and SERVING once it passes."""
    await asyncio.sleep(0.2)
    assert await _health(harness) == health_pb2.HealthCheckResponse.NOT_SERVING
    harness.ready = True
    await _wait_health(harness, health_pb2.HealthCheckResponse.SERVING)


async def test_health_returns_to_not_serving_when_a_dependency_fails(harness: _Harness) -> None:
    """A dependency that stops answering turns SERVING back into NOT_SERVING."""
    harness.ready = True
    await _wait_health(harness, health_pb2.HealthCheckResponse.SERVING)
    harness.ready = False
    await _wait_health(harness, health_pb2.HealthCheckResponse.NOT_SERVING)


async def test_reflection_lists_the_service(harness: _Harness) -> None:
    """Server reflection lists the service, so buf curl and grpcurl can call it."""
    async with _channel(harness) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for reply in call for s in reply.list_services_response.service]
    assert SERVICE in names


async def test_reflection_is_off_unless_asked_for() -> None:
    """With the default settings (LZ_REFLECTION unset) reflection answers UNIMPLEMENTED."""
    h = _Harness()
    running = await h.start(reflection=False)
    try:
        async with _channel(h) as ch:
            call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                _ = [reply async for reply in call]
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await stop_server(running, 0.5)


@pytest.mark.parametrize(
    ("seq", "code", "reason"),
    [
        (1, grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (2, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (3, grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    ],
)
async def test_domain_errors_become_status_codes_with_details(harness: _Harness, seq: int, code: Any,
                                                               reason: str) -> None:
    """A domain error reaches the caller as its gRPC code with an ErrorInfo in google.rpc.Status."""
    async with _channel(harness) as ch:
        call = ledger_pb2_grpc.LedgerServiceStub(ch).GetEvent(ledger_pb2.GetEventRequest(seq=seq),
                                                               metadata=_service_md())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
    assert caught.value.code() == code
    status = rpc_status.from_call(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == reason


async def test_invalid_argument_names_the_field(harness: _Harness) -> None:
    """INVALID_ARGUMENT carries a BadRequest naming the offending field."""
    async with _channel(harness) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger_pb2_grpc.LedgerServiceStub(ch).GetEvent(ledger_pb2.GetEventRequest(seq=2),
                                                                  metadata=_service_md())
    status = rpc_status.from_call(caught.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad) for detail in status.details)
    assert bad.field_violations[0].field == "seq"


async def test_unexpected_errors_become_internal_without_their_text(harness: _Harness) -> None:
    """An unexpected exception answers INTERNAL and does not leak its message."""
    async with _channel(harness) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger_pb2_grpc.LedgerServiceStub(ch).GetEvent(ledger_pb2.GetEventRequest(seq=4),
                                                                  metadata=_service_md())
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (caught.value.details() or "")


async def test_missing_token_is_unauthenticated(harness: _Harness) -> None:
    """A call without a bearer token is refused as UNAUTHENTICATED."""
    async with _channel(harness) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger_pb2_grpc.LedgerServiceStub(ch).GetEvent(ledger_pb2.GetEventRequest(seq=9))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_role_not_allowed_is_permission_denied(harness: _Harness) -> None:
    """A valid principal whose role the method does not allow gets PERMISSION_DENIED."""
    async with _channel(harness) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger_pb2_grpc.LedgerServiceStub(ch).AppendEvents(ledger_pb2.AppendEventsRequest(),
                                                                      metadata=_service_md())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_method_missing_from_policy_is_refused(harness: _Harness) -> None:
    """A method that the policy does not list is closed to every caller."""
    async with _channel(harness) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger_pb2_grpc.LedgerServiceStub(ch).ListEvents(ledger_pb2.ListEventsRequest(),
                                                                    metadata=_service_md())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_principal_comes_from_the_credential(harness: _Harness) -> None:
    """The servicer sees the principal the token established."""
    async with _channel(harness) as ch:
        md = [*_service_md(), (auth.ACTOR_METADATA_KEY, "policy:rule-7")]
        reply = await ledger_pb2_grpc.LedgerServiceStub(ch).GetEvent(ledger_pb2.GetEventRequest(seq=8),
                                                                      metadata=md)
    assert reply.event.actor == "policy:rule-7"


async def test_another_services_token_is_refused_a_method_it_is_not_listed_for(harness: _Harness) -> None:
    """A service token of a service the method does not name as a caller gets PERMISSION_DENIED."""
    async with _channel(harness) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger_pb2_grpc.LedgerServiceStub(ch).GetEvent(
                ledger_pb2.GetEventRequest(seq=8),
                metadata=[("authorization", f"Bearer {OTHER_SERVICE_TOKEN}"), (auth.TENANT_METADATA_KEY, "acme")])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "sealer" in (caught.value.details() or "")


async def test_draining_reports_not_serving() -> None:
    """Once a graceful stop begins, health answers NOT_SERVING."""
    h = _Harness()
    h.ready = True
    running = await h.start()
    await _wait_health(h, health_pb2.HealthCheckResponse.SERVING)
    await running.health.enter_graceful_shutdown()
    assert await _health(h) == health_pb2.HealthCheckResponse.NOT_SERVING
    await stop_server(running, 0.5)


def test_service_process_serves_once_its_backend_answers_and_stops_on_sigterm(tmp_path: Any) -> None:
    """A real service process is NOT_SERVING without its backend, SERVING with it, and exits 0 on SIGTERM."""
    aws_port = embedded.free_port()
    grpc_port = embedded.free_port()
    env = {**os.environ, **embedded.EMBEDDED_CREDENTIALS, "LZ_TABLE_NAME": "lifecyclezero",
           "LZ_AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_port}", "LZ_PORT": str(grpc_port),
           "LZ_BUCKET_NAME": "lifecyclezero-seals", "LZ_ORIGIN": "test.example/ledger",
           "LZ_SIGNING_KEY": generate_key("test.example/ledger")[0]}
    proc = subprocess.Popen([sys.executable, "-m", "services.ledger"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    aws_proc = None
    try:
        status = _wait_status(grpc_port, {health_pb2.HealthCheckResponse.NOT_SERVING})
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        aws_proc, url = embedded.start_endpoint(aws_port)
        embedded.provision(url)
        assert _wait_status(grpc_port, {health_pb2.HealthCheckResponse.SERVING}) == \
            health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        if aws_proc is not None:
            aws_proc.terminate()
            aws_proc.wait(10)


def _wait_status(port: int, wanted: set[int], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            try:
                last = int(health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE), timeout=1).status)
            except grpc.RpcError:
                last = -1
        if last in wanted:
            return last
        time.sleep(0.1)
    return last


async def test_bytes_that_are_not_the_request_message_are_invalid_argument(harness: _Harness) -> None:
    """A request body that does not parse answers INVALID_ARGUMENT, not UNKNOWN or INTERNAL."""
    async with _channel(harness) as ch:
        raw = ch.unary_unary(f"/{SERVICE}/GetEvent", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(b"\xff\xff\xff\xff", metadata=_service_md())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def split_harness() -> AsyncIterator[_Harness]:
    """A server whose GetEvent is internal: served on the internal port only."""
    h = _Harness()
    await h.start(internal={f"/{SERVICE}/GetEvent": frozenset({"assets"})})
    yield h
    assert h.running is not None
    await stop_server(h.running, 0.5)


async def _get_event(port: int, seq: int = 5) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        return await ledger_pb2_grpc.LedgerServiceStub(ch).GetEvent(ledger_pb2.GetEventRequest(seq=seq),
                                                                    metadata=_service_md())


async def test_an_internal_method_is_served_on_the_internal_port(split_harness: _Harness) -> None:
    """A service caller reaches an internal method on the internal port."""
    assert split_harness.running is not None
    reply = await _get_event(split_harness.running.internal_port)
    assert reply.event.seq == 5


async def test_an_internal_method_is_refused_on_the_public_port(split_harness: _Harness) -> None:
    """Even a service caller is refused an internal method on the public port."""
    assert split_harness.running is not None
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get_event(split_harness.running.port)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_public_method_is_refused_on_the_internal_port(split_harness: _Harness) -> None:
    """The internal port serves nothing but the internal methods."""
    assert split_harness.running is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{split_harness.running.internal_port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ledger_pb2_grpc.LedgerServiceStub(ch).AppendEvents(ledger_pb2.AppendEventsRequest(),
                                                                     metadata=_service_md())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
