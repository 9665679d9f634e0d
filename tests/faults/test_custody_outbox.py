"""Kill -9 of the process that chains custody records, in the middle of a burst of isolations.

The assets process writes each isolation's custody record in the isolation's transaction and chains
records into the ledger moments later; the test kills it while both are going on and restarts it.
Runs on a stack of its own, because it kills a process.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from services.assets.store import AssetStore
from services.kit.auth import Role
from services.kit.devstack import Stack
from services.ledger.outbox import store as outbox_store
from tests.faults.helpers import (
    Store,
    Tenant,
    assert_chain_sound,
    chained_custody,
    kill9,
    make_tenant,
    own_stack,
    restart,
)
from tests.ingest.agents import IngestTenant, enroll

pytestmark = pytest.mark.slow

BURST = 120
KILL_AFTER_ACKS = 30


@pytest.fixture(scope="module")
def outbox_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory.mktemp("outbox")) as stack:
        yield stack


def _create_assets(stack: Stack, tenant: Tenant, count: int) -> list[str]:
    with tenant.channel("assets") as channel:
        stub = assets_pb2_grpc.AssetServiceStub(channel)

        def create(index: int) -> str:
            asset_id = f"crash-{index:03d}"
            stub.CreateAsset(assets_pb2.CreateAssetRequest(asset=common_pb2.Asset(
                asset_id=asset_id, hostname=f"{asset_id}.corp", employee_id="emp-1", os="linux")),
                metadata=tenant.metadata(Role.OPERATOR))
            return asset_id

        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(create, range(count)))


def _burst_with_kill(stack: Stack, tenant: Tenant, asset_ids: list[str]) -> dict[str, str]:
    """Isolate every asset at once, kill -9 assets after the first acks; asset -> command id of each ack."""
    acked: dict[str, str] = {}
    enough = threading.Event()
    lock = threading.Lock()
    with tenant.channel("assets") as channel:
        stub = assets_pb2_grpc.AssetServiceStub(channel)

        def isolate(asset_id: str) -> None:
            try:
                reply = stub.IsolateAsset(assets_pb2.IsolateAssetRequest(
                    asset_id=asset_id, justification="outbreak", request_id=f"burst-{asset_id}"),
                    metadata=tenant.metadata(Role.OPERATOR), timeout=20)
            except grpc.RpcError:
                return
            with lock:
                acked[asset_id] = reply.command.command_id
                if len(acked) >= KILL_AFTER_ACKS:
                    enough.set()

        with ThreadPoolExecutor(len(asset_ids)) as pool:
            for asset_id in asset_ids:
                pool.submit(isolate, asset_id)
            assert enough.wait(60), "no isolation was acknowledged"
            kill9(stack, "assets")
    return acked


@dataclass(frozen=True)
class KilledBurst:
    tenant: Tenant
    store: Store
    # asset -> the command id its acknowledged IsolateAsset named
    acked: dict[str, str]


@pytest.fixture(scope="module")
def killed_burst(outbox_stack: Stack) -> KilledBurst:
    """A burst of isolations (grouped into shared transactions) with kill -9 of assets mid-burst, then a restart."""
    tenant = make_tenant(outbox_stack)
    asset_ids = _create_assets(outbox_stack, tenant, BURST)
    acked = _burst_with_kill(outbox_stack, tenant, asset_ids)
    store = Store(outbox_stack)
    waiting = [r for r in outbox_store.asset_records(store.ddb, store.table, tenant.tenant) if not r.chained]
    sys.stdout.write(f"{len(acked)} of {BURST} acknowledged; {len(waiting)} records unchained at the kill\n")
    restart(outbox_stack, "assets")
    return KilledBurst(tenant, store, acked)


def test_every_acknowledged_isolation_is_chained_once_after_a_kill_of_the_sequencer(killed_burst: KilledBurst) -> None:
    """After kill -9 of assets mid-burst and a restart, every acknowledged isolation has exactly one custody
    event in a sound chain, and every custody record carries that event's seq."""
    store, tenant, acked = killed_burst.store, killed_burst.tenant, killed_burst.acked
    records = chained_custody(store.ddb, store.table, tenant.tenant, within=120)
    events = assert_chain_sound(store, tenant.tenant)
    requested = {e.subject.removeprefix("asset:"): e for e in events if e.action == "asset.isolate.requested"}
    assert Counter(e.subject for e in events) == Counter(f"asset:{r.asset_id}" for r in records)
    assert set(acked) <= set(requested), sorted(set(acked) - set(requested))
    assert {a: requested[a].seq for a in acked} == {r.asset_id: r.ledger_seq for r in records if r.asset_id in acked}
    assert all(f'"command_id":"{acked[a]}"' in requested[a].canonical.decode() for a in acked)


def test_every_acknowledged_isolation_is_durable_after_a_kill_mid_group(killed_burst: KilledBurst) -> None:
    """After kill -9 of assets mid-burst and a restart, every acknowledged isolation's asset is pending under
    the command its answer named: no group was acknowledged before it committed."""
    tenant, acked = killed_burst.tenant, killed_burst.acked
    with tenant.channel("assets") as channel:
        stub = assets_pb2_grpc.AssetServiceStub(channel)
        found = {a: stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=a), metadata=tenant.metadata(Role.VIEWER)).asset
                 for a in acked}
    table = AssetStore(killed_burst.store.ddb, killed_burst.store.table)
    commands = {a: table.get_command(tenant.tenant, a, command_id) for a, command_id in acked.items()}
    assert {a: asset.status for a, asset in found.items()} == dict.fromkeys(
        acked, common_pb2.ASSET_STATUS_ISOLATION_PENDING)
    assert {a: c is not None and c.pending for a, c in commands.items()} == dict.fromkeys(acked, True)


def _enroll_burst_with_kill(stack: Stack, tenant: Tenant, count: int) -> dict[str, str]:
    """Enroll `count` hosts at once through ingest, kill -9 assets after the first answers; asset -> credential."""
    enrolled: dict[str, str] = {}
    enough = threading.Event()
    lock = threading.Lock()
    ingest_tenant = IngestTenant(tenant.tenant, tenant.tokens[Role.ADMIN], tenant.enrollment_secret)

    def one(index: int) -> None:
        try:
            reply = enroll(stack.addresses["ingest"], ingest_tenant, hostname=f"ws-{index}")
        except grpc.RpcError:
            return
        with lock:
            enrolled[reply.asset_id] = reply.agent_credential
            if len(enrolled) >= KILL_AFTER_ACKS:
                enough.set()

    with ThreadPoolExecutor(count) as pool:
        for index in range(count):
            pool.submit(one, index)
        assert enough.wait(60), "no enrollment was answered"
        kill9(stack, "assets")
    return enrolled


def test_every_answered_enrollment_is_chained_once_after_a_kill_of_the_sequencer(outbox_stack: Stack) -> None:
    """After kill -9 of assets mid enrollment burst and a restart, every host that got a credential has exactly
    one asset.enrolled event in a sound chain."""
    tenant = make_tenant(outbox_stack)
    enrolled = _enroll_burst_with_kill(outbox_stack, tenant, BURST)
    restart(outbox_stack, "assets")
    store = Store(outbox_stack)
    chained_custody(store.ddb, store.table, tenant.tenant, within=120)
    events = Counter(e.subject for e in assert_chain_sound(store, tenant.tenant) if e.action == "asset.enrolled")
    sys.stdout.write(f"{len(enrolled)} of {BURST} enrollments answered; {len(events)} enrolled events\n")
    assert {f"asset:{a}" for a in enrolled} <= set(events)
    assert set(events.values()) == {1}
