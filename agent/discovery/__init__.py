"""Finding AI engines on the host: process signatures, listening sockets, confirming probes."""

from agent.discovery.engines import DiscoverySettings, discover_engines
from agent.discovery.sensitive import DEFAULT_PATTERNS
from agent.discovery.signatures import SIGNATURES, Signature

__all__ = ["DEFAULT_PATTERNS", "SIGNATURES", "DiscoverySettings", "Signature", "discover_engines"]
