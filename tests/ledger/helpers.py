"""Shared helpers of the ledger and sealer tests: stubs, appends and lz-verify as a subprocess."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from lifecyclezero.v1 import ledger_pb2, ledger_pb2_grpc, sealer_pb2, sealer_pb2_grpc

from services.kit.auth import Role


def stubs(tenant: Any) -> tuple[ledger_pb2_grpc.LedgerServiceStub, sealer_pb2_grpc.SealerServiceStub]:
    return (
        ledger_pb2_grpc.LedgerServiceStub(tenant.channel("ledger")),
        sealer_pb2_grpc.SealerServiceStub(tenant.channel("sealer")),
    )


def event(action: str = "test.note", subject: str = "", **payload: Any) -> ledger_pb2.EventInput:
    struct = struct_pb2.Struct()
    struct.update(payload)
    return ledger_pb2.EventInput(action=action, subject=subject, payload=struct)


def append(tenant: Any, count: int, batch: int = 50, action: str = "test.note") -> list[int]:
    ledger, _ = stubs(tenant)
    seqs: list[int] = []
    while len(seqs) < count:
        n = min(batch, count - len(seqs))
        reply = ledger.AppendEvents(
            ledger_pb2.AppendEventsRequest(events=[event(action, n=len(seqs) + i) for i in range(n)]),
            metadata=tenant.metadata(Role.OPERATOR),
        )
        seqs.extend(reply.seqs)
    return seqs


def seal_now(tenant: Any) -> Any:
    _, sealer = stubs(tenant)
    return sealer.SealNow(sealer_pb2.SealNowRequest(), metadata=tenant.metadata(Role.OPERATOR)).checkpoint


def verifier_keys(tenant: Any) -> list[str]:
    _, sealer = stubs(tenant)
    return list(sealer.GetVerifierKeys(sealer_pb2.GetVerifierKeysRequest(), metadata=tenant.metadata()).verifier_keys)


def verify_ledger(tenant: Any, mode: int = ledger_pb2.VERIFY_MODE_FULL) -> ledger_pb2.VerifyLedgerResponse:
    ledger, _ = stubs(tenant)
    return ledger.VerifyLedger(ledger_pb2.VerifyLedgerRequest(mode=mode), metadata=tenant.metadata(), timeout=120)


def export_bundle(tenant: Any, directory: Path) -> Path:
    """Write the streamed bundle files under `directory` and return it."""
    ledger, _ = stubs(tenant)
    handles: dict[str, Any] = {}
    for part in ledger.ExportBundle(ledger_pb2.ExportBundleRequest(), metadata=tenant.metadata(), timeout=120):
        path = directory / part.path
        if part.path not in handles:
            path.parent.mkdir(parents=True, exist_ok=True)
            handles[part.path] = path.open("wb")
        handles[part.path].write(part.chunk)
        if part.last_chunk:
            handles.pop(part.path).close()
    assert not handles
    return directory


def lz_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.tlog.cli", *args], capture_output=True, text=True, timeout=120
    )


def wait_sealed(tenant: Any, size: int, timeout: float = 60.0) -> sealer_pb2.GetSealStatusResponse:
    _, sealer = stubs(tenant)
    deadline = time.monotonic() + timeout
    while True:
        status = sealer.GetSealStatus(sealer_pb2.GetSealStatusRequest(), metadata=tenant.metadata())
        if status.sealed_through >= size:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"not sealed through {size} within {timeout}s: {status}")
        time.sleep(0.2)
