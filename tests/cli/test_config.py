"""Where `lz` finds its services and token: flags, environment, config file, state file."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

from cli_helpers import Lz, closed_port

from services.kit.auth import Role


def test_state_file_is_found_from_a_subdirectory(admin: Lz) -> None:
    """`.lz/stack.json` in a parent directory is used, as after `make up` in the repo root."""
    sub = admin.cwd / "a" / "b"
    sub.mkdir(parents=True)
    assert Lz(sub, admin.env)("assets", "list").code == 0


def test_endpoint_file_flag(admin: Lz, tmp_path: Path) -> None:
    """`--endpoint-file` names the state file when none is in the working directory."""
    state = tmp_path / "elsewhere.json"
    (admin.cwd / ".lz" / "stack.json").rename(state)
    assert admin("assets", "list", "--endpoint-file", str(state)).code == 0


def test_environment_address_beats_state_file(admin: Lz) -> None:
    """LZ_ASSETS_ADDRESS overrides the state file's assets address."""
    address = closed_port()
    line = admin("assets", "list", env={"LZ_ASSETS_ADDRESS": address}).assert_one_line_error(2)
    assert address in line


def test_flag_address_beats_environment(admin: Lz) -> None:
    """`--assets` overrides LZ_ASSETS_ADDRESS."""
    state = json.loads((admin.cwd / ".lz" / "stack.json").read_text())
    result = admin("assets", "list", "--assets", state["endpoints"]["assets"],
                   env={"LZ_ASSETS_ADDRESS": closed_port()})
    assert result.code == 0, result.err


def test_config_file_endpoints_and_token(admin: Lz, new_tenant: Any) -> None:
    """The config file supplies endpoints and the token when the environment does not."""
    state = json.loads((admin.cwd / ".lz" / "stack.json").read_text())
    (admin.cwd / ".lz" / "stack.json").unlink()
    config = admin.cwd / "lz.toml"
    config.write_text(f'token = "{new_tenant.tokens[Role.VIEWER]}"\n[endpoints]\n'
                      f'assets = "{state["endpoints"]["assets"]}"\n')
    env = {k: v for k, v in admin.env.items() if k != "LZ_TOKEN"}
    result = Lz(admin.cwd, env)("assets", "list", env={"LZ_CONFIG": str(config)})
    assert result.code == 0, result.err


def test_login_keeps_other_config_settings(lz: Lz, new_tenant: Any) -> None:
    """`lz login` replaces the token and keeps the rest of the config file, mode 0600."""
    lz.config_path.parent.mkdir(parents=True)
    lz.config_path.write_text('timeout = 12.5\ntoken = "old"\n[tls]\nca = "/etc/ca.pem"\n')
    assert lz("login", "--token", new_tenant.tokens[Role.ADMIN]).code == 0
    data = tomllib.loads(lz.config_path.read_text())
    assert data == {"timeout": 12.5, "token": new_tenant.tokens[Role.ADMIN], "tls": {"ca": "/etc/ca.pem"}}
    assert stat.S_IMODE(lz.config_path.stat().st_mode) == 0o600


def test_login_reads_token_from_stdin(lz_offline: Lz) -> None:
    """`lz login` without --token reads the token from stdin (kept out of shell history)."""
    result = lz_offline("login", "--json", stdin="lz1:acme:0123456789abcdef:" + "s" * 43 + "\n")
    assert result.code == 0, result.err
    assert result.json()["tenant"] == "acme"
    assert "lz1:acme:" in lz_offline.config_path.read_text()


def test_env_token_beats_config_token(lz: Lz, new_tenant: Any) -> None:
    """LZ_TOKEN overrides the token stored by `lz login`."""
    assert lz("login", "--token", "lz1:nobody:0123456789abcdef:" + "s" * 43).code == 0
    assert lz("assets", "list", token=new_tenant.tokens[Role.VIEWER]).code == 0


def test_config_show_masks_secrets(admin: Lz) -> None:
    """`lz config --json` shows where settings came from and never the token's secret."""
    data = admin("config", "--json").json()
    assert data["sources"]["assets"].startswith("state file")
    assert data["sources"]["token"] == "LZ_TOKEN"
    assert admin.env["LZ_TOKEN"] not in json.dumps(data)
    assert data["token"].endswith("****")
