"""The real agent process against the real local control plane, on a host a user made hostile (issue 21, 1-3)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from lifecyclezero.v1 import ingest_pb2

from agent import statefile
from agent.spool import FileSpool
from services.kit.devstack import Stack
from tests.agent.conftest import EngineLauncher, free_port
from tests.agent.hostile import (
    huggingface_repo,
    many_models,
    ollama_manifest,
    overflowing_gguf,
    tiny_gguf,
)
from tests.agent.process import AgentHost, line_ready
from tests.faults.helpers import until

pytestmark = pytest.mark.slow


@pytest.fixture
def host(stack: Stack, tmp_path: Path) -> AgentHost:
    return AgentHost(stack, tmp_path)


def test_hostile_model_files_never_stop_heartbeats_and_the_inventory_stays_current(host: AgentHost) -> None:
    """With overflowing GGUF, Ollama and HF records on disk, a model added later still reaches the control plane."""
    overflowing_gguf(host.home / ".lmstudio" / "models" / "evil" / "evil.gguf")
    ollama_manifest(host.home / ".ollama" / "models")
    huggingface_repo(host.home / ".cache" / "huggingface" / "hub")
    with host.running():
        evil = until(lambda: host.model_on_control_plane("evil.gguf"), 90, "the hostile GGUF on the control plane")
        tiny_gguf(host.models / "later.gguf")
        until(lambda: host.model_on_control_plane("later.gguf"), 60, "a model added later on the control plane")
    assert [e.split(":")[0] for e in evil.errors] == ["parameter_count dropped", "context_length dropped"]


def test_a_large_inventory_arrives_cut_and_says_what_was_left_out(host: AgentHost) -> None:
    """900 models make a heartbeat past ingest's limit: the control plane gets a cut inventory naming the omission."""
    many_models(host.models)
    with host.running():
        inventory = until(host.inventory, 90, "an inventory on the control plane")
        seq = host.acked_seq()
        until(lambda: host.acked_seq() >= seq + 2, 60, "heartbeats after the large one")
    assert len(inventory.models) + inventory.models_omitted == 900
    assert inventory.models_omitted > 0 and inventory.omitted_reason.startswith("heartbeat size limit")


def test_a_spooled_heartbeat_the_control_plane_refuses_is_dropped_not_replayed_forever(host: AgentHost) -> None:
    """An oversized heartbeat left in the spool is refused once, dropped and counted; later ones are acked."""
    poisoned = ingest_pb2.Heartbeat(seq=1, inventory_digest="0" * 64)
    poisoned.observe_time.GetCurrentTime()
    poisoned.inventory.models.add(path="x" * (200 * 1024))
    spool = FileSpool(host.state / "spool")
    spool.append(1, poisoned.SerializeToString())
    spool.close()
    statefile.write_json(host.state / "stream.json", {"asset_id": host.asset_id, "last_seq": 1, "acked_seq": 0})
    with host.running():
        until(lambda: host.acked_seq() >= 3, 90, "acks past the refused heartbeat")
    meta = statefile.read_json(host.state / "spool" / "spool.json")
    assert (meta["rejected"], meta["rejected_seqs"]) == (1, [])


def _drip_engine(launch_engine: EngineLauncher) -> subprocess.Popen[str]:
    """A process named ``ollama`` whose API answers one byte every 100 ms, forever."""
    return launch_engine("ollama", free_port(), "--mode", "drip")


# The probe of the drip engine would hold for 60 s (the longest allowed); the scan gives up after 2 s.
HOLDING_PROBE = {"discovery_probe_timeout": "60", "discovery_engine_deadline": "60", "discovery_scan_deadline": "2"}


def test_heartbeats_keep_arriving_while_a_drip_feeding_engine_holds_a_probe(
    host: AgentHost, launch_engine: EngineLauncher
) -> None:
    """A local `ollama` that drips its answer does not stop heartbeats: the scan deadline sends the last inventory."""
    engine = _drip_engine(launch_engine)
    assert engine.stdout is not None
    with host.running(**HOLDING_PROBE):
        until(lambda: line_ready(engine.stdout) == "probed", 60, "the agent probing the drip engine")
        seq = host.acked_seq()
        until(lambda: host.acked_seq() >= seq + 3, 60, "heartbeats while the probe is held")
    inventory = host.inventory()
    assert inventory is not None and any("did not finish within 2s" in e for e in inventory.errors)


def test_sigterm_ends_run_while_a_probe_is_held(host: AgentHost, launch_engine: EngineLauncher) -> None:
    """SIGTERM ends `lz-agent run` at once (exit 0) while a drip-feeding engine holds one of its probes."""
    engine = _drip_engine(launch_engine)
    assert engine.stdout is not None
    process = host.start("--duration", "300", **HOLDING_PROBE)
    try:
        until(lambda: line_ready(engine.stdout) == "probed", 60, "the agent probing the drip engine")
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        print(f"lz-agent run exited {time.monotonic() - sent:.2f}s after SIGTERM")
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0


def test_duration_ends_run_while_a_probe_is_held(host: AgentHost, launch_engine: EngineLauncher) -> None:
    """`run --duration` ends on time (exit 0) while a drip-feeding engine holds one of its probes."""
    engine = _drip_engine(launch_engine)
    assert engine.stdout is not None
    process = host.start("--duration", "8", **HOLDING_PROBE)
    try:
        until(lambda: line_ready(engine.stdout) == "probed", 60, "the agent probing the drip engine")
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0


