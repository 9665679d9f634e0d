"""The nftables ruleset that isolates the host, rendered as one ``nft -f`` transaction.

The file first declares the table and then deletes it before defining it
again: nft runs the whole file as one atomic transaction, so a previous
version is replaced without a moment of either no rules or two sets of rules,
and the first declaration makes the delete valid when no table exists yet.

Output is filtered by destination, not by connection state, so connections
opened before isolation to anywhere not allowed stop at once; input accepts
established/related traffic, which can only belong to flows whose outbound
half the output chain lets through.
"""

from __future__ import annotations

import hashlib
import ipaddress

from agent.containment.policy import ContainmentPolicy

_ND_TYPES = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"
_PRIORITY = "filter - 10"


def render(policy: ContainmentPolicy, table: str) -> str:
    """The complete transaction text for ``policy`` in table ``inet <table>``."""
    output = [
        'oifname "lo" accept',
        *_control_plane(policy),
        *_dns(policy),
        "udp sport 68 udp dport 67 accept",
        "udp sport 546 udp dport 547 accept",
        f"icmpv6 type {{ {_ND_TYPES} }} accept",
        *_allowlist(policy, "daddr"),
    ]
    input_ = [
        'iifname "lo" accept',
        "ct state established,related accept",
        "udp sport 67 udp dport 68 accept",
        "udp sport 547 udp dport 546 accept",
        f"icmpv6 type {{ {_ND_TYPES} }} accept",
        *_allowlist(policy, "saddr"),
    ]
    lines = [
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        *_sets(policy),
        *_chain("input", "input", input_),
        *_chain("output", "output", output),
        *_chain("forward", "forward", []),
        "}",
    ]
    return "\n".join(lines) + "\n"


def canonical_sha256(listing: str) -> str:
    """``sha256:<hex>`` of a ruleset listing's content, independent of indentation and blank lines.

    ``nft list table`` prints the installed rules the same way for the same content, so this hash
    changes exactly when a rule, set element or chain policy in the table changes.
    """
    lines = [" ".join(line.split()) for line in listing.splitlines()]
    content = "\n".join(line for line in lines if line)
    return "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def rule_count(ruleset: str) -> int:
    """Rules in a rendered ruleset (lines inside chains other than the hook declaration)."""
    count = 0
    in_chain = False
    for raw in ruleset.splitlines():
        line = raw.strip()
        if line.startswith("chain "):
            in_chain = True
        elif line == "}":
            in_chain = False
        elif in_chain and line and not line.startswith("type "):
            count += 1
    return count


def removal(table: str) -> str:
    """A transaction that removes the table whether or not it exists."""
    return f"table inet {table}\ndelete table inet {table}\n"


def _chain(name: str, hook: str, rules: list[str]) -> list[str]:
    return [
        f"  chain {name} {{",
        f"    type filter hook {hook} priority {_PRIORITY}; policy drop;",
        *(f"    {rule}" for rule in rules),
        "  }",
    ]


def _family(address: str) -> str:
    return "ip" if ipaddress.ip_address(address).version == 4 else "ip6"


def _control_plane(policy: ContainmentPolicy) -> list[str]:
    rules: list[str] = []
    for endpoint in policy.control_plane:
        for address in endpoint.addresses:
            rules.append(f"{_family(address)} daddr {address} tcp dport {endpoint.port} accept")
    return sorted(set(rules), key=rules.index)


def _dns(policy: ContainmentPolicy) -> list[str]:
    """Port 53 to the named resolvers only; with none named, no DNS leaves the host (loopback stubs still work)."""
    rules: list[str] = []
    for resolver in policy.resolvers:
        family = _family(resolver)
        rules += [
            f"{family} daddr {resolver} udp dport 53 accept",
            f"{family} daddr {resolver} tcp dport 53 accept",
        ]
    return rules


def _split(policy: ContainmentPolicy) -> tuple[list[str], list[str]]:
    v4 = [c for c in policy.allowlist if ipaddress.ip_network(c).version == 4]
    v6 = [c for c in policy.allowlist if ipaddress.ip_network(c).version == 6]
    return v4, v6


def _sets(policy: ContainmentPolicy) -> list[str]:
    v4, v6 = _split(policy)
    lines: list[str] = []
    for name, kind, members in (("allow4", "ipv4_addr", v4), ("allow6", "ipv6_addr", v6)):
        if members:
            lines += [
                f"  set {name} {{",
                f"    type {kind}; flags interval;",
                f"    elements = {{ {', '.join(members)} }}",
                "  }",
            ]
    return lines


def _allowlist(policy: ContainmentPolicy, direction: str) -> list[str]:
    v4, v6 = _split(policy)
    rules: list[str] = []
    if v4:
        rules.append(f"ip {direction} @allow4 accept")
    if v6:
        rules.append(f"ip6 {direction} @allow6 accept")
    return rules
