"""RecordAgentEvent and the tenant's resolvers: containment facts between agents, operators and the ledger."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.kit.auth import Role
from tests.assets.conftest import Assets


def _break_glass(event_id: str = "") -> common_pb2.AgentEvent:
    event = common_pb2.AgentEvent(
        event_id=event_id or secrets.token_hex(16), kind=common_pb2.AGENT_EVENT_KIND_BREAK_GLASS,
        operator="alice (via sudo as root)", reason="control plane down", command_id="c1",
    )
    event.occur_time.GetCurrentTime()
    return event


def _record(assets: Assets, asset_id: str, event: common_pb2.AgentEvent) -> assets_pb2.RecordAgentEventResponse:
    return assets.stub.RecordAgentEvent(assets_pb2.RecordAgentEventRequest(asset_id=asset_id, event=event),
                                        metadata=assets.service_md(f"agent:{asset_id}"))


def test_a_break_glass_is_in_the_assets_custody_log(assets: Assets) -> None:
    """A reported break-glass is a custody event of the asset, by the agent, naming operator and reason."""
    asset = assets.create_asset()
    _record(assets, asset.asset_id, _break_glass())
    [record] = assets.chained_records(asset.asset_id)
    log = assets.stub.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset.asset_id),
                                    metadata=assets.md(Role.VIEWER))
    (event,) = [e for e in log.events if e.seq == record.ledger_seq]
    assert (event.action, event.actor, event.payload["reason"], event.payload["operator"]) == (
        "asset.isolation.break_glass", f"agent:{asset.asset_id}", "control plane down", "alice (via sudo as root)"
    )


def test_an_agent_event_is_answered_before_its_seq(assets: Assets) -> None:
    """RecordAgentEvent answers seq 0 and leaves a custody record under the asset for the sequencer."""
    asset = assets.create_asset()
    recorded = _record(assets, asset.asset_id, _break_glass())
    [record] = assets.custody_records(asset.asset_id)
    assert (recorded.custody_seq, recorded.replayed, record.draft.action) == (0, False, "asset.isolation.break_glass")


def test_a_resent_event_is_recorded_once(assets: Assets) -> None:
    """The same event id sent twice, before and after chaining, writes one custody event and answers its seq."""
    asset = assets.create_asset()
    event = _break_glass()
    first = _record(assets, asset.asset_id, event)
    again = _record(assets, asset.asset_id, event)
    [record] = assets.chained_records(asset.asset_id)
    late = _record(assets, asset.asset_id, event)
    log = assets.stub.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset.asset_id),
                                    metadata=assets.md(Role.VIEWER))
    assert (first.replayed, again.replayed, late.replayed, late.custody_seq) == (False, True, True, record.ledger_seq)
    assert [e.action for e in log.events] == ["asset.isolation.break_glass"]


def test_concurrent_resends_of_an_event_write_one_record(assets: Assets) -> None:
    """Eight racing sends of one event id leave one custody record and one first answer."""
    asset = assets.create_asset()
    event = _break_glass()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _record(assets, asset.asset_id, event), range(8)))
    assert ([a.replayed for a in answers].count(False), len(assets.custody_records(asset.asset_id))) == (1, 1)


def test_an_agent_event_is_chained_between_the_orders_around_it(assets: Assets) -> None:
    """An isolation, a break-glass and the isolation's result of one asset are in the ledger in that order."""
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    _record(assets, asset.asset_id, _break_glass())
    assets.result(asset.asset_id, order.command.command_id)
    records = sorted(assets.chained_records(asset.asset_id), key=lambda r: r.ledger_seq)
    assert [(r.draft.action, r.prev_version) for r in records] == [
        ("asset.isolate.requested", 0),
        ("asset.isolation.break_glass", records[0].version),
        ("asset.isolate.enforced", records[1].version),
    ]


def test_an_event_without_a_kind_is_refused(assets: Assets) -> None:
    """An event of unspecified kind is INVALID_ARGUMENT and records nothing."""
    asset = assets.create_asset()
    event = _break_glass()
    event.kind = common_pb2.AGENT_EVENT_KIND_UNSPECIFIED
    with pytest.raises(grpc.RpcError) as caught:
        _record(assets, asset.asset_id, event)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_operators_cannot_record_agent_events(assets: Assets) -> None:
    """RecordAgentEvent is for ingest's service token only, even for an admin."""
    asset = assets.create_asset()
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.RecordAgentEvent(assets_pb2.RecordAgentEventRequest(asset_id=asset.asset_id, event=_break_glass()),
                                     metadata=assets.md(Role.ADMIN))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_isolation_carries_the_tenants_resolvers(assets: Assets) -> None:
    """Resolvers set for the tenant go into the policy of every later isolate command."""
    assets.stub.CreateTenant(assets_pb2.CreateTenantRequest(tenant_id=assets.tenant, display_name="t"),
                             metadata=[("authorization", f"Bearer {assets.stack.bootstrap_token}")])
    assets.stub.SetTenantResolvers(assets_pb2.SetTenantResolversRequest(dns_servers=["10.0.0.53"]),
                                   metadata=assets.md(Role.ADMIN))
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    assert list(order.command.policy.dns_servers) == ["10.0.0.53"]


def test_operators_cannot_set_the_tenants_resolvers(assets: Assets) -> None:
    """SetTenantResolvers needs the admin role."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.SetTenantResolvers(assets_pb2.SetTenantResolversRequest(dns_servers=["10.0.0.53"]),
                                       metadata=assets.md(Role.OPERATOR))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
