"""Helpers for the console's browser tests: the system Chromium, a simulated fleet, sign-in and peers' calls."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2
from playwright.sync_api import Page

from agent.enroll import SECRET_ENV
from services.kit.devstack import Stack
from tests.faults.helpers import until
from tests.ingest.agents import IngestTenant, create_tenant

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
# Debian's /usr/bin/chromium is a shell wrapper; Playwright drives the binary it starts.
FLEET_SIZE = 6
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@dataclass
class ConsoleTenant:
    """A tenant on the stack with a token per role (made through CreateToken) and its simulated hosts."""

    stack: Stack
    ingest: IngestTenant
    tokens: dict[int, str]

    @property
    def tenant(self) -> str:
        return self.ingest.tenant

    def assets(self) -> assets_pb2_grpc.AssetServiceStub:
        return assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(self.stack.addresses["assets"]))

    def admin(self) -> list[tuple[str, str]]:
        return self.ingest.admin()

    def listed(self) -> list[common_pb2.Asset]:
        reply = self.assets().ListAssets(assets_pb2.ListAssetsRequest(page_size=100), metadata=self.admin(),
                                         timeout=10)
        return list(reply.assets)

    def host(self, index: int) -> common_pb2.Asset:
        """The index-th simulated host by id: a test that changes a host takes one no other test takes."""
        return sorted(self.listed(), key=lambda a: a.asset_id)[index]

    def reported(self) -> int:
        """How many of the tenant's assets have an engine inventory (the list carries none: one GetAsset each)."""
        return len([a for a in self.listed() if self.asset(a.asset_id).engine_inventory.engines])

    def asset(self, asset_id: str) -> common_pb2.Asset:
        reply = self.assets().GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=self.admin(),
                                       timeout=10)
        return reply.asset


def console_tenant(stack: Stack) -> ConsoleTenant:
    ingest = create_tenant(stack)
    tenant = ConsoleTenant(stack, ingest, {assets_pb2.ROLE_ADMIN: ingest.admin_token})
    for role in (assets_pb2.ROLE_VIEWER, assets_pb2.ROLE_OPERATOR):
        tenant.tokens[role] = new_token(tenant, role)
    return tenant


def new_token(tenant: ConsoleTenant, role: int) -> str:
    reply = tenant.assets().CreateToken(assets_pb2.CreateTokenRequest(role=role, description="console test"),
                                        metadata=tenant.admin(), timeout=10)
    return str(reply.token)


def simulated_fleet(tenant: ConsoleTenant, count: int) -> Iterator[subprocess.Popen[str]]:
    """`lz-agent simulate` with `count` hosts, every one with an exposed engine, until the caller is done."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "simulate", "--count", str(count), "--control-plane",
         tenant.stack.addresses["ingest"], "--tenant", tenant.tenant, "--interval", "1", "--exposed-fraction", "1",
         "--first-reconnect-jitter", "0.5", "--report-every", "30", "--seed", "24"],
        env={**os.environ, SECRET_ENV: tenant.ingest.enrollment_secret}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, text=True,
    )
    try:
        until(lambda: tenant.reported() == count, 90, f"{count} simulated hosts listed with their engines")
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def sign_in(page: Page, console: str, token: str) -> None:
    """Sign in through the form, as an operator does, and land on the overview."""
    page.goto(f"{console}/signin")
    page.fill("input[name=token]", token)
    page.click("#signin")
    page.wait_for_url(f"{console}/")


def request_id() -> str:
    return secrets.token_hex(8)
