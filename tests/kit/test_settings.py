"""Bad configuration stops a service with one clear line and exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from services.kit import settings as s
from services.kit.errors import ConfigError
from services.ledger.settings import LedgerSettings
from services.tlog.note import generate_key

BASE = {"LZ_BUCKET_NAME": "seals", "LZ_ORIGIN": "test.example/ledger",
        "LZ_SIGNING_KEY": generate_key("test.example/ledger")[0]}


def _run_service(env: dict[str, str], module: str = "services.ledger") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LZ_")}
    clean.update(BASE)
    return subprocess.run(
        [sys.executable, "-m", module], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def _assert_one_line_exit_2(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_table_name_exits_2_with_one_line() -> None:
    """A service without LZ_TABLE_NAME says so in one line and exits 2."""
    _assert_one_line_exit_2(_run_service({}), "LZ_TABLE_NAME is required")


def test_malformed_endpoint_url_exits_2_with_one_line() -> None:
    """A malformed embedded AWS endpoint URL is named in one line with exit code 2."""
    result = _run_service({"LZ_TABLE_NAME": "t", "LZ_AWS_ENDPOINT_URL": "localhost:4566"})
    _assert_one_line_exit_2(result, "LZ_AWS_ENDPOINT_URL")


def test_port_in_use_exits_2_with_one_line() -> None:
    """A port that another socket holds is reported in one line with exit code 2."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _run_service(
            {"LZ_TABLE_NAME": "t", "LZ_AWS_ENDPOINT_URL": "http://127.0.0.1:9", "LZ_PORT": str(port)}
        )
    _assert_one_line_exit_2(result, f"127.0.0.1:{port}")


def test_every_problem_is_reported_at_once() -> None:
    """Loading collects every bad setting into one message instead of stopping at the first."""
    with pytest.raises(ConfigError) as caught:
        s.load(LedgerSettings, {**BASE, "LZ_PORT": "http", "LZ_GRACE_SECONDS": "-1"})
    message = str(caught.value)
    assert "LZ_TABLE_NAME is required" in message
    assert "LZ_PORT" in message
    assert "LZ_GRACE_SECONDS" in message


@pytest.mark.parametrize("callers", ["ingest", "ingest=abc", "in#gest=" + "a" * 64,
                                     f"ingest={'a' * 64},assets={'a' * 64}"])
def test_malformed_service_callers_are_refused(callers: str) -> None:
    """LZ_SERVICE_CALLERS that is not unique name=<sha256> pairs is a configuration error naming it."""
    with pytest.raises(ConfigError, match="LZ_SERVICE_CALLERS"):
        s.load(LedgerSettings, {**BASE, "LZ_SERVICE_CALLERS": callers})


def test_service_callers_are_read_as_name_and_hash_pairs() -> None:
    """LZ_SERVICE_CALLERS becomes (service, sha256) pairs in the order given."""
    callers = f"ingest={'A' * 64}, risk-worker={'b' * 64}"
    loaded = s.load(LedgerSettings, {**BASE, "LZ_TABLE_NAME": "t", "LZ_SERVICE_CALLERS": callers})
    assert loaded.server.service_callers == (("ingest", "a" * 64), ("risk-worker", "b" * 64))


def test_settings_are_frozen() -> None:
    """A loaded settings object cannot be changed after start."""
    loaded = s.load(LedgerSettings, {**BASE, "LZ_TABLE_NAME": "t"})
    with pytest.raises(AttributeError):
        loaded.aws.table_name = "other"  # type: ignore[misc]


def test_defaults_apply_when_unset() -> None:
    """Unset optional settings take their documented defaults."""
    loaded = s.load(LedgerSettings, {**BASE, "LZ_TABLE_NAME": "t"})
    assert loaded.server.listen_host == "127.0.0.1"
    assert loaded.aws.endpoint_url == ""
