"""Linux implementation of :class:`agent.platform.Platform`, read straight from procfs.

Processes can exit between listing and reading, and an unprivileged agent may be
denied another user's ``fd``/``exe`` links; both are normal, so every read here
degrades to an empty answer instead of raising.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import pwd
import socket
import sys
from pathlib import Path

from agent.platform import Handles, ProcessInfo, SocketInfo

_TCP_LISTEN = "0A"
_TCP_ESTABLISHED = "01"
_SOCKET_LINK_PREFIX = "socket:["


class LinuxPlatform:
    """Discovery facts from ``/proc`` (``proc_root`` differs in containers that mount it elsewhere)."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self._proc = Path(proc_root)

    def processes(self) -> list[ProcessInfo]:
        found: list[ProcessInfo] = []
        for entry in self._proc.iterdir():
            if entry.name.isdigit():
                info = self._process(int(entry.name))
                if info is not None:
                    found.append(info)
        return found

    def tcp_sockets(self, pid: int) -> list[SocketInfo]:
        sockets: list[SocketInfo] = []
        for table in ("tcp", "tcp6"):
            try:
                text = (self._proc / str(pid) / "net" / table).read_text()
            except OSError:
                continue
            sockets.extend(_parse_tcp_table(text))
        return sockets

    def handles(self, pid: int) -> Handles:
        files: list[str] = []
        inodes: set[int] = set()
        fd_dir = self._proc / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            return Handles(files=(), sockets=frozenset())
        for name in names:
            try:
                target = os.readlink(fd_dir / name)
            except OSError:
                continue
            if target.startswith(_SOCKET_LINK_PREFIX):
                inode = target[len(_SOCKET_LINK_PREFIX) : -1]
                if inode.isdigit():
                    inodes.add(int(inode))
            elif target.startswith("/"):
                files.append(target.removesuffix(" (deleted)"))
        return Handles(files=tuple(sorted(set(files))), sockets=frozenset(inodes))

    def shares_network(self, pid: int) -> bool:
        try:
            theirs = os.stat(self._proc / str(pid) / "ns" / "net")
            ours = os.stat(self._proc / "self" / "ns" / "net")
        except OSError:
            return False
        return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)

    def read_text(self, path: str, limit: int) -> str:
        try:
            with open(path, "rb") as handle:
                return handle.read(limit).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def hostname(self) -> str:
        return socket.gethostname()

    def os_name(self) -> str:
        return f"linux {platform.release()}"

    def _process(self, pid: int) -> ProcessInfo | None:
        base = self._proc / str(pid)
        try:
            name = (base / "comm").read_text().strip()
            raw_cmdline = (base / "cmdline").read_bytes()
            status = (base / "status").read_text()
        except OSError:
            return None
        cmdline = tuple(arg.decode("utf-8", errors="replace") for arg in raw_cmdline.split(b"\0") if arg)
        uid = _status_uid(status)
        return ProcessInfo(
            pid=pid,
            name=name,
            exe=_readlink(base / "exe"),
            cmdline=cmdline,
            uid=uid,
            user=_user_name(uid),
            cwd=_readlink(base / "cwd"),
            ppid=_status_field(status, "PPid:"),
        )


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path).removesuffix(" (deleted)")
    except OSError:
        return ""


def _status_field(status: str, name: str) -> int:
    for line in status.splitlines():
        if line.startswith(name):
            fields = line.split()
            if len(fields) > 1 and fields[1].isdigit():
                return int(fields[1])
    return 0


def _status_uid(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            if len(fields) > 1 and fields[1].isdigit():
                return int(fields[1])
    return -1


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


def _parse_tcp_table(text: str) -> list[SocketInfo]:
    """Rows of ``/proc/net/tcp{,6}`` in LISTEN or ESTABLISHED state; other states are not interesting."""
    rows: list[SocketInfo] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] not in (_TCP_LISTEN, _TCP_ESTABLISHED):
            continue
        try:
            local_address, local_port = _parse_endpoint(fields[1])
            remote_address, remote_port = _parse_endpoint(fields[2])
            inode = int(fields[9])
        except ValueError:
            continue
        rows.append(
            SocketInfo(
                local_address=local_address,
                local_port=local_port,
                remote_address=remote_address,
                remote_port=remote_port,
                listening=fields[3] == _TCP_LISTEN,
                inode=inode,
            )
        )
    return rows


def _parse_endpoint(field: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> ("127.0.0.1", 8080); the kernel prints each 32-bit word in host byte order."""
    address_hex, port_hex = field.split(":")
    raw = bytes.fromhex(address_hex)
    if len(raw) not in (4, 16):
        raise ValueError(f"bad address {address_hex}")
    ordered = raw if sys.byteorder == "big" else b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(ordered)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), int(port_hex, 16)
