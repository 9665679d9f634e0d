"""Commands from the control plane: run once per command id, keep the result until it is acknowledged.

The control plane re-sends a command until it gets a result, and the agent
re-sends a result until the control plane acks it (``Ack.command_id``). The
:class:`CommandBook` is what makes both safe: a command id seen before gets its
stored result back instead of running again, and results are kept (durably, in
the state directory) with an acked flag so a restart still re-sends them.

Executors turn a command into a result. :class:`ContainmentExecutor` drives the
host firewall through :mod:`agent.containment`; :class:`DryRunExecutor` only
records the command and reports success with the evidence a real run would
produce (the rendered ruleset and its digest), for the simulator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from lifecyclezero.v1 import common_pb2

from agent import statefile
from agent.containment import Containment, ContainmentResult, PolicyError, build_policy
from agent.containment.policy import ContainmentPolicy, ControlPlane, host_resolvers, split_host_port
from agent.containment.ruleset import render, rule_count

log = logging.getLogger("lz.agent.commands")

APPLIED = common_pb2.COMMAND_OUTCOME_APPLIED
FAILED = common_pb2.COMMAND_OUTCOME_FAILED


class CommandExecutor(Protocol):
    """Carries out one command and describes what happened."""

    async def execute(self, command: common_pb2.Command) -> common_pb2.CommandResult: ...


class CommandBook:
    """Results by command id with an acked flag; persisted to ``path`` when given, else memory only."""

    def __init__(self, path: Path | None = None, limit: int = 1000) -> None:
        self.path = path
        self.limit = limit
        self._order: list[str] = []
        self._results: dict[str, tuple[common_pb2.CommandResult, bool]] = {}
        data = statefile.read_json(path) if path is not None else None
        if isinstance(data, dict):
            for item in data.get("results", []):
                try:
                    result = common_pb2.CommandResult.FromString(base64.b64decode(item["result"]))
                    self._order.append(result.command_id)
                    self._results[result.command_id] = (result, bool(item["acked"]))
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("ignoring an unreadable stored command result: %s", exc)

    def result(self, command_id: str) -> common_pb2.CommandResult | None:
        """The stored result of ``command_id``, or None when the command is new."""
        found = self._results.get(command_id)
        return found[0] if found else None

    def record(self, result: common_pb2.CommandResult) -> None:
        """Keep ``result`` as not yet acknowledged (durably, before it is sent)."""
        if result.command_id not in self._results:
            self._order.append(result.command_id)
        self._results[result.command_id] = (result, False)
        while len(self._order) > self.limit:
            self._results.pop(self._order.pop(0), None)
        self._save()

    def mark_acked(self, command_id: str) -> bool:
        """Stop re-sending ``command_id``'s result; True when this changed anything."""
        found = self._results.get(command_id)
        if found is None or found[1]:
            return False
        self._results[command_id] = (found[0], True)
        self._save()
        return True

    def is_acked(self, command_id: str) -> bool:
        found = self._results.get(command_id)
        return bool(found and found[1])

    def unacked(self) -> list[common_pb2.CommandResult]:
        """Results the control plane has not acknowledged yet, oldest first."""
        return [self._results[i][0] for i in self._order if not self._results[i][1]]

    def _save(self) -> None:
        if self.path is None:
            return
        statefile.write_json(
            self.path,
            {
                "results": [
                    {
                        "result": base64.b64encode(self._results[i][0].SerializeToString()).decode(),
                        "acked": self._results[i][1],
                    }
                    for i in self._order
                ]
            },
        )


def failed(command: common_pb2.Command, error: str) -> common_pb2.CommandResult:
    """A FAILED result carrying ``error``."""
    result = common_pb2.CommandResult(command_id=command.command_id, outcome=FAILED, error=error)
    result.finish_time.GetCurrentTime()
    return result


def result_from_containment(command_id: str, outcome: ContainmentResult) -> common_pb2.CommandResult:
    """A containment action's outcome and evidence as a CommandResult."""
    evidence = outcome.evidence
    test = evidence.self_test
    detail = ""
    if test is not None:
        detail = "; ".join(
            f"{a.host} [{a.address}]:{a.port} " + ("reachable" if a.ok else f"unreachable: {a.error}")
            + f" in {a.elapsed_ms} ms"
            for a in test.attempts
        )
    if evidence.rolled_back:
        detail += "; rolled back"
    if evidence.stopped_pids:
        detail += f"; stopped engine pids {', '.join(map(str, evidence.stopped_pids))}"
    result = common_pb2.CommandResult(
        command_id=command_id,
        outcome=APPLIED if outcome.ok else FAILED,
        ruleset=evidence.ruleset or "",
        ruleset_sha256=(evidence.ruleset_sha256 or "").removeprefix("sha256:"),
        rule_count=evidence.rule_count,
        self_test_passed=bool(test and test.ok),
        self_test_detail=detail.strip("; "),
        error="" if outcome.ok else outcome.message,
    )
    try:
        result.finish_time.FromDatetime(datetime.fromisoformat(outcome.at))
    except ValueError:
        result.finish_time.GetCurrentTime()
    return result


class ContainmentExecutor:
    """Isolate and release this host through :class:`Containment` (in a worker thread: nft and DNS block).

    ``control_plane`` lists endpoints admitted in every isolation besides the command's own (the
    stream's target), so an isolate command can never cut the agent off from where it is released.
    """

    def __init__(
        self,
        containment: Containment,
        control_plane: Sequence[str] = (),
        resolvers: Sequence[str] = (),
        allowlist: Sequence[str] = (),
        engine_pids: Callable[[], Sequence[int]] = tuple,
    ) -> None:
        self.containment = containment
        self.control_plane = tuple(control_plane)
        self.resolvers = tuple(resolvers)
        self.allowlist = tuple(allowlist)
        self.engine_pids = engine_pids

    async def execute(self, command: common_pb2.Command) -> common_pb2.CommandResult:
        return await asyncio.to_thread(self._execute, command)

    def _execute(self, command: common_pb2.Command) -> common_pb2.CommandResult:
        if command.kind == common_pb2.COMMAND_KIND_RELEASE:
            return result_from_containment(command.command_id, self.containment.release(command.command_id))
        if command.kind != common_pb2.COMMAND_KIND_ISOLATE:
            return failed(command, f"unknown command kind {command.kind}")
        spec = command.policy
        # The agent's own control plane always stays reachable, whatever the command lists.
        endpoints = list(dict.fromkeys([*spec.control_plane_endpoints, *self.control_plane]))
        try:
            policy = build_policy(
                control_plane=endpoints,
                # None named: pin the host's own resolvers now, never port 53 to any address.
                resolvers=list(spec.dns_servers) or self.resolvers or host_resolvers(),
                allowlist=[*spec.allowlist_cidrs, *self.allowlist],
                stop_engines=spec.stop_engines,
            )
        except PolicyError as exc:
            return failed(command, f"invalid containment policy: {exc}")
        pids = list(self.engine_pids()) if policy.stop_engines else []
        return result_from_containment(command.command_id, self.containment.apply(policy, command.command_id, pids))


class DryRunExecutor:
    """Records commands and reports them applied, with the ruleset a real isolation would install."""

    def __init__(self, table: str = "lz_containment") -> None:
        self.table = table
        self.executed: list[tuple[str, int]] = []
        self._rendered: dict[tuple[Any, ...], tuple[str, str, int]] = {}

    async def execute(self, command: common_pb2.Command) -> common_pb2.CommandResult:
        self.executed.append((command.command_id, command.kind))
        result = common_pb2.CommandResult(command_id=command.command_id, outcome=APPLIED)
        if command.kind == common_pb2.COMMAND_KIND_ISOLATE:
            try:
                rules, digest, count = self._render(command.policy)
            except PolicyError as exc:
                return failed(command, f"invalid containment policy: {exc}")
            result.ruleset, result.ruleset_sha256, result.rule_count = rules, digest, count
            result.self_test_passed = True
            result.self_test_detail = "; ".join(
                f"{e} reachable (dry run)" for e in command.policy.control_plane_endpoints
            ) or "no control-plane endpoint to test (dry run)"
        elif command.kind != common_pb2.COMMAND_KIND_RELEASE:
            return failed(command, f"unknown command kind {command.kind}")
        result.finish_time.GetCurrentTime()
        return result

    def _render(self, spec: common_pb2.ContainmentPolicy) -> tuple[str, str, int]:
        key = (
            tuple(spec.control_plane_endpoints),
            tuple(spec.dns_servers),
            tuple(spec.allowlist_cidrs),
            spec.stop_engines,
        )
        cached = self._rendered.get(key)
        if cached is None:
            # No DNS in a dry run: names stand for a documentation address.
            planes = []
            for entry in spec.control_plane_endpoints:
                host, port = split_host_port(entry)
                planes.append(ControlPlane(host, port, (_literal_or_placeholder(host),)))
            base = build_policy(["192.0.2.1:443"], spec.dns_servers, spec.allowlist_cidrs, spec.stop_engines)
            policy = ContainmentPolicy(
                tuple(planes) or base.control_plane, base.resolvers, base.allowlist, base.stop_engines
            )
            rules = render(policy, self.table)
            cached = (rules, hashlib.sha256(rules.encode()).hexdigest(), rule_count(rules))
            self._rendered[key] = cached
        return cached


def _literal_or_placeholder(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "192.0.2.1"
