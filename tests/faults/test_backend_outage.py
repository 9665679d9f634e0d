"""Backend outage: the embedded AWS endpoint is unreachable for 30 s under load, then comes back.

moto keeps its state in memory, so killing and restarting it would lose every table, bucket and queue;
the outage is modelled with SIGSTOP (connections open, nothing answers: an unreachable backend) and
SIGCONT after 30 s, which loses nothing. One outage is observed by a module fixture; each test checks
one behaviour of it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, ledger_pb2, sealer_pb2

from services.kit.auth import Role
from tests.faults.helpers import (
    SERVICES,
    Fleet,
    Store,
    health,
    ledger_stub,
    make_tenant,
    missing_telemetry,
    own_stack,
    sealer_stub,
    wait_for,
)

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 30.0
CALL_DEADLINE = 5.0
NOT_SERVING = 2


@dataclass
class Outage:
    health: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # service -> (t, status)
    calls: list[tuple[str, str, float, float]] = field(default_factory=list)  # (rpc, code, seconds, ended)
    resumed_at: float = 0.0
    acked_at_pause: dict[str, int] = field(default_factory=dict)
    acked_at_resume: dict[str, int] = field(default_factory=dict)
    produced_at_resume: dict[str, int] = field(default_factory=dict)
    acked_final: dict[str, int] = field(default_factory=dict)
    produced_final: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[int]] = field(default_factory=dict)
    caught_up_seconds: float = -1.0


def _calls(tenant, stop: threading.Event, outage: Outage) -> None:
    """One call to each service with a 5 s deadline, again and again while the backend is away."""
    assets = assets_pb2_grpc.AssetServiceStub(tenant.channel("assets"))
    probes = {
        "LedgerService.GetEvent": lambda: ledger_stub(tenant).GetEvent(
            ledger_pb2.GetEventRequest(seq=1), metadata=tenant.metadata(), timeout=CALL_DEADLINE),
        "SealerService.GetSealStatus": lambda: sealer_stub(tenant).GetSealStatus(
            sealer_pb2.GetSealStatusRequest(), metadata=tenant.metadata(), timeout=CALL_DEADLINE),
        "AssetService.ListAssets": lambda: assets.ListAssets(
            assets_pb2.ListAssetsRequest(), metadata=tenant.metadata(Role.VIEWER), timeout=CALL_DEADLINE),
    }
    while not stop.is_set():
        for name, probe in probes.items():
            started = time.monotonic()
            try:
                probe()
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            outage.calls.append((name, code, time.monotonic() - started, time.monotonic()))


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """Run four agents, pause the AWS endpoint for 30 s, resume it, and record what happened."""
    seen = Outage()
    with own_stack(tmp_path_factory.mktemp("outage"), LZ_AGENT_RATE_PER_SECOND="50", LZ_AGENT_BURST="200") as stack:
        tenant = make_tenant(stack)
        ledger_stub(tenant).AppendEvents(ledger_pb2.AppendEventsRequest(events=[ledger_pb2.EventInput(action="x")]),
                                         metadata=tenant.metadata(Role.OPERATOR), timeout=10)
        assert stack.aws_proc is not None
        pid = stack.aws_proc.pid

        async def run() -> None:
            fleet = Fleet(stack, tenant, count=4, interval=0.5)
            await fleet.start()
            stop = threading.Event()
            try:
                await wait_for(lambda: all(v >= 3 for v in fleet.acked().values()), 30, "first acks")
                seen.acked_at_pause = fleet.acked()
                os.kill(pid, signal.SIGSTOP)
                paused = time.monotonic()
                caller = threading.Thread(target=_calls, args=(tenant, stop, seen), daemon=True)
                caller.start()
                while time.monotonic() - paused < OUTAGE_SECONDS:
                    for name, service in SERVICES.items():
                        status = await asyncio.to_thread(health, stack.addresses[name], service)
                        seen.health.setdefault(name, []).append((time.monotonic() - paused, status))
                    await asyncio.sleep(1.0)
                seen.acked_at_resume, seen.produced_at_resume = fleet.acked(), fleet.produced()
                stop.set()
                os.kill(pid, signal.SIGCONT)
                resumed = seen.resumed_at = time.monotonic()
                caller.join(60)
                await wait_for(lambda: all(fleet.acked()[a] >= p for a, p in seen.produced_at_resume.items()), 90,
                               "agents caught up")
                seen.caught_up_seconds = time.monotonic() - resumed
            finally:
                stop.set()
                os.kill(pid, signal.SIGCONT)
                await fleet.stop()
            seen.acked_final, seen.produced_final = fleet.acked(), fleet.produced()

        asyncio.run(run())
        store = Store(stack)
        deadline = time.monotonic() + 60
        while (missing := missing_telemetry(store, tenant.tenant, seen.acked_final)) and time.monotonic() < deadline:
            time.sleep(1.0)
        seen.missing = missing
        yield seen


def test_every_service_reports_not_serving_within_10_seconds_of_losing_the_backend(outage):
    """Each service's health turns NOT_SERVING within 10 s of the AWS endpoint becoming unreachable."""
    late = {}
    for name, samples in outage.health.items():
        first = next((t for t, status in samples if status == NOT_SERVING), None)
        if first is None or first > 10.0:
            late[name] = first
    assert late == {}, f"still reporting SERVING 10 s into the outage (first NOT_SERVING at): {late}"


def test_calls_return_within_their_deadline_while_the_backend_is_unreachable(outage):
    """Calls made during the outage end within their deadline with UNAVAILABLE or DEADLINE_EXCEEDED."""
    during = [c for c in outage.calls if c[3] < outage.resumed_at]
    assert during
    slow = [c for c in during if c[2] > CALL_DEADLINE + 1.0]
    odd = [c for c in during if c[1] not in ("UNAVAILABLE", "DEADLINE_EXCEEDED")]
    assert (slow, odd) == ([], [])


def test_agents_spool_while_nothing_is_acked(outage):
    """While the queue is unreachable acks stop and the agents keep producing into their spools."""
    for asset_id, produced in outage.produced_at_resume.items():
        assert produced - outage.acked_at_resume[asset_id] >= 20, (asset_id, produced, outage.acked_at_resume)


def test_everything_catches_up_and_nothing_acked_is_lost(outage):
    """After the backend returns every spooled heartbeat is acked and every acked heartbeat is in telemetry."""
    assert outage.caught_up_seconds >= 0
    assert outage.missing == {}
