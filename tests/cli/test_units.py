"""The CLI's pure helpers, in process: time parsing, enum names, TOML writing, settings precedence."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tomllib
from pathlib import Path

import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2

from lz.commands.assets import parse_moment
from lz.connection import Options, dump_toml, resolve
from lz.errors import UsageError
from lz.output import enum_short, enum_value

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "ago"), [("1h", 3600), ("30m", 1800), ("2d12h", 216000), ("90s", 90)])
def test_durations_count_back_from_now(text: str, ago: int) -> None:
    """A duration means that long before now."""
    assert parse_moment(text, NOW) == NOW - dt.timedelta(seconds=ago)


def test_iso_time_without_zone_is_utc() -> None:
    """An ISO time without a zone is taken as UTC."""
    assert parse_moment("2025-05-01T08:00:00", NOW) == dt.datetime(2025, 5, 1, 8, tzinfo=dt.UTC)


def test_iso_time_with_zone_keeps_it() -> None:
    """An ISO time with an offset keeps that offset."""
    assert parse_moment("2025-05-01T08:00:00+02:00", NOW) == dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC)


def test_unreadable_time_is_a_usage_error() -> None:
    """Text that is neither a duration nor a time is rejected by argparse."""
    with pytest.raises(argparse.ArgumentTypeError):
        parse_moment("last tuesday", NOW)


def test_enum_short_names() -> None:
    """Enums print as their short lower-case names."""
    assert enum_short(common_pb2.AssetStatus, common_pb2.ASSET_STATUS_ISOLATED) == "isolated"
    assert enum_short(common_pb2.AssetStatus, common_pb2.ASSET_STATUS_ISOLATION_PENDING) == "isolation_pending"
    assert enum_short(assets_pb2.Role, assets_pb2.ROLE_VIEWER) == "viewer"
    assert enum_short(common_pb2.Severity, common_pb2.SEVERITY_CRITICAL) == "critical"


def test_enum_value_accepts_short_dashed_and_proto_names() -> None:
    """Short, dashed and proto names all parse; UNSPECIFIED does not."""
    for text in ("isolation_pending", "isolation-pending", "ASSET_STATUS_ISOLATION_PENDING"):
        assert enum_value(common_pb2.AssetStatus, text) == common_pb2.ASSET_STATUS_ISOLATION_PENDING
    with pytest.raises(ValueError):
        enum_value(common_pb2.AssetStatus, "unspecified")


def test_dump_toml_round_trips() -> None:
    """Written config files read back as the same data, quotes and tables included."""
    data = {"token": 'a"b\\c', "timeout": 12.5, "flag": True, "endpoints": {"assets": "h:1"},
            "tls": {"ca": "/x y/ca.pem"}}
    assert tomllib.loads(dump_toml(data)) == data


def _state(path: Path, address: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"endpoints": {"assets": address, "ledger": "l:1", "sealer": "s:1"},
                                "bootstrap_token": "boot"}))
    return path


def test_precedence_flag_env_config_state(tmp_path: Path) -> None:
    """Flags beat the environment, which beats the config file, which beats the state file."""
    _state(tmp_path / ".lz" / "stack.json", "state:1")
    config = tmp_path / "c.toml"
    config.write_text('token = "conf-token"\n[endpoints]\nassets = "config:1"\nledger = "config:2"\n')
    env = {"LZ_CONFIG": str(config), "LZ_ASSETS_ADDRESS": "env:1", "LZ_TOKEN": "env-token"}
    got = resolve(Options(assets="flag:1"), env, tmp_path)
    assert got.endpoints == {"assets": "flag:1", "ledger": "config:2", "sealer": "s:1"}
    assert got.token == "env-token"
    assert got.bootstrap_token == "boot"
    assert resolve(Options(), env, tmp_path).endpoints["assets"] == "env:1"


def test_endpoint_file_flag_beats_environment(tmp_path: Path) -> None:
    """`--endpoint-file` is a flag, so its addresses beat LZ_*_ADDRESS."""
    state = _state(tmp_path / "s.json", "file:1")
    got = resolve(Options(endpoint_file=str(state)), {"LZ_ASSETS_ADDRESS": "env:1"}, tmp_path)
    assert got.endpoints["assets"] == "file:1"


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    """A config file named by LZ_CONFIG must exist; the default one need not."""
    with pytest.raises(UsageError):
        resolve(Options(), {"LZ_CONFIG": str(tmp_path / "absent.toml")}, tmp_path)
    assert resolve(Options(), {"HOME": str(tmp_path)}, tmp_path).token == ""


def test_bad_timeout_is_an_error(tmp_path: Path) -> None:
    """A non-numeric LZ_TIMEOUT is a usage error."""
    with pytest.raises(UsageError):
        resolve(Options(), {"HOME": str(tmp_path), "LZ_TIMEOUT": "soon"}, tmp_path)
