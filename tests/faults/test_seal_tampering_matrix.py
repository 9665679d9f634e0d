"""The tampering matrix, seal store and damaged bytes: an attacker with database (and bucket) access hides,
edits or lies about checkpoints, tiles, hash attributes and event bytes. Each case is caught by VerifyLedger
in both modes (where the damage is in the mode's scope), by an export that still succeeds, and by
`lz-verify bundle` on that export, each naming the checkpoint, tile or seq.

Same shape as test_tampering_matrix.py (40 events, checkpoints at 16 and 32, 8 unsealed; its helpers are
imported), on a stack of its own whose sealer seals only on SealNow, so the sizes stay exactly these.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lifecyclezero.v1 import ledger_pb2

from services.kit.devstack import Stack
from services.ledger import keys as seal_keys
from services.ledger import seals
from services.tlog.compact import CompactRange
from services.tlog.events import event_hash, parse_event
from services.tlog.tiles import TileId
from tests.faults.helpers import own_stack
from tests.faults.test_tampering_matrix import FIRST_CP, SECOND_CP, SIZE, _record_key, sealed_ledger
from tests.ledger.helpers import (
    append,
    export_bundle,
    lz_verify,
    verifier_keys,
    verify_ledger,
)
from tests.ledger.test_tampering import Ledger, edited

UNSEALED = 36
NEWEST_TILE = TileId(0, 0, SECOND_CP)


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose sealer never seals on its own (only SealNow), so checkpoint sizes are exact."""
    with own_stack(tmp_path_factory.mktemp("seal-tamper"), LZ_SEAL_EVERY_EVENTS="1000000",
                   LZ_SEAL_EVERY_SECONDS="100000") as stack:
        yield stack


@pytest.fixture
def ledger(quiet_stack: Stack) -> Ledger:
    """40 events, checkpoints at exactly 16 and 32 (the sealer of this stack seals nothing on its own after)."""
    made = sealed_ledger(quiet_stack)
    sizes = [r.size for r in seals.all_checkpoint_records(made.ddb, made.table, made.tenant.tenant)]
    assert sizes == [FIRST_CP, SECOND_CP], sizes
    return made


def _index_item(ledger: Ledger, size: int) -> dict:
    return ledger.ddb.get_item(TableName=ledger.table, Key=_record_key(ledger, size))["Item"]


def _delete_index_item(ledger: Ledger, size: int) -> None:
    ledger.ddb.delete_item(TableName=ledger.table, Key=_record_key(ledger, size))


def _rechain(ledger: Ledger, first: int) -> None:
    """Rewrite events `first`..SIZE with other payloads, each chained to the one before (hashes recomputed)."""
    prev = parse_event(ledger.canonical(first - 1)).hash_hex if first > 1 else "0" * 64
    for seq in range(first, SIZE + 1):
        forged = edited(ledger.canonical(seq), prev_hash=prev, payload={"rechained": seq})
        ledger.put(seq, forged)
        prev = parse_event(forged).hash_hex


def _set_canonical(ledger: Ledger, seq: int, value: bytes | None) -> None:
    """Store other bytes at `seq` without touching anything else (None: remove the attribute)."""
    item = ledger.item(seq)
    if value is None:
        del item["canonical"]
    else:
        item["canonical"] = {"B": value}
    ledger.ddb.put_item(TableName=ledger.table, Item=item)


def _non_canonical(ledger: Ledger, seq: int) -> bytes:
    return json.dumps(json.loads(ledger.canonical(seq)), separators=(", ", ": ")).encode()


def newest_index_item_deleted(ledger: Ledger) -> None:
    _delete_index_item(ledger, SECOND_CP)


def newest_index_item_deleted_and_rechained(ledger: Ledger) -> None:
    _delete_index_item(ledger, SECOND_CP)
    _rechain(ledger, FIRST_CP + 1)


def every_index_item_deleted_and_rechained_from_genesis(ledger: Ledger) -> None:
    for size in (FIRST_CP, SECOND_CP):
        _delete_index_item(ledger, size)
    _rechain(ledger, 1)


def _altered_index(change: Callable[[dict], None], size: int = SECOND_CP) -> Callable[[Ledger], None]:
    def tamper(ledger: Ledger) -> None:
        item = _index_item(ledger, size)
        change(item)
        ledger.ddb.put_item(TableName=ledger.table, Item=item)

    return tamper


def _other_compact(item: dict) -> None:
    item["compact"] = {"B": CompactRange.from_parts(SECOND_CP, [b"\x09" * 32]).to_bytes()}


def checkpoint_delete_marker(ledger: Ledger) -> None:
    key = seal_keys.checkpoint_object_key(ledger.tenant.tenant, SECOND_CP)
    ledger.s3.delete_object(Bucket=ledger.bucket, Key=key)


def tile_rewritten(ledger: Ledger) -> None:
    """A new version of the newest level-0 tile whose 6th leaf hash is another's."""
    key = seal_keys.tile_object_key(ledger.tenant.tenant, NEWEST_TILE)
    data = bytearray(ledger.s3.get_object(Bucket=ledger.bucket, Key=key)["Body"].read())
    data[5 * 32 : 6 * 32] = b"\x05" * 32
    ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=bytes(data))


def tile_deleted(ledger: Ledger) -> None:
    ledger.s3.delete_object(Bucket=ledger.bucket, Key=seal_keys.tile_object_key(ledger.tenant.tenant, NEWEST_TILE))


def tail_hash_edited_then_honest_append(ledger: Ledger) -> None:
    item = ledger.item(SIZE)
    item["hash"] = {"S": "ab" * 32}
    ledger.ddb.put_item(TableName=ledger.table, Item=item)
    append(ledger.tenant, 1)


def _damaged_bytes(seq: int, kind: str) -> Callable[[Ledger], None]:
    def tamper(ledger: Ledger) -> None:
        value = {"garbage": b"\x00not an event", "non-canonical": _non_canonical(ledger, seq), "missing": None}[kind]
        _set_canonical(ledger, seq, value)

    return tamper


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Callable[[Ledger], None]
    where: int  # the seq or checkpoint size VerifyLedger FULL and lz-verify bundle name
    named: str  # what every message must say to locate it
    since_where: int | None  # what SINCE_CHECKPOINT names; None: the damage is in sealed history, out of its scope
    bundle_where: int | None = None  # what lz-verify bundle names, when not `where`


MATRIX = [
    Case("newest-index-item-deleted", newest_index_item_deleted, SECOND_CP, "checkpoint", SECOND_CP),
    Case("newest-index-item-deleted-and-tail-rechained", newest_index_item_deleted_and_rechained, SECOND_CP,
         "checkpoint", SECOND_CP),
    Case("every-index-item-deleted-and-rechained-from-genesis", every_index_item_deleted_and_rechained_from_genesis,
         FIRST_CP, "checkpoint", FIRST_CP),
    Case("index-size-altered", _altered_index(lambda i: i.update(size={"N": "33"})), SECOND_CP, "size", SECOND_CP),
    Case("index-size-removed", _altered_index(lambda i: i.pop("size")), SECOND_CP, "size", SECOND_CP),
    Case("index-version-altered", _altered_index(lambda i: i.update(version_id={"S": "forged"})), SECOND_CP,
         "version", SECOND_CP),
    Case("index-version-removed", _altered_index(lambda i: i.pop("version_id")), SECOND_CP, "version", SECOND_CP),
    Case("index-compact-altered", _altered_index(_other_compact), SECOND_CP, "compact", SECOND_CP),
    Case("index-compact-removed", _altered_index(lambda i: i.pop("compact"), FIRST_CP), FIRST_CP, "compact",
         FIRST_CP),
    Case("checkpoint-object-delete-marker", checkpoint_delete_marker, SECOND_CP, "delete marker", SECOND_CP),
    Case("tile-rewritten", tile_rewritten, FIRST_CP, NEWEST_TILE.path, SECOND_CP, bundle_where=SECOND_CP),
    Case("tile-deleted", tile_deleted, SECOND_CP, NEWEST_TILE.path, SECOND_CP),
    Case("tail-hash-attribute-edited-then-honest-append", tail_hash_edited_then_honest_append, SIZE, "hash attribute",
         SIZE),
    *(Case(f"{kind}-bytes-at-{label}-seq", _damaged_bytes(seq, kind), seq, str(seq),
           None if label == "sealed" else seq)
      for kind in ("garbage", "non-canonical", "missing") for label, seq in (("sealed", 10), ("unsealed", UNSEALED))),
]


@pytest.mark.parametrize("case", MATRIX, ids=[c.name for c in MATRIX])
def test_seal_store_tampering_is_detected_and_located(ledger: Ledger, tmp_path: Path, case: Case) -> None:
    """The tampering fails both verify modes, an export still succeeds, and lz-verify bundle fails, all naming it."""
    case.tamper(ledger)
    full = verify_ledger(ledger.tenant)
    assert (full.ok, full.first_bad_seq) == (False, case.where), full
    assert case.named in f"{full.first_bad_seq} {full.reason}", full.reason
    since = verify_ledger(ledger.tenant, ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT)
    if case.since_where is not None:
        assert (since.ok, since.first_bad_seq) == (False, case.since_where), since
        assert case.named in f"{since.first_bad_seq} {since.reason}", since.reason
    bundle = export_bundle(ledger.tenant, tmp_path / "bundle")
    result = lz_verify("bundle", "--key", verifier_keys(ledger.tenant)[0], str(bundle))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert case.named in output, output
    assert str(case.where if case.bundle_where is None else case.bundle_where) in output, output


def test_an_honest_append_chains_from_the_bytes_not_an_edited_hash_attribute(ledger: Ledger) -> None:
    """After the tail's hash attribute is edited, the next append's prev_hash is the hash of the tail's bytes."""
    tail_hash_edited_then_honest_append(ledger)
    appended = parse_event(ledger.canonical(SIZE + 1))
    assert appended.prev_hash == event_hash(ledger.canonical(SIZE)).hex()
