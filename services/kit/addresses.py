"""Is a host (or a `host:port` gRPC target) this machine? The one rule `lz`, `lz-agent` and the risk rules share."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP addresses (brackets and IPv6 zone ids allowed); names are not resolved."""
    text = host.strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def target_host(target: str) -> str:
    """The host of a gRPC target `host:port`, `[v6]:port`, `dns:///host:port` or `unix:path` (`localhost` for unix)."""
    text = target.strip()
    if text.startswith(("unix:", "unix-abstract:")):
        return "localhost"
    text = text.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    if text.count(":") == 1:
        return text.rsplit(":", 1)[0]
    return text


def plaintext_refusal(target: str, how_to_allow: str) -> str | None:
    """Why a plaintext channel to `target` must not be opened (tokens and secrets would cross a network in
    the clear), or None when `target` is on this machine."""
    if is_loopback(target_host(target)):
        return None
    return f"refusing plaintext gRPC to {target}, which is not loopback: configure TLS, or {how_to_allow}"


def peer_host(peer: str) -> str:
    """A gRPC peer without its ephemeral port: `ipv4:10.0.0.7:51234` -> `ipv4:10.0.0.7`, so one caller
    counts as one however many connections it opens."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
