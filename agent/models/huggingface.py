"""Models in the Hugging Face hub cache.

Layout: ``<hub>/models--<org>--<name>/snapshots/<revision>/<files>``, files
being symlinks into ``blobs/`` named by their hash (SHA-256 for LFS files).
A GGUF file becomes its own model; otherwise the repository is one model whose
facts come from ``config.json`` and the safetensors headers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from agent import bounds
from agent.inventory import Model
from agent.models.files import WalkLimits, checked, gguf_model, read_small_json, safetensors_parameters

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WEIGHT_FORMATS = (
    (".safetensors", "safetensors"),
    (".bin", "pytorch"),
    (".pt", "pytorch"),
    (".onnx", "onnx"),
)


def huggingface_models(hub: Path, limits: WalkLimits) -> list[Model]:
    """Models of every ``models--*`` repository under ``hub``."""
    try:
        repos = sorted(p for p in hub.iterdir() if p.name.startswith("models--") and p.is_dir())
    except OSError:
        return []
    found: list[Model] = []
    for repo in repos[: limits.max_files]:
        snapshot = _snapshot(repo)
        if snapshot is not None:
            found.extend(
                _repo_models(repo.name.removeprefix("models--").replace("--", "/"), snapshot, limits)
            )
    return found


def _snapshot(repo: Path) -> Path | None:
    """The revision ``refs/main`` points at, else the most recently written snapshot."""
    snapshots = repo / "snapshots"
    try:
        ref = (repo / "refs" / "main").read_text().strip()
    except OSError:
        ref = ""
    if ref and (snapshots / ref).is_dir():
        return snapshots / ref
    try:
        candidates = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def _repo_models(repo_id: str, snapshot: Path, limits: WalkLimits) -> list[Model]:
    files: list[Path] = []
    for directory, _dirs, names in os.walk(snapshot):
        files.extend(Path(directory) / n for n in names)
        if len(files) >= limits.max_files:
            break
    ggufs = [f for f in files if f.name.lower().endswith(".gguf")]
    if ggufs:
        return [
            gguf_model(f, f"{repo_id}/{f.relative_to(snapshot)}", "huggingface", digest=_lfs_digest(f))
            for f in sorted(ggufs)
        ]
    weight_format = next(
        (fmt for suffix, fmt in _WEIGHT_FORMATS if any(f.name.endswith(suffix) for f in files)), None
    )
    if weight_format is None:
        return []
    config = read_small_json(snapshot / "config.json")
    config = config if isinstance(config, dict) else {}
    parameters = sum(safetensors_parameters(f) or 0 for f in files if f.name.endswith(".safetensors"))
    errors: list[str] = []
    return [
        Model(
            name=repo_id,
            format=weight_format,
            path=str(snapshot),
            digest=None,
            size_bytes=checked(bounds.SIZE_BYTES, sum(_size(f) for f in files), errors) or 0,
            architecture=_architecture(config),
            quantization=_quantization(config),
            parameter_count=checked(bounds.PARAMETER_COUNT, parameters or None, errors),
            context_length=checked(bounds.CONTEXT_LENGTH, config.get("max_position_embeddings"), errors),
            source="huggingface",
            errors=tuple(errors),
        )
    ]


def _lfs_digest(path: Path) -> str | None:
    """LFS blobs are named by their SHA-256, so the symlink target is the digest."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    name = os.path.basename(target)
    return f"sha256:{name}" if _SHA256.match(name) else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _architecture(config: dict[str, Any]) -> str | None:
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        return architectures[0]
    model_type = config.get("model_type")
    return model_type if isinstance(model_type, str) else None


def _quantization(config: dict[str, Any]) -> str | None:
    quant = config.get("quantization_config")
    if isinstance(quant, dict) and isinstance(quant.get("quant_method"), str):
        return str(quant["quant_method"])
    dtype = config.get("torch_dtype") or config.get("dtype")
    return dtype if isinstance(dtype, str) else None

