"""Several control-plane endpoints: which one each session dials.

An agent may be given several ingest addresses (`--control-plane` repeated or comma-separated, or
`[stream] address` plus the enrollment's). Each new session picks one at random, so a fleet spreads
over them, and after a session that failed to connect the next one tries a different endpoint first.
A DNS name that resolves to several addresses (an NLB in front of the ingest pods, a headless Service)
is one endpoint; gRPC's pick_first shuffles its addresses (`SHUFFLED_PICK_FIRST`), so agents behind
one name also spread.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence

from agent.containment.policy import PolicyError, split_host_port

# gRFC A62: pick_first with the resolved addresses shuffled per channel.
SHUFFLED_PICK_FIRST = ("grpc.service_config", json.dumps(
    {"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": True}}]}))


def parse_endpoints(values: Iterable[str]) -> tuple[str, ...]:
    """Endpoints from `host:port` values, each possibly a comma-separated list; ValueError when one is bad."""
    found: list[str] = []
    for value in values:
        for entry in filter(None, (part.strip() for part in value.split(","))):
            try:
                split_host_port(entry)
            except PolicyError as exc:
                raise ValueError(str(exc)) from exc
            if entry not in found:
                found.append(entry)
    if not found:
        raise ValueError("at least one control-plane endpoint (HOST:PORT) is needed")
    return tuple(found)


class EndpointPicker:
    """Which endpoint the next session dials: one at random, another one after a failed connect."""

    def __init__(self, endpoints: Sequence[str], rng: random.Random | None = None) -> None:
        if not endpoints:
            raise ValueError("no control-plane endpoint")
        self.endpoints = tuple(endpoints)
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._last = -1
        self._failed = False

    def pick(self) -> int:
        """The index of the endpoint to dial now."""
        count = len(self.endpoints)
        if self._failed and count > 1 and self._last >= 0:
            index = (self._last + self._rng.randrange(1, count)) % count
        else:
            index = self._rng.randrange(count)
        self._last, self._failed = index, False
        return index

    def failed(self) -> None:
        """The last pick did not connect: the next pick avoids it."""
        self._failed = True
