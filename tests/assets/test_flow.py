"""The isolation flow across real processes: assets, ingest and ledger, with the agent's side of the stream."""

from __future__ import annotations

import hashlib
import queue
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
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
from tests.faults.helpers import until


def _requests(outbox: queue.Queue[ingest_pb2.ConnectRequest | None]) -> Iterator[ingest_pb2.ConnectRequest]:
    while True:
        message = outbox.get()
        if message is None:
            return
        yield message


def test_an_isolation_reaches_the_agent_stream_and_its_result_isolates_the_asset(stack: Stack, tmp_path: Path) -> None:
    """An isolation goes down the agent's stream, its result isolates the asset, and both custody events verify."""
    tenant = f"t-{secrets.token_hex(4)}"
    assets = assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))
    created = assets.CreateTenant(assets_pb2.CreateTenantRequest(tenant_id=tenant),
                                  metadata=[("authorization", f"Bearer {stack.bootstrap_token}")])
    admin = [("authorization", f"Bearer {created.admin_token}")]
    ingest = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(stack.addresses["ingest"]))
    enrolled = ingest.Enroll(ingest_pb2.EnrollRequest(
        tenant_id=tenant, enrollment_secret=created.enrollment_secret, hostname="ws-1.corp", employee_id="alice",
        os="linux", agent_version="1.0.0"))

    outbox: queue.Queue[ingest_pb2.ConnectRequest | None] = queue.Queue()
    outbox.put(ingest_pb2.ConnectRequest(hello=ingest_pb2.Hello(
        tenant_id=tenant, asset_id=enrolled.asset_id, agent_credential=enrolled.agent_credential,
        agent_version="1.0.0")))
    stream = ingest.Connect(_requests(outbox), timeout=60)
    try:
        assert next(stream).HasField("welcome")
        order = assets.IsolateAsset(assets_pb2.IsolateAssetRequest(
            asset_id=enrolled.asset_id, justification="ollama exposed on 0.0.0.0", request_id="iso-1"),
            metadata=admin)
        command = next(m.command for m in stream if m.HasField("command"))
        assert command.command_id == order.command.command_id
        assert command.kind == common_pb2.COMMAND_KIND_ISOLATE
        ruleset = "table inet lz { }"
        outbox.put(ingest_pb2.ConnectRequest(command_result=common_pb2.CommandResult(
            command_id=command.command_id, outcome=common_pb2.COMMAND_OUTCOME_APPLIED, ruleset=ruleset,
            ruleset_sha256=hashlib.sha256(ruleset.encode()).hexdigest(), rule_count=1, self_test_passed=True)))
        ack = next(m.ack for m in stream if m.HasField("ack") and m.ack.command_id)
        assert ack.command_id == command.command_id
    finally:
        outbox.put(None)
        stream.cancel()

    deadline = time.monotonic() + 10
    while True:
        asset = assets.GetAsset(assets_pb2.GetAssetRequest(asset_id=enrolled.asset_id), metadata=admin).asset
        if asset.status == common_pb2.ASSET_STATUS_ISOLATED or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert asset.status == common_pb2.ASSET_STATUS_ISOLATED
    events = _custody_once_enforced(assets, enrolled.asset_id, admin)
    assert [e.action for e in events] == ["asset.enrolled", "asset.isolate.requested", "asset.isolate.enforced"]
    for event in events:
        _verify_offline(stack, admin, event.seq, tmp_path)


def _custody_once_enforced(assets: assets_pb2_grpc.AssetServiceStub, asset_id: str,
                           metadata: list[tuple[str, str]]) -> list[common_pb2.LedgerEvent]:
    """The asset's custody log once the sequencer has chained the enforcement event (moments after the result)."""
    def log() -> list[common_pb2.LedgerEvent]:
        events = list(assets.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id),
                                           metadata=metadata).events)
        return events if any(e.action == "asset.isolate.enforced" for e in events) else []

    return until(log, 30, "the enforced custody event chained")


def _verify_offline(stack: Stack, metadata: list[tuple[str, str]], seq: int, where: Path) -> None:
    """Export the proof of one custody event once it is sealed, and check it with lz-verify (no network)."""
    ledger = ledger_pb2_grpc.LedgerServiceStub(grpc.insecure_channel(stack.addresses["ledger"]))
    sealer = sealer_pb2_grpc.SealerServiceStub(grpc.insecure_channel(stack.addresses["sealer"]))
    deadline = time.monotonic() + 30
    while True:
        try:
            proof = ledger.ExportProof(ledger_pb2.ExportProofRequest(seq=seq), metadata=metadata)
            break
        except grpc.RpcError as exc:  # not sealed yet
            assert time.monotonic() < deadline, exc.details()
            sealer.SealNow(sealer_pb2.SealNowRequest(), metadata=metadata)
            time.sleep(0.5)
    keys = sealer.GetVerifierKeys(sealer_pb2.GetVerifierKeysRequest(), metadata=metadata).verifier_keys
    (where / "verifier.keys").write_text("\n".join(keys) + "\n")
    (where / f"{seq}.proof").write_bytes(proof.tlog_proof)
    (where / f"{seq}.entry").write_bytes(proof.entry)
    done = subprocess.run(
        [sys.executable, "-m", "services.tlog.cli", "proof", "--key", str(where / "verifier.keys"),
         "--entry", str(where / f"{seq}.entry"), str(where / f"{seq}.proof")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
