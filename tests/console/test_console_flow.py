"""The console in a real browser against the real stack and `lz-agent simulate`: sign in, see the fleet,
isolate a host with a reason and watch it become isolated, verify its custody proof, release it, sign out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2
from playwright.sync_api import BrowserContext, Page, expect

from tests.console.browser import FLEET_SIZE, SCREENSHOTS, ConsoleTenant, request_id, sign_in
from tests.faults.helpers import until

pytestmark = pytest.mark.slow


def _isolated(fleet: ConsoleTenant, asset_id: str) -> None:
    """Isolate through assets (as `lz isolate` does) and wait until the simulated agent confirmed it."""
    fleet.assets().IsolateAsset(assets_pb2.IsolateAssetRequest(
        asset_id=asset_id, justification="console test", request_id=request_id()), metadata=fleet.admin(), timeout=10)
    until(lambda: fleet.asset(asset_id).status == common_pb2.ASSET_STATUS_ISOLATED, 60, f"{asset_id} isolated")


def test_signing_in_lists_the_fleet(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """An operator signs in with a token and the assets page lists every simulated host."""
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_OPERATOR])
    page.goto(f"{console}/assets")
    for asset in fleet.listed():
        expect(page.get_by_role("link", name=asset.hostname)).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{console}/")
    expect(page.locator("#assets-count")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)


def test_the_overview_counts_the_fleet(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """The Overview counts the tenant's assets, all with an exposed listener, and says how old its counts are."""
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    expect(page.locator("#assets-count")).to_have_text(str(FLEET_SIZE), timeout=30_000)
    expect(page.locator("#exposed")).to_have_text(str(FLEET_SIZE))
    expect(page.locator("#freshness")).to_contain_text("recomputed at most every 30 s")


def test_the_alerts_page_links_the_last_days_critical_alerts_to_their_assets(page: Page, console: str,
                                                                            fleet: ConsoleTenant) -> None:
    """Critical alerts of the last 24 h are listed, each linked to one of the tenant's assets."""
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    page.goto(f"{console}/alerts?severity=critical&since=24h")
    links = page.locator("main tbody a")
    expect(links.first).to_be_visible()
    hrefs = {links.nth(i).get_attribute("href") for i in range(links.count())}
    assert hrefs <= {f"/assets/{asset.asset_id}" for asset in fleet.listed()}


def test_a_host_name_search_finds_that_host_only(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """Searching a host's name lists that host and none of the others."""
    host = fleet.host(5)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])

    def searched() -> bool:
        page.goto(f"{console}/assets?q={host.hostname.upper()}")
        return "1 matching" in page.locator("#search-note").inner_text()

    until(searched, 30, "the search answered from the tenant's asset list")
    links = page.locator("table.assets tbody a")
    assert [links.nth(i).inner_text() for i in range(links.count())] == [host.hostname]


def _engine_hosts(fleet: ConsoleTenant) -> dict[str, set[str]]:
    """Each engine kind the fleet runs and the host names running it, read from each host's engine inventory."""
    hosts: dict[str, set[str]] = {}
    for listed in fleet.listed():
        for engine in fleet.asset(listed.asset_id).engine_inventory.engines:
            hosts.setdefault(engine.kind.lower(), set()).add(listed.hostname)
    return hosts


def test_the_engine_filter_lists_the_hosts_running_that_kind(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """Choosing an engine kind in the assets page's select lists exactly the hosts whose inventory has that kind."""
    kind, expected = next(iter(_engine_hosts(fleet).items()))
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])

    def offered() -> bool:
        page.goto(f"{console}/assets")
        return page.locator(f"#engine option[value='{kind}']").count() == 1

    until(offered, 30, f"the engine select offers {kind}")
    page.select_option("#engine", kind)
    page.click("#filter")
    page.wait_for_url(f"**engine={quote(kind)}**")
    expect(page.locator("#search-note")).to_contain_text(f"{len(expected)} matching")
    links = page.locator("table.assets tbody a")
    assert {links.nth(i).inner_text() for i in range(links.count())} == expected


def test_the_overview_charts_assets_by_engine_kind(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """The Overview's engines chart has one bar per engine kind the fleet runs, counting the hosts running it."""
    expected = {f"{kind}: {len(hosts)}" for kind, hosts in _engine_hosts(fleet).items()}
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    bars = page.locator("#engines-chart rect title")

    def charted() -> bool:
        page.goto(f"{console}/")
        expect(page.locator("#engines-chart")).to_contain_text("Assets by engine kind (as of", timeout=30_000)
        return {bars.nth(i).text_content() for i in range(bars.count())} == expected

    until(charted, 60, f"the engines chart shows {sorted(expected)}")


def test_isolating_a_host_turns_it_isolated_without_a_reload(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """Isolating with a reason answers with the order pending (or already enforced), and the same page turns
    isolated with the agent's evidence without reloading."""
    host = fleet.host(0)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_OPERATOR])
    page.goto(f"{console}/assets/{host.asset_id}")
    expect(page.locator(".exposed").first).to_be_visible()
    page.fill("#isolate-reason", "ollama listening on 0.0.0.0 with an unapproved model")
    page.click("#isolate")
    page.wait_for_url(f"{console}/assets/{host.asset_id}")
    assert page.locator("#asset-status").inner_text() in ("isolation pending", "isolated")
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    expect(page.locator("#asset-status")).to_have_text("isolated", timeout=60_000)
    expect(page.locator("tr[data-action='asset.isolate.enforced']")).to_contain_text("self test passed: yes",
                                                                                     timeout=30_000)
    assert loads == []
    page.screenshot(path=str(SCREENSHOTS / "asset.png"), full_page=True)


def test_a_custody_proof_downloads_and_verifies_with_lz_verify(page: Page, console: str, fleet: ConsoleTenant,
                                                               tmp_path: Path) -> None:
    """The timeline's proof, entry and the verifier key download, and `lz-verify proof` accepts them (exit 0)."""
    host = fleet.host(1)
    _isolated(fleet, host.asset_id)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    row = page.locator("tr[data-action='asset.isolate.requested']")

    def sealed() -> bool:
        page.goto(f"{console}/assets/{host.asset_id}")
        return page.request.get(console + (row.locator("a.proof").get_attribute("href", timeout=30_000) or "")).ok

    until(sealed, 60, "the isolation's custody event sealed")
    files = {}
    for name, link in (("proof", row.locator("a.proof")), ("entry", row.locator("a.entry")),
                       ("keys", page.locator("a[href='/ledger/verifier.keys']"))):
        with page.expect_download() as download:
            link.click()
        files[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(files[name])
    done = subprocess.run([sys.executable, "-m", "services.tlog.cli", "proof", "--key", str(files["keys"]),
                           "--entry", str(files["entry"]), str(files["proof"])],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_releasing_an_isolated_host_makes_it_active_again(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """An operator releases an isolated host with a reason and the page turns active once the agent confirms."""
    host = fleet.host(2)
    _isolated(fleet, host.asset_id)
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_OPERATOR])
    page.goto(f"{console}/assets/{host.asset_id}")
    page.fill("#release-reason", "engine bound to loopback, model removed")
    page.click("#release")
    expect(page.locator("#asset-status")).to_have_text("active", timeout=60_000)


def test_signing_out_closes_the_pages(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """After signing out, opening an asset page lands on the sign-in form."""
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    page.click("#signout")
    page.wait_for_url(f"{console}/signin")
    page.goto(f"{console}/assets/{fleet.host(0).asset_id}")
    expect(page.locator("input[name=token]")).to_be_visible()
    assert page.url.startswith(f"{console}/signin")


def test_the_session_cookie_is_httponly_and_strict_and_the_token_stays_on_the_server(
        page: Page, context: BrowserContext, console: str, fleet: ConsoleTenant) -> None:
    """The session cookie is HttpOnly and SameSite=Strict, and the token is in no page, cookie or storage."""
    token = fleet.tokens[assets_pb2.ROLE_OPERATOR]
    sign_in(page, console, token)
    page.goto(f"{console}/assets/{fleet.host(3).asset_id}")
    cookies = context.cookies()
    session = next(c for c in cookies if c["name"] == "lz_session")
    assert (session["httpOnly"], session["sameSite"]) == (True, "Strict")
    seen = page.content() + page.evaluate("document.cookie + JSON.stringify(localStorage) "
                                          "+ JSON.stringify(sessionStorage)") + str(cookies)
    assert token.rsplit(":", 1)[1] not in seen


def test_every_page_sends_a_strict_content_security_policy(page: Page, console: str, fleet: ConsoleTenant) -> None:
    """Pages carry a CSP without unsafe-inline or unsafe-eval, frame denial, nosniff and a same-origin referrer."""
    sign_in(page, console, fleet.tokens[assets_pb2.ROLE_VIEWER])
    headers = page.goto(f"{console}/assets").all_headers()
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert (headers["x-content-type-options"], headers["x-frame-options"], headers["referrer-policy"]) == (
        "nosniff", "DENY", "same-origin")
