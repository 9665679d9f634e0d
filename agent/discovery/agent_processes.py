"""Which running processes are AI agents, and which run the MCP servers agents' files declare.

Processes change rarely between heartbeats, so what matching computes (each command line's agent kind
and prepared form, each server's patterns, each record's size) is kept in a :class:`MatchCache` that
lives as long as the file scan it belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

from agent.discovery import mcp_table
from agent.discovery.agent_table import AgentSpec
from agent.discovery.redaction import REDACTED
from agent.discovery.signatures import match
from agent.inventory import AiAgent, McpServer
from agent.platform import Platform, ProcessInfo

_MAX_PARENT_HOPS = 16


class MatchCache:
    """Per file scan, what process matching can remember between heartbeats: processes rarely change."""

    _LIMIT = 20_000

    def __init__(self) -> None:
        self.kinds: dict[tuple[str, str, tuple[str, ...]], str | None] = {}
        self.lines: dict[tuple[str, ...], tuple[str, frozenset[str], frozenset[str]]] = {}
        self.patterns: dict[McpServer, tuple[set[str], re.Pattern[str] | None, list[set[str]]]] = {}
        self.sizes: dict[AiAgent | McpServer, int] = {}

    def bound(self) -> None:
        if len(self.kinds) + len(self.lines) + len(self.sizes) > self._LIMIT:
            self.kinds.clear()
            self.lines.clear()
            self.sizes.clear()

    def command_line(self, process: ProcessInfo) -> CommandLine:
        prepared = self.lines.get(process.cmdline)
        if prepared is None:
            lowered = [a.lower() for a in process.cmdline]
            prepared = ("\0".join(lowered),
                        frozenset(a.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".js") for a in lowered),
                        frozenset(process.cmdline))
            self.lines[process.cmdline] = prepared
        return CommandLine(process, *prepared)



def running_agents(
    processes: Sequence[ProcessInfo], specs: Sequence[AgentSpec], cache: MatchCache
) -> dict[int, tuple[str, ProcessInfo]]:
    """pid -> (agent kind, process) of every process an agent signature names."""
    signatures = [spec.process for spec in specs]
    # No agent signature has script patterns, so Python scripts are never read from disk here.
    unsniffed = cast(Platform, _NoScripts())
    running: dict[int, tuple[str, ProcessInfo]] = {}
    for process in processes:
        key = (process.name, process.exe, process.cmdline)
        if key not in cache.kinds:
            signature = match(process, unsniffed, signatures)
            cache.kinds[key] = signature.kind if signature is not None else None
        kind = cache.kinds[key]
        if kind is not None:
            running[process.pid] = (kind, process)
    return running


@dataclass(frozen=True)
class CommandLine:
    """A process's command line prepared for matching against every server."""

    process: ProcessInfo
    lowered: str
    basenames: frozenset[str]
    args: frozenset[str]


def with_running(
    server: McpServer,
    command_lines: Sequence[CommandLine],
    by_pid: dict[int, ProcessInfo],
    agents: dict[int, tuple[str, ProcessInfo]],
    cache: MatchCache,
) -> McpServer:
    """``server`` with the processes that run it now (same user, its package and roots on the command line)."""
    if server.transport != "stdio" or not server.package:
        return server
    if server not in cache.patterns:
        cache.patterns[server] = _patterns(server)
    names, paths, wanted = cache.patterns[server]
    pids = []
    for line in command_lines:
        if line.process.user != server.user or any(forms.isdisjoint(line.args) for forms in wanted):
            continue
        if names.isdisjoint(line.basenames) and not (paths and paths.search(line.lowered)):
            continue
        pids.append(line.process.pid)
    if not pids:
        return server
    parent = next((kind for pid in pids if (kind := _parent_agent(pid, by_pid, agents))), "")
    return replace(server, running=True, pids=tuple(pids), parent_agent=parent)


def _patterns(server: McpServer) -> tuple[set[str], re.Pattern[str] | None, list[set[str]]]:
    """What a process running ``server`` shows: one of these names or paths, and each of these arguments."""
    needles = _needles(server)
    launch = mcp_table.parse_launch(server.command, server.args)
    wanted = [
        {arg, mcp_table.resolve_root(arg, server.home, server.home, {})}
        for arg in launch.rest
        if not arg.startswith("-") and arg != REDACTED
    ]
    paths = [re.escape(n) for n in sorted(needles) if "/" in n]
    return needles, re.compile("|".join(paths)) if paths else None, wanted


def _needles(server: McpServer) -> set[str]:
    kind, _ = mcp_table.classify(server.package)
    names = {server.package.lower()}
    if kind is not None:
        names |= {p.lower() for p in kind.packages if "*" not in p} | set(kind.binaries)
    return names


class _NoScripts:
    """The one Platform method signature matching calls, answering that no script can be read."""

    def read_text(self, path: str, limit: int) -> str:
        return ""


def _parent_agent(pid: int, by_pid: dict[int, ProcessInfo], agents: dict[int, tuple[str, ProcessInfo]]) -> str:
    current = by_pid.get(pid)
    for _ in range(_MAX_PARENT_HOPS):
        if current is None or current.ppid <= 1:
            return ""
        if current.ppid in agents:
            return agents[current.ppid][0]
        current = by_pid.get(current.ppid)
    return ""
