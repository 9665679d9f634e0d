"""Failures are one `lz: error:` line with the right exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli_helpers import Lz, closed_port

from services.kit.auth import Role


def test_service_down_is_one_line_exit_2(admin: Lz) -> None:
    """An address nothing listens on gives one line naming the service and address, exit 2."""
    address = closed_port()
    line = admin("assets", "list", "--assets", address).assert_one_line_error(2)
    assert "assets" in line and address in line


def test_service_down_in_json_mode_keeps_stdout_empty(admin: Lz) -> None:
    """With --json an unreachable service still fails on stderr only."""
    result = admin("seal", "status", "--json", "--sealer", closed_port())
    result.assert_one_line_error(2)
    assert result.out == ""


def test_ledger_down_is_one_line_exit_2(admin: Lz) -> None:
    """An unreachable ledger service during verify is exit 2."""
    admin("ledger", "verify", "--ledger", closed_port()).assert_one_line_error(2)


def test_bad_token_is_exit_2(lz: Lz, new_tenant: Any) -> None:
    """A token the service does not know is one line and exit 2."""
    bogus = f"lz1:{new_tenant.tenant}:0123456789abcdef:{'x' * 43}"
    line = lz("assets", "list", token=bogus).assert_one_line_error(2)
    assert "token" in line or "credential" in line


def test_garbage_token_is_exit_2(lz: Lz) -> None:
    """A token without the operator token's shape is exit 2."""
    lz("assets", "list", "--token", "garbage").assert_one_line_error(2)


def test_missing_token_is_exit_2(lz: Lz) -> None:
    """With no token anywhere the CLI says how to provide one, exit 2."""
    line = lz("assets", "list").assert_one_line_error(2)
    assert "--token" in line


def test_unknown_asset_is_exit_1(admin: Lz) -> None:
    """An unknown asset is exit 1 with one line."""
    admin("assets", "show", "ghost-asset").assert_one_line_error(1)


def test_invalid_argument_shows_field_violation(admin: Lz) -> None:
    """An invalid asset id is exit 2 and the line names the offending field."""
    line = admin("assets", "show", "bad#id").assert_one_line_error(2)
    assert "asset_id" in line


def test_permission_denied_is_exit_2(lz: Lz, new_tenant: Any) -> None:
    """A viewer listing tokens is denied: exit 2."""
    lz("token", "list", token=new_tenant.tokens[Role.VIEWER]).assert_one_line_error(2)


def test_malformed_state_file_is_exit_2(admin: Lz) -> None:
    """A state file that is not JSON is one line naming it, exit 2."""
    (admin.cwd / ".lz" / "stack.json").write_text("{not json")
    line = admin("assets", "list").assert_one_line_error(2)
    assert "stack.json" in line


def test_state_file_with_wrong_shape_is_exit_2(admin: Lz) -> None:
    """A state file whose endpoints are not strings is exit 2."""
    (admin.cwd / ".lz" / "stack.json").write_text('{"endpoints": {"assets": 5}}')
    admin("assets", "list").assert_one_line_error(2)


def test_missing_endpoint_file_is_exit_2(admin: Lz, tmp_path: Path) -> None:
    """An --endpoint-file that does not exist is exit 2."""
    admin("assets", "list", "--endpoint-file", str(tmp_path / "absent.json")).assert_one_line_error(2)


def test_malformed_config_file_is_exit_2(admin: Lz) -> None:
    """A config file that is not TOML is one line naming it, exit 2."""
    admin.config_path.parent.mkdir(parents=True)
    admin.config_path.write_text("token = = broken")
    line = admin("assets", "list").assert_one_line_error(2)
    assert "config" in line


def test_malformed_tls_ca_is_exit_2(admin: Lz, tmp_path: Path) -> None:
    """A --tls-ca file that is not PEM is exit 2."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    admin("assets", "list", "--tls-ca", str(ca)).assert_one_line_error(2)


def test_tls_cert_without_key_is_exit_2(admin: Lz, tmp_path: Path) -> None:
    """mTLS needs both --tls-cert and --tls-key."""
    admin("assets", "list", "--tls-cert", str(tmp_path / "c.pem")).assert_one_line_error(2)


def test_tls_against_plaintext_server_is_exit_2(admin: Lz) -> None:
    """TLS to a plaintext server fails the handshake: exit 2, one line."""
    admin("assets", "list", "--tls", "--timeout", "5").assert_one_line_error(2)


def test_unknown_command_is_usage_error(lz_offline: Lz) -> None:
    """An unknown command is exit 2 with argparse's usage message."""
    result = lz_offline("frobnicate")
    assert result.code == 2
    assert "usage:" in result.err


def test_no_stack_no_endpoints_is_exit_2(lz_offline: Lz) -> None:
    """Without a state file or any address the CLI explains how to name the service."""
    line = lz_offline("assets", "list", "--token", "t").assert_one_line_error(2)
    assert "--assets" in line


def test_plaintext_to_a_non_loopback_address_is_refused(admin: Lz) -> None:
    """Without TLS, an address that is not loopback is refused before any connection: one line, exit 2."""
    line = admin("assets", "list", "--assets", "192.0.2.10:50051").assert_one_line_error(2)
    assert "refusing plaintext" in line and "192.0.2.10:50051" in line and "--insecure" in line
