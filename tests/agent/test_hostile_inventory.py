"""Hostile model files and arbitrary values never stop an inventory from being built and encoded (issue 21, 1 and 4)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.inventory import Connection, Endpoint, Engine, Inventory, Model
from agent.models import ModelSettings, inventory_models
from agent.models.files import gguf_model
from agent.models.gguf import GGUFError, read_gguf
from agent.wire import MAX_INVENTORY_BYTES, inventory_proto
from tests.agent.hostile import (
    huggingface_repo,
    many_models,
    memory_hungry_gguf,
    ollama_manifest,
    overflowing_gguf,
)

# Any text, lone surrogates included (what os.listdir gives for a file name that is not UTF-8).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
ANY_INT = st.integers() | st.integers(min_value=-(1 << 200), max_value=1 << 200)
MAYBE_INT = st.none() | ANY_INT
MAYBE_TEXT = st.none() | ANY_TEXT

MODELS = st.builds(
    Model,
    name=ANY_TEXT, format=ANY_TEXT, path=ANY_TEXT, digest=MAYBE_TEXT, size_bytes=ANY_INT,
    architecture=MAYBE_TEXT, quantization=MAYBE_TEXT, parameter_count=MAYBE_INT, context_length=MAYBE_INT,
    source=ANY_TEXT, errors=st.lists(ANY_TEXT, max_size=3).map(tuple),
)  # fmt: skip
ENGINES = st.builds(
    Engine,
    kind=ANY_TEXT, pid=ANY_INT, exe=ANY_TEXT, user=ANY_TEXT, version=MAYBE_TEXT,
    listen=st.lists(st.builds(Endpoint, address=ANY_TEXT, port=ANY_INT, exposed=st.booleans()), max_size=3).map(tuple),
    confirmed=st.booleans(), confidence=ANY_TEXT,
    models_loaded=st.lists(ANY_TEXT, max_size=3).map(tuple),
    models_installed=st.lists(ANY_TEXT, max_size=3).map(tuple),
    outbound=st.lists(
        st.builds(Connection, local_address=ANY_TEXT, local_port=ANY_INT, remote_address=ANY_TEXT, remote_port=ANY_INT),
        max_size=2,
    ).map(tuple),
    auth_required=st.booleans(),
    evidence=st.lists(ANY_TEXT, max_size=3).map(tuple),
)  # fmt: skip
INVENTORIES = st.builds(
    Inventory,
    engines=st.lists(ENGINES, max_size=4).map(tuple), models=st.lists(MODELS, max_size=6).map(tuple),
    hostname=ANY_TEXT, os=ANY_TEXT, collected_at=ANY_TEXT, errors=st.lists(ANY_TEXT, max_size=3).map(tuple),
)  # fmt: skip


JSON = st.recursive(
    st.none() | st.booleans() | ANY_INT | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
CONFIG = st.fixed_dictionaries(
    {}, optional={k: JSON for k in ("architectures", "model_type", "max_position_embeddings", "torch_dtype",
                                     "quantization_config")},
)
LAYER = st.fixed_dictionaries(
    {"mediaType": st.just("application/vnd.ollama.image.model"), "digest": st.just("sha256:" + "ab" * 32)},
    optional={"size": JSON},
)


@given(config=CONFIG, layer=LAYER)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_parsed_store_metadata_gives_records_that_encode(config: dict[str, object], layer: object) -> None:
    """Whatever config.json and an Ollama manifest hold, the stores are inventoried and the records encode."""
    with tempfile.TemporaryDirectory() as home:
        ollama_manifest(Path(home) / ".ollama" / "models")
        manifest = next((Path(home) / ".ollama" / "models" / "manifests").rglob("latest"))
        manifest.write_text(json.dumps({"layers": [layer]}))
        snapshot = huggingface_repo(Path(home) / ".cache" / "huggingface" / "hub")
        (snapshot / "config.json").write_text(json.dumps(config))
        models = tuple(inventory_models(ModelSettings(homes=(home,))))
    assert len(models) == 2
    assert len(inventory_proto(Inventory((), models, "h", "linux", "")).models) == 2


@given(INVENTORIES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_inventory_encodes_and_digests(inventory: Inventory) -> None:
    """Whatever values discovery parsed, the wire message and the digest are built without raising."""
    message = inventory_proto(inventory)
    assert len(message.SerializeToString()) <= MAX_INVENTORY_BYTES
    assert inventory.digest().startswith("sha256:")


def test_an_overflowing_gguf_is_reported_with_its_numbers_dropped(tmp_path: Path) -> None:
    """The 166-byte GGUF of finding 1 is still a model record; its impossible numbers are dropped and named."""
    model = gguf_model(overflowing_gguf(tmp_path / "evil.gguf"), "evil", "filesystem")
    encoded = inventory_proto(Inventory((), (model,), "h", "linux", "2026-01-01T00:00:00+00:00")).models[0]
    assert (encoded.path, encoded.parameter_count, encoded.context_length) == (str(tmp_path / "evil.gguf"), 0, 0)
    assert [e.split(":")[0] for e in encoded.errors] == ["parameter_count dropped", "context_length dropped"]


def test_an_ollama_manifest_size_past_int64_is_dropped_and_named(tmp_path: Path) -> None:
    """An Ollama manifest claiming a 2^70-byte layer gives a record with size 0 and the reason."""
    ollama_manifest(tmp_path / ".ollama" / "models")
    (model,) = inventory_models(ModelSettings(homes=(str(tmp_path),)))
    assert (model.name, model.size_bytes, model.errors[0].split(":")[0]) == ("hostile:latest", 0, "size_bytes dropped")


def test_huggingface_numbers_past_range_are_dropped_and_named(tmp_path: Path) -> None:
    """A huge max_position_embeddings and safetensors shapes past int64 are dropped, the repository still listed."""
    huggingface_repo(tmp_path / ".cache" / "huggingface" / "hub")
    (model,) = inventory_models(ModelSettings(homes=(str(tmp_path),)))
    assert (model.name, model.parameter_count, model.context_length) == ("hostile/model", None, None)
    assert sorted(e.split(":")[0] for e in model.errors) == ["context_length dropped", "parameter_count dropped"]


def test_a_large_inventory_is_cut_to_the_budget_and_says_what_was_left_out(tmp_path: Path) -> None:
    """900 models do not fit one heartbeat: the message stays under budget and counts the models left out."""
    many_models(tmp_path / "models")
    models = tuple(inventory_models(ModelSettings(homes=(str(tmp_path / "nobody"),), roots=(str(tmp_path),))))
    message = inventory_proto(Inventory((), models, "h", "linux", "2026-01-01T00:00:00+00:00"))
    assert message.ByteSize() <= MAX_INVENTORY_BYTES
    assert len(message.models) + message.models_omitted == 900
    assert message.models_omitted > 0 and message.omitted_reason.startswith("heartbeat size limit")


def test_a_memory_hungry_gguf_is_refused_at_the_budget(tmp_path: Path) -> None:
    """Nested arrays of tiny strings stop the reader at its kept-elements budget with a GGUFError."""
    with pytest.raises(GGUFError, match="memory budget"):
        read_gguf(memory_hungry_gguf(tmp_path / "hungry.gguf", total_bytes=8 * 1024 * 1024))


def test_reading_a_135_mb_hostile_gguf_stays_far_below_memory_max(tmp_path: Path) -> None:
    """A process inventorying the 135 MB file of finding 4 peaks well under the unit's MemoryMax=512M."""
    memory_hungry_gguf(tmp_path / "models" / "hungry.gguf")
    # VmHWM is this process's own peak; ru_maxrss would carry over the (large) pytest parent's through exec.
    program = (
        "from agent.models import ModelSettings, inventory_models\n"
        f"found = inventory_models(ModelSettings(homes=('{tmp_path}/nobody',), roots=('{tmp_path}',)))\n"
        "assert len(found) == 1 and found[0].errors, found\n"
        "status = open('/proc/self/status').read().splitlines()\n"
        "print(next(line.split()[1] for line in status if line.startswith('VmHWM:')))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, check=True)
    peak_mib = int(done.stdout.strip()) / 1024
    print(f"peak RSS inventorying the hostile file: {peak_mib:.0f} MiB")
    assert peak_mib < 256, f"peak RSS {peak_mib:.0f} MiB"


def test_big_endian_gguf_is_named_as_such(tmp_path: Path) -> None:
    """A big-endian header is refused with a message that says so, not as an unknown version."""
    path = tmp_path / "be.gguf"
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "big") + bytes(16))
    assert gguf_model(path, "be", "filesystem").errors == ("gguf header: big-endian GGUF (version 3) is not read",)


