"""`lz ledger` and `lz seal` against the running stack; proofs and bundles are checked with lz-verify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import Lz, isolate_chained, new_asset


@pytest.fixture
def sealed(admin: Lz) -> Lz:
    """A tenant with custody events (two isolations), sealed into a checkpoint."""
    for _ in range(2):
        isolate_chained(admin, new_asset(admin), "ledger test")
    result = admin("seal", "now")
    assert result.code == 0, result.err
    return admin


def _key_file(cli: Lz, tmp_path: Path) -> Path:
    result = cli("ledger", "key")
    assert result.code == 0, result.err
    path = tmp_path / "verifier.keys"
    path.write_text(result.out)
    return path


def _lz_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.tlog.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_seal_status_table(sealed: Lz) -> None:
    """`seal status` says how far the ledger is sealed."""
    result = sealed("seal", "status")
    assert result.code == 0, result.err
    assert "sealed through #2" in result.out


def test_seal_status_json(sealed: Lz) -> None:
    """`seal status --json` has sealed_through, pending and lag_seconds."""
    data = sealed("seal", "status", "--json").json()
    assert {"sealed_through", "pending", "lag_seconds"} <= set(data)
    assert int(data["sealed_through"]) == 2
    assert int(data["pending"]) == 0


def test_seal_now_table(admin: Lz) -> None:
    """`seal now` seals the pending events and names the new tree size."""
    isolate_chained(admin, new_asset(admin))
    result = admin("seal", "now")
    assert result.code == 0, result.err
    assert "sealed through #1" in result.out


def test_seal_now_json(admin: Lz) -> None:
    """`seal now --json` has the checkpoint with its tree size and signed note."""
    isolate_chained(admin, new_asset(admin))
    data = admin("seal", "now", "--json").json()
    assert int(data["checkpoint"]["tree_size"]) == 1
    assert data["checkpoint"]["signed_note"]


def test_ledger_verify_ok(sealed: Lz) -> None:
    """`ledger verify` of an intact ledger says so and exits 0."""
    result = sealed("ledger", "verify")
    assert result.code == 0, result.err
    assert "verified" in result.out


def test_ledger_verify_full_json(sealed: Lz) -> None:
    """`ledger verify --full --json` has ok, first_bad_seq and reason."""
    data = sealed("ledger", "verify", "--full", "--json").json()
    assert {"ok", "first_bad_seq", "reason"} <= set(data)
    assert data["ok"] is True
    assert int(data["first_bad_seq"]) == 0


def test_ledger_proof_writes_proof_and_entry(sealed: Lz, tmp_path: Path) -> None:
    """`ledger proof SEQ -o FILE` writes FILE and FILE.entry, which lz-verify accepts offline."""
    target = tmp_path / "event-1.proof"
    result = sealed("ledger", "proof", "1", "-o", str(target))
    assert result.code == 0, result.err
    assert f"{target}.entry" in result.out
    checked = _lz_verify("proof", "--key", str(_key_file(sealed, tmp_path)), "--entry", f"{target}.entry",
                         str(target))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ledger_proof_json(sealed: Lz, tmp_path: Path) -> None:
    """`ledger proof --json` names both files it wrote."""
    target = tmp_path / "p"
    data = sealed("ledger", "proof", "2", "-o", str(target), "--json").json()
    assert data["proof_file"] == str(target)
    assert data["entry_file"] == f"{target}.entry"
    assert target.read_bytes().startswith(b"c2sp.org/tlog-proof@v1")
    assert Path(f"{target}.entry").stat().st_size > 0


def test_ledger_proof_of_unknown_seq_is_exit_1(sealed: Lz, tmp_path: Path) -> None:
    """A proof for an event that does not exist is exit 1."""
    sealed("ledger", "proof", "999", "-o", str(tmp_path / "x")).assert_one_line_error(1)


def test_ledger_export_writes_a_verifiable_bundle(sealed: Lz, tmp_path: Path) -> None:
    """`ledger export DIR` writes a bundle that lz-verify accepts offline."""
    bundle = tmp_path / "bundle"
    result = sealed("ledger", "export", str(bundle))
    assert result.code == 0, result.err
    assert (bundle / "manifest.json").is_file()
    checked = _lz_verify("bundle", "--key", str(_key_file(sealed, tmp_path)), str(bundle))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ledger_export_json(sealed: Lz, tmp_path: Path) -> None:
    """`ledger export --json` lists the files it wrote."""
    data = sealed("ledger", "export", str(tmp_path / "b"), "--json").json()
    assert "manifest.json" in data["files"]
    assert data["bytes"] > 0


def test_ledger_export_refuses_non_empty_dir(admin: Lz, tmp_path: Path) -> None:
    """`ledger export` into a non-empty directory is refused with exit 2 and touches nothing."""
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    admin("ledger", "export", str(target)).assert_one_line_error(2)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_ledger_key_prints_verifier_keys(sealed: Lz) -> None:
    """`ledger key` prints verifier key strings, one per line."""
    result = sealed("ledger", "key")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines and all("+" in line for line in lines)


def test_ledger_key_json(sealed: Lz) -> None:
    """`ledger key --json` has verifier_keys and origin."""
    data = sealed("ledger", "key", "--json").json()
    assert data["verifier_keys"]
    assert "origin" in data
