"""SealerService over real processes: SealNow, status, checkpoints with their object versions, keys."""

from __future__ import annotations

import grpc
import pytest
from lifecyclezero.v1 import sealer_pb2

from services.kit.auth import Role
from services.ledger import keys as seal_keys
from services.tlog.note import Verifier
from services.tlog.verify import verify_checkpoint
from tests.ledger.helpers import append, lz_verify, seal_now, stubs, verifier_keys
from tests.sealer.helpers import clients, status


def test_seal_now_covers_every_appended_event(new_tenant):
    """SealNow answers a checkpoint of the whole ledger whose note verifies with the tenant's keys."""
    append(new_tenant, 120, batch=60)
    checkpoint = seal_now(new_tenant)
    verified = verify_checkpoint(checkpoint.signed_note, [Verifier(k) for k in verifier_keys(new_tenant)])
    assert (checkpoint.tree_size, verified.size, verified.root_hash) == (120, 120, checkpoint.root_hash)


def test_seal_now_on_an_empty_ledger_is_failed_precondition(new_tenant):
    """SealNow of a tenant without events answers FAILED_PRECONDITION."""
    _, sealer = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as err:
        sealer.SealNow(sealer_pb2.SealNowRequest(), metadata=new_tenant.metadata(Role.OPERATOR))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_viewer_cannot_seal_now(new_tenant):
    """A viewer's SealNow answers PERMISSION_DENIED."""
    append(new_tenant, 1)
    _, sealer = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as err:
        sealer.SealNow(sealer_pb2.SealNowRequest(), metadata=new_tenant.metadata(Role.VIEWER))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_status_after_seal_now_has_nothing_pending(new_tenant):
    """After SealNow, GetSealStatus reports the whole ledger sealed and nothing pending."""
    append(new_tenant, 30)
    seal_now(new_tenant)
    got = status(new_tenant)
    assert (got.sealed_through, got.pending, got.ledger_size) == (30, 0, 30)


def test_get_checkpoint_returns_the_recorded_object_version(new_tenant):
    """GetCheckpoint of a size returns its note and the S3 version id that holds exactly those bytes."""
    append(new_tenant, 10)
    seal_now(new_tenant)
    _, sealer = stubs(new_tenant)
    got = sealer.GetCheckpoint(sealer_pb2.GetCheckpointRequest(tree_size=10), metadata=new_tenant.metadata())
    _, s3 = clients(new_tenant.stack)
    stored = s3.get_object(Bucket=new_tenant.stack.resources.bucket_name, Key=got.checkpoint.object_key,
                           VersionId=got.checkpoint.object_version_id)
    assert got.checkpoint.object_key == seal_keys.checkpoint_object_key(new_tenant.tenant, 10)
    assert stored["Body"].read() == got.checkpoint.signed_note


def test_get_checkpoint_of_an_unsealed_size_is_not_found(new_tenant):
    """GetCheckpoint of a size that was never sealed answers NOT_FOUND."""
    append(new_tenant, 5)
    seal_now(new_tenant)
    _, sealer = stubs(new_tenant)
    with pytest.raises(grpc.RpcError) as err:
        sealer.GetCheckpoint(sealer_pb2.GetCheckpointRequest(tree_size=4), metadata=new_tenant.metadata())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_checkpoints_pages_newest_first_with_version_ids(new_tenant):
    """ListCheckpoints pages through every checkpoint newest first, each with its object version id."""
    for _ in range(3):
        append(new_tenant, 7)
        seal_now(new_tenant)
    _, sealer = stubs(new_tenant)
    sizes, versions, token = [], [], ""
    while True:
        page = sealer.ListCheckpoints(sealer_pb2.ListCheckpointsRequest(page_size=2, page_token=token),
                                      metadata=new_tenant.metadata())
        sizes += [c.tree_size for c in page.checkpoints]
        versions += [c.object_version_id for c in page.checkpoints]
        token = page.next_page_token
        if not token:
            break
    assert sizes == [21, 14, 7]
    assert all(versions)


def test_seal_objects_are_locked_in_compliance_mode(new_tenant):
    """Every tile and checkpoint object a seal writes has COMPLIANCE retention from the bucket default."""
    append(new_tenant, 300, batch=99)
    seal_now(new_tenant)
    _, s3 = clients(new_tenant.stack)
    bucket = new_tenant.stack.resources.bucket_name
    listed = s3.list_object_versions(Bucket=bucket, Prefix=f"{new_tenant.tenant}/")["Versions"]
    seal_objects = [v for v in listed if not v["Key"].endswith("verifier.key")]
    modes = {s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"]).get("ObjectLockMode")
             for v in seal_objects}
    assert len(seal_objects) >= 3
    assert modes == {"COMPLIANCE"}


def test_verifier_keys_are_named_for_the_tenant_log(new_tenant):
    """GetVerifierKeys answers the tenant's origin and keys named exactly like it."""
    _, sealer = stubs(new_tenant)
    got = sealer.GetVerifierKeys(sealer_pb2.GetVerifierKeysRequest(), metadata=new_tenant.metadata())
    assert got.origin == f"{new_tenant.stack.env['LZ_ORIGIN']}/{new_tenant.tenant}"
    assert [Verifier(k).name for k in got.verifier_keys] == [got.origin]


def test_checkpoint_verifies_with_lz_verify(new_tenant, tmp_path):
    """A sealed checkpoint verifies offline with `lz-verify checkpoint` and the tenant's verifier key."""
    append(new_tenant, 12)
    note = tmp_path / "cp"
    note.write_bytes(seal_now(new_tenant).signed_note)
    result = lz_verify("checkpoint", "--key", verifier_keys(new_tenant)[0], str(note))
    assert result.returncode == 0, result.stdout + result.stderr
