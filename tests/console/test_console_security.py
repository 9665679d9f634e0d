"""The console's defences in a real browser: roles, CSRF, session expiry, tenancy, hostile agent text, revocation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2
from playwright.sync_api import Dialog, Page, expect

from services.kit.devstack import Stack
from services.kit.ids import validate_id
from tests.console.browser import ConsoleTenant, console_tenant, new_token, request_id, sign_in
from tests.faults.helpers import until
from tests.ingest.agents import TestAgent, enroll, heartbeat

pytestmark = pytest.mark.slow

SENTINEL = "window.__lzPwned"
HOSTILE_HOST = '<img src=x onerror="window.__lzPwned=1;alert(1)">'
HOSTILE_KIND = "<script>window.__lzPwned=2;alert(2)</script>"
HOSTILE_MODEL = "javascript:window.__lzPwned=3;alert(3)//"
HOSTILE_PATH = '/tmp/" autofocus onfocus="window.__lzPwned=4;alert(4)" x="'
HOSTILE_HTMX = '<div hx-post="/signout" hx-trigger="load">x</div>'


def _csrf(page: Page) -> str:
    """The session's CSRF token as the page carries it (the sign-out form's hidden field)."""
    return page.locator("form[action='/signout'] input[name=csrf]").get_attribute("value") or ""


def _status(fleet: ConsoleTenant, asset_id: str) -> int:
    return fleet.asset(asset_id).status


@pytest.fixture(scope="module")
def other_tenant(stack: Stack) -> tuple[ConsoleTenant, str]:
    """A second tenant with one registered host, named so its name would show if it leaked."""
    tenant = console_tenant(stack)
    asset_id = f"b-{request_id()}"
    tenant.assets().CreateAsset(assets_pb2.CreateAssetRequest(asset=common_pb2.Asset(
        asset_id=asset_id, hostname="tenant-b-secret-host", employee_id="bob"), request_id=request_id()),
        metadata=tenant.admin(), timeout=10)
    return tenant, asset_id


@pytest.fixture(scope="module")
def short_console(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second console on the same peers whose sessions end after one idle second."""
    from services.kit.embedded import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LZ_", "AWS_"))}
    env.update(LZ_PORT=str(port), LZ_ASSETS_ADDRESS=stack.addresses["assets"],
               LZ_LEDGER_ADDRESS=stack.addresses["ledger"], LZ_SEALER_ADDRESS=stack.addresses["sealer"],
               LZ_CONSOLE_IDLE_SECONDS="1")
    log = tmp_path_factory.mktemp("short-console") / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.console"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _answers(url) or proc.poll() is not None, 30, "the short-session console answering")
        assert proc.poll() is None, log.read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def hostile(stack: Stack) -> tuple[ConsoleTenant, str]:
    """A tenant whose one agent enrolled and reported with script tags, event attributes and javascript: URLs."""
    tenant = console_tenant(stack)
    reply = enroll(stack.addresses["ingest"], tenant.ingest, hostname=HOSTILE_HOST)
    inventory = common_pb2.Inventory(hostname=HOSTILE_HOST, os=HOSTILE_HTMX, engines=[common_pb2.Engine(
        kind=HOSTILE_KIND, pid=7, executable=HOSTILE_PATH, user=HOSTILE_HTMX, version=HOSTILE_MODEL,
        listen=[common_pb2.Endpoint(address="0.0.0.0", port=11434, exposed=True)], confirmed=True,
        loaded_models=[HOSTILE_MODEL], open_sensitive_files=[HOSTILE_PATH])],
        models=[common_pb2.Model(name=HOSTILE_MODEL, format="gguf", path=HOSTILE_PATH, architecture=HOSTILE_KIND)])

    async def report() -> None:
        agent = TestAgent(stack.addresses["ingest"], tenant.tenant, reply.asset_id, reply.agent_credential)
        try:
            await agent.connect()
            await agent.send(heartbeat(1, inventory))
            await agent.ack_for(1)
        finally:
            await agent.close()

    # Playwright's sync API keeps an event loop running on this thread: the agent runs on its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, report()).result(60)
    until(lambda: tenant.asset(reply.asset_id).risk.findings, 60, "the hostile host's findings")
    return tenant, reply.asset_id


def test_a_viewer_sees_no_isolate_button(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """A viewer's asset page shows the host and its state but no isolate form."""
    asset = fleet.host(4)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    page.goto(f"{console}/assets/{asset.asset_id}")
    expect(page.locator("#asset-status")).to_have_text("active")
    assert page.locator("#isolate").count() == 0


def test_a_forged_isolation_post_with_a_viewer_session_is_refused(page: Page, console: str,
                                                                  fleet: ConsoleTenant) -> None:
    """A viewer's session posting an isolation with its valid CSRF token gets 403 and the host stays active."""
    asset = fleet.host(4)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    reply = page.request.post(f"{console}/assets/{asset.asset_id}/isolate", headers={"origin": console}, form={
        "csrf": _csrf(page), "reason": "forged", "request_id": request_id()})
    assert reply.status == 403
    assert _status(fleet, asset.asset_id) == common_pb2.ASSET_STATUS_ACTIVE


def test_a_post_without_the_csrf_token_is_refused(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """An operator's session posting an isolation without the CSRF token gets 403 and nothing is ordered."""
    asset = fleet.host(4)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_OPERATOR])
    reply = page.request.post(f"{console}/assets/{asset.asset_id}/isolate", headers={"origin": console}, form={
        "reason": "no csrf", "request_id": request_id()})
    assert reply.status == 403
    assert _status(fleet, asset.asset_id) == common_pb2.ASSET_STATUS_ACTIVE


def test_a_post_from_another_origin_is_refused(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """A post carrying the right CSRF token but another site's Origin gets 403 and nothing is ordered."""
    asset = fleet.host(4)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_OPERATOR])
    reply = page.request.post(f"{console}/assets/{asset.asset_id}/isolate", headers={
        "origin": "https://evil.example"}, form={"csrf": _csrf(page), "reason": "x", "request_id": request_id()})
    assert reply.status == 403
    assert _status(fleet, asset.asset_id) == common_pb2.ASSET_STATUS_ACTIVE


def test_an_expired_session_is_sent_to_sign_in(page: Page, short_console: str, fleet: ConsoleTenant) -> None:
    """A session idle past its limit opens the sign-in form instead of the page asked for."""
    sign_in(page, short_console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    page.wait_for_timeout(1500)
    page.goto(f"{short_console}/assets")
    expect(page.locator("input[name=token]")).to_be_visible()
    assert page.url == f"{short_console}/signin?next=/assets"


def test_another_tenants_asset_is_not_found(page: Page, console: str, fleet: ConsoleTenant,
                                            other_tenant: tuple[ConsoleTenant, str]) -> None:
    """Tenant A's session opening tenant B's asset URL gets "not found" and nothing of B's host."""
    _, asset_id = other_tenant
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_ADMIN])
    reply = page.goto(f"{console}/assets/{validate_id('asset_id', asset_id)}")
    assert reply is not None and reply.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    assert "tenant-b-secret-host" not in page.content()


@pytest.mark.parametrize("where", ["/", "/assets", "/assets/{asset_id}", "/alerts",
                                   "/assets?engine=" + quote(HOSTILE_KIND.lower())])
def test_hostile_agent_text_executes_nothing(page: Page, console: str, hostile: tuple[ConsoleTenant, str],
                                             where: str) -> None:
    """A page showing the hostile agent's host, engine, model and paths opens no dialog and sets no global."""
    tenant, asset_id = hostile
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    sign_in(page, console, tenant.tokens[assets_pb2.ROLE_VIEWER])
    page.goto(console + where.format(asset_id=asset_id))
    page.wait_for_load_state("networkidle")
    for link in page.locator("main a").all()[:20]:
        link.hover()
    assert page.evaluate(f"typeof {SENTINEL}") == "undefined"
    assert dialogs == []
    assert page.url.startswith(console)


def test_hostile_agent_text_is_shown_as_text(page: Page, console: str, hostile: tuple[ConsoleTenant, str]) -> None:
    """The hostile host name, engine kind and model name appear literally on the asset page."""
    tenant, asset_id = hostile
    sign_in(page, console, tenant.tokens[assets_pb2.ROLE_VIEWER])
    page.goto(f"{console}/assets/{asset_id}")
    expect(page.locator("#hostname")).to_have_text(HOSTILE_HOST)
    expect(page.locator("table.engines")).to_contain_text(HOSTILE_KIND)
    expect(page.locator("table.models")).to_contain_text(HOSTILE_MODEL)


def test_a_hostile_engine_kind_is_shown_as_text_by_the_engine_filter(page: Page, console: str,
                                                                    hostile: tuple[ConsoleTenant, str]) -> None:
    """Filtering by the hostile engine kind finds its host and shows the kind literally in the select and the row."""
    tenant, _ = hostile
    kind = HOSTILE_KIND.lower()
    sign_in(page, console, tenant.tokens[assets_pb2.ROLE_VIEWER])

    def found() -> bool:
        page.goto(f"{console}/assets?engine={quote(kind)}")
        return "1 matching" in page.locator("#search-note").inner_text()

    until(found, 30, "the hostile host found by its engine kind")
    expect(page.locator("#engine option:checked")).to_have_text(kind)
    expect(page.locator("td.engines")).to_have_text(kind)


def test_a_revoked_tokens_session_stops_working_within_the_auth_cache_time(page: Page, console: str,
                                                                          fleet: ConsoleTenant) -> None:
    """Once its token is revoked, the session's next page view (within assets' 5 s auth cache) is the sign-in form."""
    token = new_token(fleet, assets_pb2.ROLE_OPERATOR)
    sign_in(page, console, token)
    fleet.assets().RevokeToken(assets_pb2.RevokeTokenRequest(token_id=token.split(":")[2]), metadata=fleet.admin(),
                               timeout=10)

    def signed_out() -> bool:
        page.goto(f"{console}/assets")
        return page.url.startswith(f"{console}/signin")

    until(signed_out, 5 + 5, "the revoked token's session sent to sign-in")
    page.goto(f"{console}/assets")
    assert page.url.startswith(f"{console}/signin")
