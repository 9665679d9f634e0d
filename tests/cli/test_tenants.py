"""`lz tenant`, `lz token`, `lz enroll-secret` and `lz login` against the running stack."""

from __future__ import annotations

import secrets
import stat
from typing import Any

from cli_helpers import Lz

from services.kit.auth import Role


def _tenant_id() -> str:
    return f"t-cli-{secrets.token_hex(4)}"


def test_tenant_create_prints_admin_token_and_secret(lz: Lz) -> None:
    """Creating a tenant with the state file's bootstrap token prints the admin token and enrollment secret."""
    tenant = _tenant_id()
    result = lz("tenant", "create", tenant, "--name", "Acme Corp")
    assert result.code == 0, result.err
    assert tenant in result.out
    assert f"lz1:{tenant}:" in result.out
    assert "enrollment secret" in result.out
    assert "shown once" in result.err


def test_tenant_create_json_has_tokens(lz: Lz) -> None:
    """`tenant create --json` has the tenant, the admin token and the enrollment secret under proto names."""
    tenant = _tenant_id()
    data = lz("tenant", "create", tenant, "--json").json()
    assert data["tenant"]["tenant_id"] == tenant
    assert data["admin_token"].startswith(f"lz1:{tenant}:")
    assert data["enrollment_secret"]


def test_tenant_create_save_stores_admin_token_privately(lz: Lz) -> None:
    """`tenant create --save` stores the admin token in a 0600 config file that later commands use."""
    tenant = _tenant_id()
    data = lz("tenant", "create", tenant, "--save", "--json").json()
    assert stat.S_IMODE(lz.config_path.stat().st_mode) == 0o600
    assert data["admin_token"] in lz.config_path.read_text()
    listed = lz("token", "list", "--json")
    assert listed.code == 0, listed.err


def test_tenant_create_with_wrong_bootstrap_token_fails(lz: Lz) -> None:
    """A wrong bootstrap token is one error line and exit 2."""
    result = lz("tenant", "create", _tenant_id(), "--bootstrap-token", "not-the-bootstrap-token")
    result.assert_one_line_error(2)


def test_token_create_prints_the_token_once(admin: Lz, new_tenant: Any) -> None:
    """`token create` prints the new token, which then authenticates."""
    result = admin("token", "create", "--role", "viewer", "--description", "ci reader")
    assert result.code == 0, result.err
    token = next(line for line in result.out.splitlines() if line.startswith("lz1:"))
    assert admin("assets", "list", token=token).code == 0


def test_token_create_json(admin: Lz) -> None:
    """`token create --json` has the token and its info with the role's proto name."""
    data = admin("token", "create", "--role", "operator", "--json").json()
    assert data["token"].startswith("lz1:")
    assert data["token_info"]["role"] == "ROLE_OPERATOR"
    assert data["token_info"]["token_id"]


def test_token_list_shows_tokens(admin: Lz, new_tenant: Any) -> None:
    """`token list` shows every token of the tenant with its short role name."""
    created = admin("token", "create", "--role", "viewer", "--description", "listed", "--json").json()
    result = admin("token", "list")
    assert result.code == 0, result.err
    assert created["token_info"]["token_id"] in result.out
    assert "viewer" in result.out


def test_token_list_json(admin: Lz) -> None:
    """`token list --json` lists token infos under `tokens`."""
    data = admin("token", "list", "--json").json()
    assert {"token_id", "role", "revoked"} <= set(data["tokens"][0])


def test_token_revoke_stops_the_token(admin: Lz) -> None:
    """A revoked token is rejected afterwards with exit 2."""
    created = admin("token", "create", "--role", "viewer", "--json").json()
    result = admin("token", "revoke", created["token_info"]["token_id"])
    assert result.code == 0, result.err
    admin("assets", "list", token=created["token"]).assert_one_line_error(2)


def test_token_revoke_json(admin: Lz) -> None:
    """`token revoke --json` reports the token as revoked."""
    created = admin("token", "create", "--role", "viewer", "--json").json()
    data = admin("token", "revoke", created["token_info"]["token_id"], "--json").json()
    assert data["token_info"]["revoked"] is True


def test_token_revoke_unknown_is_not_found(admin: Lz) -> None:
    """Revoking a token id that does not exist is exit 1."""
    admin("token", "revoke", "0123456789abcdef").assert_one_line_error(1)


def test_token_create_needs_admin(lz: Lz, new_tenant: Any) -> None:
    """A viewer may not create tokens: one line, exit 2."""
    line = lz("token", "create", "--role", "admin", token=new_tenant.tokens[Role.VIEWER]).assert_one_line_error(2)
    assert "permission denied" in line


def test_enroll_secret_show_prints_fingerprint(lz: Lz) -> None:
    """`enroll-secret show` prints the fingerprint of the secret issued with the tenant."""
    created = lz("tenant", "create", _tenant_id(), "--json").json()
    result = lz("enroll-secret", "show", token=created["admin_token"])
    assert result.code == 0, result.err
    assert "fingerprint" in result.out
    assert created["enrollment_secret"] not in result.out


def test_enroll_secret_show_json(lz: Lz) -> None:
    """`enroll-secret show --json` has the fingerprint."""
    created = lz("tenant", "create", _tenant_id(), "--json").json()
    data = lz("enroll-secret", "show", "--json", token=created["admin_token"]).json()
    assert data["fingerprint"]


def test_enroll_secret_rotate_issues_a_new_secret(lz: Lz) -> None:
    """`enroll-secret rotate` shows a new secret whose fingerprint `show` then reports."""
    created = lz("tenant", "create", _tenant_id(), "--json").json()
    token = created["admin_token"]
    rotated = lz("enroll-secret", "rotate", "--json", token=token).json()
    assert rotated["enrollment_secret"] and rotated["enrollment_secret"] != created["enrollment_secret"]
    shown = lz("enroll-secret", "show", "--json", token=token).json()
    assert shown["fingerprint"] == rotated["fingerprint"]


def test_enroll_secret_rotate_table(lz: Lz) -> None:
    """`enroll-secret rotate` prints the secret and warns that it is shown once."""
    created = lz("tenant", "create", _tenant_id(), "--json").json()
    result = lz("enroll-secret", "rotate", token=created["admin_token"])
    assert result.code == 0, result.err
    assert "enrollment secret" in result.out
    assert "shown once" in result.err


def test_login_stores_token_used_by_later_commands(lz: Lz, new_tenant: Any) -> None:
    """`lz login --token T` stores T (0600) and later commands authenticate with it."""
    result = lz("login", "--token", new_tenant.tokens[Role.VIEWER])
    assert result.code == 0, result.err
    assert stat.S_IMODE(lz.config_path.stat().st_mode) == 0o600
    assert lz("assets", "list").code == 0


def test_tenant_resolvers_are_set_and_normalised(lz: Lz) -> None:
    """`tenant resolvers` stores the addresses (normalised) that later isolations admit."""
    created = lz("tenant", "create", _tenant_id(), "--json").json()
    data = lz("tenant", "resolvers", "10.0.0.53", "fd00:0:0:0::53", "--json", token=created["admin_token"]).json()
    assert data["dns_servers"] == ["10.0.0.53", "fd00::53"]


def test_tenant_resolvers_refuse_a_loopback_address(lz: Lz) -> None:
    """A loopback resolver is refused with one error line and exit 2."""
    created = lz("tenant", "create", _tenant_id(), "--json").json()
    lz("tenant", "resolvers", "127.0.0.53", token=created["admin_token"]).assert_one_line_error(2)
