"""The isolation transaction on the store: every part of it can fail, and a failure changes nothing."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from services.assets import domain
from services.assets.domain import CommandKind, Outcome, RiskUpdate
from services.assets.store import AssetStore, Conflict, OrderOutcome, Prepared, ResultOutcome
from services.ledger import store as ledger_store


class Fixture:
    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb = ddb
        self.table = table
        self.store = AssetStore(ddb, table)
        self.tenant = f"t-{secrets.token_hex(4)}"
        self.asset_id = "host-1"
        when = domain.format_ts(domain.now())
        self.store.create_asset(self.tenant, domain.new_asset(self.asset_id, "host-1.corp", "emp-1", os="linux",
                                                              agent_version="1", when=when))

    def partition(self, pk: str) -> list[dict[str, Any]]:
        got = self.ddb.query(TableName=self.table, KeyConditionExpression="PK = :pk",
                             ExpressionAttributeValues={":pk": {"S": pk}}, ConsistentRead=True)
        return list(got["Items"])

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.partition(f"TENANT#{self.tenant}"), self.partition(f"TENANT#{self.tenant}#LEDGER")

    def prepare_isolate(self, request_id: str = "req-1") -> Prepared[OrderOutcome]:
        prepared = self.store.prepare_order(self.tenant, self.asset_id, CommandKind.ISOLATE, actor="token:abc",
                                            justification="why", request_id=request_id,
                                            control_plane_endpoints=["cp.example:443"])
        assert isinstance(prepared, Prepared)
        return prepared


@pytest.fixture
def world(embedded_aws: Any, ddb: Any) -> Fixture:
    return Fixture(ddb, embedded_aws.table_name)


def _fails_without_effect(world: Fixture, prepared: Prepared[Any], interfere: Callable[[], None]) -> None:
    interfere()
    before = world.snapshot()
    with pytest.raises(Conflict):
        world.store.commit(prepared)
    assert world.snapshot() == before


def test_a_state_change_underneath_cancels_the_whole_isolation(world: Fixture) -> None:
    """When the asset changes after it was read, neither asset, command nor ledger is written."""
    prepared = world.prepare_isolate()

    def touch_asset() -> None:
        update = RiskUpdate(world.asset_id, last_seen_time=domain.format_ts(domain.now()))
        assert world.store.update_risk(world.tenant, [update]) == 1

    _fails_without_effect(world, prepared, touch_asset)


def test_a_moved_ledger_tail_does_not_cancel_an_isolation(world: Fixture) -> None:
    """An isolation commits although another writer appended to the tenant's ledger after it was prepared."""
    prepared = world.prepare_isolate()
    draft = ledger_store.EventDraft(actor="someone", action="other.thing", subject="other:1", payload={})
    ledger_store.append_events(world.ddb, world.table, world.tenant, [draft])
    world.store.commit(prepared)
    assert world.store.get_asset(world.tenant, world.asset_id).status is domain.Status.ISOLATION_PENDING


def test_an_existing_custody_record_cancels_the_whole_isolation(world: Fixture) -> None:
    """When the custody record's item already exists, neither asset, command nor record is written."""
    prepared = world.prepare_isolate()
    record_put = prepared.transact_items[2]["Put"]

    def put_record() -> None:
        world.ddb.put_item(TableName=world.table, Item=record_put["Item"])

    _fails_without_effect(world, prepared, put_record)


def test_an_existing_command_cancels_the_whole_isolation(world: Fixture) -> None:
    """When the command item already exists, neither asset, command nor ledger is written."""
    prepared = world.prepare_isolate()
    command_put = prepared.transact_items[1]["Put"]

    def put_command() -> None:
        world.ddb.put_item(TableName=world.table, Item=command_put["Item"])

    _fails_without_effect(world, prepared, put_command)


def test_a_result_whose_command_was_closed_meanwhile_changes_nothing(world: Fixture) -> None:
    """A result transaction prepared before a twin result committed is cancelled without effect."""
    order = world.store.order(world.tenant, world.asset_id, CommandKind.ISOLATE, actor="a", justification="why",
                              request_id="r", control_plane_endpoints=[])
    result = domain.CommandResult(outcome=Outcome.APPLIED)
    first = world.store.prepare_result(world.tenant, world.asset_id, order.command.command_id, result, "agent:x")
    second = world.store.prepare_result(world.tenant, world.asset_id, order.command.command_id, result, "agent:x")
    assert isinstance(first, Prepared) and isinstance(second, Prepared)
    _fails_without_effect(world, second, lambda: world.store.commit(first))


def test_order_retries_after_a_harmless_change_underneath(world: Fixture) -> None:
    """An isolation that lost only to a last-seen update succeeds on its next attempt."""
    stale = world.prepare_isolate(request_id="req-2")
    world.store.update_risk(world.tenant, [RiskUpdate(world.asset_id, last_seen_time=domain.format_ts(domain.now()))])
    with pytest.raises(Conflict):
        world.store.commit(stale)
    done = world.store.order(world.tenant, world.asset_id, CommandKind.ISOLATE, actor="a", justification="why",
                             request_id="req-2", control_plane_endpoints=[])
    assert done.asset.status is domain.Status.ISOLATION_PENDING and not done.replayed


def test_a_repeated_result_is_answered_from_the_command(world: Fixture) -> None:
    """prepare_result for a closed command returns the recorded answer instead of a transaction."""
    order = world.store.order(world.tenant, world.asset_id, CommandKind.ISOLATE, actor="a", justification="why",
                              request_id="r", control_plane_endpoints=[])
    result = domain.CommandResult(outcome=Outcome.APPLIED)
    done = world.store.record_result(world.tenant, world.asset_id, order.command.command_id, result, "agent:x")
    again = world.store.prepare_result(world.tenant, world.asset_id, order.command.command_id, result, "agent:x")
    assert isinstance(again, ResultOutcome) and again.replayed
    assert (again.asset, again.custody_seq) == (done.asset, done.custody_seq)
