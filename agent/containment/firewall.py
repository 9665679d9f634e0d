"""The host firewall behind one small interface, with nftables as the Linux implementation."""

from __future__ import annotations

import subprocess
from typing import Protocol

from agent.containment.policy import ContainmentPolicy
from agent.containment.ruleset import removal, render

_NFT_TIMEOUT = 15.0


class FirewallError(RuntimeError):
    """The firewall refused a change; the message carries the tool's own words."""


class Firewall(Protocol):
    """Install, remove and inspect the isolation rules atomically."""

    def render(self, policy: ContainmentPolicy) -> str:
        """The rules text that :meth:`apply` would install."""
        ...

    def apply(self, rules: str) -> None:
        """Replace any previous isolation with ``rules`` in one transaction."""
        ...

    def remove(self) -> None:
        """Remove isolation; succeeds when there is none."""
        ...

    def listing(self) -> str | None:
        """The installed rules as the kernel reports them, or None when not installed."""
        ...


class NftablesFirewall:
    """Isolation as one ``inet`` table, changed only through ``nft -f -`` transactions."""

    def __init__(self, nft: str = "nft", table: str = "lz_containment") -> None:
        self.nft = nft
        self.table = table

    def render(self, policy: ContainmentPolicy) -> str:
        return render(policy, self.table)

    def apply(self, rules: str) -> None:
        self._run(["-f", "-"], rules)

    def remove(self) -> None:
        self._run(["-f", "-"], removal(self.table))

    def listing(self) -> str | None:
        try:
            done = subprocess.run(
                [self.nft, "list", "table", "inet", self.table],
                capture_output=True,
                text=True,
                timeout=_NFT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"cannot run {self.nft}: {exc}") from exc
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise FirewallError(_first_line(done.stderr) or f"nft exited {done.returncode}")
        return done.stdout

    def _run(self, args: list[str], stdin: str) -> None:
        try:
            done = subprocess.run(
                [self.nft, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=_NFT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"cannot run {self.nft}: {exc}") from exc
        if done.returncode != 0:
            raise FirewallError(_first_line(done.stderr) or f"nft exited {done.returncode}")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""
