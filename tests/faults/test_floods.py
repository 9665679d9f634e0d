"""Floods: a noisy agent is rate-limited without slowing the others, and a fleet reconnecting at once after
an ingest restart is admitted spread out by jitter, without a crash.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from agent.backoff import BackoffPolicy
from agent.enroll import Identity
from services.ingest import store as ingest_store
from services.kit.auth import new_secret, sha256_hex
from services.kit.devstack import Stack
from tests.faults.helpers import Fleet, Store, kill9, make_tenant, own_stack, restart, wait_for
from tests.ingest.agents import TestAgent, create_tenant, enroll, heartbeat

pytestmark = pytest.mark.slow

# How many agents reconnect at once: the 5,000 (back in about 30 s of the 60 s allowed on 2 cores).
FLEET = int(os.environ.get("LZ_FAULTS_FLEET", "5000"))


async def test_a_noisy_agent_is_rate_limited_while_the_others_keep_getting_acks(stack: Stack):
    """An agent sending ten times its rate is cut off with RESOURCE_EXHAUSTED; quiet agents' acks keep flowing."""
    tenant = create_tenant(stack)
    agents = []
    for index in range(4):
        reply = enroll(stack.addresses["ingest"], tenant, hostname=f"flood-{index}")
        agents.append(TestAgent(stack.addresses["ingest"], tenant.tenant, reply.asset_id, reply.agent_credential))
    noisy, quiet = agents[0], agents[1:]
    try:
        for agent in agents:
            await agent.connect()
        latencies: list[float] = []

        async def behave(agent: TestAgent) -> None:
            for seq in range(1, 7):  # one a second: the agent's rate
                started = time.monotonic()
                await agent.send(heartbeat(seq))
                await agent.ack_for(seq, within=5)
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

        async def flood() -> None:
            for seq in range(1, 61):  # ten a second, until the server ends the stream
                await noisy.send(heartbeat(seq))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(noisy.ended.wait(), 0.1)
                if noisy.ended.is_set():
                    return

        await asyncio.gather(flood(), *(behave(a) for a in quiet))
        assert await noisy.status(within=10) is grpc.StatusCode.RESOURCE_EXHAUSTED
        info = noisy.error_info()
        assert info.reason == "AGENT_RATE_LIMITED" and int(info.metadata["retry_after_ms"]) > 0
        assert len(latencies) == 18 and max(latencies) < 2.0, latencies
    finally:
        for agent in agents:
            await agent.close()


@pytest.fixture(scope="module")
def storm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory.mktemp("storm")) as stack:
        yield stack


def _credentials(stack: Stack, tenant: str, count: int) -> list[Identity]:
    """Agent credentials written straight to the table (enrolling thousands through Enroll takes minutes)."""
    store = Store(stack)
    identities = []
    now = "2026-01-01T00:00:00.000000Z"

    def one(index: int) -> Identity:
        secret = new_secret()
        asset_id = f"storm-{index:05d}"
        ingest_store.put_agent(store.ddb, store.table, tenant, asset_id, sha256_hex(secret), 1, now)
        return Identity(tenant, asset_id, secret, stack.addresses["ingest"])

    with ThreadPoolExecutor(16) as pool:
        identities = list(pool.map(one, range(count)))
    return identities


def _most_within_a_second(times: list[float]) -> int:
    """The most of `times` that fall within any one second."""
    times = sorted(times)
    return max(bisect.bisect_right(times, t + 1.0) - i for i, t in enumerate(times))


async def test_a_fleet_reconnecting_after_an_ingest_restart_is_admitted_with_jitter(storm_stack: Stack):
    """After kill -9 of ingest the fleet's reconnect attempts spread over seconds, every agent is back
    within 60 s, and ingest survives."""
    tenant = make_tenant(storm_stack)
    identities = await asyncio.to_thread(_credentials, storm_stack, tenant.tenant, FLEET)
    agent = BackoffPolicy()  # lz-agent's own reconnect schedule
    fleet = Fleet(storm_stack, tenant, count=FLEET, interval=60.0, changing=False, first_jitter=agent.first_jitter,
                  initial=agent.initial, cap=agent.cap, send_rate=5.0, identities=identities)
    await fleet.start()
    try:
        await wait_for(lambda: fleet.stats.connected == FLEET, 180,
                       f"{FLEET} agents connected (now {fleet.stats.connected})")
        crashed = time.monotonic()
        await asyncio.to_thread(kill9, storm_stack, "ingest")
        await wait_for(lambda: fleet.stats.connected == 0, 30, "every stream noticed the crash")
        await asyncio.to_thread(restart, storm_stack, "ingest")
        restarted = time.monotonic()
        await wait_for(lambda: fleet.stats.connected == FLEET, 60, f"{FLEET} agents reconnected", every=0.1)
        took = time.monotonic() - restarted
        assert storm_stack.procs["ingest"].poll() is None, "ingest died under the reconnect storm"
    finally:
        await fleet.stop()
    first_attempts = {}
    for at, index in fleet.attempts:
        if at > crashed:
            first_attempts.setdefault(index, at)
    peak = _most_within_a_second(list(first_attempts.values()))
    print(f"reconnect storm: {FLEET} agents back in {took:.1f}s after ingest served again; "
          f"at most {peak} first reconnect attempts in one second")
    assert len(first_attempts) == FLEET
    # Without the first reconnect's extra jitter the whole fleet would try within 0.4 s (1 s +-20 %).
    assert peak < 0.3 * FLEET, f"{peak} of {FLEET} agents first tried to reconnect within one second: no jitter"
