"""What the risk worker sends assets of an inventory's engines and models, and that it arrives."""

from __future__ import annotations

import asyncio

import grpc
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from services.ingest import agent_rules
from services.ingest.worker import engine_inventory
from services.kit.devstack import Stack
from tests.faults.helpers import until
from tests.ingest.agents import IngestTenant, TestAgent, heartbeat


def test_engine_inventory_keeps_the_agents_facts_without_process_ids() -> None:
    """Auth, installed models, probe errors, model errors and the omission account pass; the pid does not."""
    inventory = common_pb2.Inventory(
        engines=[common_pb2.Engine(kind="vllm", pid=4242, version="0.6.3", auth_required=True,
                                   installed_models=["m"], probe_errors=["timed out"])],
        models=[common_pb2.Model(name="m", errors=["size clamped"])],
        engines_omitted=3, omitted_reason="heartbeat size", errors=["ollama store unreadable"],
    )
    kept = engine_inventory(inventory)
    engine = kept.engines[0]
    assert (engine.pid, engine.version, engine.auth_required) == (0, "0.6.3", True)
    assert (list(engine.installed_models), list(engine.probe_errors)) == (["m"], ["timed out"])
    assert list(kept.models[0].errors) == ["size clamped"]
    assert (kept.engines_omitted, kept.omitted_reason, list(kept.errors)) == (
        3, "heartbeat size", ["ollama store unreadable"])


def test_an_oversized_engine_inventory_is_trimmed_and_every_drop_counted() -> None:
    """Models over the byte budget are dropped from the end and counted in models_omitted."""
    models = [common_pb2.Model(name=f"m{i}", path="p" * 1000) for i in range(400)]
    kept = engine_inventory(common_pb2.Inventory(models=models))
    assert kept.ByteSize() <= agent_rules.MAX_KEPT_BYTES
    assert len(kept.models) + kept.models_omitted == 400 and kept.models_omitted > 0
    assert kept.omitted_reason


def _stored_engines(stack: Stack, tenant: IngestTenant, asset_id: str) -> common_pb2.EngineInventory:
    """The asset's engine inventory once the risk worker has delivered one."""
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        assets = assets_pb2_grpc.AssetServiceStub(channel)

        def delivered() -> common_pb2.EngineInventory | None:
            got = assets.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=tenant.admin())
            return got.asset.engine_inventory if got.asset.engine_inventory.engines else None

        return until(delivered, 30, f"the engine inventory of {asset_id}")


async def test_a_heartbeats_engines_reach_get_asset(stack: Stack, ingest_tenant: IngestTenant,
                                                     agent: TestAgent) -> None:
    """An engine's auth_required, installed models and probe errors sent by an agent come back in GetAsset."""
    inventory = common_pb2.Inventory(hostname="ws-1", engines=[common_pb2.Engine(
        kind="vllm", pid=7, version="0.6.3", auth_required=True, installed_models=["qwen2"],
        probe_errors=["GET /version: refused"])], models_omitted=4, omitted_reason="heartbeat size")
    await agent.connect()
    await agent.send(heartbeat(1, inventory))
    await agent.ack_for(1)
    stored = await asyncio.to_thread(_stored_engines, stack, ingest_tenant, agent.asset_id)
    engine = stored.engines[0]
    assert (engine.kind, engine.pid, engine.auth_required, list(engine.installed_models),
            list(engine.probe_errors)) == ("vllm", 0, True, ["qwen2"], ["GET /version: refused"])
    assert (stored.models_omitted, stored.omitted_reason) == (4, "heartbeat size")
