"""An asset's inventory parts on the running assets service (AI agents and MCP servers; engines and models):
stored with risk, read by GetAsset."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import timestamp_pb2
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.assets.servicer import MAX_AGENT_INVENTORY_BYTES
from services.kit.auth import Role
from tests.assets.conftest import Assets


def _stamp(when: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _send(assets: Assets, update: assets_pb2.AssetRiskUpdate, when: dt.datetime) -> int:
    update.risk.evaluate_time.CopyFrom(_stamp(when))
    return assets.stub.UpdateAssetRisk(assets_pb2.UpdateAssetRiskRequest(updates=[update]),
                                       metadata=assets.service_md(service="risk-worker")).updated


def _update(assets: Assets, asset_id: str, server_name: str, when: dt.datetime, padding: int = 0) -> int:
    inventory = common_pb2.AgentInventory(
        agents=[common_pb2.AiAgent(kind="cursor", user="alice")],
        mcp_servers=[common_pb2.McpServer(name=server_name, agent="cursor", capabilities=["filesystem"],
                                          args=["x" * padding] if padding else [])],
        evaluate_time=_stamp(when),
    )
    return _send(assets, assets_pb2.AssetRiskUpdate(asset_id=asset_id, agent_inventory=inventory), when)


def _update_engines(assets: Assets, asset_id: str, engine_kind: str, when: dt.datetime, padding: int = 0) -> int:
    inventory = common_pb2.EngineInventory(
        engines=[common_pb2.Engine(kind=engine_kind, version="0.6.3", auth_required=True,
                                   installed_models=["llama3:8b"], probe_errors=["x" * padding] if padding else [])],
        models=[common_pb2.Model(name="llama3", format="gguf", errors=["context_length out of range"])],
        models_omitted=2, omitted_reason="heartbeat size", evaluate_time=_stamp(when),
    )
    return _send(assets, assets_pb2.AssetRiskUpdate(asset_id=asset_id, engine_inventory=inventory), when)


def _shown(assets: Assets, asset_id: str) -> common_pb2.Asset:
    got = assets.stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=assets.md(Role.VIEWER))
    return got.asset


def _servers(assets: Assets, asset_id: str) -> list[str]:
    return [s.name for s in _shown(assets, asset_id).agent_inventory.mcp_servers]


def _engines(assets: Assets, asset_id: str) -> list[str]:
    return [e.kind for e in _shown(assets, asset_id).engine_inventory.engines]


Part = tuple[str, Callable[..., int], Callable[[Assets, str], list[str]]]
PARTS: list[Part] = [("agent_inventory", _update, _servers), ("engine_inventory", _update_engines, _engines)]


def test_get_asset_returns_the_agent_inventory_sent_with_risk(assets: Assets) -> None:
    """The agents and MCP servers of a risk update come back in GetAsset."""
    asset_id = assets.create_asset().asset_id
    _update(assets, asset_id, "files", dt.datetime.now(dt.UTC))
    assert _servers(assets, asset_id) == ["files"]


def test_get_asset_returns_the_engine_inventory_sent_with_risk(assets: Assets) -> None:
    """The engines, models and omission counts of a risk update come back in GetAsset."""
    asset_id = assets.create_asset().asset_id
    _update_engines(assets, asset_id, "vllm", dt.datetime.now(dt.UTC))
    inventory = _shown(assets, asset_id).engine_inventory
    assert [(e.kind, e.version, e.auth_required, list(e.installed_models)) for e in inventory.engines] == [
        ("vllm", "0.6.3", True, ["llama3:8b"])]
    assert [list(m.errors) for m in inventory.models] == [["context_length out of range"]]
    assert (inventory.models_omitted, inventory.omitted_reason) == (2, "heartbeat size")


@pytest.mark.parametrize(("field", "send", "read"), PARTS, ids=[p[0] for p in PARTS])
def test_an_older_inventory_part_does_not_replace_a_newer_one(assets: Assets, field: str,
                                                               send: Callable[..., int],
                                                               read: Callable[[Assets, str], list[str]]) -> None:
    """An inventory part evaluated earlier than the stored one is skipped."""
    asset_id = assets.create_asset().asset_id
    now = dt.datetime.now(dt.UTC)
    send(assets, asset_id, "newer", now)
    send(assets, asset_id, "older", now - dt.timedelta(minutes=5))
    assert read(assets, asset_id) == ["newer"]


@pytest.mark.parametrize(("field", "send", "read"), PARTS, ids=[p[0] for p in PARTS])
def test_an_oversized_inventory_part_is_invalid_argument(assets: Assets, field: str, send: Callable[..., int],
                                                         read: Callable[[Assets, str], list[str]]) -> None:
    """An inventory part over the item budget is refused with INVALID_ARGUMENT naming the field."""
    asset_id = assets.create_asset().asset_id
    with pytest.raises(grpc.RpcError) as caught:
        send(assets, asset_id, "huge", dt.datetime.now(dt.UTC), padding=MAX_AGENT_INVENTORY_BYTES)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")


@pytest.mark.parametrize(("field", "send", "read"), PARTS, ids=[p[0] for p in PARTS])
def test_asset_lists_are_not_confused_by_the_inventory_items(assets: Assets, field: str, send: Callable[..., int],
                                                             read: Callable[[Assets, str], list[str]]) -> None:
    """ListAssets shows the asset once, without the inventory part (GetAsset only)."""
    asset_id = assets.create_asset().asset_id
    send(assets, asset_id, "files", dt.datetime.now(dt.UTC))
    listed = assets.stub.ListAssets(assets_pb2.ListAssetsRequest(page_size=100),
                                    metadata=assets.md(Role.VIEWER)).assets
    mine = [a for a in listed if a.asset_id == asset_id]
    assert len(mine) == 1 and not mine[0].HasField(field)


def _listed_kinds(assets: Assets, asset_id: str) -> list[str]:
    listed = assets.stub.ListAssets(assets_pb2.ListAssetsRequest(page_size=500),
                                    metadata=assets.md(Role.VIEWER)).assets
    return [kind for asset in listed if asset.asset_id == asset_id for kind in asset.engine_kinds]


def test_list_assets_carries_the_engine_kinds_of_the_newest_inventory(assets: Assets) -> None:
    """ListAssets names the asset's engine kinds in lower case, the newest inventory's, not an older one's."""
    asset_id = assets.create_asset().asset_id
    now = dt.datetime.now(dt.UTC)
    _update_engines(assets, asset_id, "Ollama", now)
    _update_engines(assets, asset_id, "vllm", now - dt.timedelta(minutes=5))
    assert _listed_kinds(assets, asset_id) == ["ollama"]
