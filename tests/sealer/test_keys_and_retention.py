"""Key rotation and the retention check, on the sealer tests' own stack (its sealer is reconfigured)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lifecyclezero.v1 import sealer_pb2, sealer_pb2_grpc

from services.kit import embedded
from services.kit.auth import Role
from services.kit.devstack import ORIGIN
from services.tlog.errors import VerificationError
from services.tlog.note import Verifier, generate_key
from services.tlog.verify import verify_checkpoint
from tests.ledger.helpers import append, seal_now, verifier_keys
from tests.sealer.helpers import clients, health, kill9, records, restart_sealer


def test_rotated_key_signs_new_checkpoints_and_old_ones_still_verify(sealer_stack, own_tenant, tmp_path):
    """After rotation the new key signs new checkpoints, and checkpoints signed before verify with the old key."""
    append(own_tenant, 10)
    before = seal_now(own_tenant).signed_note
    old_signer = (sealer_stack.state_dir / "signing.key").read_text().strip()
    new_signer, _ = generate_key(ORIGIN)
    key_file = tmp_path / "signing.keys"
    key_file.write_text(f"# newest first\n{new_signer}\n{old_signer}\n")
    try:
        restart_sealer(sealer_stack, {"LZ_SIGNING_KEY_FILE": str(key_file)})
        append(own_tenant, 10)
        after = seal_now(own_tenant).signed_note
        new_key, old_key = (Verifier(k) for k in verifier_keys(own_tenant))
    finally:
        restart_sealer(sealer_stack)
    assert verify_checkpoint(before, [old_key]).size == 10
    assert verify_checkpoint(after, [new_key]).size == 20
    with pytest.raises(VerificationError):
        verify_checkpoint(after, [old_key])


def test_bucket_without_default_retention_is_refused(sealer_stack, own_tenant):
    """A sealer whose bucket has no default COMPLIANCE retention refuses to record seals and reports not ready."""
    _, s3 = clients(sealer_stack)
    s3.create_bucket(Bucket="seals-without-lock")
    s3.put_bucket_versioning(Bucket="seals-without-lock", VersioningConfiguration={"Status": "Enabled"})
    port = embedded.free_port()
    env = {**os.environ, **sealer_stack.env, "LZ_BUCKET_NAME": "seals-without-lock", "LZ_PORT": str(port)}
    kill9(sealer_stack)  # no other sealer may seal this tenant meanwhile
    log = (sealer_stack.state_dir / "logs" / "sealer-without-lock.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "services.sealer"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while health(address) != "SERVING":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        append(own_tenant, 5)
        stub = sealer_pb2_grpc.SealerServiceStub(grpc.insecure_channel(address))
        with pytest.raises(grpc.RpcError) as err:
            stub.SealNow(sealer_pb2.SealNowRequest(), metadata=own_tenant.metadata(Role.OPERATOR), timeout=30)
        deadline = time.monotonic() + 10
        while health(address) != "NOT_SERVING" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health(address) == "NOT_SERVING"
        recorded = records(sealer_stack, own_tenant.tenant)
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
        restart_sealer(sealer_stack, wait=True)
    status = rpc_status.from_call(err.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details)
    assert (err.value.code(), info.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SEAL_RETENTION_MISSING")
    assert recorded == []
