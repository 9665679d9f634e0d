"""Custody-relevant things that happened on the host without a command, waiting to reach the control plane.

A local break-glass and containment drift are evidence: the control plane records each one in the
custody ledger. They are written to ``events.jsonl`` in the state directory first (durably, by
:mod:`agent.containment.state`), so an event made while the control plane is unreachable, or by a
``sudo lz-agent break-glass`` while no agent runs, is sent by the next stream that comes up. The
stream re-sends each until an ``Ack`` names its ``event_id``; acked ids are kept in
``events-acked.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from lifecyclezero.v1 import common_pb2

from agent import bounds, statefile
from agent.containment.state import ContainmentState

log = logging.getLogger("lz.agent.events")

ACKED_FILE = "events-acked.json"
_KINDS = {
    "break-glass": common_pb2.AGENT_EVENT_KIND_BREAK_GLASS,
    "containment-drift": common_pb2.AGENT_EVENT_KIND_CONTAINMENT_DRIFT,
}
_MAX_ACKED = 10_000


class EventOutbox:
    """The reportable events of a state directory that the control plane has not acknowledged."""

    def __init__(self, state_dir: Path) -> None:
        self.state = ContainmentState(state_dir)
        self._acked_path = state_dir / ACKED_FILE
        stored = statefile.read_json(self._acked_path)
        self._acked: list[str] = [str(i) for i in stored] if isinstance(stored, list) else []

    def pending(self) -> list[common_pb2.AgentEvent]:
        """Unacknowledged events, oldest first."""
        acked = set(self._acked)
        found = []
        for record in self.state.events():
            event = agent_event(record)
            if event is not None and event.event_id not in acked:
                found.append(event)
        return found

    def mark_acked(self, event_id: str) -> bool:
        """Stop sending ``event_id``; True when it was not acknowledged before."""
        if event_id in self._acked:
            return False
        self._acked = [*self._acked, event_id][-_MAX_ACKED:]
        statefile.write_json(self._acked_path, self._acked)
        return True


def agent_event(record: dict[str, Any]) -> common_pb2.AgentEvent | None:
    """The wire message of one recorded event, or None for events that are not reported (reconcile)."""
    kind = _KINDS.get(str(record.get("event")))
    if kind is None:
        return None
    # Events written before ids existed get one from their content, stable across restarts.
    event_id = str(record.get("event_id") or _content_id(record))
    message = common_pb2.AgentEvent(
        event_id=bounds.text(event_id, 64),
        kind=kind,
        operator=bounds.text(record.get("operator"), 255),
        reason=bounds.text(record.get("reason"), 1024),
        command_id=bounds.text(record.get("command_id"), 64),
        expected_ruleset_sha256=bounds.text(record.get("expected_sha256"), 80),
        found_ruleset_sha256=bounds.text(record.get("found_sha256"), 80),
        repaired=bool(record.get("repaired", False)),
        detail=bounds.text(record.get("detail"), 1024),
    )
    try:
        message.occur_time.FromDatetime(datetime.fromisoformat(str(record.get("at"))))
    except (ValueError, TypeError, OverflowError):
        log.warning("event %s has no readable time", event_id)
    return message


def _content_id(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:32]
