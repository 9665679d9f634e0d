"""Crash and restart: kill -9 each process at a chosen point under load, restart it, check the invariants.

Every test runs on a stack of its own (module-scoped), never the session's, because it kills processes.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2, ledger_pb2, sealer_pb2

from services.kit.auth import Role
from services.kit.devstack import Stack
from services.ledger.outbox import store as outbox_store
from services.tlog.events import parse_event
from tests.faults.helpers import (
    Fleet,
    Store,
    Tenant,
    assert_chain_sound,
    chained_custody,
    health,
    kill9,
    ledger_stub,
    make_tenant,
    missing_telemetry,
    own_stack,
    restart,
    seal_now,
    sealer_stub,
    until,
    verify_full,
    wait_for,
)

pytestmark = pytest.mark.slow

FAST_ENV = {
    "LZ_AGENT_RATE_PER_SECOND": "50",
    "LZ_AGENT_BURST": "100",
    "LZ_SEAL_EVERY_EVENTS": "16",
    "LZ_SEAL_EVERY_SECONDS": "0.5",
    "LZ_COMMAND_POLL_SECONDS": "1",
    # A command whose nudge died with assets is found by the poll, also for a tenant with nothing pending before.
    "LZ_COMMAND_IDLE_POLL_SECONDS": "1",
    "LZ_COMMAND_RESEND_SECONDS": "2",
    "LZ_WORKER_RETRY_SECONDS": "2",
}
# A message a killed worker had received comes back after this long (the stack's default is 30 s).
VISIBILITY_SECONDS = "4"


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory.mktemp("crash"), **FAST_ENV) as stack:
        store = Store(stack)
        store.sqs.set_queue_attributes(QueueUrl=store.queue_url, Attributes={"VisibilityTimeout": VISIBILITY_SECONDS})
        yield stack


@pytest.fixture
def tenant(crash_stack: Stack) -> Tenant:
    return make_tenant(crash_stack)


async def _stream_through(stack: Stack, tenant: Tenant, victim: str, kills: int, tmp: Path) -> dict[str, int]:
    """Run six agents; kill -9 `victim` `kills` times under load (restarting it); return what they saw acked."""
    fleet = Fleet(stack, tenant, count=6, interval=0.25)
    await fleet.start()
    try:
        await wait_for(lambda: all(v >= 5 for v in fleet.acked().values()), 30, "first acks")
        for _ in range(kills):
            before = dict(fleet.acked())
            await asyncio.sleep(1.0)
            await asyncio.to_thread(kill9, stack, victim)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(restart, stack, victim)
            await wait_for(lambda b=before: all(fleet.acked()[a] > b[a] + 3 for a in b), 60,
                           f"acks flowing again after {victim} restarted")
    finally:
        await fleet.stop()
    return fleet.acked()


async def test_ingest_killed_mid_stream_loses_no_acked_heartbeat(crash_stack, tenant, tmp_path):
    """Every heartbeat an agent saw acknowledged before and after kill -9 of ingest ends up in telemetry."""
    acked = await _stream_through(crash_stack, tenant, "ingest", kills=1, tmp=tmp_path)
    store = Store(crash_stack)
    until(lambda: not missing_telemetry(store, tenant.tenant, acked), 60,
          "every acked heartbeat in telemetry")


async def test_worker_killed_mid_batch_loses_no_acked_heartbeat(crash_stack, tenant, tmp_path):
    """Every acknowledged heartbeat ends up in telemetry although the risk worker is killed mid-batch."""
    acked = await _stream_through(crash_stack, tenant, "risk-worker", kills=2, tmp=tmp_path)
    store = Store(crash_stack)
    until(lambda: not missing_telemetry(store, tenant.tenant, acked), 60,
          "every acked heartbeat in telemetry")


def _append_until_done(tenant: Tenant, tag: str, calls: int, acked: dict[str, list[int]],
                       stop: threading.Event) -> None:
    """Append `calls` events one call each (request ids make retries safe), retrying through outages."""
    stub = ledger_stub(tenant)
    for n in range(calls):
        request_id = f"{tag}-{n}"
        payload = struct_pb2.Struct()
        payload.update({"tag": request_id})
        request = ledger_pb2.AppendEventsRequest(
            events=[ledger_pb2.EventInput(action="fault.append", payload=payload)], request_id=request_id)
        while not stop.is_set():
            try:
                acked[request_id] = list(stub.AppendEvents(request, metadata=tenant.metadata(Role.OPERATOR),
                                                           timeout=10).seqs)
                break
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                      grpc.StatusCode.ABORTED), exc
                time.sleep(0.2)


def _concurrent_appends(tenant: Tenant, writers: int,
                        calls: int) -> tuple[list[threading.Thread], dict, threading.Event]:
    acked: dict[str, list[int]] = {}
    stop = threading.Event()
    threads = [threading.Thread(target=_append_until_done, args=(tenant, f"w{i}", calls, acked, stop), daemon=True)
               for i in range(writers)]
    for thread in threads:
        thread.start()
    return threads, acked, stop


def test_ledger_killed_mid_group_commit_leaves_no_fork_gap_or_duplicate(crash_stack, tenant):
    """After kill -9 of the ledger during concurrent group-committed appends the chain has every acked
    event exactly once, no gap and no fork, and VerifyLedger FULL passes."""
    threads, acked, stop = _concurrent_appends(tenant, writers=8, calls=40)
    try:
        until(lambda: len(acked) >= 40, 30, "appends under way")
        kill9(crash_stack, "ledger")
        restart(crash_stack, "ledger")
        for thread in threads:
            thread.join(120)
    finally:
        stop.set()
    assert len(acked) == 8 * 40
    events = assert_chain_sound(Store(crash_stack), tenant.tenant)
    tags = Counter(parse_event(e.canonical).payload.get("tag") for e in events)
    assert [t for t, n in tags.items() if n > 1] == [], "an append was stored twice"
    for request_id, seqs in acked.items():
        assert tags[request_id] == 1, f"acked append {request_id} (seqs {seqs}) is not stored exactly once"
        stored = parse_event(events[seqs[0] - 1].canonical).payload.get("tag")
        assert stored == request_id, f"seq {seqs[0]} acked for {request_id} holds {stored}"
    seal_now(tenant)
    verdict = verify_full(tenant)
    assert verdict.ok, verdict


def test_sealer_killed_mid_seal_never_rewrites_a_checkpoint(crash_stack, tenant):
    """Kill -9 of the sealer at spread-out moments of a seal (tiles, checkpoint object, index): sealing resumes,
    VerifyLedger FULL passes, and every checkpoint object has exactly one S3 version."""
    stub = ledger_stub(tenant)
    outcomes: list[str] = []
    for delay in (0.02, 0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.8):
        stub.AppendEvents(ledger_pb2.AppendEventsRequest(
            events=[ledger_pb2.EventInput(action="fault.burst", payload=_tag(f"d{delay}-{i}")) for i in range(40)]),
            metadata=tenant.metadata(Role.OPERATOR), timeout=10)
        sealing = threading.Thread(target=lambda: outcomes.append(_seal_outcome(tenant)), daemon=True)
        sealing.start()
        time.sleep(delay)
        kill9(crash_stack, "sealer")
        sealing.join(30)
        restart(crash_stack, "sealer")
    assert "UNAVAILABLE" in outcomes, f"no kill landed during a seal: {outcomes}"
    store = Store(crash_stack)
    size = len(assert_chain_sound(store, tenant.tenant))
    assert seal_now(tenant).tree_size == size
    status = sealer_stub(tenant).GetSealStatus(sealer_pb2.GetSealStatusRequest(), metadata=tenant.metadata(),
                                                timeout=10)
    assert (status.sealed_through, status.pending) == (size, 0)
    versions = store.checkpoint_versions(tenant.tenant)
    assert {k: n for k, n in versions.items() if n != 1} == {}, "a checkpoint object was written twice"
    verdict = verify_full(tenant)
    assert verdict.ok, verdict


def _tag(value: str) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update({"tag": value})
    return payload


def _seal_outcome(tenant: Tenant) -> str:
    try:
        seal_now(tenant)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


async def test_assets_killed_mid_transaction_keeps_every_isolation_whole(crash_stack, tenant):
    """Kill -9 of assets during concurrent isolations: state, command and custody record committed together
    or not at all, and every isolation (retried by request id) ends ISOLATED on its host."""
    fleet = Fleet(crash_stack, tenant, count=8, interval=0.5)
    await fleet.start()
    channel = grpc.aio.insecure_channel(crash_stack.addresses["assets"])
    stub = assets_pb2_grpc.AssetServiceStub(channel)
    requests = {i.asset_id: f"iso-{secrets.token_hex(4)}" for i in fleet.identities}

    async def isolate(asset_id: str) -> grpc.StatusCode:
        try:
            await stub.IsolateAsset(assets_pb2.IsolateAssetRequest(
                asset_id=asset_id, justification="fault suite", request_id=requests[asset_id]),
                metadata=tenant.metadata(Role.OPERATOR), timeout=15)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    try:
        await wait_for(lambda: all(v >= 2 for v in fleet.acked().values()), 30, "agents streaming")
        orders = [asyncio.create_task(isolate(a)) for a in requests]
        await asyncio.sleep(0.15)
        await asyncio.to_thread(kill9, crash_stack, "assets")
        codes = await asyncio.gather(*orders)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
        store = Store(crash_stack)
        _assert_orders_atomic(store, tenant.tenant, list(requests))
        await asyncio.to_thread(restart, crash_stack, "assets")
        for asset_id in requests:  # the operator retries what did not answer, with the same request id
            for _ in range(10):
                if await isolate(asset_id) == grpc.StatusCode.OK:
                    break
                await asyncio.sleep(0.5)

        async def statuses() -> dict[str, int]:
            out = {}
            for asset_id in requests:
                reply = await stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id),
                                            metadata=tenant.metadata(Role.VIEWER), timeout=10)
                out[asset_id] = reply.asset.status
            return out

        deadline = time.monotonic() + 60
        while set((now := await statuses()).values()) != {common_pb2.ASSET_STATUS_ISOLATED}:
            assert time.monotonic() < deadline, f"isolations did not all end ISOLATED: {now}"
            await asyncio.sleep(0.5)
    finally:
        await fleet.stop()
        await channel.close()
    store = Store(crash_stack)
    chained_custody(store.ddb, store.table, tenant.tenant)
    events = assert_chain_sound(store, tenant.tenant)
    actions = Counter((e.subject, e.action) for e in events)
    for asset_id in requests:
        assert actions[(f"asset:{asset_id}", "asset.isolate.requested")] == 1, actions
        assert actions[(f"asset:{asset_id}", "asset.isolate.enforced")] == 1, actions
    seal_now(tenant)
    assert verify_full(tenant).ok


def _assert_orders_atomic(store: Store, tenant: str, asset_ids: list[str]) -> None:
    """Right after the crash: an asset was ordered (ISOLATION_PENDING, or already ISOLATED by its agent) exactly
    when its command and custody record exist."""
    items = store.tenant_items(tenant)
    for asset_id in asset_ids:
        snapshot = items[("TENANT#" + tenant, f"ASSET#{asset_id}")]
        pending = "ISOLATION_PENDING" in snapshot or "ISOLATED" in snapshot
        commands = [k for k in items if k[1].startswith(f"CMD#{asset_id}#")]
        custody = [r for r in outbox_store.asset_records(store.ddb, store.table, tenant, asset_id)
                   if r.draft.action == "asset.isolate.requested"]
        assert (len(commands), len(custody)) == ((1, 1) if pending else (0, 0)), (asset_id, snapshot, commands)


def test_a_service_killed_with_clients_connected_starts_again_on_its_port_at_once(crash_stack, tenant):
    """A service killed with -9 while calls are in flight binds its port again on the first start attempt."""
    stop = threading.Event()

    def load() -> None:
        with grpc.insecure_channel(crash_stack.addresses["assets"]) as channel:
            stub = assets_pb2_grpc.AssetServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.ListAssets(assets_pb2.ListAssetsRequest(), metadata=tenant.metadata(Role.VIEWER), timeout=2)
                except grpc.RpcError:
                    time.sleep(0.05)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        kill9(crash_stack, "assets")
        proc = crash_stack.start_process("assets", "services.assets",
                                         port=int(crash_stack.addresses["assets"].rsplit(":", 1)[1]))
        serving = until(lambda: proc.poll() is not None or health(crash_stack.addresses["assets"]) == 1, 15,
                        "assets running again")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert serving is True and proc.poll() is None, (
        f"assets exited with {proc.returncode} at restart: its port stayed 'in use' after the crash "
        f"(see {crash_stack.log_path('assets')})")
