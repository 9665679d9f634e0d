"""Rate limits without I/O: a token bucket, and a bounded table of them keyed by who is limited."""

from __future__ import annotations

import collections
from collections.abc import Hashable


class TokenBucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up. Starts full."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def available(self, now: float) -> float:
        """The tokens the bucket holds at `now` (taking none)."""
        return min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)

    def take(self, now: float) -> float:
        """Take one token: 0.0 when allowed, else the seconds until a token is due (nothing is taken)."""
        self.tokens = self.available(now)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Buckets:
    """One token bucket per key (a peer, a tenant), the least recently used forgotten beyond `max_keys`."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: collections.OrderedDict[Hashable, TokenBucket] = collections.OrderedDict()

    def exhausted(self, key: Hashable, now: float) -> bool:
        """Whether `key`'s bucket has no whole token at `now` (taking nothing; an unknown key has a full one)."""
        bucket = self._buckets.get(key)
        return bucket is not None and bucket.available(now) < 1.0

    def take(self, key: Hashable, now: float) -> float:
        """`TokenBucket.take` on `key`'s bucket (a new key starts with a full bucket)."""
        bucket = self._buckets.pop(key, None) or TokenBucket(self._rate, self._burst, now)
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return bucket.take(now)
