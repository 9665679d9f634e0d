"""The reconnect schedule: gRPC's 1 s x1.6 with +-20 % jitter, a 120 s cap, and a spread first reconnect."""

from __future__ import annotations

import random
import statistics

from agent.backoff import Backoff, BackoffPolicy

SAMPLES = 2000


def _delays(policy: BackoffPolicy, attempts: int, seed: int) -> list[float]:
    backoff = Backoff(policy, random.Random(seed))
    return [backoff.next_delay() for _ in range(attempts)]


def test_delays_stay_within_twenty_percent_of_the_schedule() -> None:
    """Every delay lies within +-20 % of 1 s x 1.6^n (capped at 120 s)."""
    policy = BackoffPolicy(first_jitter=0)
    for seed in range(200):
        for attempt, delay in enumerate(_delays(policy, 15, seed)):
            base = min(120.0, 1.6**attempt)
            assert base * 0.8 - 1e-9 <= delay <= min(120.0, base * 1.2) + 1e-9


def test_jitter_is_centred_and_spread() -> None:
    """Across many agents the first retry's delays average 1 s and cover most of the +-20 % band."""
    firsts = [_delays(BackoffPolicy(first_jitter=0), 1, seed)[0] for seed in range(SAMPLES)]
    assert abs(statistics.fmean(firsts) - 1.0) < 0.01
    assert min(firsts) < 0.82 and max(firsts) > 1.18
    # uniform on [0.8, 1.2] has a standard deviation of 0.4 / sqrt(12) ~ 0.115
    assert 0.10 < statistics.pstdev(firsts) < 0.13


def test_delays_never_exceed_the_cap() -> None:
    """After enough failures every delay is at most 120 s and at least 96 s (the cap less 20 %)."""
    tail = _delays(BackoffPolicy(first_jitter=0), 60, seed=7)[20:]
    assert max(tail) <= 120.0
    assert min(tail) >= 96.0


def test_first_reconnect_adds_up_to_n_seconds() -> None:
    """The first delay after a healthy stream is 1 s +-20 % plus a uniform 0..N s spread."""
    firsts = [_delays(BackoffPolicy(first_jitter=30.0), 1, seed)[0] for seed in range(SAMPLES)]
    assert min(firsts) >= 0.8 and max(firsts) <= 31.2
    assert abs(statistics.fmean(firsts) - 16.0) < 1.0
    # a restart's reconnects spread over the window: no one-second bucket holds more than 10 % of agents
    buckets = [0] * 32
    for delay in firsts:
        buckets[int(delay)] += 1
    assert max(buckets) < SAMPLES * 0.1


def test_only_the_first_reconnect_is_spread() -> None:
    """The second delay has no extra spread: it stays within 1.6 s +-20 %."""
    for seed in range(200):
        second = _delays(BackoffPolicy(first_jitter=30.0), 2, seed)[1]
        assert 1.28 - 1e-9 <= second <= 1.92 + 1e-9


def test_reset_starts_the_schedule_again() -> None:
    """After a reset the next delay is a first delay again (base 1 s, with its spread)."""
    backoff = Backoff(BackoffPolicy(first_jitter=0), random.Random(3))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert 0.8 <= backoff.next_delay() <= 1.2


def test_a_reconnect_after_max_age_is_short_and_costs_no_attempt() -> None:
    """After failures, a max-age reconnect waits at most the first step's jitter and starts the schedule again."""
    backoff = Backoff(BackoffPolicy(first_jitter=10.0), random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    delays = [backoff.rebalance_delay() for _ in range(200)]
    assert max(delays) <= 0.2
    assert backoff.attempt == 0
