"""RecordAgentLoss: a contained host whose agent is gone gets a custody event, once per disconnection."""

from __future__ import annotations

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
    assert (reply.isolated, reply.status) == (True, common_pb2.ASSET_STATUS_ISOLATED)
    assert _actions(assets, asset_id)[-1] == "asset.agent.lost"


def test_a_repeated_report_appends_nothing_more(assets: Assets) -> None:
    """The same request id answers the first event's seq and appends no second one."""
    asset_id = _isolated(assets)
    first = _loss(assets, asset_id)
    again = _loss(assets, asset_id)
    assert again.custody_seq == first.custody_seq
    assert _actions(assets, asset_id).count("asset.agent.lost") == 1


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
