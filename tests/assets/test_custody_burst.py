"""Custody actions at incident scale: 200 concurrent isolations in one tenant, and mixed bursts per asset."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.kit.auth import Role
from services.kit.devstack import Stack
from services.ledger.outbox import CustodyRecord
from tests.assets.conftest import Assets
from tests.faults.helpers import Store, assert_chain_sound, make_tenant, verify_full

pytestmark = pytest.mark.slow

BURST = 200


@dataclass
class Burst:
    assets: Assets
    codes: dict[str, grpc.StatusCode]
    replies: dict[str, assets_pb2.IsolateAssetResponse]
    records: list[CustodyRecord]


def _try(call: Callable[[], Any]) -> tuple[grpc.StatusCode, Any]:
    try:
        return grpc.StatusCode.OK, call()
    except grpc.RpcError as exc:
        return exc.code(), None


@pytest.fixture(scope="module")
def burst(stack: Stack) -> Iterator[Burst]:
    """A tenant with 200 assets, all isolated at once from 200 threads; the records once all are chained."""
    tenant = make_tenant(stack)
    channel = tenant.channel("assets")
    assets = Assets(tenant, channel)
    with ThreadPoolExecutor(16) as pool:
        asset_ids = list(pool.map(lambda i: assets.create_asset(f"burst-{i:03d}").asset_id, range(BURST)))
    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(lambda a: _try(lambda: assets.isolate(a)), asset_ids))
    codes = {a: code for a, (code, _) in zip(asset_ids, answers, strict=True)}
    replies = {a: reply for a, (_, reply) in zip(asset_ids, answers, strict=True) if reply is not None}
    try:
        yield Burst(assets, codes, replies, assets.chained_records(within=120))
    finally:
        channel.close()


def test_all_two_hundred_concurrent_isolations_succeed(burst: Burst) -> None:
    """No IsolateAsset call of a 200-wide burst in one tenant fails (none ABORTED by a lost ledger race)."""
    assert Counter(burst.codes.values()) == Counter({grpc.StatusCode.OK: BURST})


def test_every_asset_of_the_burst_is_pending_with_its_one_command(burst: Burst) -> None:
    """After the burst every asset is ISOLATION_PENDING and has exactly the command its answer named."""
    assets = burst.assets
    listed = assets.stub.ListAssets(assets_pb2.ListAssetsRequest(page_size=BURST), metadata=assets.md(Role.VIEWER))
    assert {a.asset_id: a.status for a in listed.assets} == dict.fromkeys(
        burst.codes, common_pb2.ASSET_STATUS_ISOLATION_PENDING)
    commands = Counter(i["asset_id"]["S"] for i in assets.items(f"TENANT#{assets.tenant}")
                       if "command_id" in i)
    assert commands == Counter(dict.fromkeys(burst.codes, 1))


def test_every_asset_of_the_burst_has_exactly_one_requested_custody_event(burst: Burst) -> None:
    """The ledger holds one asset.isolate.requested event per isolated asset, naming the answered command."""
    events = assert_chain_sound(Store(burst.assets.stack), burst.assets.tenant)
    requested = [e for e in events if e.action == "asset.isolate.requested"]
    by_subject = Counter(e.subject for e in requested)
    assert by_subject == Counter({f"asset:{a}": 1 for a in burst.codes})
    seqs = {r.asset_id: r.ledger_seq for r in burst.records}
    named = {e.subject.removeprefix("asset:"): e.seq for e in requested}
    assert named == seqs


def test_the_chain_after_the_burst_verifies_from_genesis(burst: Burst) -> None:
    """VerifyLedger FULL over the tenant's ledger after the burst answers ok with every event checked."""
    answer = verify_full(burst.assets.handle)
    assert (answer.ok, answer.events_checked) == (True, BURST)


EXPECTED_CYCLE = [
    "asset.isolate.requested", "asset.isolate.enforced",
    "asset.release.requested", "asset.release.enforced",
    "asset.isolate.requested", "asset.isolate.failed",
    "asset.isolate.requested", "asset.isolate.enforced",
]


def _won(*calls: Callable[[], Any]) -> Any:
    """Run racing orders of one asset at once; exactly one wins (the others are refused by the state)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(_try, calls))
    winners = [reply for code, reply in answers if code == grpc.StatusCode.OK]
    assert len(winners) == 1, [code for code, _ in answers]
    return winners[0]


def _cycle(assets: Assets, asset_id: str) -> None:
    """Isolate, release, a failed isolation and a retried one, each order raced by a second operator's
    and each answered by the agent's result."""
    isolate, release = (lambda: assets.isolate(asset_id)), (lambda: assets.release(asset_id))
    assets.result(asset_id, _won(isolate, isolate).command.command_id)
    assets.result(asset_id, _won(release, release).command.command_id)
    assets.result(asset_id, _won(isolate, isolate).command.command_id, applied=False, error="nft busy")
    assets.result(asset_id, _won(isolate, isolate).command.command_id)


def test_a_mixed_burst_keeps_each_assets_custody_events_in_state_change_order(assets: Assets) -> None:
    """Twenty assets cycling through raced isolations and releases at once each get their events in the order
    of their state changes, one per change."""
    asset_ids = [assets.create_asset().asset_id for _ in range(20)]
    with ThreadPoolExecutor(len(asset_ids)) as pool:
        list(pool.map(lambda a: _cycle(assets, a), asset_ids))
    records = assets.chained_records(within=120)
    for asset_id in asset_ids:
        mine = sorted((r for r in records if r.asset_id == asset_id), key=lambda r: r.ledger_seq)
        assert [r.draft.action for r in mine] == EXPECTED_CYCLE
        assert [r.version for r in mine] == sorted(r.version for r in mine)
        log = assets.stub.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id),
                                        metadata=assets.md(Role.VIEWER))
        assert [e.action for e in log.events] == EXPECTED_CYCLE
