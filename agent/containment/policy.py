"""What isolation lets through, validated and with host names resolved.

nftables matches addresses, not names, so control-plane host names are
resolved *before* the table goes in (while DNS still works) and the resolved
addresses are what the rules and the self-test use.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class PolicyError(ValueError):
    """The containment policy is invalid (bad address, port, CIDR, or an unresolvable control plane)."""


@dataclass(frozen=True)
class ControlPlane:
    """One configured control-plane endpoint and the addresses it resolved to."""

    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class ContainmentPolicy:
    """Everything isolation admits besides loopback, DHCP and IPv6 neighbour discovery.

    ``resolvers`` are the only DNS servers reachable (empty: no DNS at all,
    never "any host on port 53"); ``allowlist`` holds the tenant's CIDRs (IPv4
    and IPv6), already normalised and collapsed.
    """

    control_plane: tuple[ControlPlane, ...]
    resolvers: tuple[str, ...] = ()
    allowlist: tuple[str, ...] = ()
    stop_engines: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "control_plane": [
                {"host": c.host, "port": c.port, "addresses": list(c.addresses)} for c in self.control_plane
            ],
            "resolvers": list(self.resolvers),
            "allowlist": list(self.allowlist),
            "stop_engines": self.stop_engines,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ContainmentPolicy:
        """Rebuild a stored policy, re-validating it (the state file is input too)."""
        try:
            control_plane = tuple(
                ControlPlane(str(c["host"]), _port(c["port"]), tuple(_address(a) for a in c["addresses"]))
                for c in data["control_plane"]
            )
            return cls(
                control_plane=control_plane,
                resolvers=tuple(_address(r) for r in data.get("resolvers", ())),
                allowlist=_cidrs(data.get("allowlist", ())),
                stop_engines=bool(data.get("stop_engines", False)),
            )
        except (KeyError, TypeError) as exc:
            raise PolicyError(f"malformed stored policy: {exc}") from exc


def build_policy(
    control_plane: Sequence[str],
    resolvers: Sequence[str] = (),
    allowlist: Sequence[str] = (),
    stop_engines: bool = False,
) -> ContainmentPolicy:
    """Validate ``host:port`` control-plane entries (resolving names), resolver IPs and allowlist CIDRs."""
    if not control_plane:
        raise PolicyError("containment needs at least one control-plane endpoint")
    return ContainmentPolicy(
        control_plane=tuple(_resolve(entry) for entry in control_plane),
        resolvers=tuple(_address(r) for r in resolvers),
        allowlist=_cidrs(allowlist),
        stop_engines=stop_engines,
    )


# Where the host's resolvers are configured; systemd-resolved's stub (127.0.0.53) forwards to the second.
RESOLV_CONF_PATHS = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")


def host_resolvers(paths: Sequence[str] = RESOLV_CONF_PATHS) -> tuple[str, ...]:
    """The non-loopback name servers the host is configured with now (loopback always passes anyway).

    Isolation pins these when the control plane names no resolvers, so DNS keeps working for the
    host's own lookups without opening port 53 to every address on the internet.
    """
    found: dict[str, None] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read(64 * 1024).splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(fields[1].split("%", 1)[0])
                except ValueError:
                    continue
                if not address.is_loopback and not address.is_unspecified:
                    found[str(address)] = None
    return tuple(found)


def split_host_port(entry: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = entry.strip().rpartition(":")
    if not sep or not host:
        raise PolicyError(f"control-plane endpoint {entry!r} is not host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host, _port(port)


def _resolve(entry: str) -> ControlPlane:
    host, port = split_host_port(entry)
    try:
        return ControlPlane(host, port, (str(ipaddress.ip_address(host)),))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise PolicyError(f"cannot resolve control plane {host!r}: {exc}") from exc
    addresses = sorted({str(ipaddress.ip_address(info[4][0])) for info in infos})
    if not addresses:
        raise PolicyError(f"control plane {host!r} resolved to no address")
    return ControlPlane(host, port, tuple(addresses))


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"port {value!r} is not a number") from exc
    if not 1 <= port <= 65535:
        raise PolicyError(f"port {port} is out of range")
    return port


def _address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError as exc:
        raise PolicyError(f"{value!r} is not an IP address") from exc


def _cidrs(values: Any) -> tuple[str, ...]:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError as exc:
            raise PolicyError(f"{value!r} is not a CIDR") from exc
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return tuple(str(n) for n in [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)])
