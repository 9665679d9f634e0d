"""Model inventory: Ollama's store, LM Studio, the Hugging Face cache and loose GGUF files."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.inventory import Model
from agent.models.digests import DigestCache
from agent.models.files import WalkLimits, gguf_model, walk_files
from agent.models.huggingface import huggingface_models
from agent.models.ollama import ollama_models

__all__ = ["DigestCache", "ModelSettings", "WalkLimits", "expand_roots", "inventory_models", "user_homes"]

_FIRST_HUMAN_UID = 1000
_NOBODY_UID = 65534
_SERVICE_OLLAMA_STORES = ("/usr/share/ollama/.ollama/models", "/var/lib/ollama/.ollama/models")


@dataclass(frozen=True)
class ModelSettings:
    """Where to look for models; ``homes`` empty means every human user's home."""

    homes: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    limits: WalkLimits = field(default_factory=WalkLimits)
    compute_digests: bool = False


def inventory_models(settings: ModelSettings, digests: DigestCache | None = None) -> list[Model]:
    """Every model found, each file once, sorted by path.

    Stores with their own naming (Ollama, Hugging Face, LM Studio) are read
    first, so that the generic GGUF walk over ``roots`` only adds files that no
    store already named.
    """
    homes = [Path(h) for h in (settings.homes or user_homes())]
    found: list[Model] = []
    for store in _ollama_stores(homes):
        found.extend(ollama_models(store, settings.limits))
    for home in homes:
        found.extend(huggingface_models(_hf_hub(home), settings.limits))
        for store in (home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"):
            found.extend(
                gguf_model(path, str(path.relative_to(store)), "lmstudio")
                for path in walk_files(store, ".gguf", settings.limits)
            )
    seen = {os.path.realpath(m.path) for m in found}
    for root in expand_roots(settings.roots, homes):
        for path in walk_files(root, ".gguf", settings.limits):
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                found.append(gguf_model(path, path.name, "filesystem"))
    if settings.compute_digests and digests is not None:
        found = [_with_digest(m, digests) for m in found]
        digests.save()
    return sorted(found, key=lambda m: (m.path, m.name))


def expand_roots(roots: tuple[str, ...], homes: list[Path]) -> list[Path]:
    """Model roots with ``~/`` expanded in every user's home (not only the agent's), each directory once.

    The agent runs as its own user, so ``os.path.expanduser`` would only ever find the agent's home:
    a user's ``~/Downloads`` is exactly where a model they would rather not report lands.
    """
    expanded: list[Path] = []
    for root in roots:
        if root == "~" or root.startswith("~/"):
            expanded.extend(home / root[2:] for home in homes)
        else:
            expanded.append(Path(os.path.expanduser(root)))
    unique: dict[str, Path] = {}
    for path in expanded:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def user_homes() -> list[str]:
    """Home directories of human accounts that exist on this host."""
    homes = {
        entry.pw_dir
        for entry in pwd.getpwall()
        if _FIRST_HUMAN_UID <= entry.pw_uid < _NOBODY_UID and os.path.isdir(entry.pw_dir)
    }
    home = os.environ.get("HOME")
    if home and os.path.isdir(home):
        homes.add(home)
    return sorted(homes)


def _ollama_stores(homes: list[Path]) -> list[Path]:
    stores = [home / ".ollama" / "models" for home in homes]
    override = os.environ.get("OLLAMA_MODELS")
    if override:
        stores.append(Path(override))
    stores.extend(Path(p) for p in _SERVICE_OLLAMA_STORES)
    unique: dict[str, Path] = {}
    for store in stores:
        if store.is_dir():
            unique.setdefault(os.path.realpath(store), store)
    return list(unique.values())


def _hf_hub(home: Path) -> Path:
    return home / ".cache" / "huggingface" / "hub"


def _with_digest(model: Model, digests: DigestCache) -> Model:
    if model.digest is not None or not os.path.isfile(model.path):
        return model
    try:
        return replace(model, digest=digests.digest(model.path))
    except OSError:
        return model
