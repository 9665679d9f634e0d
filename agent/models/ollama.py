"""Models pulled with Ollama: manifests name them, content-addressed blobs hold them.

Layout: ``<root>/manifests/<registry>/<namespace>/<model>/<tag>`` (JSON) and
``<root>/blobs/sha256-<hex>``. The model layer's digest in the manifest is the
blob's SHA-256, so no hashing is needed here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agent import bounds
from agent.inventory import Model
from agent.models.files import WalkLimits, checked, gguf_model, read_small_json

_MODEL_LAYER = "application/vnd.ollama.image.model"
_DEFAULT_REGISTRY = "registry.ollama.ai"
_DEFAULT_NAMESPACE = "library"


def ollama_models(root: Path, limits: WalkLimits) -> list[Model]:
    """One :class:`Model` per manifest under ``root`` (an Ollama models directory)."""
    manifests = root / "manifests"
    if not manifests.is_dir():
        return []
    found: list[Model] = []
    for manifest in _manifest_files(manifests, limits):
        model = _model(root, manifests, manifest)
        if model is not None:
            found.append(model)
    return found


def _manifest_files(manifests: Path, limits: WalkLimits) -> list[Path]:
    files: list[Path] = []
    for path in sorted(manifests.glob("*/*/*/*")):
        if len(files) >= limits.max_files:
            break
        if path.is_file():
            files.append(path)
    return files


def _model(root: Path, manifests: Path, manifest: Path) -> Model | None:
    data = read_small_json(manifest)
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        return None
    layer = next(
        (item for item in data["layers"] if isinstance(item, dict) and item.get("mediaType") == _MODEL_LAYER),
        None,
    )
    if layer is None or not isinstance(layer.get("digest"), str):
        return None
    digest: str = layer["digest"]
    if not digest.startswith("sha256:") or len(digest) != 71:
        return None
    errors: list[str] = []
    size = checked(bounds.SIZE_BYTES, layer.get("size"), errors) or 0
    blob = root / "blobs" / digest.replace(":", "-")
    model = gguf_model(blob, _name(manifest.relative_to(manifests)), "ollama", digest=digest, size=size)
    return replace(model, errors=(*errors, *model.errors)) if errors else model


def _name(relative: Path) -> str:
    registry, namespace, model, tag = relative.parts
    if registry == _DEFAULT_REGISTRY:
        prefix = "" if namespace == _DEFAULT_NAMESPACE else f"{namespace}/"
    else:
        prefix = f"{registry}/{namespace}/"
    return f"{prefix}{model}:{tag}"
