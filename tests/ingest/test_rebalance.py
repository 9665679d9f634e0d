"""Scale-out: with a short maximum connection age, streams of one replica spread over the replicas added later."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.kit.devstack import Stack
from tests.conftest import running
from tests.faults.helpers import Fleet, make_tenant, wait_for
from tests.ingest.replicas import REPLICAS, public

pytestmark = pytest.mark.slow

# Agents pick a replica at random on each reconnect, so the spread is binomial: 300 agents keep each
# replica's share within +-20 % of even (2.4 standard deviations) in all but about 3 % of the moments.
AGENTS = 300
INTERVAL = 5.0
MAX_AGE_SECONDS = 12.0
GRACE_SECONDS = 2.0
SPREAD = 0.2


@pytest.fixture(scope="module")
def scaling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with one ingest process serving and two more that start only when the test adds them."""
    yield from running(Stack(
        state_dir=tmp_path_factory.mktemp("rebalance"), ingest_replicas=len(REPLICAS), ingest_deferred=2,
        extra_env={"LZ_HEARTBEAT_INTERVAL_SECONDS": str(int(INTERVAL)),
                   "LZ_MAX_CONNECTION_AGE_SECONDS": str(MAX_AGE_SECONDS),
                   "LZ_MAX_CONNECTION_AGE_GRACE_SECONDS": str(GRACE_SECONDS)}))


def spread(fleet: Fleet, endpoints: list[str]) -> dict[str, int] | None:
    """Live sessions per endpoint once each holds within SPREAD of an even share, else None."""
    counts = fleet.placement()
    even = AGENTS / len(endpoints)
    return dict(counts) if all(abs(counts[e] - even) <= SPREAD * even for e in endpoints) else None


def all_acked(fleet: Fleet, produced: dict[str, int]) -> bool:
    acked = fleet.acked()
    return all(acked[asset_id] >= seq for asset_id, seq in produced.items())


async def test_streams_spread_over_added_replicas_within_two_ages_and_no_heartbeat_is_lost(scaling: Stack) -> None:
    """Two replicas added to one: within two maximum ages each holds an even share (+-20 %), every heartbeat acked."""
    tenant = make_tenant(scaling)
    fleet = Fleet(scaling, tenant, AGENTS, INTERVAL, changing=False, endpoints=public(scaling),
                  channels_per_endpoint=10)
    await fleet.start()
    try:
        # Only the first replica serves yet: every connected agent is on it.
        await wait_for(lambda: fleet.stats.connected == AGENTS, 120, "every agent connected")
        for name in REPLICAS[1:]:
            scaling.start_ingest_replica(name)
        counts = await wait_for(lambda: spread(fleet, public(scaling)), 2 * MAX_AGE_SECONDS + GRACE_SECONDS,
                                "an even spread over the three replicas", every=0.5)
        produced = fleet.produced()
        await wait_for(lambda: all_acked(fleet, produced), 60, "every heartbeat made so far acked")
        # The spread came from sessions ending at their maximum age, not from failed connects.
        await wait_for(lambda: fleet.stats.aged_out >= AGENTS, 2 * MAX_AGE_SECONDS + GRACE_SECONDS,
                       "as many sessions ended at max age as there are agents")
    finally:
        await fleet.stop()
    print(f"{AGENTS} streams after scale-out: {counts}; {fleet.stats.aged_out} sessions ended at max age")
