"""The inventory's digest and JSON form."""

from __future__ import annotations

import json
from dataclasses import replace

from agent.inventory import Connection, Endpoint, Engine, Inventory, Model

MODEL = Model(
    "llama3.2:1b", "gguf", "/m/blob", "sha256:" + "1" * 64, 10, "llama", "Q4_K_M", 528, 4096, "ollama"
)
ENGINE = Engine(
    kind="ollama",
    pid=100,
    exe="/usr/bin/ollama",
    user="ana",
    version="0.5.1",
    listen=(Endpoint("127.0.0.1", 11434, False), Endpoint("::1", 11434, False)),
    confirmed=True,
    confidence="high",
    models_loaded=("a", "b"),
    outbound=(Connection("10.0.0.2", 40000, "1.2.3.4", 443),),
)
INVENTORY = Inventory((ENGINE,), (MODEL,), "host", "linux 6.8", "2026-01-01T00:00:00+00:00")


def test_digest_ignores_time_pids_order_and_ephemeral_ports() -> None:
    """Snapshots differing only in time, pid, list order and local ports have one digest."""
    moved = replace(
        ENGINE,
        pid=200,
        listen=tuple(reversed(ENGINE.listen)),
        models_loaded=("b", "a"),
        outbound=(Connection("10.0.0.2", 51000, "1.2.3.4", 443),),
    )
    later = replace(INVENTORY, engines=(moved,), collected_at="2026-01-02T00:00:00+00:00")
    assert later.digest() == INVENTORY.digest()


def test_digest_changes_when_a_model_appears() -> None:
    """A new model changes the digest."""
    more = replace(INVENTORY, models=(MODEL, replace(MODEL, name="qwen2", path="/m/other")))
    assert more.digest() != INVENTORY.digest()


def test_to_dict_is_json_ready() -> None:
    """to_dict gives plain JSON types with every field."""
    data = json.loads(json.dumps(INVENTORY.to_dict()))
    assert data["engines"][0]["listen"][0] == {"address": "127.0.0.1", "port": 11434, "exposed": False}
    assert data["models"][0]["quantization"] == "Q4_K_M"
