"""Forged containment evidence: operators cannot append custody events in the services' reserved namespace."""

from __future__ import annotations

import grpc
import pytest
from lifecyclezero.v1 import ledger_pb2

from services.kit.auth import Role
from tests.ledger.helpers import event, stubs


@pytest.mark.parametrize("action", ["asset.isolate.enforced", "asset.release.requested", "Asset.Isolate.Failed",
                                    "asset.enrolled", "asset"])
def test_an_operator_cannot_append_a_reserved_asset_action(new_tenant, action):
    """AppendEvents with an `asset.*` action and an operator token is INVALID_ARGUMENT naming the action."""
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as caught:
        ledger.AppendEvents(ledger_pb2.AppendEventsRequest(events=[event("note.ok"), event(action, "asset:a-1")]),
                            metadata=new_tenant.metadata(Role.ADMIN), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert action in caught.value.details() and "events[1].action" in caught.value.details()


def test_a_refused_reserved_action_appends_nothing(new_tenant):
    """The refused request leaves the tenant's ledger empty (no event of the batch is written)."""
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError):
        ledger.AppendEvents(ledger_pb2.AppendEventsRequest(events=[event("asset.isolate.enforced", "asset:a-1")]),
                            metadata=new_tenant.metadata(Role.OPERATOR), timeout=10)
    listed = ledger.ListEvents(ledger_pb2.ListEventsRequest(), metadata=new_tenant.metadata(), timeout=10)
    assert list(listed.events) == []


def test_an_action_with_an_escape_sequence_is_invalid(new_tenant):
    """An action holding ESC or a C1 control is INVALID_ARGUMENT, so it never reaches a terminal."""
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as caught:
        ledger.AppendEvents(ledger_pb2.AppendEventsRequest(events=[event("note\x9b2J")]),
                            metadata=new_tenant.metadata(Role.OPERATOR), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
