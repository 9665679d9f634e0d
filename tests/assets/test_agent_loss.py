"""RecordAgentLoss: a contained host whose agent is gone gets a custody event, once per disconnection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.kit.auth import Role
from tests.assets.conftest import Assets


def _loss(assets: Assets, asset_id: str, request_id: str = "loss-1",
          md: list[tuple[str, str]] | None = None) -> assets_pb2.RecordAgentLossResponse:
    reply: assets_pb2.RecordAgentLossResponse = assets.stub.RecordAgentLoss(
        assets_pb2.RecordAgentLossRequest(asset_id=asset_id, reason="lost", request_id=request_id),
        metadata=md if md is not None else assets.service_md("ingest:health"))
    return reply


def _isolated(assets: Assets) -> str:
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    assets.result(asset.asset_id, order.command.command_id)
    return asset.asset_id


def _actions(assets: Assets, asset_id: str) -> list[str]:
    reply = assets.stub.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id), metadata=assets.md())
    return [e.action for e in reply.events]


def test_an_isolated_hosts_lost_agent_is_a_custody_event(assets: Assets) -> None:
    """The loss of an isolated host's agent appends asset.agent.lost and says the host was isolated."""
    asset_id = _isolated(assets)
    reply = _loss(assets, asset_id)
    assets.chained_records(asset_id)
    assert (reply.isolated, reply.status) == (True, common_pb2.ASSET_STATUS_ISOLATED)
    assert _actions(assets, asset_id)[-1] == "asset.agent.lost"


def test_an_agent_loss_is_answered_before_its_seq(assets: Assets) -> None:
    """RecordAgentLoss answers seq 0 and leaves a custody record after the isolation's for the sequencer."""
    asset_id = _isolated(assets)
    before = {r.version for r in assets.custody_records(asset_id)}
    reply = _loss(assets, asset_id)
    [record] = [r for r in assets.custody_records(asset_id) if r.version not in before]
    assert (reply.custody_seq, record.draft.action, record.prev_version) == (0, "asset.agent.lost", max(before))


def test_a_repeated_report_appends_nothing_more(assets: Assets) -> None:
    """The same request id, before and after chaining, writes one custody event and answers its seq."""
    asset_id = _isolated(assets)
    first = _loss(assets, asset_id)
    again = _loss(assets, asset_id)
    [record] = [r for r in assets.chained_records(asset_id) if r.draft.action == "asset.agent.lost"]
    late = _loss(assets, asset_id)
    # The sequencer may chain the record before the second report: it answers 0 or the seq, never another.
    assert (first.custody_seq, again.custody_seq in (0, record.ledger_seq), late.custody_seq) == (
        0, True, record.ledger_seq)
    assert _actions(assets, asset_id).count("asset.agent.lost") == 1


def test_concurrent_reports_of_a_loss_write_one_record(assets: Assets) -> None:
    """Eight racing reports with one request id leave one asset.agent.lost record."""
    asset_id = _isolated(assets)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _loss(assets, asset_id), range(8)))
    losses = [r for r in assets.custody_records(asset_id) if r.draft.action == "asset.agent.lost"]
    assert (all(a.isolated for a in answers), len(losses)) == (True, 1)


def test_a_loss_is_chained_between_the_orders_around_it(assets: Assets) -> None:
    """An isolation, its agent's loss and the isolation's result of one asset are in the ledger in that order."""
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    _loss(assets, asset.asset_id)
    assets.result(asset.asset_id, order.command.command_id)
    records = sorted(assets.chained_records(asset.asset_id), key=lambda r: r.ledger_seq)
    assert [(r.draft.action, r.prev_version) for r in records] == [
        ("asset.isolate.requested", 0),
        ("asset.agent.lost", records[0].version),
        ("asset.isolate.enforced", records[1].version),
    ]


def test_an_active_hosts_lost_agent_is_no_custody_event(assets: Assets) -> None:
    """An active host's agent loss is answered `isolated: false` and writes nothing."""
    asset = assets.create_asset()
    before = assets.snapshot()
    assert not _loss(assets, asset.asset_id).isolated
    assert assets.snapshot() == before


def test_operators_cannot_report_agent_loss(assets: Assets) -> None:
    """RecordAgentLoss is for ingest's service token only, even for an admin."""
    asset_id = _isolated(assets)
    with pytest.raises(grpc.RpcError) as caught:
        _loss(assets, asset_id, md=assets.md(Role.ADMIN))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_viewer_reads_the_fleet_summary(assets: Assets) -> None:
    """GetFleetSummary answers a viewer; a tenant with no agent counts nothing."""
    reply = assets.stub.GetFleetSummary(assets_pb2.GetFleetSummaryRequest(), metadata=assets.md(Role.VIEWER))
    assert (reply.online, reply.offline, reply.missing, reply.never_connected, list(reply.versions)) == (
        0, 0, 0, 0, [])
