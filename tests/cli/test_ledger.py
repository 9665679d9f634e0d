"""`lz ledger` and `lz seal` against the running stack; proofs and bundles are checked with lz-verify."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Lz, isolate_chained, new_asset
from lifecyclezero.v1 import ledger_pb2, ledger_pb2_grpc

from services.kit import aws
from services.kit.auth import Role
from services.ledger import keys as ledger_keys
from services.ledger import keys as seal_keys
from services.tlog.checkpoint import Checkpoint
from services.tlog.note import Signer
from tests.faults.helpers import Store


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


def _origin(tenant: Any) -> str:
    return f"{tenant.stack.env['LZ_ORIGIN']}/{tenant.tenant}"


def _signer(tenant: Any) -> Signer:
    """The stack's signing key, named for the tenant's log (to forge a validly signed fork)."""
    return Signer((tenant.stack.state_dir / "signing.key").read_text().strip()).renamed(_origin(tenant))


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


def test_ledger_verify_states_its_scope(sealed: Lz) -> None:
    """The default `ledger verify` says it checked the newest checkpoint and did not re-walk sealed history."""
    result = sealed("ledger", "verify")
    assert result.code == 0, result.err
    assert "newest checkpoint 2 verified against the data after it" in result.out
    assert "--full" in result.out


def test_ledger_verify_json_names_mode_and_checkpoints(sealed: Lz) -> None:
    """`ledger verify --json` has the mode that ran and how many checkpoints it checked."""
    data = sealed("ledger", "verify", "--json").json()
    assert (data["mode"], int(data["newest_checkpoint"])) == ("since-checkpoint", 2)
    assert data["checkpoints_checked"] >= 1


def test_ledger_verify_with_the_current_checkpoint_pinned(sealed: Lz, tmp_path: Path) -> None:
    """`ledger verify --checkpoint FILE` with a checkpoint the ledger still holds exits 0 in both modes."""
    pinned = tmp_path / "seen.checkpoint"
    pinned.write_bytes(base64.b64decode(sealed("seal", "now", "--json").json()["checkpoint"]["signed_note"]))
    for mode in ([], ["--full"]):
        result = sealed("ledger", "verify", *mode, "--checkpoint", str(pinned))
        assert result.code == 0, result.out + result.err


def test_ledger_verify_with_a_forked_pin_fails_naming_it(sealed: Lz, new_tenant: Any, tmp_path: Path) -> None:
    """A pinned checkpoint validly signed for the tenant but with another root fails verification, naming its size."""
    pinned = tmp_path / "fork.checkpoint"
    pinned.write_bytes(Checkpoint(_origin(new_tenant), 2, b"\x07" * 32).sign([_signer(new_tenant)]))
    result = sealed("ledger", "verify", "--checkpoint", str(pinned))
    assert result.code == 1, result.out + result.err
    assert "pinned checkpoint 2" in result.out and "fork" in result.out


def test_ledger_verify_with_a_pin_that_does_not_verify_is_exit_2(sealed: Lz, tmp_path: Path) -> None:
    """A pinned file that is not a checkpoint of this tenant is bad input (exit 2, one line)."""
    pinned = tmp_path / "junk.checkpoint"
    pinned.write_text("not a checkpoint\n")
    sealed("ledger", "verify", "--checkpoint", str(pinned)).assert_one_line_error(2)


def test_ledger_verify_of_a_damaged_index_item_names_the_checkpoint(sealed: Lz, new_tenant: Any) -> None:
    """A checkpoint index item without its compact range makes `ledger verify` exit 1 naming the checkpoint."""
    store = Store(new_tenant.stack)
    key = aws.to_item({"PK": seal_keys.seal_pk(new_tenant.tenant), "SK": seal_keys.checkpoint_sk(2)})
    store.ddb.update_item(TableName=store.table, Key=key, UpdateExpression="REMOVE #c",
                          ExpressionAttributeNames={"#c": "compact"})
    for mode in ([], ["--full"]):
        result = sealed("ledger", "verify", *mode)
        assert result.code == 1, result.out + result.err
        assert "checkpoint 2" in result.out and "compact" in result.out and "internal" not in result.out


def test_seal_now_on_a_broken_chain_is_refused_naming_the_seq(sealed: Lz, new_tenant: Any) -> None:
    """`seal now` when the next event does not chain from the last sealed one is refused (exit 1), naming its seq.

    The newest sealed event's bytes are replaced by garbage, so the next honest append chains from the
    garbage: the sealer can never sign that event, and says which one.
    """
    store = Store(new_tenant.stack)
    key = aws.to_item({"PK": ledger_keys.ledger_pk(new_tenant.tenant), "SK": ledger_keys.event_sk(2)})
    store.ddb.update_item(TableName=store.table, Key=key, UpdateExpression="SET canonical = :g",
                          ExpressionAttributeValues={":g": {"B": b"garbage"}})
    # Appended by the ledger service, which reads the tail from storage: the assets sequencer that wrote
    # events 1-2 keeps the tail it wrote in memory and would still chain from the honest bytes.
    ledger_pb2_grpc.LedgerServiceStub(new_tenant.channel("ledger")).AppendEvents(
        ledger_pb2.AppendEventsRequest(events=[ledger_pb2.EventInput(action="test.append", subject="asset:x")]),
        metadata=new_tenant.metadata(Role.OPERATOR), timeout=30)
    result = sealed("seal", "now")
    assert result.code == 1, result.out + result.err
    assert "refused" in result.err and "seq 3" in result.err
