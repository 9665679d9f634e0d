"""Orders and results of a tenant sharing reads and transactions (`AssetStore.write_group`, `AssetWrites`).

The store runs against the embedded endpoint; the groups are made in-process so that their makeup is
exactly the one each test names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from typing import Any

import pytest

from services.assets import domain
from services.assets.domain import CommandKind, CommandResult, Outcome, RiskUpdate, Status
from services.assets.store import AssetStore, GroupedWrite, OrderOutcome, ResultOutcome
from services.assets.writes import RESULT_WAIT_BOUND_SECONDS, AssetWrites, select_writes
from services.kit.errors import FailedPrecondition, NotFound
from services.ledger.outbox import store as outbox_store

ENDPOINTS = ("cp.example:443",)
RULESET = "table inet lz {}"
APPLIED = CommandResult(outcome=Outcome.APPLIED, ruleset=RULESET,
                        ruleset_sha256=hashlib.sha256(RULESET.encode()).hexdigest(), rule_count=3,
                        self_test_passed=True, self_test_detail="control plane reachable")


class Tenant:
    """A fresh tenant in the shared table with a store and a few assets."""

    def __init__(self, ddb: Any, table: str, count: int) -> None:
        self.ddb, self.table = ddb, table
        self.store = AssetStore(ddb, table)
        self.id = f"t-{secrets.token_hex(4)}"
        when = domain.format_ts(domain.now())
        self.assets = [f"host-{n}" for n in range(count)]
        for asset_id in self.assets:
            self.store.create_asset(self.id, domain.new_asset(asset_id, f"{asset_id}.corp", "emp-1", os="linux",
                                                              agent_version="1", when=when))

    def isolate(self, asset_id: str, request_id: str = "") -> GroupedWrite[OrderOutcome]:
        return self.order(asset_id, CommandKind.ISOLATE, request_id)

    def order(self, asset_id: str, kind: CommandKind, request_id: str = "") -> GroupedWrite[OrderOutcome]:
        return self.store.order_write(self.id, asset_id, kind, actor="token:abc", justification="outbreak",
                                      request_id=request_id or secrets.token_hex(6),
                                      control_plane_endpoints=ENDPOINTS)

    def status(self, asset_id: str) -> Status:
        return self.store.get_asset(self.id, asset_id).status

    def actions(self, asset_id: str) -> list[str]:
        """The asset's custody records' actions in version order (the order the sequencer chains them)."""
        records = outbox_store.asset_records(self.ddb, self.table, self.id, asset_id)
        return [r.draft.action for r in sorted(records, key=lambda r: r.version)]


@pytest.fixture
def tenant(embedded_aws: Any, ddb: Any) -> Tenant:
    return Tenant(ddb, embedded_aws.table_name, 4)


def test_a_missing_asset_in_a_group_is_answered_not_found_and_the_others_commit(tenant: Tenant) -> None:
    """A group with an order for an asset that does not exist answers NotFound for it and commits the others."""
    writes = [tenant.isolate("host-0"), tenant.isolate("host-nowhere"), tenant.isolate("host-1")]
    answers = tenant.store.write_group(writes)
    assert isinstance(answers[1], NotFound)
    assert [type(answers[0]), type(answers[2])] == [OrderOutcome, OrderOutcome]
    assert [tenant.status("host-0"), tenant.status("host-1")] == [Status.ISOLATION_PENDING] * 2


def test_an_already_isolated_asset_in_a_group_is_refused_and_the_others_commit(tenant: Tenant) -> None:
    """A group with a new order for an asset already pending answers FailedPrecondition for it alone."""
    tenant.store.write_group([tenant.isolate("host-2", "first")])
    answers = tenant.store.write_group([tenant.isolate("host-0"), tenant.isolate("host-2", "second")])
    assert isinstance(answers[0], OrderOutcome)
    assert isinstance(answers[1], FailedPrecondition)
    assert tenant.actions("host-2") == ["asset.isolate.requested"]


def test_a_retried_order_in_a_group_answers_what_its_first_attempt_wrote(tenant: Tenant) -> None:
    """An order repeated with its request id in a later group answers its first command, replayed, writing nothing."""
    first = tenant.store.write_group([tenant.isolate("host-0", "req-7")])[0]
    again = tenant.store.write_group([tenant.isolate("host-0", "req-7"), tenant.isolate("host-1")])[0]
    assert (again.command.command_id, again.replayed) == (first.command.command_id, True)
    assert tenant.actions("host-0") == ["asset.isolate.requested"]


def _stale(write: GroupedWrite[Any], tenant: Tenant) -> GroupedWrite[Any]:
    """The write, with its asset changed by another writer right after it prepared (a lost race)."""
    def prepare_then_interfere(read: Any) -> Any:
        prepared = write.prepare(read)
        tenant.store.update_risk(tenant.id, [RiskUpdate(asset_id=write.asset_id,
                                                        last_seen_time=domain.format_ts(domain.now()))])
        return prepared

    return dataclasses.replace(write, prepare=prepare_then_interfere)


def test_a_cancelled_group_commits_the_others_and_answers_the_stale_order_on_its_own_path(tenant: Tenant) -> None:
    """When one order's asset changed underneath, the shared transaction is cancelled, the others commit
    together again and the stale order is answered by the single-order path, each with one record."""
    writes = [tenant.isolate("host-0"), _stale(tenant.isolate("host-1"), tenant), tenant.isolate("host-2")]
    answers = tenant.store.write_group(writes)
    assert [type(a) for a in answers] == [OrderOutcome] * 3
    assert [tenant.status(a) for a in ("host-0", "host-1", "host-2")] == [Status.ISOLATION_PENDING] * 3
    assert [tenant.actions(a) for a in ("host-0", "host-1", "host-2")] == [["asset.isolate.requested"]] * 3


def test_a_group_commits_a_result_beside_orders_of_other_assets(tenant: Tenant) -> None:
    """An agent's result shares a group with other assets' orders: the asset is ISOLATED, the others pending."""
    order = tenant.store.write_group([tenant.isolate("host-0")])[0]
    result = tenant.store.result_write(tenant.id, "host-0", order.command.command_id, APPLIED, "agent:host-0")
    answers = tenant.store.write_group([result, tenant.isolate("host-1")])
    assert [type(a) for a in answers] == [ResultOutcome, OrderOutcome]
    assert [tenant.status("host-0"), tenant.status("host-1")] == [Status.ISOLATED, Status.ISOLATION_PENDING]


def _queued(*assets: str, confirming: str = "") -> list[GroupedWrite[Any]]:
    return [GroupedWrite(asset_id, (), lambda read: None, lambda: None, confirms=asset_id in confirming)
            for asset_id in assets]


def test_the_next_group_takes_each_asset_once_in_queue_order() -> None:
    """select_writes skips a second write of an asset already in the group, keeping the queue order."""
    writes = _queued("a", "b", "a", "c")
    assert select_writes(writes) == [0, 1, 3]
    assert select_writes(writes, limit=2) == [0, 1]


def test_new_orders_go_before_agents_results() -> None:
    """While orders may go, a fresh result waits for a group without them, even with room to spare."""
    writes = _queued("a", "b", "c", "d", confirming="bd")
    assert select_writes(writes) == [0, 2]


def test_agents_results_go_once_no_order_may() -> None:
    """Results go when nothing else is queued, or when every queued order's asset is held by a group in flight."""
    assert select_writes(_queued("a", "b", confirming="ab")) == [0, 1]
    writes = [*_queued("a"), *_queued("b", confirming="b")]
    assert select_writes(writes, in_flight=_queued("a")) == [1]


def test_a_result_that_waited_the_bound_goes_before_orders() -> None:
    """A result queued RESULT_WAIT_BOUND_SECONDS is taken first, however many orders are queued."""
    writes = _queued("a", "b", "c", confirming="c")
    later = writes[-1].queued_at + RESULT_WAIT_BOUND_SECONDS
    assert select_writes(writes, limit=2, now=later) == [0, 2]
    assert select_writes(writes, limit=2, now=later - 0.01) == [0, 1]


def test_a_result_never_overtakes_an_earlier_write_of_its_asset() -> None:
    """A result queued behind its asset's order waits for that order's group, however full the group is."""
    writes = [*_queued("a", "b"), *_queued("a", confirming="a")]
    assert select_writes(writes, limit=1) == [0]


def test_the_next_group_leaves_out_every_asset_a_group_in_flight_holds() -> None:
    """No queued write of an asset in a group in flight joins the next group, not even a later result."""
    writes = [*_queued("a", "b"), *_queued("a", "c", confirming="ac")]
    overdue = writes[-1].queued_at + RESULT_WAIT_BOUND_SECONDS
    assert select_writes(writes, in_flight=_queued("a"), now=overdue) == [1, 3]


async def test_two_writes_of_one_asset_in_one_burst_commit_in_arrival_order(tenant: Tenant) -> None:
    """A result and a release of one asset submitted together are answered in that order (the release is only
    allowed after the result), and the asset's custody records follow that order."""
    writes = AssetWrites(tenant.store)
    order = await writes.write(tenant.id, tenant.isolate("host-0"))
    result, release, other = await asyncio.gather(
        writes.write(tenant.id, tenant.store.result_write(tenant.id, "host-0", order.command.command_id, APPLIED,
                                                          "agent:host-0")),
        writes.write(tenant.id, tenant.order("host-0", CommandKind.RELEASE)),
        writes.write(tenant.id, tenant.isolate("host-1")),
    )
    assert (result.asset.status, release.asset.status, other.asset.status) == (
        Status.ISOLATED, Status.RELEASE_PENDING, Status.ISOLATION_PENDING)
    assert tenant.actions("host-0") == ["asset.isolate.requested", "asset.isolate.enforced",
                                        "asset.release.requested"]


async def test_a_burst_of_orders_shares_a_few_groups(tenant: Tenant) -> None:
    """Forty concurrent orders of a tenant are all answered in far fewer groups than orders."""
    wide = Tenant(tenant.ddb, tenant.table, 40)
    writes = AssetWrites(wide.store)
    answers = await asyncio.gather(*(writes.write(wide.id, wide.isolate(a)) for a in wide.assets))
    assert {a.asset.status for a in answers} == {Status.ISOLATION_PENDING}
    assert writes.groups <= 3


async def test_two_orders_of_one_asset_in_one_burst_are_answered_in_arrival_order(tenant: Tenant) -> None:
    """A release and an isolation of one ISOLATION_FAILED asset submitted together: the release (first) is
    committed and the isolation is then refused by the RELEASE_PENDING state, with the records in that order."""
    writes = AssetWrites(tenant.store)
    order = await writes.write(tenant.id, tenant.isolate("host-0"))
    failed = dataclasses.replace(APPLIED, outcome=Outcome.FAILED, ruleset="", ruleset_sha256="",
                                 self_test_passed=False, error="nft busy")
    await writes.write(tenant.id, tenant.store.result_write(tenant.id, "host-0", order.command.command_id, failed,
                                                            "agent:host-0"))
    release, isolate = await asyncio.gather(writes.write(tenant.id, tenant.order("host-0", CommandKind.RELEASE)),
                                            writes.write(tenant.id, tenant.isolate("host-0")),
                                            return_exceptions=True)
    assert isinstance(release, OrderOutcome) and release.asset.status is Status.RELEASE_PENDING
    assert isinstance(isolate, FailedPrecondition)
    assert tenant.actions("host-0") == ["asset.isolate.requested", "asset.isolate.failed",
                                        "asset.release.requested"]
