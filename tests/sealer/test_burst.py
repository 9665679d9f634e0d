"""A burst of 20,000 events: the status shows the pending tail while it lasts, and the sealer catches up."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from lifecyclezero.v1 import ledger_pb2, sealer_pb2

from services.kit.auth import Role
from tests.ledger.helpers import event, stubs, verify_ledger
from tests.sealer.helpers import status, wait_caught_up

BURST = 20_000
WRITERS = 4
BATCH = 99


@pytest.mark.slow
def test_burst_of_20000_events_is_sealed_completely(new_tenant):
    """During a 20,000-event burst GetSealStatus shows events pending; afterwards all 20,000 are sealed."""
    ledger, sealer = stubs(new_tenant)
    metadata = new_tenant.metadata(Role.OPERATOR)
    batches = [min(BATCH, BURST - start) for start in range(0, BURST, BATCH)]
    samples: list[sealer_pb2.GetSealStatusResponse] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(status(new_tenant))
            time.sleep(0.5)

    def write(count: int) -> int:
        reply = ledger.AppendEvents(
            ledger_pb2.AppendEventsRequest(events=[event(n=i) for i in range(count)]), metadata=metadata, timeout=60
        )
        return len(reply.seqs)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(WRITERS) as pool:
            written = sum(pool.map(write, batches))
        appended = time.monotonic() - started
        final = wait_caught_up(new_tenant, timeout=150)
    finally:
        stop.set()
        sampler.join()
    caught_up = time.monotonic() - started
    latest = sealer.GetCheckpoint(sealer_pb2.GetCheckpointRequest(), metadata=new_tenant.metadata()).checkpoint
    print(f"burst: {BURST} events appended in {appended:.1f}s, sealed in {caught_up:.1f}s, "
          f"peak pending {max(s.pending for s in samples)}")
    assert written == BURST
    assert max(s.pending for s in samples) > 0
    assert (final.sealed_through, final.pending, latest.tree_size) == (BURST, 0, BURST)
    assert verify_ledger(new_tenant, ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT).ok
