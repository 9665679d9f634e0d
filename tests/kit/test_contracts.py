"""The committed generated code matches the protos, and the contracts follow the house rules."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from lifecyclezero.v1 import assets_pb2, common_pb2, ingest_pb2, ledger_pb2, sealer_pb2

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "protos"
GENERATED = PROTO_DIR / "lifecyclezero" / "v1"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """Regenerating the code from the protos gives exactly the committed files (run `make proto`)."""
    protos = sorted(str(p) for p in GENERATED.glob("*.proto"))
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--mypy_out={tmp_path}", f"--mypy_grpc_out={tmp_path}", *protos],
        check=True, capture_output=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    fresh = tmp_path / "lifecyclezero" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    committed = sorted(p.name for p in GENERATED.iterdir() if p.suffix in {".py", ".pyi"} and p.name != "__init__.py")
    assert names == committed
    _, mismatch, errors = filecmp.cmpfiles(fresh, GENERATED, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code: {mismatch + errors}; run `make proto`"


def test_every_rpc_has_its_own_request_and_response() -> None:
    """Each RPC takes <Rpc>Request and returns <Rpc>Response (AIP-style, buf STANDARD)."""
    for module in (assets_pb2, ingest_pb2, ledger_pb2, sealer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert method.input_type.name == f"{method.name}Request"
                assert method.output_type.name == f"{method.name}Response"


def test_mutating_rpcs_carry_a_request_id() -> None:
    """Calls that create or change state carry request_id so retries are safe."""
    mutating = ("Create", "Revoke", "Rotate", "Isolate", "Release", "Append", "Enroll", "SealNow")
    for module in (assets_pb2, ingest_pb2, ledger_pb2, sealer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.name.startswith(mutating):
                    assert "request_id" in method.input_type.fields_by_name, method.full_name


def test_list_rpcs_are_paged() -> None:
    """Every List RPC takes page_size and page_token and returns next_page_token."""
    for module in (assets_pb2, ledger_pb2, sealer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.name.startswith("List"):
                    assert {"page_size", "page_token"} <= set(method.input_type.fields_by_name)
                    assert "next_page_token" in method.output_type.fields_by_name


def test_enums_start_with_unspecified() -> None:
    """Every enum's zero value is <ENUM>_UNSPECIFIED."""
    for module in (common_pb2, assets_pb2, ledger_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values_by_number[0].name.endswith("_UNSPECIFIED")
