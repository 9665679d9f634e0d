"""Reconnect delays: gRPC's connection-backoff schedule plus a spread for the first reconnect.

The schedule is the one in gRPC's connection-backoff guide: a base of 1 s that
grows by 1.6 per failed attempt up to 120 s, each delay jittered by +-20 %.
The first delay after a healthy stream also gets an extra 0..N s, so when the
control plane restarts, a fleet of agents does not come back in the same second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """The knobs of the schedule; the defaults are gRPC's."""

    initial: float = 1.0
    multiplier: float = 1.6
    jitter: float = 0.2
    cap: float = 120.0
    first_jitter: float = 10.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs initial > 0, multiplier >= 1 and 0 <= jitter < 1")
        if self.cap < self.initial or self.first_jitter < 0:
            raise ValueError("backoff needs cap >= initial and first_jitter >= 0")


class Backoff:
    """Successive reconnect delays; :meth:`reset` after a healthy stream starts the schedule again."""

    def __init__(self, policy: BackoffPolicy | None = None, rng: random.Random | None = None) -> None:
        self.policy = policy or BackoffPolicy()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._base = self.policy.initial
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next connection attempt, in seconds (never above the cap)."""
        p = self.policy
        spread = self._rng.uniform(-p.jitter, p.jitter)
        delay = min(p.cap, self._base * (1 + spread))
        if self._attempt == 0 and p.first_jitter > 0:
            delay = min(p.cap, delay + self._rng.uniform(0, p.first_jitter))
        self._attempt += 1
        self._base = min(p.cap, self._base * p.multiplier)
        return delay

    def rebalance_delay(self) -> float:
        """The delay after the server ended a healthy connection at its maximum age: a plain reconnect.

        No penalty (the schedule is reset, not advanced) and no first-reconnect spread: the server
        already jitters each connection's age, so these reconnects are spread out by themselves.
        """
        self.reset()
        return self._rng.uniform(0, self.policy.initial * self.policy.jitter)

    def reset(self) -> None:
        """Back to the first delay (with its extra spread): the last stream was healthy."""
        self._base = self.policy.initial
        self._attempt = 0
