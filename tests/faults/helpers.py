"""Shared tools of the fault suite: stacks of our own, kill -9 and restart, store inspection, agents.

Tests that kill a process or pause the AWS endpoint run on a `Stack` of their own (never the
session's), so the rest of the suite keeps a healthy stack.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import itertools
import os
import random
import signal
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lifecyclezero.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc, sealer_pb2, sealer_pb2_grpc

from agent.backoff import Backoff, BackoffPolicy
from agent.commands import CommandBook, DryRunExecutor
from agent.endpoints import EndpointPicker
from agent.enroll import Identity
from agent.spool import MemorySpool
from agent.stream import AgentStream, Snapshot, StreamSettings, StreamState, StreamStats
from services.assets import keys as asset_keys
from services.ingest import keys as ingest_keys
from services.kit import aws, devstack
from services.kit.auth import Role
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from services.kit.tokens import store as token_store
from services.ledger import keys as ledger_keys
from services.ledger import keys as seal_keys
from services.ledger import store as ledger_store
from services.ledger.outbox import CustodyRecord
from services.ledger.outbox import store as outbox_store
from services.tlog.events import ChainVerifier
from tests.ingest.agents import IngestTenant, create_tenant, enroll

MODULES = {name: module for name, module, _ in devstack.PROCESSES} | dict(devstack.WORKERS)
SERVICES = {name: service for name, _, service in devstack.PROCESSES}
TELEMETRY_SHARDS = 10


# --------------------------------------------------------------------------------------- stacks


@contextlib.contextmanager
def own_stack(state_dir: Path, **extra_env: str) -> Iterator[Stack]:
    """A whole stack of our own (embedded AWS and every process), stopped at the end."""
    stack = Stack(state_dir=state_dir, extra_env=dict(extra_env))
    try:
        stack.start()
    except BaseException:
        stack.stop()
        dump_logs(stack)
        raise
    try:
        yield stack
    finally:
        stack.stop()


def dump_logs(stack: Stack, tail: int = 3000) -> None:
    for name in [*stack.procs, "embedded-aws"]:
        log = stack.log_path(name)
        if log.exists():
            sys.stderr.write(f"--- {name} log ---\n{log.read_text(errors='replace')[-tail:]}\n")


def kill9(stack: Stack, name: str) -> None:
    """SIGKILL one process of the stack and reap it."""
    proc = stack.procs[name]
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def restart(stack: Stack, name: str, timeout: float = 90.0) -> int:
    """Start a killed process again on its old port, wait until it reports SERVING; the start attempts it took.

    A start that exits at once (its port still taken) is tried again until `timeout`.
    """
    port = int(stack.addresses[name].rsplit(":", 1)[1]) if name in stack.addresses else None
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        proc = stack.start_process(name, MODULES[name], port=port)
        time.sleep(0.3)
        if port is None:
            assert proc.poll() is None, f"{name} exited at restart"
            return attempts
        while proc.poll() is None and health(stack.addresses[name], SERVICES[name]) != 1:
            assert time.monotonic() < deadline, f"{name} did not report SERVING after its restart"
            time.sleep(0.1)
        if proc.poll() is None:
            return attempts
        assert time.monotonic() < deadline, f"{name} could not start again within {timeout:.0f}s"
        time.sleep(1.0)


def health(address: str, service: str = "") -> int:
    """The health status a server reports (-1 when it does not answer within a second)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                               timeout=1)
        except grpc.RpcError:
            return -1
    return int(reply.status)


def until(check: Callable[[], Any], within: float, what: str, every: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:.0f}s (last: {got!r})")
        time.sleep(every)


# ------------------------------------------------------------------------------------ tenants


class Tenant:
    """A tenant on some stack: its id, tokens per role and (when made through CreateTenant) its secret."""

    def __init__(self, stack: Stack, tenant: str, tokens: dict[Role, str], secret: str = "") -> None:
        self.stack = stack
        self.tenant = tenant
        self.tokens = tokens
        self.enrollment_secret = secret

    def metadata(self, role: Role = Role.ADMIN) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.tokens[role]}")]

    def channel(self, service: str) -> grpc.Channel:
        return grpc.insecure_channel(self.stack.addresses[service])

    @property
    def ingest_tenant(self) -> IngestTenant:
        return IngestTenant(self.tenant, self.tokens[Role.ADMIN], self.enrollment_secret)


def make_tenant(stack: Stack) -> Tenant:
    """A tenant made through CreateTenant (enrollment secret) plus viewer and operator tokens."""
    made = create_tenant(stack)
    store = Store(stack)
    tokens = {Role.ADMIN: made.admin_token}
    for role in (Role.VIEWER, Role.OPERATOR):
        token, _ = token_store.issue(store.ddb, store.table, made.tenant, role, f"faults {role.value}")
        tokens[role] = str(token)
    return Tenant(stack, made.tenant, tokens, made.enrollment_secret)


# -------------------------------------------------------------------------------------- store


class Store:
    """Raw access to a stack's table and bucket, for checks the services cannot be trusted with."""

    def __init__(self, stack: Stack) -> None:
        assert stack.resources is not None
        res = stack.resources
        settings = AwsSettings(table_name=res.table_name, endpoint_url=res.endpoint_url)
        self.ddb = aws.client(settings, "dynamodb")
        self.s3 = aws.client(settings, "s3")
        self.sqs = aws.client(settings, "sqs")
        self.table = res.table_name
        self.bucket = res.bucket_name
        self.queue_url = res.queue_url

    def partitions(self, tenant: str) -> list[str]:
        """Every partition key a tenant's items can have."""
        return [asset_keys.tenant_pk(tenant), asset_keys.auth_pk(tenant), ingest_keys.agent_pk(tenant),
                ledger_keys.ledger_pk(tenant), seal_keys.seal_pk(tenant),
                *(ingest_keys.telemetry_pk(tenant, k) for k in range(TELEMETRY_SHARDS))]

    def tenant_items(self, tenant: str) -> dict[tuple[str, str], str]:
        """(PK, SK) -> the item's full content (repr), over every partition of the tenant."""
        out: dict[tuple[str, str], str] = {}
        for pk in self.partitions(tenant):
            kwargs: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": "PK = :pk",
                                      "ExpressionAttributeValues": {":pk": {"S": pk}}, "ConsistentRead": True}
            while True:
                got = self.ddb.query(**kwargs)
                for item in got.get("Items", []):
                    out[(item["PK"]["S"], item["SK"]["S"])] = repr(sorted(item.items()))
                if "LastEvaluatedKey" not in got:
                    break
                kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]
        return out

    def tenant_objects(self, tenant: str) -> dict[str, list[str]]:
        """Object key -> version ids, for everything in the seal bucket under the tenant's prefix."""
        out: dict[str, list[str]] = {}
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"{tenant}/"}
        while True:
            got = self.s3.list_object_versions(**kwargs)
            for version in got.get("Versions", []):
                out.setdefault(version["Key"], []).append(version["VersionId"])
            if not got.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = got["NextKeyMarker"]
            kwargs["VersionIdMarker"] = got["NextVersionIdMarker"]

    def checkpoint_versions(self, tenant: str) -> dict[str, int]:
        """Checkpoint object key -> how many versions S3 holds of it."""
        return {k: len(v) for k, v in self.tenant_objects(tenant).items() if "/checkpoint/" in k}

    def ledger_events(self, tenant: str) -> list[ledger_store.StoredEvent]:
        return list(ledger_store.events_between(self.ddb, self.table, tenant, 1, ledger_keys.MAX_SEQ))

    def latest_inventory(self, tenant: str, asset_id: str) -> common_pb2.Inventory | None:
        """The inventory of the asset's newest telemetry record that carries one (highest seq), or None."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :d)",
            "FilterExpression": "attribute_exists(inventory)",
            "ExpressionAttributeValues": aws.to_item({":pk": ingest_keys.asset_gsi1pk(tenant, asset_id),
                                                      ":d": ingest_keys.DATE_PREFIX}),
            "ProjectionExpression": "seq, inventory",
        }
        newest: tuple[int, bytes] | None = None
        while True:
            got = self.ddb.query(**kwargs)
            for item in got.get("Items", []):
                seq = int(item["seq"]["N"])
                if newest is None or seq > newest[0]:
                    newest = (seq, item["inventory"]["B"])
            if "LastEvaluatedKey" not in got:
                break
            kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]
        return common_pb2.Inventory.FromString(zlib.decompress(newest[1])) if newest else None

    def telemetry_seqs(self, tenant: str, asset_id: str) -> set[int]:
        """The heartbeat seqs the asset has telemetry items for."""
        seqs: set[int] = set()
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :d)",
            "ExpressionAttributeValues": aws.to_item({":pk": ingest_keys.asset_gsi1pk(tenant, asset_id),
                                                      ":d": ingest_keys.DATE_PREFIX}),
            "ProjectionExpression": "seq",
        }
        while True:
            got = self.ddb.query(**kwargs)
            seqs.update(int(i["seq"]["N"]) for i in got.get("Items", []))
            if "LastEvaluatedKey" not in got:
                return seqs
            kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]


def chained_custody(ddb: Any, table: str, tenant: str, asset_id: str = "",
                    within: float = 60.0) -> list[CustodyRecord]:
    """The tenant's (or one asset's) custody records once the sequencer has given every one its ledger seq."""
    def all_chained() -> list[CustodyRecord]:
        records = outbox_store.asset_records(ddb, table, tenant, asset_id)
        return records if records and all(r.chained for r in records) else []

    return until(all_chained, within, "every custody record chained")


def no_custody_pending(store: Store, tenant: str, within: float = 60.0) -> None:
    """Wait until none of the tenant's custody records waits for its ledger seq (true at once when it has none)."""
    until(lambda: all(r.chained for r in outbox_store.asset_records(store.ddb, store.table, tenant)), within,
          "no custody record pending")


def assert_chain_sound(store: Store, tenant: str) -> list[ledger_store.StoredEvent]:
    """The stored ledger is seq 1..n with no gap or duplicate and every event chains from the one before."""
    events = store.ledger_events(tenant)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "ledger has a gap or a duplicate seq"
    chain = ChainVerifier(tenant)
    for event in events:
        chain.add(event.canonical)  # raises ChainError naming the seq on a fork or an edit
    return events


# --------------------------------------------------------------------------------- ledger rpc


def ledger_stub(tenant: Tenant) -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(tenant.channel("ledger"))


def sealer_stub(tenant: Tenant) -> sealer_pb2_grpc.SealerServiceStub:
    return sealer_pb2_grpc.SealerServiceStub(tenant.channel("sealer"))


def seal_now(tenant: Tenant) -> common_pb2.Checkpoint:
    return sealer_stub(tenant).SealNow(sealer_pb2.SealNowRequest(), metadata=tenant.metadata(Role.OPERATOR),
                                       timeout=120).checkpoint


def verify_full(tenant: Tenant) -> ledger_pb2.VerifyLedgerResponse:
    return ledger_stub(tenant).VerifyLedger(ledger_pb2.VerifyLedgerRequest(mode=ledger_pb2.VERIFY_MODE_FULL),
                                            metadata=tenant.metadata(), timeout=120)


# ------------------------------------------------------------------------------------- agents


class ChangingSource:
    """An inventory whose digest changes every heartbeat, so every heartbeat carries (and stores) it."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.counter = itertools.count(1)

    async def snapshot(self) -> Snapshot:
        inventory = common_pb2.Inventory(hostname=self.hostname, os=f"linux build {next(self.counter)}")
        data = inventory.SerializeToString(deterministic=True)
        return Snapshot(hashlib.sha256(data).hexdigest(), data)


class Fleet:
    """Real agent streams (agent.stream.AgentStream) of enrolled hosts, run in this process."""

    def __init__(self, stack: Stack, tenant: Tenant, count: int, interval: float, *, changing: bool = True,
                 first_jitter: float = 0.5, initial: float = 0.2, cap: float | None = None, send_rate: float = 20.0,
                 identities: list[Identity] | None = None, endpoints: Sequence[str] = (),
                 channels_per_endpoint: int | None = None) -> None:
        self.stack = stack
        # Each session of each agent dials one of these (agent.endpoints.EndpointPicker); default: the first ingest.
        self.endpoints = tuple(endpoints) or (stack.addresses["ingest"],)
        self.channels_per_endpoint = channels_per_endpoint
        self.tenant = tenant
        self.stats = StreamStats()
        self.executor = DryRunExecutor()
        self.streams: list[AgentStream] = []
        self.identities: list[Identity] = list(identities or [])
        for index in range(count - len(self.identities)):
            reply = enroll(stack.addresses["ingest"], tenant.ingest_tenant, hostname=f"fault-{index}")
            self.identities.append(Identity(tenant.tenant, reply.asset_id, reply.agent_credential,
                                            stack.addresses["ingest"]))
        self.initial = initial
        self.cap = cap if cap is not None else max(2.0, initial * 4)  # short, so a fault test ends quickly
        self.interval = interval
        self.changing = changing
        self.first_jitter = first_jitter
        self.send_rate = send_rate
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: list[grpc.aio.Channel] = []
        self._pool: dict[str, list[grpc.aio.Channel]] = {}
        self.attempts: list[tuple[float, int]] = []  # (monotonic time, agent index) of every Connect started
        self.dialled: dict[int, str] = {}  # agent index -> the endpoint its latest session dialled

    async def start(self) -> None:
        # A real agent opens a new channel for each session; these channels are shared and kept, so one that
        # failed while its replica was down must not hold gRPC's growing reconnect backoff (up to 120 s) into
        # the sessions that dial it after the replica is up.
        options = [("grpc.keepalive_time_ms", 30_000), ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 1_000)]
        per_endpoint = self.channels_per_endpoint or max(1, -(-len(self.identities) // 500))
        self._pool = {endpoint: [grpc.aio.insecure_channel(endpoint, options=options) for _ in range(per_endpoint)]
                      for endpoint in self.endpoints}
        self._channels = [channel for channels in self._pool.values() for channel in channels]
        policy = BackoffPolicy(initial=self.initial, multiplier=1.6, jitter=0.2, cap=self.cap,
                               first_jitter=self.first_jitter)
        for index, identity in enumerate(self.identities):
            picker = EndpointPicker(self.endpoints, random.Random(index))
            source = ChangingSource(identity.asset_id) if self.changing else _Fixed(identity.asset_id)
            stream = AgentStream(
                identity, channel=functools.partial(self._attempt, picker, index), source=source,
                spool=MemorySpool(100_000),
                state=StreamState(None, identity.asset_id), commands=CommandBook(None), executor=self.executor,
                backoff=Backoff(policy, random.Random()),
                settings=StreamSettings(interval=self.interval, send_rate=self.send_rate, send_burst=20,
                                        resend_results_after=1.0),
                stats=self.stats, owns_channel=False, on_connect_failed=picker.failed,
            )
            self.streams.append(stream)
            self._tasks.append(asyncio.create_task(stream.run()))  # its own stop event: see agent.simulate

    def _attempt(self, picker: EndpointPicker, index: int) -> grpc.aio.Channel:
        self.attempts.append((time.monotonic(), index))
        endpoint = picker.endpoints[picker.pick()]
        self.dialled[index] = endpoint
        shared = self._pool[endpoint]
        return shared[index % len(shared)]

    def placement(self) -> collections.Counter[str]:
        """How many agents have a live session on each endpoint now."""
        return collections.Counter(self.dialled[i] for i, stream in enumerate(self.streams) if stream.live)

    async def stop(self) -> None:
        for stream in self.streams:
            stream.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels:
            await channel.close()

    def acked(self) -> dict[str, int]:
        """asset id -> the highest seq its agent saw acknowledged."""
        return {s.identity.asset_id: s.state.acked_seq for s in self.streams}

    def produced(self) -> dict[str, int]:
        return {s.identity.asset_id: s.state.last_seq for s in self.streams}


class _Fixed:
    def __init__(self, hostname: str) -> None:
        inventory = common_pb2.Inventory(hostname=hostname, os="linux")
        data = inventory.SerializeToString(deterministic=True)
        self._snapshot = Snapshot(hashlib.sha256(data).hexdigest(), data)

    async def snapshot(self) -> Snapshot:
        return self._snapshot


async def wait_for(check: Callable[[], Any], within: float, what: str, every: float = 0.25) -> Any:
    """The async `until`."""
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:.0f}s (last: {got!r})")
        await asyncio.sleep(every)


def missing_telemetry(store: Store, tenant: str, acked: dict[str, int]) -> dict[str, list[int]]:
    """asset id -> acked seqs with no telemetry item (empty when every acked heartbeat is stored)."""
    out: dict[str, list[int]] = {}
    for asset_id, top in acked.items():
        have = store.telemetry_seqs(tenant, asset_id)
        gone = [seq for seq in range(1, top + 1) if seq not in have]
        if gone:
            out[asset_id] = gone
    return out
