"""Concurrent appends: many writers, one chain, no fork, no gap, no duplicate."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from lifecyclezero.v1 import ledger_pb2, ledger_pb2_grpc

from services.kit import aws
from services.kit.auth import Role
from services.kit.settings import AwsSettings
from services.ledger import keys, store
from services.tlog.events import verify_chain
from tests.ledger.helpers import event

WRITERS = 32
APPENDS_PER_WRITER = 500
DIRECT_WRITERS = 2
DIRECT_APPENDS = 25


@pytest.mark.slow
def test_concurrent_writers_build_one_chain(new_tenant):
    """32 writers x 500 appends through the service, raced by direct store writers, make one gapless chain."""
    res = new_tenant.stack.resources
    ddb = aws.client(AwsSettings(table_name=res.table_name, endpoint_url=res.endpoint_url), "dynamodb")
    channel = new_tenant.channel("ledger")
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    metadata = new_tenant.metadata(Role.OPERATOR)
    got: list[int] = []
    lock = threading.Lock()

    def rpc_writer(w: int) -> None:
        mine = []
        for i in range(APPENDS_PER_WRITER):
            reply = stub.AppendEvents(ledger_pb2.AppendEventsRequest(events=[event(w=w, i=i)]), metadata=metadata)
            mine.extend(reply.seqs)
        with lock:
            got.extend(mine)

    def direct_writer(w: int) -> None:
        mine = []
        for i in range(DIRECT_APPENDS):
            draft = store.EventDraft("direct", "test.direct", "", {"w": w, "i": i})
            group = [store.AppendGroup([draft])]
            seqs, _ = store.append(ddb, res.table_name, new_tenant.tenant, group, max_attempts=2000)
            mine.extend(seqs[0])
        with lock:
            got.extend(mine)

    with ThreadPoolExecutor(WRITERS + DIRECT_WRITERS) as pool:
        futures = [pool.submit(rpc_writer, w) for w in range(WRITERS)]
        futures += [pool.submit(direct_writer, w) for w in range(DIRECT_WRITERS)]
        for future in futures:
            future.result()
    total = WRITERS * APPENDS_PER_WRITER + DIRECT_WRITERS * DIRECT_APPENDS
    stored = list(store.events_between(ddb, res.table_name, new_tenant.tenant, 1, keys.MAX_SEQ))
    assert sorted(got) == list(range(1, total + 1))
    assert [e.seq for e in stored] == list(range(1, total + 1))
    assert verify_chain((e.canonical for e in stored), new_tenant.tenant).ok
