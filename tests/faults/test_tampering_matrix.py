"""The tampering matrix: each way of altering stored custody data is caught by VerifyLedger (FULL) and by
`lz-verify bundle` on the exported bundle, and both name what is wrong and where.

Table-driven over one small sealed ledger per case (40 events, checkpoints at 16 and 32, 8 unsealed);
the storage helpers are the ledger tests' own (imported from tests/ledger, not copied).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.kit import aws
from services.kit.devstack import Stack
from services.ledger import keys as ledger_keys
from services.ledger import keys as seal_keys
from services.tlog.checkpoint import Checkpoint
from services.tlog.events import parse_event
from services.tlog.merkle import leaf_hash
from services.tlog.note import Signer, generate_key
from services.tlog.tiles import TileBuilder
from tests.faults.helpers import Store, make_tenant
from tests.ledger.helpers import (
    append,
    export_bundle,
    lz_verify,
    seal_now,
    verifier_keys,
    verify_ledger,
    wait_sealed,
)
from tests.ledger.test_tampering import Ledger, edited

SIZE, FIRST_CP, SECOND_CP = 40, 16, 32


def _origin(ledger: Ledger) -> str:
    return f"{ledger.stack.env['LZ_ORIGIN']}/{ledger.tenant.tenant}"


def _record_key(ledger: Ledger, size: int) -> dict:
    return aws.to_item({"PK": seal_keys.seal_pk(ledger.tenant.tenant), "SK": seal_keys.checkpoint_sk(size)})


def edit(ledger: Ledger) -> None:
    ledger.put(10, edited(ledger.canonical(10), payload={"n": "changed"}))


def delete(ledger: Ledger) -> None:
    ledger.delete(10)


def insert(ledger: Ledger) -> None:
    original = ledger.canonical(10)
    for seq in range(SIZE, 9, -1):
        item = ledger.item(seq)
        item["SK"] = {"S": ledger_keys.event_sk(seq + 1)}
        ledger.ddb.put_item(TableName=ledger.table, Item=item)
    ledger.put(10, edited(original, action="forged", payload={}))


def swap(ledger: Ledger) -> None:
    a, b = ledger.canonical(10), ledger.canonical(11)
    ledger.put(10, b)
    ledger.put(11, a)


def truncate(ledger: Ledger) -> None:
    for seq in range(30, SIZE + 1):
        ledger.delete(seq)


def rewrite(ledger: Ledger) -> None:
    """Rewrite from seq 10 with recomputed hashes, and recompute every tile over the forged leaves."""
    prev = parse_event(ledger.canonical(9)).hash_hex
    leaves = [leaf_hash(ledger.canonical(seq)) for seq in range(1, 10)]
    for seq in range(10, SIZE + 1):
        forged = edited(ledger.canonical(seq), prev_hash=prev, payload={"rewritten": seq})
        ledger.put(seq, forged)
        prev = parse_event(forged).hash_hex
        leaves.append(leaf_hash(forged))
    builder = TileBuilder()
    for start, end in ((0, FIRST_CP), (FIRST_CP, SECOND_CP)):
        for tile in builder.add(leaves[start:end]):
            key = seal_keys.tile_object_key(ledger.tenant.tenant, tile.tile_id)
            ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=tile.data)


def replaced_version(ledger: Ledger) -> None:
    """A second object version over checkpoint 16: its genuine note with the root swapped (signature now bad)."""
    key = seal_keys.checkpoint_object_key(ledger.tenant.tenant, FIRST_CP)
    note = ledger.s3.get_object(Bucket=ledger.bucket, Key=key)["Body"].read()
    lines = note.split(b"\n")
    lines[2] = b"B" * 43 + b"="
    ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=b"\n".join(lines))


def other_key(ledger: Ledger) -> None:
    """A checkpoint of all 40 events, correct root, signed by a key the tenant does not trust, and indexed."""
    stranger = Signer(generate_key(_origin(ledger))[0])
    builder = TileBuilder()
    builder.add([leaf_hash(ledger.canonical(seq)) for seq in range(1, SIZE + 1)])
    note = Checkpoint(_origin(ledger), SIZE, builder.root()).sign([stranger])
    key = seal_keys.checkpoint_object_key(ledger.tenant.tenant, SIZE)
    version = ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=note)["VersionId"]
    item = ledger.ddb.get_item(TableName=ledger.table, Key=_record_key(ledger, SECOND_CP))["Item"]
    item.update({"SK": {"S": seal_keys.checkpoint_sk(SIZE)}, "note": {"B": note}, "root": {"B": builder.root()},
                 "object_key": {"S": key}, "version_id": {"S": version},
                 "compact": {"B": builder.compact_range().to_bytes()}})
    ledger.ddb.put_item(TableName=ledger.table, Item=item)


def forked_view(ledger: Ledger) -> None:
    """Two checkpoints of size 32 signed by the tenant's own key with different roots; the index shows the fork."""
    forged = Checkpoint(_origin(ledger), SECOND_CP, b"\x07" * 32).sign([ledger.signer()])
    key = seal_keys.checkpoint_object_key(ledger.tenant.tenant, SECOND_CP)
    version = ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=forged)["VersionId"]
    item = ledger.ddb.get_item(TableName=ledger.table, Key=_record_key(ledger, SECOND_CP))["Item"]
    item.update({"note": {"B": forged}, "root": {"B": b"\x07" * 32}, "version_id": {"S": version}})
    ledger.ddb.put_item(TableName=ledger.table, Item=item)


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Callable[[Ledger], None]
    where: int  # the seq (or checkpoint size) both verifiers must name
    checkpoint: bool  # whether the finding is about a checkpoint (the message says so)
    named: str = ""  # what the messages must say to locate it (default: the number `where`)
    # VerifyLedger may name the forged event itself (it compares events with the sealed leaves) where the
    # offline bundle (events and checkpoints only) can only name the first checkpoint that no longer fits.
    ledger_may_name: int | None = None

    @property
    def mention(self) -> str:
        return self.named or str(self.where)


MATRIX = [
    Case("edit", edit, 10, False),
    Case("delete", delete, 10, False),
    Case("insert", insert, 10, False),
    Case("swap", swap, 10, False),
    Case("truncate", truncate, 30, False, named="after seq 29"),
    Case("rewrite-with-recomputed-hashes-and-tiles", rewrite, FIRST_CP, True, ledger_may_name=10),
    Case("replaced-checkpoint-object-version", replaced_version, FIRST_CP, True),
    Case("checkpoint-signed-by-another-key", other_key, SIZE, True),
    Case("forked-view", forked_view, SECOND_CP, True),
]


def sealed_ledger(stack: Stack) -> Ledger:
    """A new tenant's ledger of 40 events sealed at 16 and 32, verified.

    The sealer seals a tenant once when its stream first shows it, so that seal is waited for before
    sealing on demand (a sealer configured to seal only on demand then leaves the last 8 unsealed).
    """
    tenant = make_tenant(stack)
    append(tenant, FIRST_CP)
    wait_sealed(tenant, 1)
    seal_now(tenant)
    append(tenant, SECOND_CP - FIRST_CP)
    seal_now(tenant)
    append(tenant, SIZE - SECOND_CP)
    store = Store(stack)
    made = Ledger(tenant, store.ddb, store.s3, store.table, store.bucket, stack)
    assert verify_ledger(tenant).ok
    return made


@pytest.fixture
def ledger(stack) -> Ledger:
    return sealed_ledger(stack)


@pytest.mark.parametrize("case", MATRIX, ids=[c.name for c in MATRIX])
def test_tampering_is_detected_and_located(ledger, tmp_path: Path, case: Case):
    """The tampering is reported by VerifyLedger and by lz-verify bundle, each naming what and where."""
    case.tamper(ledger)
    verdict = verify_ledger(ledger.tenant)
    assert not verdict.ok, verdict
    if case.ledger_may_name is not None and verdict.first_bad_seq == case.ledger_may_name:
        assert f"event {case.ledger_may_name} differs from the sealed leaf" in verdict.reason, verdict
    else:
        assert verdict.first_bad_seq == case.where, verdict
        assert case.mention in verdict.reason, verdict.reason
        if case.checkpoint:
            assert "checkpoint" in verdict.reason.lower(), verdict.reason
    bundle = export_bundle(ledger.tenant, tmp_path / "bundle")
    result = lz_verify("bundle", "--key", verifier_keys(ledger.tenant)[0], str(bundle))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert str(case.where) in output or case.mention in output, output
    if case.checkpoint:
        assert "checkpoint" in output.lower() or "fork" in output.lower(), output
