"""Console: server-side render times of the Overview and a 50-row assets page, and RSS per 100 sessions.

    python benchmarks/bench_console.py --json OUT [--quick] [--assets N]

Runs the local stack (the console included), registers N assets in one tenant (10,000; 1,000 with
--quick), each with an engine inventory of one of four kinds (sent as the risk worker sends it), signs in over HTTP as a browser does (sign-in nonce cookie, form post, session cookie) and
times complete responses on loopback: the Overview's first view (its counts not there yet: it starts
their background computation, which pages every asset and the last day's alerts, and the seconds
until they exist are reported), then the Overview with counts (from its per-tenant cache), the first 50-row assets
page, the assets page filtered by one engine kind (a quarter of the assets, from the cached rows),
and one asset page; and, as the baseline from the same run, each page's peer calls made straight over
gRPC, alternately with the page's own requests (ListAssets for the assets page, GetSealStatus for the
Overview, GetAsset and GetCustodyLog for the asset page), so that what the console adds is the
difference. RSS is the console process's VmRSS before and after 100 more sign-ins.
Targets (issue #24): p95 under 100 ms for the Overview and the assets page, under 30 MiB per 100
sessions. Figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2, sealer_pb2, sealer_pb2_grpc

from services.kit.devstack import Stack

_NONCE = re.compile(r'name="csrf" value="([^"]+)"')
_MATCHING = re.compile(r"(\d+) matching")


class Browser:
    """Just enough of a browser: one connection, cookies by name, no redirects followed."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.origin = url
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), "origin": self.origin}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["content-type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        reply = self.conn.getresponse()
        text = reply.read().decode()
        for cookie in reply.headers.get_all("set-cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return reply.status, text

    def sign_in(self, token: str) -> None:
        _, page = self.request("GET", "/signin")
        nonce = _NONCE.search(page)
        assert nonce is not None, page[:200]
        status, _ = self.request("POST", "/signin", {"csrf": nonce.group(1), "token": token, "next": "/"})
        assert status == 303, status


def stats(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50_ms": round(statistics.median(samples), 2),
            "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 2),
            "max_ms": round(samples[-1], 2), "runs": len(samples)}


def timed(browser: Browser, path: str, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        status, _ = browser.request("GET", path)
        samples.append((time.perf_counter() - started) * 1000)
        assert status == 200, (path, status)
    return stats(samples)


def beside(browser: Browser, path: str, backend: Callable[[], object], runs: int) -> tuple[dict[str, float], ...]:
    """The page and, alternately with it, the peer calls it makes straight over gRPC: both see the same
    background (the tenant's count refresh, other load), so the difference is what the console adds."""
    pages, calls = [], []
    for _ in range(runs):
        started = time.perf_counter()
        status, _ = browser.request("GET", path)
        pages.append((time.perf_counter() - started) * 1000)
        assert status == 200, (path, status)
        started = time.perf_counter()
        backend()
        calls.append((time.perf_counter() - started) * 1000)
    return stats(pages), stats(calls)


def counts_ready(browser: Browser) -> float:
    """Seconds until the Overview's first counts of the tenant exist (the page polls for them meanwhile)."""
    started = time.monotonic()
    while "assets-count" not in browser.request("GET", "/overview/counts")[1]:
        time.sleep(0.25)
    return round(time.monotonic() - started, 2)


class Peers:
    """The calls each page makes, made straight over gRPC with the same operator token."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.assets = assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))
        self.sealer = sealer_pb2_grpc.SealerServiceStub(grpc.insecure_channel(stack.addresses["sealer"]))
        self.metadata = [("authorization", f"Bearer {token}")]

    def list_assets(self) -> None:
        """The assets page's one call: the first 50 assets."""
        self.assets.ListAssets(assets_pb2.ListAssetsRequest(page_size=50), metadata=self.metadata, timeout=60)

    def seal_status(self) -> None:
        """The Overview's one call (its counts come from the console's cache)."""
        self.sealer.GetSealStatus(sealer_pb2.GetSealStatusRequest(), metadata=self.metadata, timeout=60)

    def asset(self) -> None:
        """The asset page's two calls, one after the other (the console makes them at once)."""
        self.assets.GetAsset(assets_pb2.GetAssetRequest(asset_id="ws-000000"), metadata=self.metadata, timeout=60)
        self.assets.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id="ws-000000", page_size=500),
                                  metadata=self.metadata, timeout=60)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


ENGINE_KINDS = ("ollama", "llama.cpp", "vllm", "lmstudio")
RISK_UPDATES_PER_CALL = 100


def register(stack: Stack, token: str, count: int) -> float:
    """Register `count` assets through CreateAsset (8 at a time), then give each an engine inventory of one of
    ENGINE_KINDS through UpdateAssetRisk as the risk worker; returns the seconds it took."""
    stub = assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))
    metadata = [("authorization", f"Bearer {token}")]
    worker = [("authorization", f"Bearer {stack.service_tokens['risk-worker']}"), ("x-lz-tenant", "console-bench")]

    def engines(start: int) -> None:
        updates = []
        for index in range(start, min(count, start + RISK_UPDATES_PER_CALL)):
            update = assets_pb2.AssetRiskUpdate(asset_id=f"ws-{index:06d}", engine_inventory=common_pb2.EngineInventory(
                engines=[common_pb2.Engine(kind=ENGINE_KINDS[index % len(ENGINE_KINDS)], version="1.0")]))
            update.risk.evaluate_time.GetCurrentTime()
            update.engine_inventory.evaluate_time.CopyFrom(update.risk.evaluate_time)
            updates.append(update)
        stub.UpdateAssetRisk(assets_pb2.UpdateAssetRiskRequest(updates=updates), metadata=worker, timeout=60)

    def create(index: int) -> None:
        stub.CreateAsset(assets_pb2.CreateAssetRequest(asset=common_pb2.Asset(
            asset_id=f"ws-{index:06d}", hostname=f"wks-{index:06d}", employee_id=f"emp-{index:06d}", os="linux"),
            request_id=f"bench-{index}"), metadata=metadata, timeout=60)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
        list(pool.map(engines, range(0, count, RISK_UPDATES_PER_CALL)))
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--assets", type=int)
    args = parser.parse_args()
    count = args.assets or (1_000 if args.quick else 10_000)
    runs = 20 if args.quick else 50
    result: dict[str, Any] = {"assets": count}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(state_dir=Path(tmp))
        stack.start()
        try:
            with grpc.insecure_channel(stack.addresses["assets"]) as channel:
                created = assets_pb2_grpc.AssetServiceStub(channel).CreateTenant(
                    assets_pb2.CreateTenantRequest(tenant_id="console-bench", request_id="console-bench"),
                    metadata=[("authorization", f"Bearer {stack.bootstrap_token}")], timeout=30)
            result["register_seconds"] = round(register(stack, created.admin_token, count), 1)
            browser = Browser(stack.addresses["console"])
            browser.sign_in(created.admin_token)
            result["overview_first_view"] = timed(browser, "/", 1)
            result["overview_counts_ready_seconds"] = counts_ready(browser)
            peers = Peers(stack, created.admin_token)
            result["overview_warm"], result["get_seal_status_rpc"] = beside(browser, "/", peers.seal_status, runs)
            result["assets_page_50"], result["list_assets_rpc_50"] = beside(browser, "/assets", peers.list_assets,
                                                                            runs)
            result["assets_page_engine_filter"] = timed(browser, "/assets?engine=vllm", runs)
            matched = _MATCHING.search(browser.request("GET", "/assets?engine=vllm")[1])
            result["engine_filter_matches"] = int(matched.group(1)) if matched else 0
            result["asset_page"], result["get_asset_and_custody_rpc"] = beside(browser, "/assets/ws-000000",
                                                                               peers.asset, runs)
            pid = stack.procs["console"].pid
            before = rss_mib(pid)
            for _ in range(100):
                Browser(stack.addresses["console"]).sign_in(created.admin_token)
            result["rss_mib"] = {"before": round(before, 1), "after_100_sessions": round(rss_mib(pid), 1)}
            result["rss_mib_per_100_sessions"] = round(rss_mib(pid) - before, 2)
        finally:
            stack.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
