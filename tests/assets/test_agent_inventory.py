"""An asset's AI agents and MCP servers on the running assets service: stored with risk, read by GetAsset."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf import timestamp_pb2
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.assets.servicer import MAX_AGENT_INVENTORY_BYTES
from services.kit.auth import Role
from tests.assets.conftest import Assets


def _update(assets: Assets, asset_id: str, server_name: str, when: dt.datetime, padding: int = 0) -> int:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    inventory = common_pb2.AgentInventory(
        agents=[common_pb2.AiAgent(kind="cursor", user="alice")],
        mcp_servers=[common_pb2.McpServer(name=server_name, agent="cursor", capabilities=["filesystem"],
                                          args=["x" * padding] if padding else [])],
        evaluate_time=stamp,
    )
    update = assets_pb2.AssetRiskUpdate(asset_id=asset_id, agent_inventory=inventory,
                                        risk=common_pb2.RiskSummary(evaluate_time=stamp))
    return assets.stub.UpdateAssetRisk(assets_pb2.UpdateAssetRiskRequest(updates=[update]),
                                       metadata=assets.service_md("risk-worker")).updated


def _servers(assets: Assets, asset_id: str) -> list[str]:
    got = assets.stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=assets.md(Role.VIEWER))
    return [s.name for s in got.asset.agent_inventory.mcp_servers]


def test_get_asset_returns_the_agent_inventory_sent_with_risk(assets: Assets) -> None:
    """The agents and MCP servers of a risk update come back in GetAsset."""
    asset_id = assets.create_asset().asset_id
    _update(assets, asset_id, "files", dt.datetime.now(dt.UTC))
    assert _servers(assets, asset_id) == ["files"]


def test_an_older_agent_inventory_does_not_replace_a_newer_one(assets: Assets) -> None:
    """An agent inventory evaluated earlier than the stored one is skipped."""
    asset_id = assets.create_asset().asset_id
    now = dt.datetime.now(dt.UTC)
    _update(assets, asset_id, "newer", now)
    _update(assets, asset_id, "older", now - dt.timedelta(minutes=5))
    assert _servers(assets, asset_id) == ["newer"]


def test_an_oversized_agent_inventory_is_invalid_argument(assets: Assets) -> None:
    """An agent inventory over the item budget is refused with INVALID_ARGUMENT naming the field."""
    asset_id = assets.create_asset().asset_id
    with pytest.raises(grpc.RpcError) as caught:
        _update(assets, asset_id, "huge", dt.datetime.now(dt.UTC), padding=MAX_AGENT_INVENTORY_BYTES)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_inventory" in (caught.value.details() or "")


def test_asset_lists_are_not_confused_by_the_agent_inventory_item(assets: Assets) -> None:
    """ListAssets shows the asset once, with no agent inventory (GetAsset only)."""
    asset_id = assets.create_asset().asset_id
    _update(assets, asset_id, "files", dt.datetime.now(dt.UTC))
    listed = assets.stub.ListAssets(assets_pb2.ListAssetsRequest(page_size=100),
                                    metadata=assets.md(Role.VIEWER)).assets
    mine = [a for a in listed if a.asset_id == asset_id]
    assert len(mine) == 1 and not mine[0].agent_inventory.mcp_servers
