"""Fixtures of the console's browser tests: one Chromium per module, the session's stack, and a tenant
with a small simulated fleet for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from services.kit.devstack import Stack
from tests.console.browser import FLEET_SIZE, ConsoleTenant, chromium_path, console_tenant, simulated_fleet


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no browser is downloaded); one per module, so
    Playwright's event loop is gone before other modules' asyncio tests run."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def console(stack: Stack) -> str:
    """The console's URL on the session's stack (endpoints.console)."""
    return stack.addresses["console"]


@pytest.fixture(scope="session")
def fleet(stack: Stack) -> Iterator[ConsoleTenant]:
    """A tenant whose simulated hosts each report an engine listening on every interface; each test that
    changes a host takes its own (`ConsoleTenant.host`), so the modules share one fleet."""
    tenant = console_tenant(stack)
    for _ in simulated_fleet(tenant, FLEET_SIZE):
        yield tenant

