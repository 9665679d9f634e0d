"""Export bundles: a directory in services.tlog's bundle format, written to a temporary place on disk and
streamed file by file, chunk by chunk (never held in memory whole).

The export never judges the data (a damaged ledger is still evidence): event bytes go out exactly as
stored, and every version of every checkpoint object found in the write-once store goes in, whether
the index knows it or not, so a version written over a genuine checkpoint, or a checkpoint the index
lost, shows up in the bundle, where `lz-verify bundle` rejects it (bad signature, a fork, or a root
the events no longer reach). What the bundle cannot show by itself (the index disagreeing with the
store, a `hash` attribute that is not the hash of its bytes) is recorded in the manifest's
`findings`, which can only make verification fail.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from services.kit import aws
from services.kit.errors import DomainError, InvalidArgument
from services.ledger import keys, seals, store
from services.ledger import keys as seal_keys
from services.ledger.domain import VerifyOutcome, level0_tile
from services.ledger.proofs import SealReader, consistency
from services.ledger.verification import SealView, read_seals, sealed_leaves
from services.tlog.bundle import write_bundle
from services.tlog.errors import TlogError
from services.tlog.merkle import leaf_hash

CHUNK_BYTES = 64 * 1024


def _notes(r: SealReader, tenant: str, view: SealView, end_seq: int) -> list[tuple[int, bytes]]:
    """(size, note) of every stored version of every checkpoint object, and of each index item's note."""
    notes: list[tuple[int, bytes]] = []
    for size, versions in sorted(view.objects.items()):
        if end_seq and size > end_seq:
            continue
        key = seal_keys.checkpoint_object_key(tenant, size)
        for version in versions:
            if version.delete_marker:
                continue
            try:
                notes.append((size, seals.read_checkpoint_object(r.s3, r.bucket, key, version.version_id)))
            except Exception as exc:
                if aws.error_code(exc) not in {"NoSuchKey", "NoSuchVersion", "404"}:
                    raise
    stored = set(notes)
    notes.extend((rec.size, rec.note) for rec in view.records
                 if (rec.size, rec.note) not in stored and rec.note and (not end_seq or rec.size <= end_seq))
    return notes


def _proofs(r: SealReader, tenant: str, sizes: list[int]) -> dict[tuple[int, int], list[bytes]]:
    proofs: dict[tuple[int, int], list[bytes]] = {}
    for a, b in itertools.pairwise(sizes):
        try:
            proofs[(a, b)] = consistency(r, tenant, a, b)[0]
        except (TlogError, DomainError):
            continue  # the verifier reports the missing proof; the export still carries the evidence
    return proofs


def _events(r: SealReader, tenant: str, last: int, sealed: int, findings: list[dict[str, Any]]) -> Iterator[bytes]:
    """The stored bytes in seq order. What the bundle cannot show becomes a finding: a `hash` attribute
    that is not the hash of the bytes, and a sealed tile that is missing or disagrees with the events
    (tiles are not in the bundle; the events and notes are, and speak for themselves)."""
    problems: list[VerifyOutcome] = []
    leaves = sealed_leaves(r, tenant, sealed, problems)
    disagreeing = False
    for event in store.walk_events(r.walk_ddb, r.table, tenant, 1, last):
        if event.hash_hex and event.hash_hex != store.derived_hash(event.canonical):
            findings.append({"seq": event.seq,
                             "reason": f"event {event.seq}: the stored hash attribute is not the hash of its bytes"})
        leaf = next(leaves)
        if leaf is not None and leaf != leaf_hash(event.canonical) and not disagreeing:
            disagreeing = True
            findings.append({"checkpoint": sealed, "reason": f"tile {level0_tile(event.seq, sealed).path} and event "
                                                             f"{event.seq} disagree (one of them was altered)"})
        yield event.canonical
    findings.extend({"checkpoint": p.first_bad_seq, "reason": p.reason} for p in problems)


def _sound_newest(view: SealView, end_seq: int) -> int:
    """The newest checkpoint size the index and the store agree on (within the export): whose tiles to read."""
    unsound = {f.size for f in view.findings}
    return max((rec.size for rec in view.records if rec.size not in unsound and (not end_seq or rec.size <= end_seq)),
               default=0)


def export_files(
    r: SealReader, tenant: str, start_seq: int, end_seq: int
) -> Generator[tuple[str, bytes, bool], None, None]:
    """(relative path, chunk, last chunk of the file) for every file of the bundle."""
    if start_seq not in (0, 1):
        raise InvalidArgument.field("start_seq", "bundles start at seq 1 (verification starts at genesis)")
    if end_seq < 0:
        raise InvalidArgument.field("end_seq", "must not be negative")
    view = read_seals(r, tenant)
    notes = _notes(r, tenant, view, end_seq)
    sizes = sorted({size for size, _ in notes if size > 0})
    findings: list[dict[str, Any]] = [
        {"checkpoint": f.size, "reason": f.reason} for f in view.findings if not end_seq or f.size <= end_seq
    ]
    with tempfile.TemporaryDirectory(prefix="lz-bundle-") as tmp:
        root = Path(tmp) / "bundle"
        write_bundle(
            root,
            tenant=tenant,
            origin=r.keys.origin_of(tenant),
            events=_events(r, tenant, end_seq or keys.MAX_SEQ, _sound_newest(view, end_seq), findings),
            checkpoints=notes,
            consistency_proofs=_proofs(r, tenant, sizes),
            verifier_keys=r.keys.verifier_strings(tenant),
            findings=findings,
        )
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            yield from _chunks(root, path)


def _chunks(root: Path, path: Path) -> Iterator[tuple[str, bytes, bool]]:
    relative = path.relative_to(root).as_posix()
    with path.open("rb") as fh:
        chunk = fh.read(CHUNK_BYTES)
        while True:
            following = fh.read(CHUNK_BYTES)
            yield relative, chunk, not following
            if not following:
                break
            chunk = following
