"""The operating-system boundary of discovery.

Everything discovery needs from the OS goes through :class:`Platform`, so that a
macOS or Windows implementation can be added without touching the matching,
probing or inventory code. Only Linux (procfs) exists today.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ProcessInfo:
    """One running process as discovery sees it."""

    pid: int
    name: str
    exe: str
    cmdline: tuple[str, ...]
    uid: int
    user: str
    cwd: str
    ppid: int = 0


@dataclass(frozen=True)
class SocketInfo:
    """One TCP socket: listening or established."""

    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    listening: bool
    inode: int


@dataclass(frozen=True)
class Handles:
    """What a process holds open: file paths and socket identities."""

    files: tuple[str, ...]
    sockets: frozenset[int]


class Platform(Protocol):
    """The OS facts discovery consumes; implementations never raise for a vanished process."""

    def processes(self) -> list[ProcessInfo]:
        """Every process the agent may inspect."""
        ...

    def tcp_sockets(self, pid: int) -> list[SocketInfo]:
        """TCP sockets in the network namespace of ``pid`` (listening and established)."""
        ...

    def handles(self, pid: int) -> Handles:
        """Open files and sockets of ``pid``; empty when not permitted or gone."""
        ...

    def shares_network(self, pid: int) -> bool:
        """Whether ``pid`` is in the agent's network namespace, i.e. its loopback is the agent's loopback."""
        ...

    def read_text(self, path: str, limit: int) -> str:
        """At most ``limit`` bytes of a file as text, "" when unreadable (used to sniff scripts)."""
        ...

    def hostname(self) -> str:
        """The host's name as reported in the inventory."""
        ...

    def os_name(self) -> str:
        """A short OS description, e.g. ``linux 6.8.0``."""
        ...


class UnsupportedPlatformError(RuntimeError):
    """The agent runs on an OS that has no :class:`Platform` implementation yet."""


def current_platform() -> Platform:
    """The implementation for the running OS."""
    if sys.platform.startswith("linux"):
        from agent.platform.linux import LinuxPlatform

        return LinuxPlatform()
    raise UnsupportedPlatformError(f"discovery is not implemented for {sys.platform}")
