"""Hostile input on every RPC: generated messages, raw bytes that do not parse, hostile streams.

Each call ends with a status a client can act on (never INTERNAL or UNKNOWN), and a rejected call
leaves the tenant's items and seal objects exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifecyclezero.v1 import (
    assets_pb2,
    assets_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ledger_pb2,
    sealer_pb2,
)

from services.kit.auth import Role
from services.kit.devstack import Stack
from tests.faults import fuzzing
from tests.faults.helpers import Store, ledger_stub, make_tenant, no_custody_pending, seal_now
from tests.ingest.agents import create_tenant, enroll

ACCEPTABLE = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED,
}
SERVICES = {
    "ledger": ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"],
    "sealer": sealer_pb2.DESCRIPTOR.services_by_name["SealerService"],
    "assets": assets_pb2.DESCRIPTOR.services_by_name["AssetService"],
    "ingest": ingest_pb2.DESCRIPTOR.services_by_name["IngestService"],
}
METHODS = [(name, method) for name, service in SERVICES.items() for method in service.methods
           if method.name != "Connect"]
CALLERS = ("admin", "operator", "viewer", "service", "bootstrap", "none", "garbage")


class Target:
    """The tenant under attack on the session stack, with some data of its own, and a store snapshot."""

    def __init__(self, stack: Stack, tenant: Any) -> None:
        self.stack = stack
        self.tenant = tenant
        self.store = Store(stack)
        self.channels = {name: grpc.insecure_channel(stack.addresses[name]) for name in SERVICES}

    def metadata(self, caller: str) -> list[tuple[str, str]]:
        tokens = {"admin": Role.ADMIN, "operator": Role.OPERATOR, "viewer": Role.VIEWER}
        if caller in tokens:
            return self.tenant.metadata(tokens[caller])
        if caller == "service":
            return [("authorization", f"Bearer {self.stack.service_token}"), ("x-lz-tenant", self.tenant.tenant)]
        if caller == "bootstrap":
            return [("authorization", f"Bearer {self.stack.bootstrap_token}")]
        if caller == "garbage":
            return [("authorization", "Bearer lz1:t#x:/../:" + "%" * 20)]
        return []

    def snapshot(self) -> tuple[dict[tuple[str, str], str], dict[str, list[str]]]:
        return self.store.tenant_items(self.tenant.tenant), self.store.tenant_objects(self.tenant.tenant)

    def call(self, service: str, method: descriptor.MethodDescriptor, request: bytes, caller: str) -> grpc.StatusCode:
        path = f"/{method.containing_service.full_name}/{method.name}"
        channel = self.channels[service]
        identity = bytes
        try:
            if method.server_streaming:
                for _ in channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)(
                        request, metadata=self.metadata(caller), timeout=30):
                    pass
            else:
                channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)(
                    request, metadata=self.metadata(caller), timeout=30)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


@pytest.fixture(scope="module")
def target(stack: Stack) -> Iterator[Target]:
    tenant = make_tenant(stack)
    made = Target(stack, tenant)
    assets_pb2_grpc.AssetServiceStub(made.channels["assets"]).CreateAsset(
        assets_pb2.CreateAssetRequest(asset=common_pb2.Asset(asset_id="a-fuzz", hostname="fuzz-host")),
        metadata=tenant.metadata(Role.OPERATOR), timeout=10)
    ledger_stub(tenant).AppendEvents(ledger_pb2.AppendEventsRequest(
        events=[ledger_pb2.EventInput(action="fuzz.seed", subject="asset:a-fuzz")] * 3),
        metadata=tenant.metadata(Role.OPERATOR), timeout=10)
    seal_now(tenant)
    yield made
    made.close()


class Attack:
    """Calls that remember the store as the last accepted call left it, and check every rejection against it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.state = self._settled()

    def _settled(self) -> tuple[dict[tuple[str, str], str], dict[str, list[str]]]:
        """The store once every accepted custody action is chained and sealed, so neither the custody
        sequencer nor the sealer writes anything behind a later call."""
        no_custody_pending(self.target.store, self.target.tenant.tenant)
        seal_now(self.target.tenant)
        return self.target.snapshot()

    def __call__(self, service: str, method: descriptor.MethodDescriptor, request: bytes, caller: str) -> None:
        code = self.target.call(service, method, request, caller)
        assert code in ACCEPTABLE, f"{method.full_name} as {caller} answered {code.name}"
        after = self.target.snapshot()
        if code is not grpc.StatusCode.OK:
            refused = f"{method.full_name} as {caller} was refused ({code.name}) but stored"
            assert stored(self.state, after) == [], refused
        else:
            self.state = self._settled()


def stored(before: tuple[dict, dict], after: tuple[dict, dict]) -> list[Any]:
    """What a call stored: items that appeared or vanished, any change to the ledger or seal partitions, objects."""
    items_before, objects_before = before
    items_after, objects_after = after
    changed = sorted(set(items_before) ^ set(items_after))
    changed += [k for k in items_after if k in items_before and items_after[k] != items_before[k]
                and k[0].endswith(("#LEDGER", "#SEAL"))]
    if objects_after != objects_before:
        changed.append(("objects", sorted(set(objects_after) ^ set(objects_before))))
    return changed


def _id(param: tuple[str, descriptor.MethodDescriptor]) -> str:
    return param[1].full_name.rsplit(".", 2)[-2] + "." + param[1].name


@pytest.mark.slow
@pytest.mark.parametrize("service_method", METHODS, ids=[_id(m) for m in METHODS])
def test_generated_messages_get_an_actionable_status_and_rejections_store_nothing(target, service_method):
    """Generated hostile requests get an actionable status (never INTERNAL or UNKNOWN); refusals store nothing."""
    service, method = service_method
    attack = Attack(target)

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(request=fuzzing.messages(method.input_type), caller=st.sampled_from(CALLERS))
    def run(request: Message, caller: str) -> None:
        attack(service, method, request.SerializeToString(), caller)

    run()


BAD_BYTES = (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\x0f", b"\x08" + b"\x80" * 11, b"\x0b\x0c")


def _fails_to_parse(cls: Any, raw: bytes) -> bool:
    """Whether `raw` is not a valid encoding of `cls` (some byte strings are valid unknown fields)."""
    try:
        cls.FromString(raw)
    except DecodeError:
        return True
    return False


@pytest.mark.parametrize("service_method", METHODS, ids=[_id(m) for m in METHODS])
def test_bytes_that_do_not_parse_as_the_request_get_invalid_argument(target, service_method):
    """Raw bytes that do not parse as the request message get INVALID_ARGUMENT and store nothing."""
    service, method = service_method
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(method.input_type)
    before = target.snapshot()
    unparseable = [raw for raw in BAD_BYTES if _fails_to_parse(cls, raw)]
    assert unparseable, f"none of the bad byte strings fails to parse as {method.input_type.full_name}"
    for raw in unparseable:
        for caller in ("admin", "service"):
            code = target.call(service, method, raw, caller)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, f"{method.full_name} answered {code.name} to {raw!r}"
    assert stored(before, target.snapshot()) == []


def test_a_request_larger_than_the_message_limit_gets_resource_exhausted(target):
    """A 5 MiB request is refused with RESOURCE_EXHAUSTED before any work is done."""
    method = SERVICES["ledger"].methods_by_name["AppendEvents"]
    request = ledger_pb2.AppendEventsRequest(events=[ledger_pb2.EventInput(action="x" * (5 << 20))])
    before = target.snapshot()
    assert target.call("ledger", method, request.SerializeToString(), "operator") is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored(before, target.snapshot()) == []


# ----------------------------------------------------------------------------------- the stream


@pytest.fixture(scope="module")
def agent_credentials(stack: Stack) -> tuple[str, str, str]:
    tenant = create_tenant(stack)
    reply = enroll(stack.addresses["ingest"], tenant, hostname="fuzz-agent")
    return tenant.tenant, reply.asset_id, reply.agent_credential


def _stream(address: str, requests: list[bytes]) -> grpc.StatusCode:
    """The status a Connect stream of raw `requests` ends with.

    The synchronous client reports the server's status even when the server ends the stream while
    requests are still being written; the asyncio client replaces it with a client-side INTERNAL in
    that race (grpc/grpc#36066), which would be a fact about the client, not about our server.
    """
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream("/lifecyclezero.v1.IngestService/Connect", request_serializer=bytes,
                                     response_deserializer=bytes)
        try:
            for _ in call(iter(requests), timeout=20):
                pass
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


@pytest.mark.slow
def test_hostile_streams_get_an_actionable_status(stack, agent_credentials):
    """Connect streams of generated messages, with a valid hello or a hostile one, end with an actionable status."""
    tenant, asset_id, credential = agent_credentials
    hello = ingest_pb2.ConnectRequest(hello=ingest_pb2.Hello(tenant_id=tenant, asset_id=asset_id,
                                                             agent_credential=credential))
    hostile = fuzzing.messages(ingest_pb2.ConnectRequest.DESCRIPTOR)
    raw = st.binary(max_size=40).filter(_unparsable(ingest_pb2.ConnectRequest))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(valid_hello=st.booleans(), body=st.lists(hostile.map(lambda m: m.SerializeToString()) | raw,
                                                    min_size=1, max_size=4))
    def run(valid_hello: bool, body: list[bytes]) -> None:
        requests = ([hello.SerializeToString()] if valid_hello else []) + body
        code = _stream(stack.addresses["ingest"], requests)
        assert code in ACCEPTABLE, f"Connect answered {code.name} to {requests!r:.300}"

    run()


def _unparsable(cls: type[Message]) -> Any:
    def check(data: bytes) -> bool:
        try:
            cls.FromString(data)
        except DecodeError:
            return True
        return False

    return check
