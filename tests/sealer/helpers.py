"""Helpers of the sealer tests: tenants on any stack, restarting and killing the sealer, raw seal reads."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lifecyclezero.v1 import ledger_pb2, sealer_pb2

from services.kit import aws
from services.kit.auth import Role
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from services.kit.tokens import store as token_store
from services.ledger import keys as seal_keys
from services.ledger import seals
from services.tlog.note import Verifier
from services.tlog.verify import verify_checkpoint, verify_checkpoint_consistency
from tests.conftest import TenantHandle
from tests.ledger.helpers import stubs, verifier_keys

# The own stack's sealer seals often (after 100 events or 0.5 s), so a short burst makes many seals.
OWN_STACK_ENV = {"LZ_SEAL_EVERY_EVENTS": "100", "LZ_SEAL_EVERY_SECONDS": "0.5"}


def make_tenant(stack: Stack) -> TenantHandle:
    """A tenant id no other test uses on `stack`, with viewer, operator and admin tokens."""
    table = stack.resources.table_name if stack.resources else ""
    tenant = f"t-{secrets.token_hex(4)}"
    ddb = clients(stack)[0]
    tokens = {}
    for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
        token, _ = token_store.issue(ddb, table, tenant, role, f"test {role.value}")
        tokens[role] = str(token)
    return TenantHandle(stack, tenant, tokens)


def clients(stack: Stack) -> tuple[Any, Any]:
    """(dynamodb, s3) clients of the stack's embedded endpoint."""
    assert stack.resources is not None
    settings = AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url)
    return aws.client(settings, "dynamodb"), aws.client(settings, "s3")


def restart_sealer(stack: Stack, env: dict[str, str] | None = None, wait: bool = True) -> None:
    """Stop the stack's sealer (SIGKILL) and start it again on its port with `env` added."""
    kill9(stack)
    stack.process_env["sealer"] = dict(env or {})
    port = int(stack.addresses["sealer"].rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while True:
        proc = stack.start_process("sealer", "services.sealer", port=port)
        if not wait:
            return
        try:
            stack.wait_serving(20, names=["sealer"])
            return
        except RuntimeError:
            # The old process's port may still be held for a moment; try again.
            if proc.poll() is None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def kill9(stack: Stack) -> None:
    """SIGKILL the stack's sealer and reap it."""
    proc = stack.procs["sealer"]
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def wait_exit(stack: Stack, timeout: float = 60.0) -> int:
    """Wait for the sealer process to exit on its own; its exit code."""
    return stack.procs["sealer"].wait(timeout)


def status(tenant: TenantHandle) -> sealer_pb2.GetSealStatusResponse:
    _, sealer = stubs(tenant)
    return sealer.GetSealStatus(sealer_pb2.GetSealStatusRequest(), metadata=tenant.metadata(), timeout=30)


def wait_caught_up(tenant: TenantHandle, timeout: float = 120.0) -> sealer_pb2.GetSealStatusResponse:
    """Poll GetSealStatus until nothing is pending; the last status."""
    deadline = time.monotonic() + timeout
    while True:
        got = status(tenant)
        if got.pending == 0 and got.sealed_through == got.ledger_size:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"the sealer did not catch up within {timeout}s: {got}")
        time.sleep(0.2)


def records(stack: Stack, tenant: str) -> list[seals.CheckpointRecord]:
    """Every checkpoint record of `tenant`, smallest first."""
    assert stack.resources is not None
    return list(seals.all_checkpoint_records(clients(stack)[0], stack.resources.table_name, tenant))


def object_versions(stack: Stack, tenant: str) -> dict[str, int]:
    """Number of stored versions of each checkpoint object key of `tenant`."""
    assert stack.resources is not None
    s3 = clients(stack)[1]
    counts: dict[str, int] = {}
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=stack.resources.bucket_name, Prefix=seal_keys.checkpoint_object_prefix(tenant)
    )
    for page in pages:
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def assert_consistent(tenant: TenantHandle, found: list[seals.CheckpointRecord]) -> None:
    """Every checkpoint verifies with the tenant's keys and is consistent with the one before it
    (RFC 9162 proof served by the ledger); raises on the first that is not."""
    ledger, _ = stubs(tenant)
    trusted = [Verifier(k) for k in verifier_keys(tenant)]
    checkpoints = [verify_checkpoint(r.note, trusted) for r in found]
    for older, newer in itertools.pairwise(checkpoints):
        proof = ledger.GetConsistencyProof(
            ledger_pb2.GetConsistencyProofRequest(first_tree_size=older.size, second_tree_size=newer.size),
            metadata=tenant.metadata(), timeout=30,
        )
        verify_checkpoint_consistency(older, newer, list(proof.hashes))


def health(address: str) -> str:
    """The overall health status name of the server at `address` ('UNKNOWN' when it does not answer)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError:
            return "UNKNOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
