"""Containment state on disk: what is applied, which commands ran, and events to report upstream.

The state directory is the agent's memory across restarts and reboots:
``containment.json`` says whether the host must be isolated and with which
policy, ``commands.json`` remembers results by command id so a re-sent command
gets the same answer instead of acting twice, and ``events.jsonl`` keeps local
actions (reconcile, break-glass) until the stream client reports them.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent import statefile

_MAX_REMEMBERED_COMMANDS = 1000


class ContainmentState:
    """Files under ``state_dir``; every write is atomic and durable."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self._active = state_dir / "containment.json"
        self._commands = state_dir / "commands.json"
        self._events = state_dir / "events.jsonl"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise containment changes between the agent and a local helper invocation."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.dir / "containment.lock"
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        statefile.adopt(lock)
        with os.fdopen(fd, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def active(self) -> dict[str, Any] | None:
        """The applied containment record, or None when the host is not meant to be isolated."""
        data = statefile.read_json(self._active)
        return data if isinstance(data, dict) else None

    def set_active(self, record: dict[str, Any]) -> None:
        statefile.write_json(self._active, record)

    def clear_active(self) -> None:
        statefile.remove(self._active)

    def command_result(self, command_id: str) -> dict[str, Any] | None:
        results = self._load_commands()["results"]
        found = results.get(command_id)
        return found if isinstance(found, dict) else None

    def remember(self, command_id: str, result: dict[str, Any]) -> None:
        commands = self._load_commands()
        if command_id not in commands["results"]:
            commands["order"].append(command_id)
        commands["results"][command_id] = result
        while len(commands["order"]) > _MAX_REMEMBERED_COMMANDS:
            commands["results"].pop(commands["order"].pop(0), None)
        statefile.write_json(self._commands, commands)

    def record_event(self, event: dict[str, Any]) -> None:
        """Append one event line and fsync it; the stream client drains this file later."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._events, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        statefile.adopt(self._events)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> list[dict[str, Any]]:
        """Every recorded event; a torn last line (a crash mid-write) or a corrupt one is skipped."""
        try:
            with open(self._events, encoding="utf-8", errors="replace") as handle:
                lines = [line for line in handle if line.strip()]
        except FileNotFoundError:
            return []
        events: list[dict[str, Any]] = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def _load_commands(self) -> dict[str, Any]:
        data = statefile.read_json(self._commands)
        if (
            isinstance(data, dict)
            and isinstance(data.get("order"), list)
            and isinstance(data.get("results"), dict)
        ):
            return data
        return {"order": [], "results": {}}
