"""`lz assets show` prints an asset's AI engines and model files as the agent reported them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cli_helpers import Lz, new_asset
from google.protobuf import timestamp_pb2
from lifecyclezero.v1 import assets_pb2, common_pb2

from tests.assets.conftest import Assets


def _report_engines(new_tenant: Any, asset_id: str) -> None:
    """Store an engine inventory for the asset the way the risk worker does."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC))
    inventory = common_pb2.EngineInventory(
        engines=[common_pb2.Engine(kind="vllm", version="0.6.3", auth_required=True,
                                   listen=[common_pb2.Endpoint(address="0.0.0.0", port=8000, exposed=True)],
                                   installed_models=["[bold]meta-llama/Llama-3-8B"],
                                   probe_errors=["GET /v1/models: timed out"])],
        models=[common_pb2.Model(name="qwen", format="gguf", errors=["parameter_count out of range"])],
        engines_omitted=1, omitted_reason="heartbeat size", evaluate_time=stamp,
    )
    assets = Assets(new_tenant, new_tenant.channel("assets"))
    update = assets_pb2.AssetRiskUpdate(asset_id=asset_id, engine_inventory=inventory,
                                        risk=common_pb2.RiskSummary(evaluate_time=stamp))
    assets.stub.UpdateAssetRisk(assets_pb2.UpdateAssetRiskRequest(updates=[update]),
                                metadata=assets.service_md(service="risk-worker"))


def test_assets_show_prints_engine_auth_probe_errors_and_installed_models(admin: Lz, new_tenant: Any) -> None:
    """The engine's auth, installed models (markup printed literally), probe errors and omissions show."""
    asset_id = new_asset(admin)
    _report_engines(new_tenant, asset_id)
    result = admin("assets", "show", asset_id)
    assert result.code == 0, result.err
    out = " ".join(result.out.split())
    assert "AI engines" in out and "vllm" in out and "0.6.3" in out and "required" in out
    assert "[bold]meta-llama/Llama-3-8B" in out
    assert "GET /v1/models: timed out" in out and "0.0.0.0:8000 (exposed)" in out
    assert "parameter_count out of range" in out
    assert "left out: 1 engines, 0 models (heartbeat size)" in out


def test_assets_show_json_has_the_engine_inventory(admin: Lz, new_tenant: Any) -> None:
    """`assets show --json` carries the engine inventory with its exact field names and values."""
    asset_id = new_asset(admin)
    _report_engines(new_tenant, asset_id)
    data = admin("assets", "show", asset_id, "--json").json()
    engine = data["engine_inventory"]["engines"][0]
    assert engine["auth_required"] is True
    assert engine["installed_models"] == ["[bold]meta-llama/Llama-3-8B"]
    assert engine["probe_errors"] == ["GET /v1/models: timed out"]
    assert data["engine_inventory"]["models"][0]["errors"] == ["parameter_count out of range"]
    assert data["engine_inventory"]["engines_omitted"] == 1
