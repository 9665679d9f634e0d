"""The stream client against the real stack: ingest, assets and the risk worker as processes.

An outage is made with a TCP proxy between the agent and ingest that the test cuts and restores, so
the control plane itself stays up for the rest of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from agent.backoff import Backoff, BackoffPolicy
from agent.commands import CommandBook, DryRunExecutor
from agent.enroll import Identity, enroll_async, enroll_request
from agent.spool import FileSpool
from agent.stream import AgentStream, Snapshot, StreamSettings, StreamState
from services.ingest import keys as ingest_keys
from services.kit import aws
from services.kit.auth import Role
from services.kit.settings import AwsSettings

pytestmark = pytest.mark.slow


class Proxy:
    """A loopback TCP proxy that can cut every connection and refuse new ones until restored."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.open = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.open = False
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


def enrollment_secret(tenant: Any) -> str:
    """The test tenant's enrollment secret: the fixture only writes tokens, so the tenant is created here."""
    with tenant.channel("assets") as channel:
        reply = assets_pb2_grpc.AssetServiceStub(channel).CreateTenant(
            assets_pb2.CreateTenantRequest(tenant_id=tenant.tenant, display_name=tenant.tenant),
            metadata=[("authorization", f"Bearer {tenant.stack.bootstrap_token}")],
            timeout=30,
        )
    return str(reply.enrollment_secret)


async def _enroll(tenant: Any, hostname: str) -> Identity:
    target = tenant.stack.addresses["ingest"]
    request = enroll_request(tenant.tenant, enrollment_secret(tenant), hostname, "linux 6.8", employee_id="emp-1")
    async with grpc.aio.insecure_channel(target) as channel:
        return await enroll_async(channel, request, target)


class Source:
    """A new inventory every heartbeat (a model count that grows), so the worker stores every one of them:
    unchanged heartbeats are coalesced in telemetry and could not show that each seq arrived."""

    def __init__(self) -> None:
        self.count = 0

    async def snapshot(self) -> Snapshot:
        self.count += 1
        inventory = common_pb2.Inventory(hostname="stack-host", os="linux 6.8")
        inventory.engines.add(kind="ollama", pid=42, listen=[common_pb2.Endpoint(address="127.0.0.1", port=11434)])
        inventory.models.add(name=f"model-{self.count}", format="gguf", path=f"/m/{self.count}.gguf")
        return Snapshot(hashlib.sha256(inventory.SerializeToString()).hexdigest(), inventory.SerializeToString())


def _stream(identity: Identity, target: str, state_dir: Path, executor: DryRunExecutor | None = None) -> AgentStream:
    return AgentStream(
        identity,
        channel=lambda: grpc.aio.insecure_channel(target),
        source=Source(),
        spool=FileSpool(state_dir / "spool", max_bytes=1 << 20),
        state=StreamState(state_dir / "stream.json", identity.asset_id),
        commands=CommandBook(state_dir / "results.json"),
        executor=executor or DryRunExecutor(),
        backoff=Backoff(BackoffPolicy(initial=0.1, cap=0.5, first_jitter=0)),
        settings=StreamSettings(interval=0.5),
    )


async def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _running(stream: AgentStream) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(stream.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _telemetry_seqs(tenant: Any, asset_id: str) -> list[int]:
    resources = tenant.stack.resources
    ddb = aws.client(AwsSettings(table_name=resources.table_name, endpoint_url=resources.endpoint_url), "dynamodb")
    kwargs: dict[str, Any] = {
        "TableName": resources.table_name,
        "IndexName": "GSI1",
        "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :d)",
        "ExpressionAttributeValues": aws.to_item(
            {":pk": ingest_keys.asset_gsi1pk(tenant.tenant, asset_id), ":d": ingest_keys.DATE_PREFIX}
        ),
    }
    seqs: list[int] = []
    while True:
        got = ddb.query(**kwargs)
        seqs += [int(aws.from_item(item)["seq"]) for item in got["Items"]]
        if "LastEvaluatedKey" not in got:
            return sorted(seqs)
        kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]


async def test_heartbeats_from_an_outage_all_reach_the_control_plane(new_tenant: Any, tmp_path: Path) -> None:
    """Heartbeats made while the link to ingest is cut are replayed and every seq is stored exactly once."""
    identity = await _enroll(new_tenant, "outage-host")
    proxy = Proxy(new_tenant.stack.addresses["ingest"])
    target = await proxy.start()
    stream = _stream(identity, target, tmp_path)
    try:
        async with _running(stream):
            await _until(lambda: stream.state.acked_seq >= 3)
            proxy.cut()
            cut_at = stream.state.last_seq
            await _until(lambda: stream.state.last_seq >= cut_at + 5)
            assert stream.state.acked_seq <= cut_at
            proxy.open = True
            await _until(lambda: stream.state.acked_seq >= cut_at + 7)
            last = stream.state.acked_seq
    finally:
        await proxy.close()
    deadline = time.monotonic() + 60
    while (seqs := await asyncio.to_thread(_telemetry_seqs, new_tenant, identity.asset_id))[-1:] < [last]:
        assert time.monotonic() < deadline, f"telemetry stuck at {seqs[-1:]}, want {last}"
        await asyncio.sleep(0.5)
    assert seqs[: last] == list(range(1, last + 1))


async def test_an_isolate_order_is_applied_and_confirmed(new_tenant: Any, tmp_path: Path) -> None:
    """IsolateAsset reaches the agent on its stream, runs once (dry run) and the asset becomes ISOLATED."""
    identity = await _enroll(new_tenant, "isolate-host")
    executor = DryRunExecutor()
    stream = _stream(identity, new_tenant.stack.addresses["ingest"], tmp_path, executor)
    async with _running(stream), grpc.aio.insecure_channel(new_tenant.stack.addresses["assets"]) as channel:
        stub = assets_pb2_grpc.AssetServiceStub(channel)
        await _until(lambda: stream.state.acked_seq >= 1)
        await stub.IsolateAsset(
            assets_pb2.IsolateAssetRequest(asset_id=identity.asset_id, justification="test", request_id="iso-1"),
            metadata=new_tenant.metadata(Role.OPERATOR),
            timeout=30,
        )
        await _until(lambda: stream.stats.results_acked >= 1)
        got = await stub.GetAsset(
            assets_pb2.GetAssetRequest(asset_id=identity.asset_id), metadata=new_tenant.metadata(Role.VIEWER)
        )
    assert [kind for _, kind in executor.executed] == [common_pb2.COMMAND_KIND_ISOLATE]
    assert got.asset.status == common_pb2.ASSET_STATUS_ISOLATED
