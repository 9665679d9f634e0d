"""Storage-level tampering: each kind is caught by VerifyLedger and by `lz-verify bundle`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lifecyclezero.v1 import ledger_pb2

from services.kit import aws
from services.kit.settings import AwsSettings
from services.ledger import keys as ledger_keys
from services.ledger import keys as seal_keys
from services.tlog.checkpoint import Checkpoint
from services.tlog.events import build_event, parse_event
from services.tlog.merkle import leaf_hash
from services.tlog.note import Signer, generate_key
from services.tlog.tiles import TileBuilder
from tests.ledger.helpers import append, export_bundle, lz_verify, seal_now, stubs, verifier_keys, verify_ledger


@dataclass
class Ledger:
    """A sealed ledger of 310 events (checkpoints at 150 and 300) and raw access to its storage."""

    tenant: Any
    ddb: Any
    s3: Any
    table: str
    bucket: str
    stack: Any

    @property
    def pk(self) -> str:
        return ledger_keys.ledger_pk(self.tenant.tenant)

    def item(self, seq: int) -> dict[str, Any]:
        got = self.ddb.get_item(TableName=self.table, Key=aws.to_item({"PK": self.pk, "SK": ledger_keys.event_sk(seq)}))
        return got["Item"]

    def canonical(self, seq: int) -> bytes:
        return bytes(self.item(seq)["canonical"]["B"])

    def put(self, seq: int, canonical: bytes) -> None:
        """Overwrite the item at `seq` with other event bytes (and a matching hash attribute)."""
        item = self.item(seq) if self.exists(seq) else {"PK": {"S": self.pk}, "SK": {"S": ledger_keys.event_sk(seq)}}
        item["canonical"] = {"B": canonical}
        item["hash"] = {"S": parse_event(canonical).hash_hex}
        self.ddb.put_item(TableName=self.table, Item=item)

    def exists(self, seq: int) -> bool:
        got = self.ddb.get_item(TableName=self.table, Key=aws.to_item({"PK": self.pk, "SK": ledger_keys.event_sk(seq)}))
        return "Item" in got

    def delete(self, seq: int) -> None:
        self.ddb.delete_item(TableName=self.table, Key=aws.to_item({"PK": self.pk, "SK": ledger_keys.event_sk(seq)}))

    def signer(self) -> Any:
        key = (self.stack.state_dir / "signing.key").read_text().strip()
        return Signer(key).renamed(f"{self.stack.env['LZ_ORIGIN']}/{self.tenant.tenant}")


def edited(canonical: bytes, **change: Any) -> bytes:
    event = parse_event(canonical)
    fields = {"tenant": event.tenant, "seq": event.seq, "ts": event.ts, "actor": event.actor, "action": event.action,
              "subject": event.subject, "payload": event.payload, "prev_hash": event.prev_hash, **change}
    return build_event(**fields).canonical_bytes


@pytest.fixture
def ledger(new_tenant) -> Ledger:
    append(new_tenant, 150, batch=99)
    seal_now(new_tenant)
    append(new_tenant, 150, batch=99)
    seal_now(new_tenant)
    append(new_tenant, 10)
    res = new_tenant.stack.resources
    settings = AwsSettings(table_name=res.table_name, endpoint_url=res.endpoint_url)
    return Ledger(new_tenant, aws.client(settings, "dynamodb"), aws.client(settings, "s3"), res.table_name,
                  res.bucket_name, new_tenant.stack)


def assert_detected(ledger: Ledger, tmp_path: Path, first_bad: int | range) -> None:
    """VerifyLedger names `first_bad` (or a seq in that range) and `lz-verify bundle` fails."""
    verdict = verify_ledger(ledger.tenant)
    assert not verdict.ok
    if isinstance(first_bad, range):
        assert verdict.first_bad_seq in first_bad, verdict
    else:
        assert verdict.first_bad_seq == first_bad, verdict
    bundle = export_bundle(ledger.tenant, tmp_path / "bundle")
    result = lz_verify("bundle", "--key", verifier_keys(ledger.tenant)[0], str(bundle))
    assert result.returncode == 1, result.stdout + result.stderr


def test_edited_payload_is_detected(ledger, tmp_path):
    """An event whose payload was edited in place (hash attribute updated) is named by its seq."""
    ledger.put(50, edited(ledger.canonical(50), payload={"n": "changed"}))
    assert_detected(ledger, tmp_path, 50)


def test_the_full_walk_stream_names_an_edited_event_as_verify_ledger_does(ledger):
    """WatchFullVerification's result names the edited event exactly as VerifyLedger FULL does."""
    ledger.put(50, edited(ledger.canonical(50), payload={"n": "changed"}))
    ledger_stub, _ = stubs(ledger.tenant)
    updates = list(ledger_stub.WatchFullVerification(ledger_pb2.WatchFullVerificationRequest(),
                                                     metadata=ledger.tenant.metadata(), timeout=120))
    assert (updates[-1].result.ok, updates[-1].result.first_bad_seq) == (False, 50)
    assert updates[-1].result == verify_ledger(ledger.tenant)


def test_deleted_event_is_detected(ledger, tmp_path):
    """A deleted event is named by its seq."""
    ledger.delete(50)
    assert_detected(ledger, tmp_path, 50)


def test_inserted_event_is_detected(ledger, tmp_path):
    """An event inserted into the chain (later items shifted by one) is named by its seq."""
    originals = {seq: ledger.canonical(seq) for seq in range(50, 311)}
    for seq in range(310, 49, -1):
        item = ledger.item(seq)
        item["SK"] = {"S": ledger_keys.event_sk(seq + 1)}
        ledger.ddb.put_item(TableName=ledger.table, Item=item)
    ledger.put(50, edited(originals[50], action="forged", payload={}))
    assert_detected(ledger, tmp_path, 50)


def test_swapped_events_are_detected(ledger, tmp_path):
    """Two events swapped in storage are named by the first position."""
    a, b = ledger.canonical(50), ledger.canonical(51)
    ledger.put(50, b)
    ledger.put(51, a)
    assert_detected(ledger, tmp_path, 50)


def test_truncated_tail_is_detected(ledger, tmp_path):
    """A tail cut below the newest checkpoint is named by the first missing seq."""
    for seq in range(290, 311):
        ledger.delete(seq)
    assert_detected(ledger, tmp_path, 290)


def test_rewritten_chain_with_recomputed_tiles_is_detected(ledger, tmp_path):
    """A chain rewritten from seq 50 with recomputed hashes and tiles fails at seq 50 or the first checkpoint after it.

    VerifyLedger names seq 50 when it reads the tiles the sealer recorded, or else the first checkpoint
    whose signed root no longer fits; the sealer's timer may have sealed sizes between 50 and 150.
    """
    prev = parse_event(ledger.canonical(49)).hash_hex
    leaves = [leaf_hash(ledger.canonical(seq)) for seq in range(1, 50)]
    for seq in range(50, 311):
        forged = edited(ledger.canonical(seq), prev_hash=prev, payload={"rewritten": seq})
        ledger.put(seq, forged)
        prev = parse_event(forged).hash_hex
        leaves.append(leaf_hash(forged))
    builder = TileBuilder()
    for start, end in ((0, 150), (150, 300)):
        for tile in builder.add(leaves[start:end]):
            key = seal_keys.tile_object_key(ledger.tenant.tenant, tile.tile_id)
            ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=tile.data)
    assert_detected(ledger, tmp_path, range(50, 151))


def test_checkpoint_overwritten_by_newer_version_is_detected(ledger, tmp_path):
    """A newer object version over a checkpoint (validly signed, other root) is named by its size."""
    origin = f"{ledger.stack.env['LZ_ORIGIN']}/{ledger.tenant.tenant}"
    forged = Checkpoint(origin, 150, b"\x07" * 32).sign([ledger.signer()])
    key = seal_keys.checkpoint_object_key(ledger.tenant.tenant, 150)
    ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=forged)
    assert_detected(ledger, tmp_path, 150)


def test_checkpoint_signed_by_another_key_is_detected(ledger, tmp_path):
    """A checkpoint signed by a key the tenant does not trust is named by its size."""
    origin = f"{ledger.stack.env['LZ_ORIGIN']}/{ledger.tenant.tenant}"
    from services.tlog.note import Signer

    stranger = Signer(generate_key(origin)[0])
    leaves = [leaf_hash(ledger.canonical(seq)) for seq in range(1, 311)]
    builder = TileBuilder()
    builder.add(leaves)
    note = Checkpoint(origin, 310, builder.root()).sign([stranger])
    key = seal_keys.checkpoint_object_key(ledger.tenant.tenant, 310)
    version = ledger.s3.put_object(Bucket=ledger.bucket, Key=key, Body=note)["VersionId"]
    newest = ledger.ddb.get_item(
        TableName=ledger.table,
        Key=aws.to_item({"PK": seal_keys.seal_pk(ledger.tenant.tenant), "SK": seal_keys.checkpoint_sk(300)}),
    )["Item"]
    newest.update({"SK": {"S": seal_keys.checkpoint_sk(310)}, "note": {"B": note}, "root": {"B": builder.root()},
                   "object_key": {"S": key}, "version_id": {"S": version}})
    newest["compact"] = {"B": builder.compact_range().to_bytes()}
    ledger.ddb.put_item(TableName=ledger.table, Item=newest)
    assert_detected(ledger, tmp_path, 310)
