"""Isolate and release the host: apply, prove, roll back, persist, reconcile.

Only two things remove isolation: a release command and the local
break-glass. A failed self-test right after an isolate command rolls back to
what was there before (the previous isolation or none), because an isolated
host that cannot reach the control plane can never be released remotely. At
start-up, :meth:`Containment.reconcile` re-installs persisted isolation and
never rolls back: after a reboot the network may simply not be up yet.

What is installed is checked by content, not by the table's existence: the
canonical hash of the live listing right after applying is kept with the
state, and :meth:`Containment.check_drift` (run every few seconds by
``lz-agent run`` while isolated) compares the live listing with it, puts the
rules back when anything changed (an inserted accept rule, a flushed chain, a
deleted table) and records the drift as an event for the control plane.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import signal
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.containment.firewall import Firewall, FirewallError
from agent.containment.policy import ContainmentPolicy, PolicyError
from agent.containment.ruleset import canonical_sha256, rule_count
from agent.containment.selftest import Attempt, SelfTest, check_control_plane
from agent.containment.state import ContainmentState

log = logging.getLogger("lz.agent.containment")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Evidence:
    """What was done, so the control plane can record it in the custody ledger."""

    ruleset_sha256: str | None = None
    rule_count: int = 0
    ruleset: str | None = None
    listing_sha256: str | None = None
    self_test: SelfTest | None = None
    rolled_back: bool = False
    stopped_pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ContainmentResult:
    """The outcome of one containment action; ``contained`` is the host's state afterwards."""

    action: str
    ok: bool
    contained: bool
    message: str
    command_id: str | None = None
    replayed: bool = False
    at: str = field(default_factory=_now)
    evidence: Evidence = field(default_factory=Evidence)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainmentResult:
        evidence = dict(data.get("evidence") or {})
        test = evidence.get("self_test")
        if isinstance(test, dict):
            evidence["self_test"] = SelfTest(
                ok=bool(test["ok"]), attempts=tuple(Attempt(**a) for a in test["attempts"])
            )
        evidence["stopped_pids"] = tuple(evidence.get("stopped_pids", ()))
        return cls(**{**data, "evidence": Evidence(**evidence)})


@dataclass(frozen=True)
class ContainmentStatus:
    """Whether isolation is meant to be on, whether it is on, and whether the two agree."""

    persisted: bool
    installed: bool
    in_sync: bool
    command_id: str | None
    applied_at: str | None
    ruleset_sha256: str | None
    policy: dict[str, Any] | None
    # Canonical hashes of the live rules: as applied (kept in the state) and as installed now.
    applied_listing_sha256: str | None = None
    live_listing_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Containment:
    """Containment of one host through a :class:`Firewall`, remembered in a state directory."""

    def __init__(self, firewall: Firewall, state_dir: Path, self_test_timeout: float = 2.0) -> None:
        self.firewall = firewall
        self.state = ContainmentState(state_dir)
        self.self_test_timeout = self_test_timeout
        # The last drift that could not be repaired: reported once, not again every check while it lasts.
        self._unrepaired: tuple[str | None, str | None] | None = None

    def apply(
        self, policy: ContainmentPolicy, command_id: str | None = None, stop_pids: Sequence[int] = ()
    ) -> ContainmentResult:
        """Isolate the host with ``policy``, prove the control plane answers, else roll back."""
        with self.state.locked():
            replay = self._replay(command_id)
            if replay is not None:
                return replay
            previous = self.state.active()
            rules = self.firewall.render(policy)
            digest = _sha256(rules)
            try:
                self.firewall.apply(rules)
            except FirewallError as exc:
                return self._finish(
                    ContainmentResult(
                        "apply",
                        False,
                        previous is not None,
                        f"nft refused the ruleset: {exc}",
                        command_id,
                        evidence=Evidence(digest, rule_count(rules), rules),
                    ),
                )
            test = check_control_plane(policy.control_plane, self.self_test_timeout)
            listing = self._listing_digest()
            if not test.ok:
                restored = self._roll_back(previous)
                return self._finish(
                    ContainmentResult(
                        "apply",
                        False,
                        restored,
                        "self-test failed: control plane unreachable under isolation; rolled back",
                        command_id,
                        evidence=Evidence(digest, rule_count(rules), rules, listing, test, rolled_back=True),
                    )
                )
            at = _now()
            self.state.set_active(
                {
                    "policy": policy.to_dict(),
                    "ruleset_sha256": digest,
                    "listing_sha256": listing,
                    "command_id": command_id,
                    "applied_at": at,
                }
            )
            stopped = _stop(stop_pids) if policy.stop_engines else ()
            log.warning("host isolated (command %s, %d rules)", command_id, rule_count(rules))
            return self._finish(
                ContainmentResult(
                    "apply",
                    True,
                    True,
                    "isolated; control plane reachable",
                    command_id,
                    at=at,
                    evidence=Evidence(digest, rule_count(rules), rules, listing, test, stopped_pids=stopped),
                )
            )

    def release(self, command_id: str | None = None) -> ContainmentResult:
        """Remove isolation and forget it."""
        with self.state.locked():
            replay = self._replay(command_id)
            if replay is not None:
                return replay
            return self._finish(self._release("release", command_id))

    def break_glass(self, reason: str) -> ContainmentResult:
        """Local emergency release, without the control plane; recorded loudly and kept for reporting."""
        operator = _operator()
        with self.state.locked():
            was = self.state.active()
            result = self._release("break-glass", None)
            self.state.record_event(
                {
                    "event": "break-glass",
                    "event_id": uuid.uuid4().hex,
                    "at": result.at,
                    "operator": operator,
                    "reason": reason,
                    "was_contained": was is not None,
                    "command_id": was.get("command_id") if was else None,
                    "ok": result.ok,
                }
            )
        log.critical(
            "BREAK-GLASS: containment removed locally by %s (reason: %s); reported to the control plane",
            operator,
            reason or "none given",
        )
        return result

    def reconcile(self) -> ContainmentResult:
        """Make the firewall match the persisted state (at start-up); never rolls back."""
        with self.state.locked():
            record = self.state.active()
            if record is None:
                installed = self._listing() is not None
                message = "not contained" + (
                    "; a containment table exists without state and is left alone" if installed else ""
                )
                return ContainmentResult("reconcile", True, installed, message)
            try:
                policy = ContainmentPolicy.from_dict(record["policy"])
            except (PolicyError, KeyError) as exc:
                return ContainmentResult(
                    "reconcile", False, False, f"stored containment state is unusable: {exc}"
                )
            rules = self.firewall.render(policy)
            digest = _sha256(rules)
            try:
                self.firewall.apply(rules)
            except FirewallError as exc:
                return ContainmentResult(
                    "reconcile",
                    False,
                    False,
                    f"nft refused the stored ruleset: {exc}",
                    record.get("command_id"),
                    evidence=Evidence(digest, rule_count(rules), rules),
                )
            test = check_control_plane(policy.control_plane, self.self_test_timeout)
            listing = self._listing_digest()
            self.state.set_active({**record, "ruleset_sha256": digest, "listing_sha256": listing})
            self.state.record_event(
                {
                    "event": "reconcile",
                    "at": _now(),
                    "command_id": record.get("command_id"),
                    "self_test_ok": test.ok,
                }
            )
            return ContainmentResult(
                "reconcile",
                True,
                True,
                "containment re-applied" + ("" if test.ok else "; control plane not reachable yet"),
                record.get("command_id"),
                evidence=Evidence(digest, rule_count(rules), rules, listing, test),
            )

    def status(self) -> ContainmentStatus:
        """Persisted intent versus installed rules, compared by the content of the live ruleset."""
        record = self.state.active()
        listing = self._listing()
        installed = listing is not None
        live = canonical_sha256(listing) if listing is not None else None
        applied = record.get("listing_sha256") if record else None
        same_content = record is None or applied is None or live == applied
        return ContainmentStatus(
            persisted=record is not None,
            installed=installed,
            in_sync=installed == (record is not None) and same_content,
            command_id=record.get("command_id") if record else None,
            applied_at=record.get("applied_at") if record else None,
            ruleset_sha256=record.get("ruleset_sha256") if record else None,
            policy=record.get("policy") if record else None,
            applied_listing_sha256=applied,
            live_listing_sha256=live,
        )

    def check_drift(self) -> dict[str, Any] | None:
        """Put persisted isolation back when the live rules differ from the applied ones; the drift event, or None.

        The event is also recorded in the state directory, from where the stream reports it.
        """
        with self.state.locked():
            record = self.state.active()
            if record is None:
                return None
            expected = record.get("listing_sha256")
            found = self._listing_digest()
            if expected is not None and found == expected:
                self._unrepaired = None
                return None
            repaired, detail, now_found = False, "", found
            try:
                policy = ContainmentPolicy.from_dict(record["policy"])
                self.firewall.apply(self.firewall.render(policy))
                now_found = self._listing_digest()
                repaired = now_found is not None
            except (FirewallError, PolicyError, KeyError) as exc:
                detail = f"re-applying failed: {exc}"
            if expected is None and repaired:
                # State from before listings were kept: learn the baseline, nothing is known to have drifted.
                self.state.set_active({**record, "listing_sha256": now_found})
                return None
            if repaired and now_found != expected:
                self.state.set_active({**record, "listing_sha256": now_found})
            if not repaired:
                if self._unrepaired == (expected, found):
                    return None
                self._unrepaired = (expected, found)
            event = {
                "event": "containment-drift",
                "event_id": uuid.uuid4().hex,
                "at": _now(),
                "command_id": record.get("command_id"),
                "expected_sha256": expected,
                "found_sha256": found,
                "repaired": repaired,
                "detail": detail or ("the isolation table was missing" if found is None else "rules changed"),
            }
            self.state.record_event(event)
        log.critical("containment drift: live rules %s, applied %s; re-applied: %s", found, expected, repaired)
        return event

    def _release(self, action: str, command_id: str | None) -> ContainmentResult:
        try:
            self.firewall.remove()
        except FirewallError as exc:
            return ContainmentResult(
                action, False, True, f"nft could not remove containment: {exc}", command_id
            )
        self.state.clear_active()
        log.warning("containment removed (%s, command %s)", action, command_id)
        return ContainmentResult(action, True, False, "released", command_id)

    def _roll_back(self, previous: dict[str, Any] | None) -> bool:
        """Put back what was there before; True when the host is still contained afterwards."""
        try:
            if previous is not None:
                self.firewall.apply(self.firewall.render(ContainmentPolicy.from_dict(previous["policy"])))
                return True
            self.firewall.remove()
        except (FirewallError, PolicyError, KeyError) as exc:
            log.error("rollback failed: %s", exc)
            return self._listing() is not None
        return False

    def _replay(self, command_id: str | None) -> ContainmentResult | None:
        if command_id is None:
            return None
        stored = self.state.command_result(command_id)
        if stored is None:
            return None
        return ContainmentResult.from_dict({**stored, "replayed": True})

    def _finish(self, result: ContainmentResult) -> ContainmentResult:
        if result.command_id is not None:
            self.state.remember(result.command_id, result.to_dict())
        return result

    def _listing(self) -> str | None:
        try:
            return self.firewall.listing()
        except FirewallError:
            return None

    def _listing_digest(self) -> str | None:
        listing = self._listing()
        return canonical_sha256(listing) if listing is not None else None


def _stop(pids: Sequence[int]) -> tuple[int, ...]:
    """SIGTERM each engine process; pids that are gone are skipped."""
    stopped: list[int] = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
        stopped.append(pid)
    return tuple(stopped)


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _operator() -> str:
    sudo_user = os.environ.get("SUDO_USER")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{sudo_user} (via sudo as {user})" if sudo_user else user
