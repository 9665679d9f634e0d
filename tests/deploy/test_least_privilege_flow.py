"""The whole custody flow works with every service bound to its own least-privilege IAM policy."""

from __future__ import annotations

import queue
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from lifecyclezero.v1 import (
    assets_pb2,
    assets_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    sealer_pb2,
    sealer_pb2_grpc,
)

from services.kit.devstack import Stack
from tests.conftest import running
from tests.faults.helpers import until


@pytest.fixture(scope="module")
def enforced_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every service as its own process with its own IAM user; the endpoint checks every call."""
    yield from running(Stack(state_dir=tmp_path_factory.mktemp("least-privilege"), least_privilege=True))


def _requests(outbox: queue.Queue[ingest_pb2.ConnectRequest | None]) -> Iterator[ingest_pb2.ConnectRequest]:
    while (message := outbox.get()) is not None:
        yield message


def test_isolation_sealing_and_verification_work_under_least_privilege(enforced_stack: Stack, tmp_path: Path) -> None:
    """Enroll, stream, isolate, enforce, seal and verify all succeed with per-service IAM enforced."""
    stack = enforced_stack
    tenant = f"t-{secrets.token_hex(4)}"
    assets = assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))
    created = assets.CreateTenant(assets_pb2.CreateTenantRequest(tenant_id=tenant),
                                  metadata=[("authorization", f"Bearer {stack.bootstrap_token}")], timeout=30)
    admin = [("authorization", f"Bearer {created.admin_token}")]
    ingest = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(stack.addresses["ingest"]))
    enrolled = ingest.Enroll(ingest_pb2.EnrollRequest(
        tenant_id=tenant, enrollment_secret=created.enrollment_secret, hostname="ws-1.corp", os="linux",
        agent_version="1.0.0"), timeout=30)
    outbox: queue.Queue[ingest_pb2.ConnectRequest | None] = queue.Queue()
    outbox.put(ingest_pb2.ConnectRequest(hello=ingest_pb2.Hello(
        tenant_id=tenant, asset_id=enrolled.asset_id, agent_credential=enrolled.agent_credential)))
    stream = ingest.Connect(_requests(outbox), timeout=90)
    try:
        assert next(stream).HasField("welcome")
        beat = ingest_pb2.Heartbeat(seq=1, inventory_digest="0" * 64)
        beat.observe_time.GetCurrentTime()
        outbox.put(ingest_pb2.ConnectRequest(heartbeat=beat))
        assert next(m for m in stream if m.HasField("ack")).ack.acked_seq == 1
        assets.IsolateAsset(assets_pb2.IsolateAssetRequest(asset_id=enrolled.asset_id, justification="exposed",
                                                           request_id="iso-1"), metadata=admin, timeout=30)
        command = next(m.command for m in stream if m.HasField("command"))
        outbox.put(ingest_pb2.ConnectRequest(command_result=common_pb2.CommandResult(
            command_id=command.command_id, outcome=common_pb2.COMMAND_OUTCOME_APPLIED, rule_count=12,
            ruleset_sha256="ab" * 32, self_test_passed=True)))
        assert next(m for m in stream if m.HasField("ack") and m.ack.command_id).ack.command_id == command.command_id
    finally:
        outbox.put(None)
        stream.cancel()
    deadline = time.monotonic() + 30
    while assets.GetAsset(assets_pb2.GetAssetRequest(asset_id=enrolled.asset_id), metadata=admin,
                          timeout=30).asset.status != common_pb2.ASSET_STATUS_ISOLATED:
        assert time.monotonic() < deadline, "the asset never became ISOLATED"
        time.sleep(0.2)
    # The custody sequencer (assets, under its own policy) chains the isolation's events moments after.
    until(lambda: len(assets.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=enrolled.asset_id),
                                           metadata=admin, timeout=30).events) == 3, 30, "three custody events chained")
    sealer = sealer_pb2_grpc.SealerServiceStub(grpc.insecure_channel(stack.addresses["sealer"]))
    sealed = sealer.SealNow(sealer_pb2.SealNowRequest(request_id="seal-1"), metadata=admin, timeout=60)
    assert sealed.checkpoint.tree_size == 3  # enrolled, isolation requested, isolation enforced
    ledger = ledger_pb2_grpc.LedgerServiceStub(grpc.insecure_channel(stack.addresses["ledger"]))
    verdict = ledger.VerifyLedger(ledger_pb2.VerifyLedgerRequest(mode=ledger_pb2.VERIFY_MODE_FULL),
                                  metadata=admin, timeout=60)
    assert verdict.ok, verdict
    assert verdict.events_checked == 3
