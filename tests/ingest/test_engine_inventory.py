"""What the risk worker sends assets of an inventory's engines and models."""

from __future__ import annotations

from lifecyclezero.v1 import common_pb2

from services.ingest import agent_rules
from services.ingest.worker import engine_inventory


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
