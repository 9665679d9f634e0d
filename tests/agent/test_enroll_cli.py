"""`lz-agent enroll`: the secret never on the command line, and never in plaintext to a remote address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from agent.enroll import SECRET_ENV, load_identity
from services.kit.devstack import Stack
from tests.ingest.agents import create_tenant, enroll


def _lz_agent(*args: str, state: Path, stdin: str = "",
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], input=stdin, capture_output=True, text=True, timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()), "LZ_AGENT_STATE_DIR": str(state), **(env or {})},
    )


def test_enroll_reads_the_secret_from_standard_input(stack: Stack, tmp_path: Path) -> None:
    """`--secret-file -` takes the secret from standard input and the host enrolls."""
    tenant = create_tenant(stack)
    done = _lz_agent("enroll", "--tenant", tenant.tenant, "--control-plane", stack.addresses["ingest"],
                     "--secret-file", "-", state=tmp_path, stdin=tenant.enrollment_secret + "\n")
    identity = load_identity(tmp_path)
    assert done.returncode == 0, done.stderr
    assert identity is not None and identity.tenant_id == tenant.tenant


def test_enroll_again_rotates_with_the_stored_credential(stack: Stack, tmp_path: Path) -> None:
    """A second `lz-agent enroll` (secret in the environment) keeps the asset and gets a new credential."""
    tenant = create_tenant(stack)
    args = ("enroll", "--tenant", tenant.tenant, "--control-plane", stack.addresses["ingest"])
    env = {SECRET_ENV: tenant.enrollment_secret}
    _lz_agent(*args, state=tmp_path, env=env)
    first = load_identity(tmp_path)
    done = _lz_agent(*args, state=tmp_path, env=env)
    second = load_identity(tmp_path)
    assert done.returncode == 0, done.stderr
    assert first is not None and second is not None
    assert second.asset_id == first.asset_id and second.agent_credential != first.agent_credential


def test_the_secret_is_not_accepted_as_an_argument(tmp_path: Path) -> None:
    """`--secret VALUE` is a usage error (exit 2): a process's arguments are visible to every local user."""
    done = _lz_agent("enroll", "--tenant", "t", "--control-plane", "127.0.0.1:1", "--secret", "s" * 43, state=tmp_path)
    assert done.returncode == 2


def test_enroll_without_a_secret_names_the_ways_to_give_one(tmp_path: Path) -> None:
    """Without a secret file or variable, enroll exits 2 with one line naming both."""
    done = _lz_agent("enroll", "--tenant", "t", "--control-plane", "127.0.0.1:1", state=tmp_path)
    assert done.returncode == 2
    assert "--secret-file" in done.stderr and SECRET_ENV in done.stderr


def test_plaintext_to_a_remote_control_plane_is_refused(tmp_path: Path) -> None:
    """Without TLS, enrolling with a control plane that is not loopback is refused before any connection."""
    done = _lz_agent("enroll", "--tenant", "t", "--control-plane", "192.0.2.10:50051", state=tmp_path,
                     env={SECRET_ENV: "s" * 43})
    assert done.returncode == 2
    assert "refusing plaintext" in done.stderr and "--insecure" in done.stderr


def test_a_reinstalled_host_comes_back_with_an_operators_code(stack: Stack, tmp_path: Path) -> None:
    """With no stored identity, `--asset` and `--reenroll-code-file` re-enroll the revoked asset under its old id."""
    tenant = create_tenant(stack)
    first = enroll(stack.addresses["ingest"], tenant)
    with grpc.insecure_channel(stack.addresses["ingest-internal"]) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).RevokeAgent(
            ingest_pb2.RevokeAgentRequest(asset_id=first.asset_id), metadata=tenant.admin(), timeout=10)
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        code = assets_pb2_grpc.AssetServiceStub(channel).ApproveReEnrollment(
            assets_pb2.ApproveReEnrollmentRequest(asset_id=first.asset_id, reason="disk replaced"),
            metadata=tenant.admin(), timeout=10).reenroll_code
    (tmp_path / "code").write_text(code)
    done = _lz_agent("enroll", "--tenant", tenant.tenant, "--control-plane", stack.addresses["ingest"],
                     "--asset", first.asset_id, "--reenroll-code-file", str(tmp_path / "code"), state=tmp_path / "s",
                     env={SECRET_ENV: tenant.enrollment_secret})
    identity = load_identity(tmp_path / "s")
    assert done.returncode == 0, done.stderr
    assert identity is not None and identity.asset_id == first.asset_id
