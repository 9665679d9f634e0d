"""The CLI against in-process fakes of the contracts: output shapes and failure paths that the real
services cannot be made to produce on demand (a failed verification, an unsafe bundle path,
UNIMPLEMENTED, BadRequest details, alerts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cli_helpers import Lz, clean_env
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from lifecyclezero.v1 import (
    assets_pb2,
    assets_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    sealer_pb2,
    sealer_pb2_grpc,
)

TOKEN = "lz1:fake:0123456789abcdef:" + "s" * 43


class FakeAssets(assets_pb2_grpc.AssetServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[tuple[str, str]] = []

    def ListAlerts(self, request: Any, context: Any) -> Any:
        self.metadata = list(context.invocation_metadata())
        alerts = [
            common_pb2.Alert(asset_id="ws-1", rule_id="exposed-engine", severity=common_pb2.SEVERITY_CRITICAL,
                             summary="Ollama listens on 0.0.0.0:11434"),
            common_pb2.Alert(asset_id="ws-2", rule_id="unlicensed-model", severity=common_pb2.SEVERITY_WARNING,
                             summary="model without a license"),
        ]
        wanted = [a for a in alerts if a.severity >= request.min_severity and request.asset_id in ("", a.asset_id)]
        return assets_pb2.ListAlertsResponse(alerts=wanted)

    def GetAsset(self, request: Any, context: Any) -> Any:
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="asset_id", description="must not be reserved")])
        detail = any_pb2.Any()
        detail.Pack(bad)
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="asset_id: bad", details=[detail])
        context.abort_with_status(rpc_status.to_status(status))


class FakeLedger(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self) -> None:
        self.verify_ok = True
        self.bundle: list[ledger_pb2.ExportBundleResponse] = [
            ledger_pb2.ExportBundleResponse(path="manifest.json", chunk=b'{"format":', last_chunk=False),
            ledger_pb2.ExportBundleResponse(path="manifest.json", chunk=b'"x"}', last_chunk=True),
            ledger_pb2.ExportBundleResponse(path="checkpoints/3.checkpoint", chunk=b"note", last_chunk=True),
        ]
        self.fail_after_bundle = False

    def VerifyLedger(self, request: Any, context: Any) -> Any:
        if self.verify_ok:
            return ledger_pb2.VerifyLedgerResponse(ok=True, events_checked=3, checkpoints_checked=1, tree_size=3)
        return ledger_pb2.VerifyLedgerResponse(ok=False, first_bad_seq=2, reason="hash of event 2 does not match")

    def WatchFullVerification(self, request: Any, context: Any) -> Iterator[Any]:
        yield ledger_pb2.WatchFullVerificationResponse(progress=ledger_pb2.VerificationProgress(chain_length=3))
        yield ledger_pb2.WatchFullVerificationResponse(result=self.VerifyLedger(request, context))

    def ExportProof(self, request: Any, context: Any) -> Any:
        if request.seq > 3:
            context.abort(grpc.StatusCode.NOT_FOUND, f"event {request.seq} does not exist")
        return ledger_pb2.ExportProofResponse(
            tlog_proof=b"c2sp.org/tlog-proof@v1\nindex 0\n", entry=b'{"seq":1}',
            checkpoint=common_pb2.Checkpoint(tree_size=3), event=common_pb2.LedgerEvent(seq=request.seq))

    def ExportBundle(self, request: Any, context: Any) -> Iterator[Any]:
        yield from self.bundle
        if self.fail_after_bundle:
            context.abort(grpc.StatusCode.UNAVAILABLE, "storage went away")


class FakeSealer(sealer_pb2_grpc.SealerServiceServicer):
    def GetSealStatus(self, request: Any, context: Any) -> Any:
        return sealer_pb2.GetSealStatusResponse(sealed_through=3, pending=2, lag_seconds=4.5, ledger_size=5)

    def GetVerifierKeys(self, request: Any, context: Any) -> Any:
        return sealer_pb2.GetVerifierKeysResponse(verifier_keys=["example.org/log+0123abcd+AAAA"],
                                                  origin="example.org/log/fake")


class Fakes:
    def __init__(self) -> None:
        self.assets = FakeAssets()
        self.ledger = FakeLedger()
        self.sealer = FakeSealer()


@pytest.fixture
def fakes() -> Iterator[tuple[Fakes, str]]:
    fakes = Fakes()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    assets_pb2_grpc.add_AssetServiceServicer_to_server(fakes.assets, server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(fakes.ledger, server)
    sealer_pb2_grpc.add_SealerServiceServicer_to_server(fakes.sealer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fakes, f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.fixture
def fake_lz(fakes: tuple[Fakes, str], tmp_path: Path) -> Lz:
    _, address = fakes
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    (work / ".lz").mkdir(parents=True)
    state = {"endpoints": {"assets": address, "ledger": address, "sealer": address}, "origin": "fake"}
    (work / ".lz" / "stack.json").write_text(json.dumps(state))
    return Lz(work, {**clean_env(tmp_path / "home"), "LZ_TOKEN": TOKEN})


def test_unimplemented_rpc_is_one_line_exit_2(fake_lz: Lz) -> None:
    """An RPC the server does not implement yet is one line naming it, exit 2."""
    line = fake_lz("assets", "list").assert_one_line_error(2)
    assert "does not implement ListAssets yet" in line


def test_bad_request_details_are_shown(fake_lz: Lz) -> None:
    """BadRequest field violations from grpc-status-details-bin appear in the error line."""
    line = fake_lz("assets", "show", "ws-1").assert_one_line_error(2)
    assert "asset_id: must not be reserved" in line


def test_token_is_sent_as_bearer(fake_lz: Lz, fakes: tuple[Fakes, str]) -> None:
    """The operator token travels as `authorization: Bearer <token>`."""
    assert fake_lz("alerts", "list").code == 0
    assert ("authorization", f"Bearer {TOKEN}") in fakes[0].assets.metadata


def test_alerts_table_uses_short_names(fake_lz: Lz) -> None:
    """Alerts print with short lower-case severities in the table."""
    result = fake_lz("alerts", "list")
    assert result.code == 0, result.err
    assert "critical" in result.out and "exposed-engine" in result.out
    assert "SEVERITY_CRITICAL" not in result.out


def test_alerts_json_has_contract_keys(fake_lz: Lz) -> None:
    """Alerts in JSON have asset_id, severity (proto name) and rule_id."""
    data = fake_lz("alerts", "list", "--severity", "critical", "--json").json()
    assert data["alerts"] == [
        {"asset_id": "ws-1", "rule_id": "exposed-engine", "severity": "SEVERITY_CRITICAL",
         "summary": "Ollama listens on 0.0.0.0:11434", "heartbeat_seq": 0}
    ]


def test_verify_failure_is_exit_1(fake_lz: Lz, fakes: tuple[Fakes, str]) -> None:
    """A ledger that does not verify prints where it broke and exits 1."""
    fakes[0].ledger.verify_ok = False
    result = fake_lz("ledger", "verify", "--full")
    assert result.code == 1
    assert "FAILED at #2" in result.out


def test_verify_failure_json_is_exit_1(fake_lz: Lz, fakes: tuple[Fakes, str]) -> None:
    """`ledger verify --json` of a broken ledger has ok false, first_bad_seq and reason, exit 1."""
    fakes[0].ledger.verify_ok = False
    result = fake_lz("ledger", "verify", "--json")
    assert result.code == 1
    data = json.loads(result.out)
    assert data["ok"] is False and data["first_bad_seq"] == 2 and "event 2" in data["reason"]


def test_verify_ok_json(fake_lz: Lz) -> None:
    """`ledger verify --json` of a sound ledger has ok true and exits 0."""
    data = fake_lz("ledger", "verify", "--json").json()
    assert data["ok"] is True and data["first_bad_seq"] == 0 and data["reason"] == ""


def test_proof_writes_both_files(fake_lz: Lz, tmp_path: Path) -> None:
    """`ledger proof` writes the proof to FILE and the entry to FILE.entry and says so."""
    target = tmp_path / "proof.txt"
    result = fake_lz("ledger", "proof", "1", "-o", str(target))
    assert result.code == 0, result.err
    assert target.read_bytes().startswith(b"c2sp.org/tlog-proof@v1")
    assert Path(f"{target}.entry").read_bytes() == b'{"seq":1}'
    assert str(target) in result.out and f"{target}.entry" in result.out


def test_proof_of_missing_event_is_exit_1(fake_lz: Lz, tmp_path: Path) -> None:
    """NOT_FOUND from ExportProof is exit 1 and no file is written."""
    fake_lz("ledger", "proof", "9", "-o", str(tmp_path / "p")).assert_one_line_error(1)
    assert not (tmp_path / "p").exists()


def test_export_assembles_chunked_files(fake_lz: Lz, tmp_path: Path) -> None:
    """`ledger export` joins a file's chunks and creates subdirectories."""
    result = fake_lz("ledger", "export", str(tmp_path / "b"), "--json")
    assert result.code == 0, result.err
    assert (tmp_path / "b" / "manifest.json").read_text() == '{"format":"x"}'
    assert (tmp_path / "b" / "checkpoints" / "3.checkpoint").read_bytes() == b"note"
    assert result.json()["files"] == ["manifest.json", "checkpoints/3.checkpoint"]


def test_export_refuses_unsafe_path(fake_lz: Lz, fakes: tuple[Fakes, str], tmp_path: Path) -> None:
    """A bundle path that climbs out of DIR stops the export and leaves nothing behind."""
    fakes[0].ledger.bundle.append(ledger_pb2.ExportBundleResponse(path="../evil", chunk=b"x", last_chunk=True))
    fake_lz("ledger", "export", str(tmp_path / "b")).assert_one_line_error(2)
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "b").exists()


def test_export_failure_midway_cleans_up(fake_lz: Lz, fakes: tuple[Fakes, str], tmp_path: Path) -> None:
    """A stream that fails midway is exit 2 and the empty directory stays empty, ready for a retry."""
    fakes[0].ledger.fail_after_bundle = True
    target = tmp_path / "b"
    target.mkdir()
    fake_lz("ledger", "export", str(target)).assert_one_line_error(2)
    assert list(target.iterdir()) == []


def test_export_into_a_file_is_exit_2(fake_lz: Lz, tmp_path: Path) -> None:
    """Exporting onto an existing file is refused."""
    (tmp_path / "f").write_text("x")
    fake_lz("ledger", "export", str(tmp_path / "f")).assert_one_line_error(2)


def test_seal_status_json_keys(fake_lz: Lz) -> None:
    """`seal status --json` has sealed_through, pending and lag_seconds."""
    data = fake_lz("seal", "status", "--json").json()
    assert data == {"sealed_through": 3, "pending": 2, "lag_seconds": 4.5, "ledger_size": 5}


def test_seal_status_table(fake_lz: Lz) -> None:
    """`seal status` reads "sealed through #N, M pending"."""
    result = fake_lz("seal", "status")
    assert "sealed through #3, 2 pending" in result.out


def test_ledger_key_prints_keys_only(fake_lz: Lz) -> None:
    """`ledger key` prints exactly the key strings on stdout, ready for a key file."""
    result = fake_lz("ledger", "key")
    assert result.out == "example.org/log+0123abcd+AAAA\n"


def test_unreachable_sealer_json_is_exit_2(fake_lz: Lz, fakes: tuple[Fakes, str]) -> None:
    """The `--sealer` flag overrides the state file."""
    fake_lz("seal", "status", "--sealer", "127.0.0.1:9").assert_one_line_error(2)
