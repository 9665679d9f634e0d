"""Crash safety of the sealer on the sealer tests' own stack: kill -9 at any moment, and exits at exact steps
(the LZ_SEALER_CRASH_AFTER test hook), never make a second checkpoint of a size or an inconsistent one."""

from __future__ import annotations

import random
import threading
import time

import pytest

from services.ledger import keys as seal_keys
from tests.ledger.helpers import append
from tests.sealer.helpers import (
    assert_consistent,
    kill9,
    object_versions,
    records,
    restart_sealer,
    wait_caught_up,
    wait_exit,
)

KILLS = 4


@pytest.mark.slow
def test_sealer_killed_repeatedly_during_a_burst_resumes_without_rewrites(sealer_stack, own_tenant):
    """Kill -9 of the sealer four times during a burst: it resumes, and every checkpoint is single and consistent."""
    done = threading.Event()
    errors: list[BaseException] = []

    def burst() -> None:
        try:
            for _ in range(12):
                append(own_tenant, 198, batch=99)
                time.sleep(0.1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=burst)
    writer.start()
    rng = random.Random(7)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.4, 1.2))
        restart_sealer(sealer_stack)
    writer.join()
    assert not errors
    final = wait_caught_up(own_tenant)
    found = records(sealer_stack, own_tenant.tenant)
    assert final.sealed_through == 12 * 198 == found[-1].size
    assert set(object_versions(sealer_stack, own_tenant.tenant).values()) == {1}
    assert [r.size for r in found] == sorted({r.size for r in found})
    assert_consistent(own_tenant, found)


def test_exit_after_tiles_leaves_no_checkpoint_and_resumes(sealer_stack, own_tenant):
    """A sealer that exits between writing tiles and its checkpoint records nothing; a restart seals everything."""
    restart_sealer(sealer_stack, {"LZ_SEALER_CRASH_AFTER": "tiles"})
    try:
        append(own_tenant, 40)
        assert wait_exit(sealer_stack) == 137
        assert records(sealer_stack, own_tenant.tenant) == []
    finally:
        restart_sealer(sealer_stack)
    final = wait_caught_up(own_tenant)
    found = records(sealer_stack, own_tenant.tenant)
    assert (final.sealed_through, [r.size for r in found]) == (40, [40])
    assert set(object_versions(sealer_stack, own_tenant.tenant).values()) == {1}


def test_exit_after_checkpoint_object_is_finished_by_the_restart(sealer_stack, own_tenant):
    """A checkpoint object written but not recorded before an exit is recorded by the restart, not skipped."""
    restart_sealer(sealer_stack, {"LZ_SEALER_CRASH_AFTER": "checkpoint"})
    try:
        append(own_tenant, 40)
        assert wait_exit(sealer_stack) == 137
        assert records(sealer_stack, own_tenant.tenant) == []
        append(own_tenant, 25)
    finally:
        restart_sealer(sealer_stack)
    wait_caught_up(own_tenant)
    found = records(sealer_stack, own_tenant.tenant)
    versions = object_versions(sealer_stack, own_tenant.tenant)
    assert [r.size for r in found] == [40, 65]
    assert versions == {seal_keys.checkpoint_object_key(own_tenant.tenant, 40): 1,
                        seal_keys.checkpoint_object_key(own_tenant.tenant, 65): 1}
    assert_consistent(own_tenant, found)


def test_exit_after_recording_resumes_from_the_record(sealer_stack, own_tenant):
    """A sealer that exits right after recording a checkpoint continues from it after a restart."""
    restart_sealer(sealer_stack, {"LZ_SEALER_CRASH_AFTER": "record"})
    try:
        append(own_tenant, 30)
        assert wait_exit(sealer_stack) == 137
        append(own_tenant, 30)
    finally:
        restart_sealer(sealer_stack)
    wait_caught_up(own_tenant)
    found = records(sealer_stack, own_tenant.tenant)
    assert [r.size for r in found] == [30, 60]
    assert_consistent(own_tenant, found)


def test_killed_sealer_leaves_seal_now_to_the_restart(sealer_stack, own_tenant):
    """After kill -9 with events pending, the restarted sealer seals them without a SealNow."""
    kill9(sealer_stack)
    try:
        append(own_tenant, 20)
    finally:
        restart_sealer(sealer_stack)
    assert wait_caught_up(own_tenant).sealed_through == 20
