"""Model stores laid out as their tools lay them out, under a temporary home."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from agent.models import DigestCache, ModelSettings, WalkLimits, inventory_models
from tests.agent.gguf_fixtures import write_model


def ollama_store(home: Path) -> tuple[str, int]:
    """Pull-like layout: a GGUF blob named by its digest and a manifest naming it llama3.2:1b."""
    root = home / ".ollama" / "models"
    (root / "blobs").mkdir(parents=True)
    model = write_model(home / "tmp.gguf")
    data = model.read_bytes()
    model.unlink()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "1b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": "sha256:" + "0" * 64,
                },
                "layers": [
                    {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": len(data)}
                ],
            }
        )
    )
    return digest, len(data)


def hf_repo(home: Path) -> Path:
    """Hub-cache layout: blobs named by hash, a snapshot of symlinks, refs/main."""
    repo = home / ".cache" / "huggingface" / "hub" / "models--acme--tiny-chat"
    blobs = repo / "blobs"
    snapshot = repo / "snapshots" / ("a" * 40)
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}}).encode()
    weights = len(header).to_bytes(8, "little") + header + b"\0" * 128
    config = json.dumps(
        {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 2048, "torch_dtype": "bfloat16"}
    ).encode()
    for name, content in (("model.safetensors", weights), ("config.json", config)):
        blob = blobs / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return snapshot


def settings_for(home: Path, roots: tuple[str, ...] = ()) -> ModelSettings:
    return ModelSettings(homes=(str(home),), roots=roots, limits=WalkLimits(max_depth=4, max_files=1000))


def test_ollama_manifest_and_blob_are_inventoried(tmp_path: Path) -> None:
    """An Ollama manifest becomes name:tag with the blob's digest, size and GGUF facts."""
    digest, size = ollama_store(tmp_path)
    [model] = [m for m in inventory_models(settings_for(tmp_path)) if m.source == "ollama"]
    assert (model.name, model.digest, model.size_bytes) == ("llama3.2:1b", digest, size)
    assert (model.architecture, model.quantization, model.context_length) == ("llama", "Q4_K_M", 4096)


def test_huggingface_cache_repo_is_inventoried(tmp_path: Path) -> None:
    """A hub-cache repository becomes org/name with facts from config.json and safetensors headers."""
    snapshot = hf_repo(tmp_path)
    [model] = [m for m in inventory_models(settings_for(tmp_path)) if m.source == "huggingface"]
    assert (model.name, model.format, model.path) == ("acme/tiny-chat", "safetensors", str(snapshot))
    assert (model.architecture, model.context_length, model.quantization) == (
        "LlamaForCausalLM",
        2048,
        "bfloat16",
    )
    assert model.parameter_count == 32


def test_lmstudio_gguf_is_inventoried(tmp_path: Path) -> None:
    """A GGUF under ~/.lmstudio/models is named by its publisher/repo/file path."""
    target = tmp_path / ".lmstudio" / "models" / "acme" / "tiny-GGUF"
    target.mkdir(parents=True)
    write_model(target / "tiny-Q4_K_M.gguf")
    [model] = [m for m in inventory_models(settings_for(tmp_path)) if m.source == "lmstudio"]
    assert model.name == "acme/tiny-GGUF/tiny-Q4_K_M.gguf"
    assert model.parameter_count == 528


def test_loose_gguf_under_a_root_is_inventoried_once(tmp_path: Path) -> None:
    """A GGUF under a configured root is found, and one reachable twice is listed once."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    write_model(models_dir / "loose.gguf")
    found = inventory_models(settings_for(tmp_path, roots=(str(models_dir), str(tmp_path))))
    assert [m.name for m in found if m.source == "filesystem"] == ["loose.gguf"]


def test_walk_stops_at_the_depth_limit(tmp_path: Path) -> None:
    """A GGUF deeper than max_depth is not visited."""
    deep = tmp_path / "models" / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True)
    write_model(deep / "deep.gguf")
    assert inventory_models(settings_for(tmp_path, roots=(str(tmp_path / "models"),))) == []


def test_digest_is_cached_by_size_and_mtime(tmp_path: Path) -> None:
    """A second digest of an unchanged file is served from the cache file, a changed file is re-hashed."""
    path = tmp_path / "blob.gguf"
    path.write_bytes(b"one")
    state = tmp_path / "state"
    cache = DigestCache(state)
    first = cache.digest(str(path))
    cache.save()
    assert first == "sha256:" + hashlib.sha256(b"one").hexdigest()
    assert DigestCache(state).digest(str(path)) == first
    path.write_bytes(b"two!")
    assert DigestCache(state).digest(str(path)) == "sha256:" + hashlib.sha256(b"two!").hexdigest()


def test_home_relative_roots_are_walked_in_every_users_home(tmp_path: Path) -> None:
    """A `~/Downloads` root finds models in each user's Downloads, not only in the agent's own home."""
    for user in ("alice", "bob"):
        (tmp_path / user / "Downloads").mkdir(parents=True)
        write_model(tmp_path / user / "Downloads" / f"{user}.gguf")
    settings = ModelSettings(homes=(str(tmp_path / "alice"), str(tmp_path / "bob")), roots=("~/Downloads",))
    assert [m.name for m in inventory_models(settings)] == ["alice.gguf", "bob.gguf"]
