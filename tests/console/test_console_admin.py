"""The Ledger and Tokens pages in a real browser: verify now, the export bundle for lz-verify, tokens shown
once, revocation, the enrollment secret's rotation, and the pages an operator may not open."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2, sealer_pb2, sealer_pb2_grpc
from playwright.sync_api import Browser, Page, expect

from services.kit.devstack import Stack
from tests.console.browser import ConsoleTenant, console_tenant, request_id, sign_in
from tests.faults.helpers import until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def audited(stack: Stack) -> ConsoleTenant:
    """A tenant with a registered host, an isolation order in its ledger, and the ledger sealed."""
    import grpc

    tenant = console_tenant(stack)
    asset_id = f"ws-{request_id()}"
    stub = tenant.assets()
    stub.CreateAsset(assets_pb2.CreateAssetRequest(asset=common_pb2.Asset(asset_id=asset_id, hostname="audited"),
                                                   request_id=request_id()), metadata=tenant.admin(), timeout=10)
    stub.IsolateAsset(assets_pb2.IsolateAssetRequest(asset_id=asset_id, justification="audit trail",
                                                     request_id=request_id()), metadata=tenant.admin(), timeout=10)
    sealer = sealer_pb2_grpc.SealerServiceStub(grpc.insecure_channel(stack.addresses["sealer"]))

    def sealed() -> bool:
        status = sealer.GetSealStatus(sealer_pb2.GetSealStatusRequest(), metadata=tenant.admin(), timeout=10)
        return status.ledger_size > 0 and status.sealed_through == status.ledger_size

    until(lambda: stub.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id), metadata=tenant.admin(),
                                     timeout=10).events, 30, "the isolation's custody event chained")
    until(sealed, 60, "the tenant's ledger sealed")
    return tenant


def test_verify_now_reports_the_ledger_verified(page: Page, console: str, audited: ConsoleTenant) -> None:
    """The Ledger page's since-checkpoint check answers verified with the checkpoint it anchored on."""
    sign_in(page, console, audited.tokens[assets_pb2.ROLE_VIEWER])
    page.goto(f"{console}/ledger")
    page.click("#verify-since")
    expect(page.locator("#verification")).to_contain_text("Verified")
    expect(page.locator("#verification")).to_contain_text("newest checkpoint")


def test_the_full_walk_shows_its_progress_then_the_ledger_verified(page: Page, console: str, stack: Stack,
                                                                    audited: ConsoleTenant) -> None:
    """The Ledger page's full walk shows the events checked of the chain's length, then its answer, verified from
    genesis, replaces the progress without a reload."""
    import grpc

    sealer = sealer_pb2_grpc.SealerServiceStub(grpc.insecure_channel(stack.addresses["sealer"]))
    length = sealer.GetSealStatus(sealer_pb2.GetSealStatusRequest(), metadata=audited.admin(), timeout=10).ledger_size
    sign_in(page, console, audited.tokens[assets_pb2.ROLE_VIEWER])
    page.goto(f"{console}/ledger")
    page.click("#verify-full")
    expect(page.locator("#walk-progress")).to_have_text(f"0 of {length} events checked")
    expect(page.locator("#walk-bar")).to_be_visible()
    expect(page.locator("#walk-result")).to_contain_text("Verified — full walk from genesis", timeout=60_000)
    expect(page.locator("#walk-result")).to_contain_text(f"{length} events")
    expect(page.locator("#walk-progress")).to_have_count(0)


def test_the_export_bundle_verifies_with_lz_verify(page: Page, console: str, audited: ConsoleTenant,
                                                   tmp_path: Path) -> None:
    """The downloaded bundle, unzipped, passes `lz-verify bundle` with the downloaded verifier key (exit 0)."""
    sign_in(page, console, audited.tokens[assets_pb2.ROLE_VIEWER])
    page.goto(f"{console}/ledger")
    saved = {}
    for name, selector in (("bundle", "#bundle"), ("keys", "a[href='/ledger/verifier.keys']")):
        with page.expect_download() as download:
            page.click(selector)
        saved[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(saved[name])
    with zipfile.ZipFile(saved["bundle"]) as archive:
        archive.extractall(tmp_path / "unpacked")
    done = subprocess.run([sys.executable, "-m", "services.tlog.cli", "bundle", "--key", str(saved["keys"]),
                           str(tmp_path / "unpacked" / "bundle")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_created_token_is_shown_once_and_signs_in(page: Page, browser: Browser, console: str,
                                                     audited: ConsoleTenant) -> None:
    """An admin creates a viewer token: the page shows it once, it signs in as a viewer, and a reload hides it."""
    sign_in(page, console, audited.tokens[assets_pb2.ROLE_ADMIN])
    page.goto(f"{console}/tokens")
    page.select_option("#role", "viewer")
    page.fill("#description", "auditor laptop")
    page.click("#create-token")
    token = page.locator("#created-token").inner_text()
    other = browser.new_context()
    try:
        viewer = other.new_page()
        sign_in(viewer, console, token)
        expect(viewer.locator(".who .role")).to_have_text("viewer")
    finally:
        other.close()
    page.goto(f"{console}/tokens")
    assert page.locator("#created-token").count() == 0
    assert token not in page.content()


def test_revoking_a_token_on_the_page_marks_it_revoked(page: Page, console: str, audited: ConsoleTenant) -> None:
    """Revoke on a token's row turns its state to revoked."""
    created = audited.assets().CreateToken(assets_pb2.CreateTokenRequest(
        role=assets_pb2.ROLE_VIEWER, description="to revoke"), metadata=audited.admin(), timeout=10)
    sign_in(page, console, audited.tokens[assets_pb2.ROLE_ADMIN])
    page.goto(f"{console}/tokens")
    row = page.locator(f"tr[data-token='{created.token_info.token_id}']")
    row.locator("button.revoke").click()
    expect(page.locator(f"tr[data-token='{created.token_info.token_id}']")).to_contain_text("revoked")


def test_rotating_the_enrollment_secret_shows_the_new_one_once(page: Page, console: str,
                                                              audited: ConsoleTenant) -> None:
    """Rotation shows a new secret once and the fingerprint changes."""
    sign_in(page, console, audited.tokens[assets_pb2.ROLE_ADMIN])
    page.goto(f"{console}/tokens")
    before = page.locator("#fingerprint").inner_text()
    page.click("#rotate-secret")
    expect(page.locator("#enrollment-secret")).not_to_be_empty()
    assert page.locator("#fingerprint").inner_text() != before
    page.goto(f"{console}/tokens")
    assert page.locator("#enrollment-secret").count() == 0


def test_an_operator_cannot_open_the_tokens_page(page: Page, console: str, audited: ConsoleTenant) -> None:
    """An operator sees no Tokens link and opening /tokens answers 403."""
    sign_in(page, console, audited.tokens[assets_pb2.ROLE_OPERATOR])
    assert page.locator("header nav a[href='/tokens']").count() == 0
    reply = page.goto(f"{console}/tokens")
    assert reply is not None and reply.status == 403
