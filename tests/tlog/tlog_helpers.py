"""Builders shared by the tlog tests: logs of events, tiles, checkpoints and bundles."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.tlog.checkpoint import Checkpoint
from services.tlog.events import GENESIS_PREV_HASH, Event, build_event
from services.tlog.merkle import HashReader, consistency_proof, leaf_hash, root_hash
from services.tlog.note import Signer, Verifier, generate_key
from services.tlog.tiles import TileBuilder, TileId, tile_hash_reader

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
TENANT = "acme"
ORIGIN = "lz.example/acme"


def leaves(n: int, salt: str = "") -> list[bytes]:
    """Distinct leaf hashes for a tree of ``n`` leaves."""
    return [leaf_hash(f"{salt}{i}".encode()) for i in range(n)]


def memory_reader(leaf_hashes: list[bytes]) -> HashReader:
    """A HashReader computing complete-subtree hashes naively from all leaves."""

    def read(ids: object) -> list[bytes]:
        assert isinstance(ids, list | tuple)
        out = []
        for level, index in ids:
            begin, end = index << level, (index + 1) << level
            assert end <= len(leaf_hashes), "reader asked for an incomplete subtree"
            out.append(root_hash(leaf_hashes[begin:end]))
        return out

    return read


def tile_store(leaf_hashes: list[bytes]) -> dict[TileId, bytes]:
    """All tiles for the tree over ``leaf_hashes``, built in one go."""
    builder = TileBuilder()
    return {t.tile_id: t.data for t in builder.add(leaf_hashes)}


def tile_reader(leaf_hashes: list[bytes]) -> HashReader:
    """A HashReader backed by tiles built with TileBuilder."""
    store = tile_store(leaf_hashes)
    return tile_hash_reader(len(leaf_hashes), store.__getitem__)


def make_events(n: int, tenant: str = TENANT) -> list[Event]:
    """A valid chain of ``n`` events."""
    events: list[Event] = []
    prev = GENESIS_PREV_HASH
    for seq in range(1, n + 1):
        event = build_event(
            tenant=tenant,
            seq=seq,
            ts=f"2026-11-22T02:45:{seq % 60:02d}.{seq:06d}Z",
            actor="agent:host-1",
            action="engine.detected",
            subject=f"host-{seq % 7}",
            payload={"engine": "ollama", "pid": 1000 + seq, "tags": ["a", "b"], "score": seq / 8},
            prev_hash=prev,
        )
        events.append(event)
        prev = event.hash_hex
    return events


@dataclass
class Log:
    """A signed log fixture: events, a signer and helpers to seal sizes."""

    events: list[Event]
    signer: Signer
    verifier: Verifier
    verifier_key: str
    other_signer: Signer = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def leaf_hashes(self) -> list[bytes]:
        return [leaf_hash(e.canonical_bytes) for e in self.events]

    def checkpoint(self, size: int, signer: Signer | None = None) -> bytes:
        root = root_hash(self.leaf_hashes[:size])
        return Checkpoint(ORIGIN, size, root).sign([signer or self.signer])

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        return consistency_proof(size1, size2, memory_reader(self.leaf_hashes[:size2]))


def make_log(n: int) -> Log:
    """A log of ``n`` events with a fresh key named after the origin."""
    sk, vk = generate_key(ORIGIN)
    other_sk, _ = generate_key(ORIGIN)
    return Log(make_events(n), Signer(sk), Verifier(vk), vk, Signer(other_sk))
