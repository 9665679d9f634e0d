"""The custody outbox on the embedded endpoint: records, the sequencer's sweep, order, no double append, overdue."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.kit import embedded
from services.ledger import store as ledger_store
from services.ledger.committer import GroupCommitter
from services.ledger.outbox import CustodyRecord, CustodySequencer, keys, new_record, record_put
from services.ledger.outbox import store as outbox_store
from tests.faults.helpers import wait_for

OVERDUE = timedelta(seconds=60)


class World:
    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb = ddb
        self.table = table
        self.tenant = f"t-{secrets.token_hex(4)}"

    def write(self, asset_id: str, version: int, prev_version: int = 0, *,
              ago: timedelta = timedelta()) -> CustodyRecord:
        """A committed, unchained record, as a transaction of the assets service leaves it."""
        draft = ledger_store.EventDraft(actor="token:op", action="asset.isolate.requested",
                                        subject=f"asset:{asset_id}", payload={"version": version})
        record = new_record(self.tenant, asset_id, version, prev_version, draft, now=datetime.now(UTC) - ago)
        self.ddb.transact_write_items(TransactItems=[record_put(self.table, record)])
        return record

    def sequencer(self) -> CustodySequencer:
        return CustodySequencer(self.ddb, self.table, GroupCommitter(self.ddb, self.table), overdue_after=OVERDUE)

    def records(self) -> list[CustodyRecord]:
        return outbox_store.asset_records(self.ddb, self.table, self.tenant)

    def events(self) -> list[ledger_store.StoredEvent]:
        return list(ledger_store.events_between(self.ddb, self.table, self.tenant, 1, 10**6))

    async def all_chained(self) -> list[CustodyRecord]:
        return await wait_for(lambda: all(r.chained for r in self.records()) and self.records(), 30,
                              "every record chained")


@pytest.fixture
def world(embedded_aws: Any, ddb: Any) -> World:
    return World(ddb, embedded_aws.table_name)


async def test_a_sweep_chains_records_a_stopped_process_left_pending(world: World) -> None:
    """Records nobody submitted (their process died after the commit) are chained by the next sweep."""
    written = [world.write(f"host-{i}", 1) for i in range(3)]
    await world.sequencer().sweep()
    records = await world.all_chained()
    events = {e.seq: e for e in world.events()}
    assert sorted(r.ledger_seq for r in records) == sorted(events)
    assert {events[r.ledger_seq].subject for r in records} == {r.draft.subject for r in written}


async def test_a_record_appended_before_a_crash_keeps_its_first_seq(world: World) -> None:
    """A record whose event was appended but not yet marked is marked with that seq, not appended again."""
    record = world.write("host-1", 1)
    [seq] = ledger_store.append_events(world.ddb, world.table, world.tenant, [record.draft], record.request_id)
    await world.sequencer().sweep()
    [chained] = await world.all_chained()
    assert chained.ledger_seq == seq
    assert [e.seq for e in world.events()] == [seq]


async def test_an_unchained_previous_record_is_chained_first(world: World) -> None:
    """Given only an asset's second record, the sequencer chains the first one before it."""
    world.write("host-1", 3)
    second = world.write("host-1", 7, prev_version=3)
    world.sequencer().submit(second)
    first, later = await world.all_chained()
    assert (first.version, later.version) == (3, 7)
    assert first.ledger_seq < later.ledger_seq


async def test_records_of_many_assets_share_transactions(world: World) -> None:
    """Sixty records submitted together are appended in fewer transactions than records."""
    committer = GroupCommitter(world.ddb, world.table)
    sequencer = CustodySequencer(world.ddb, world.table, committer, overdue_after=OVERDUE)
    for record in [world.write(f"host-{i}", 1) for i in range(60)]:
        sequencer.submit(record)
    await world.all_chained()
    assert committer.transactions < 60


async def test_records_wait_while_the_tenants_writes_are_busy_and_are_chained_when_they_pause(world: World) -> None:
    """A sequencer told the tenant's writes are busy holds its records until they pause, then chains them."""
    paused = asyncio.Event()
    yielded_for: list[str] = []

    async def writes_pause(tenant: str) -> None:
        yielded_for.append(tenant)
        await paused.wait()

    sequencer = CustodySequencer(world.ddb, world.table, GroupCommitter(world.ddb, world.table),
                                 overdue_after=OVERDUE, yield_to=writes_pause)
    for record in [world.write(f"host-{i}", 1) for i in range(3)]:
        sequencer.submit(record)
    await wait_for(lambda: yielded_for, 10, "the sequencer asked whether the tenant's writes paused")
    await asyncio.sleep(0.5)
    assert not any(r.chained for r in world.records())
    paused.set()
    assert len(await world.all_chained()) == 3
    assert yielded_for[0] == world.tenant


async def test_records_are_chained_after_the_bound_while_the_writes_stay_busy(world: World) -> None:
    """Writes that never pause delay chaining by at most the bound, not forever."""
    never = asyncio.Event()

    async def writes_never_pause(tenant: str) -> None:
        await never.wait()

    sequencer = CustodySequencer(world.ddb, world.table, GroupCommitter(world.ddb, world.table),
                                 overdue_after=OVERDUE, yield_to=writes_never_pause, max_yield_seconds=0.2)
    sequencer.submit(world.write("host-1", 1))
    assert len(await world.all_chained()) == 1


async def test_a_record_older_than_the_bound_is_reported_overdue(world: World) -> None:
    """A pending record older than the bound is in the sweep's overdue report and in overdue_records."""
    old = world.write("host-old", 1, ago=timedelta(minutes=5))
    fresh = world.write("host-new", 1)
    overdue = outbox_store.overdue_records(world.ddb, world.table, datetime.now(UTC) - OVERDUE, limit=1000)
    assert old.key in {r.key for r in overdue}
    assert fresh.key not in {r.key for r in overdue}
    report = await world.sequencer().sweep()
    assert old.key in {r.key for r in report.overdue}
    await world.all_chained()


def test_a_chained_record_is_no_longer_pending(world: World) -> None:
    """mark_chained stamps the seq and takes the record off the pending list."""
    record = world.write("host-1", 1)
    outbox_store.mark_chained(world.ddb, world.table, [(record, 5)])
    [stored] = world.records()
    assert stored.ledger_seq == 5
    pending = {r.key for shard in range(keys.PENDING_SHARDS)
               for r in outbox_store.pending_records(world.ddb, world.table, shard)}
    assert record.key not in pending


def _check(world: World, embedded_aws: Any, tenant: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **embedded.EMBEDDED_CREDENTIALS, "LZ_TABLE_NAME": world.table,
           "LZ_AWS_ENDPOINT_URL": embedded_aws.endpoint_url}
    return subprocess.run([sys.executable, "-m", "services.ledger.outbox.check", "--tenant", tenant],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_check_reports_an_overdue_record_and_exits_1(world: World, embedded_aws: Any) -> None:
    """The overdue check prints the tenant's record left unchained for five minutes and exits 1."""
    world.write("host-late", 1, ago=timedelta(minutes=5))
    done = _check(world, embedded_aws, world.tenant)
    assert done.returncode == 1, done.stderr
    [line] = done.stdout.splitlines()
    assert json.loads(line)["asset_id"] == "host-late"


def test_the_check_passes_when_nothing_is_overdue(world: World, embedded_aws: Any) -> None:
    """A tenant whose only pending record is fresh passes the overdue check (exit 0, no output)."""
    world.write("host-fresh", 1)
    done = _check(world, embedded_aws, world.tenant)
    assert (done.returncode, done.stdout) == (0, "")
