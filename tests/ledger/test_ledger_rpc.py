"""LedgerService over real processes: appends, reads, proofs and exports."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from lifecyclezero.v1 import ledger_pb2

from services.kit.auth import Role
from services.kit.errors import ResourceExhausted
from services.ledger import keys as seal_keys
from services.ledger.servicer import TenantLimit
from services.tlog.events import parse_event
from services.tlog.tiles import TileId
from tests.faults.helpers import Store
from tests.ledger.helpers import append, event, export_bundle, lz_verify, seal_now, stubs, verifier_keys


def test_append_returns_consecutive_seqs_from_one(new_tenant):
    """AppendEvents gives the first events of a tenant seqs 1, 2, 3 in input order."""
    ledger, _ = stubs(new_tenant)
    reply = ledger.AppendEvents(
        ledger_pb2.AppendEventsRequest(events=[event(n=i) for i in range(3)]),
        metadata=new_tenant.metadata(Role.OPERATOR),
    )
    assert list(reply.seqs) == [1, 2, 3]


def test_retried_request_id_returns_original_seqs(new_tenant):
    """A retried AppendEvents with the same request_id returns the original seqs and appends nothing."""
    ledger, _ = stubs(new_tenant)
    request = ledger_pb2.AppendEventsRequest(events=[event(), event()], request_id=f"r-{uuid.uuid4().hex}")
    first = ledger.AppendEvents(request, metadata=new_tenant.metadata(Role.OPERATOR))
    second = ledger.AppendEvents(request, metadata=new_tenant.metadata(Role.OPERATOR))
    listed = ledger.ListEvents(ledger_pb2.ListEventsRequest(), metadata=new_tenant.metadata())
    assert list(second.seqs) == list(first.seqs) == [1, 2]
    assert len(listed.events) == 2


def test_event_records_the_caller_as_actor(new_tenant):
    """An operator's appended event names the operator's token as actor, whatever the request says."""
    ledger, _ = stubs(new_tenant)
    request = ledger_pb2.AppendEventsRequest(events=[ledger_pb2.EventInput(action="a", actor="someone-else")])
    seq = ledger.AppendEvents(request, metadata=new_tenant.metadata(Role.OPERATOR)).seqs[0]
    got = ledger.GetEvent(ledger_pb2.GetEventRequest(seq=seq), metadata=new_tenant.metadata()).event
    assert got.actor.startswith("token:")
    assert parse_event(got.canonical).actor == got.actor


def test_oversized_payload_is_invalid_argument(new_tenant):
    """A payload above the size limit answers INVALID_ARGUMENT."""
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as err:
        ledger.AppendEvents(
            ledger_pb2.AppendEventsRequest(events=[event(blob="x" * 20_000)]),
            metadata=new_tenant.metadata(Role.OPERATOR),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deep_payload_is_invalid_argument(new_tenant):
    """A payload nested deeper than the limit answers INVALID_ARGUMENT."""
    ledger, _ = stubs(new_tenant)
    nested: dict = {"leaf": 1}
    for _ in range(12):
        nested = {"n": nested}
    with pytest.raises(grpc.RpcError) as err:
        ledger.AppendEvents(
            ledger_pb2.AppendEventsRequest(events=[event(deep=nested)]), metadata=new_tenant.metadata(Role.OPERATOR)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("service", ["ingest", "assets", "risk-worker"])
def test_no_service_token_may_append(stack, new_tenant, service):
    """Every service's own token is refused AppendEvents: no service calls the ledger."""
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as err:
        ledger.AppendEvents(ledger_pb2.AppendEventsRequest(events=[event()]), metadata=[
            ("authorization", f"Bearer {stack.service_tokens[service]}"), ("x-lz-tenant", new_tenant.tenant)])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_viewer_cannot_append(new_tenant):
    """A viewer's AppendEvents is PERMISSION_DENIED."""
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as err:
        ledger.AppendEvents(ledger_pb2.AppendEventsRequest(events=[event()]), metadata=new_tenant.metadata(Role.VIEWER))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_list_events_pages_through_everything(new_tenant):
    """ListEvents pages return every event once, in seq order."""
    append(new_tenant, 25)
    ledger, _ = stubs(new_tenant)
    seen, token = [], ""
    while True:
        page = ledger.ListEvents(ledger_pb2.ListEventsRequest(page_size=10, page_token=token),
                                 metadata=new_tenant.metadata())
        seen.extend(e.seq for e in page.events)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(1, 26))


def test_asset_events_list_custody_of_one_asset(new_tenant):
    """ListAssetEvents returns only the events whose subject is that asset, in order."""
    ledger, _ = stubs(new_tenant)
    events = [event(subject="asset:a1"), event(subject="asset:a2"), event(subject="asset:a1"), event(subject="x")]
    ledger.AppendEvents(ledger_pb2.AppendEventsRequest(events=events), metadata=new_tenant.metadata(Role.OPERATOR))
    got = ledger.ListAssetEvents(ledger_pb2.ListAssetEventsRequest(asset_id="a1"), metadata=new_tenant.metadata())
    assert [e.seq for e in got.events] == [1, 3]


def test_exported_proof_verifies_with_lz_verify(new_tenant, tmp_path: Path):
    """ExportProof's tlog-proof and entry verify offline with lz-verify and the tenant's verifier key."""
    append(new_tenant, 300)
    seal_now(new_tenant)
    ledger, _ = stubs(new_tenant)
    reply = ledger.ExportProof(ledger_pb2.ExportProofRequest(seq=123), metadata=new_tenant.metadata())
    (tmp_path / "entry").write_bytes(reply.entry)
    (tmp_path / "proof").write_bytes(reply.tlog_proof)
    result = lz_verify("proof", "--key", verifier_keys(new_tenant)[0], "--entry", str(tmp_path / "entry"),
                       str(tmp_path / "proof"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_consistency_proof_verifies_with_lz_verify(new_tenant, tmp_path: Path):
    """A consistency proof between two checkpoints from the service verifies with lz-verify."""
    append(new_tenant, 100)
    old = seal_now(new_tenant)
    append(new_tenant, 700)
    new = seal_now(new_tenant)
    ledger, _ = stubs(new_tenant)
    proof = ledger.GetConsistencyProof(
        ledger_pb2.GetConsistencyProofRequest(first_tree_size=old.tree_size, second_tree_size=new.tree_size),
        metadata=new_tenant.metadata(),
    )
    (tmp_path / "old").write_bytes(old.signed_note)
    (tmp_path / "new").write_bytes(new.signed_note)
    from services.tlog.proof import format_consistency_proof

    (tmp_path / "proof").write_bytes(format_consistency_proof(list(proof.hashes)))
    result = lz_verify("consistency", "--key", verifier_keys(new_tenant)[0], str(tmp_path / "old"),
                       str(tmp_path / "new"), str(tmp_path / "proof"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_inclusion_proof_at_an_older_size_verifies(new_tenant):
    """GetInclusionProof at a checkpoint size below the newest verifies against that checkpoint's root."""
    from services.tlog.merkle import leaf_hash, verify_inclusion

    append(new_tenant, 260)
    old = seal_now(new_tenant)
    append(new_tenant, 40)
    seal_now(new_tenant)
    ledger, _ = stubs(new_tenant)
    proof = ledger.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(seq=7, tree_size=old.tree_size),
                                     metadata=new_tenant.metadata())
    entry = ledger.GetEvent(ledger_pb2.GetEventRequest(seq=7), metadata=new_tenant.metadata()).event.canonical
    verify_inclusion(leaf_hash(entry), 6, old.tree_size, list(proof.hashes), old.root_hash)
    assert proof.root_hash == old.root_hash


def test_exported_bundle_verifies_with_lz_verify(new_tenant, tmp_path: Path):
    """ExportBundle's files verify offline with lz-verify bundle."""
    append(new_tenant, 90)
    seal_now(new_tenant)
    append(new_tenant, 300)
    seal_now(new_tenant)
    append(new_tenant, 5)
    bundle = export_bundle(new_tenant, tmp_path / "b")
    result = lz_verify("bundle", "--key", verifier_keys(new_tenant)[0], str(bundle))
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_ledger_full_and_since_checkpoint_pass_on_honest_data(new_tenant):
    """VerifyLedger passes in both modes on an untouched ledger."""
    from tests.ledger.helpers import verify_ledger

    append(new_tenant, 300)
    seal_now(new_tenant)
    append(new_tenant, 30)
    seal_now(new_tenant)
    append(new_tenant, 3)
    full = verify_ledger(new_tenant)
    since = verify_ledger(new_tenant, ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT)
    assert (full.ok, full.events_checked, full.tree_size) == (True, 333, 333), full
    assert (since.ok, since.events_checked) == (True, 3), since


def test_inclusion_proof_from_a_rewritten_tile_fails_naming_the_tile(new_tenant):
    """A tile replaced by a new version makes GetInclusionProof fail with FAILED_PRECONDITION naming the tile."""
    append(new_tenant, 20)
    seal_now(new_tenant)
    store = Store(new_tenant.stack)
    key = seal_keys.tile_object_key(new_tenant.tenant, TileId(0, 0, 20))
    data = bytearray(store.s3.get_object(Bucket=store.bucket, Key=key)["Body"].read())
    data[:32] = b"\x01" * 32
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=bytes(data))
    ledger, _ = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as caught:
        ledger.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(seq=9), metadata=new_tenant.metadata())
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "tile/0/000.p/20" in caught.value.details()


class TestTenantLimit:
    """The per-tenant limit on expensive calls (VerifyLedger FULL, ExportBundle)."""

    def test_a_call_beyond_the_limit_is_resource_exhausted(self):
        """A third concurrent slot of one tenant is refused with ResourceExhausted."""
        limit = TenantLimit(2)
        with limit.slot("t1", "x"), limit.slot("t1", "x"), pytest.raises(ResourceExhausted):
            limit.slot("t1", "x").__enter__()

    def test_other_tenants_are_not_limited_by_a_busy_one(self):
        """Another tenant gets a slot while one tenant uses all of its own."""
        limit = TenantLimit(1)
        with limit.slot("t1", "x"), limit.slot("t2", "x"):
            pass

    def test_a_finished_call_frees_its_slot(self):
        """A slot is free again once the call holding it ends, even by an error."""
        limit = TenantLimit(1)
        with pytest.raises(RuntimeError), limit.slot("t1", "x"):
            raise RuntimeError("boom")
        with limit.slot("t1", "x"):
            pass


def test_an_older_pinned_checkpoint_is_proven_consistent_in_both_modes(new_tenant):
    """VerifyLedger with an older checkpoint pinned passes in both modes when the ledger still extends it."""
    append(new_tenant, 20)
    older = seal_now(new_tenant)
    append(new_tenant, 30)
    seal_now(new_tenant)
    for mode in (ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT, ledger_pb2.VERIFY_MODE_FULL):
        ledger, _ = stubs(new_tenant)
        verdict = ledger.VerifyLedger(ledger_pb2.VerifyLedgerRequest(mode=mode, pinned_checkpoints=[older.signed_note]),
                                      metadata=new_tenant.metadata(), timeout=120)
        assert verdict.ok, verdict
        assert verdict.mode == mode
