"""Which replica a nudge is forwarded to, from the holder recorded on the agent item."""

from __future__ import annotations

import pytest

from services.ingest.presence import StreamHolder
from services.ingest.routing import forward_target

OWN = "10.0.0.1:50052"
PEER = "10.0.0.2:50052"


@pytest.mark.parametrize(("holder", "target"), [
    (StreamHolder(PEER, "s1", online=True), PEER),
    (StreamHolder(PEER, "s1", online=False), ""),
    (StreamHolder(OWN, "s1", online=True), ""),
    (StreamHolder("", "s1", online=True), ""),
    (None, ""),
])
def test_forward_target(holder: StreamHolder | None, target: str) -> None:
    """Only a live stream recorded on another replica is forwarded to; anything else waits for the poll."""
    assert forward_target(holder, OWN) == target
