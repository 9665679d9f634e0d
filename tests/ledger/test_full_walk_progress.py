"""WatchFullVerification: a full walk's progress over a server stream, then VerifyLedger FULL's answer."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import ledger_pb2

from services.kit.auth import Role
from services.ledger.watch import FullWalkWatch, WalkStopped
from tests.faults.helpers import until
from tests.ledger.helpers import append, seal_now, stubs, verify_ledger


def watch(tenant: Any, role: Role = Role.VIEWER) -> list[ledger_pb2.WatchFullVerificationResponse]:
    ledger, _ = stubs(tenant)
    return list(ledger.WatchFullVerification(ledger_pb2.WatchFullVerificationRequest(),
                                             metadata=tenant.metadata(role), timeout=120))


def test_the_stream_starts_with_the_chain_length_and_ends_with_the_full_verdict(new_tenant):
    """The first message is progress 0 of the ledger's length, the last is the answer VerifyLedger FULL gives."""
    append(new_tenant, 600)
    seal_now(new_tenant)
    append(new_tenant, 30)
    updates = watch(new_tenant)
    assert updates[0].progress == ledger_pb2.VerificationProgress(events_checked=0, chain_length=630)
    assert updates[-1].result == verify_ledger(new_tenant)
    assert (updates[-1].result.ok, updates[-1].result.events_checked) == (True, 630)


def test_progress_never_goes_back_nor_past_the_chain_length(new_tenant):
    """Every progress message counts no fewer events than the one before and at most the chain's length."""
    append(new_tenant, 900)
    seal_now(new_tenant)
    checked = [u.progress.events_checked for u in watch(new_tenant) if u.HasField("progress")]
    assert checked == sorted(checked)
    assert all(0 <= count <= 900 for count in checked), checked


def test_only_the_last_message_is_a_result(new_tenant):
    """The stream carries exactly one result, as its last message."""
    append(new_tenant, 40)
    updates = watch(new_tenant)
    assert [u.HasField("result") for u in updates] == [False] * (len(updates) - 1) + [True]


def test_an_unknown_token_may_not_watch_a_walk(new_tenant):
    """A caller whose token the tenant never issued is refused as unauthenticated."""
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as caught:
        list(ledger.WatchFullVerification(ledger_pb2.WatchFullVerificationRequest(),
                                          metadata=[("authorization", "Bearer lz1:nobody.nothing")], timeout=30))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_stopped_watch_ends_the_walk_at_its_next_report():
    """Once the caller went away, the walking thread's next progress report raises and so stops the walk."""
    watching = FullWalkWatch()
    watching.report(256)
    watching.stop.set()
    with pytest.raises(WalkStopped):
        watching.report(512)
    assert watching.checked == 256


def test_walks_their_callers_cancelled_give_the_tenants_slots_back(new_tenant):
    """Two watches cancelled after their first message give both of the tenant's slots back."""
    append(new_tenant, 2000, batch=99)
    ledger, _ = stubs(new_tenant)
    for _ in range(2):
        call = ledger.WatchFullVerification(ledger_pb2.WatchFullVerificationRequest(),
                                            metadata=new_tenant.metadata(), timeout=120)
        assert next(call).progress.chain_length == 2000
        call.cancel()

    def both_free() -> bool:
        try:
            calls = [ledger.WatchFullVerification(ledger_pb2.WatchFullVerificationRequest(),
                                                  metadata=new_tenant.metadata(), timeout=120) for _ in range(2)]
            return all(list(call)[-1].result.ok for call in calls)
        except grpc.RpcError as exc:
            assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, exc
            return False

    until(both_free, 60, "both slots of the tenant free again")
