"""The console served over TLS: cookies are Secure with the __Host- prefix, and HSTS is sent."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.kit import certs
from services.kit.embedded import free_port
from tests.faults.helpers import until


def _get(url: str, context: ssl.SSLContext) -> tuple[int, dict[str, str], list[str]]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as reply:
            return reply.status, dict(reply.headers), reply.headers.get_all("set-cookie") or []
    except OSError:
        return 0, {}, []


@pytest.fixture(scope="module")
def tls_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    """A console serving HTTPS with a certificate of the local CA (its peers need not answer for these pages)."""
    folder = tmp_path_factory.mktemp("console-tls")
    certs.generate(folder, ("console",))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LZ_", "AWS_"))}
    env.update(LZ_PORT=str(port), LZ_TLS_CERT_FILE=str(folder / "console.crt"),
               LZ_TLS_KEY_FILE=str(folder / "console.key"), LZ_TLS_CA_FILE=str(folder / "ca.crt"),
               LZ_ASSETS_ADDRESS="127.0.0.1:1", LZ_LEDGER_ADDRESS="127.0.0.1:1", LZ_SEALER_ADDRESS="127.0.0.1:1")
    log = folder / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.console"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
    url = f"https://localhost:{port}"
    try:
        until(lambda: _get(f"{url}/healthz", context)[0] == 200 or proc.poll() is not None, 30,
              "the TLS console answering")
        assert proc.poll() is None, Path(log).read_text()
        yield url, context
    finally:
        proc.terminate()
        proc.wait(15)


def test_cookies_over_tls_are_secure_host_cookies(tls_console: tuple[str, ssl.SSLContext]) -> None:
    """The sign-in page's cookie is __Host- prefixed, Secure, HttpOnly and SameSite=Strict."""
    url, context = tls_console
    _, _, cookies = _get(f"{url}/signin", context)
    (cookie,) = cookies
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert cookie.startswith("__Host-lz_signin=")
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes


def test_responses_over_tls_send_hsts(tls_console: tuple[str, ssl.SSLContext]) -> None:
    """Every response over TLS carries Strict-Transport-Security."""
    url, context = tls_console
    _, headers, _ = _get(f"{url}/signin", context)
    assert headers["strict-transport-security"].startswith("max-age=")


def test_readiness_fails_while_assets_is_unreachable(tls_console: tuple[str, ssl.SSLContext]) -> None:
    """/readyz answers 503 when the assets channel cannot connect."""
    url, context = tls_console
    try:
        urllib.request.urlopen(f"{url}/readyz", context=context, timeout=10)
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 503
