"""Proof that the control plane is still reachable once isolation is in place.

Each configured endpoint passes when any of its resolved addresses accepts a
TCP connection; an IPv6 address on a host without IPv6 should not fail an
isolation that works over IPv4. Every attempt is kept as evidence.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.containment.policy import ControlPlane


@dataclass(frozen=True)
class Attempt:
    """One TCP connect to one control-plane address."""

    host: str
    address: str
    port: int
    ok: bool
    error: str | None
    elapsed_ms: int


@dataclass(frozen=True)
class SelfTest:
    """The verdict and the attempts behind it."""

    ok: bool
    attempts: tuple[Attempt, ...]


def check_control_plane(endpoints: tuple[ControlPlane, ...], timeout: float) -> SelfTest:
    """Connect to every address of every endpoint in parallel."""
    targets = [(e.host, a, e.port) for e in endpoints for a in e.addresses]
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(targets)))) as pool:
        attempts = tuple(pool.map(lambda t: _connect(t[0], t[1], t[2], timeout), targets))
    ok = bool(endpoints) and all(
        any(a.ok for a in attempts if (a.host, a.port) == (e.host, e.port)) for e in endpoints
    )
    return SelfTest(ok=ok, attempts=attempts)


def _connect(host: str, address: str, port: int, timeout: float) -> Attempt:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            pass
        error = None
    except OSError as exc:
        error = exc.strerror or type(exc).__name__
    return Attempt(host, address, port, error is None, error, int((time.monotonic() - started) * 1000))
