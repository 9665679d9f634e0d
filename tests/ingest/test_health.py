"""Agent health, pure: the connection state at read time, the sweep's due checks, versions, the policy."""

from __future__ import annotations

import pytest
from lifecyclezero.v1 import ingest_pb2

from services.ingest import health, keys, rules
from services.ingest.health import Connection, Stage, State

T0 = "2026-12-06T10:00:00.000000Z"
T1 = "2026-12-06T10:00:10.000000Z"
T2 = "2026-12-06T10:00:20.000000Z"
LATER = "2026-12-07T11:00:00.000000Z"


def _online(**fields: str) -> Connection:
    return Connection("a-1", state="online", since=T0, last_seen=T0, online_until=T2, missing_at=LATER,
                      stage="lease", due=T2, **fields)  # type: ignore[arg-type]


def _closed(reason: str = "", stage: str = "lost", due: str = T1) -> Connection:
    return Connection("a-1", state="offline", since=T0, reason=reason, last_seen=T0, missing_at=LATER, stage=stage,
                      due=due)


class TestStateAt:
    @pytest.mark.parametrize(("connection", "now", "expected"), [
        (Connection("a-1"), T1, (State.NEVER, "")),
        (_online(), T1, (State.ONLINE, "")),
        (_online(), T2, (State.OFFLINE, "lost")),
        (_closed("service-stop"), T1, (State.OFFLINE, "service-stop")),
        (_closed(""), T1, (State.OFFLINE, "")),
        (_closed("system-shutdown"), LATER, (State.MISSING, "system-shutdown")),
        (_closed(""), LATER, (State.MISSING, "lost")),
    ])
    def test_cases(self, connection: Connection, now: str, expected: tuple[State, str]) -> None:
        """The state and reason read at a moment follow the lease, the goodbye and the grace period."""
        assert health.state_at(connection, now) == expected


class TestNextCheck:
    def test_nothing_before_it_is_due(self) -> None:
        """A check that is not due yet is not done."""
        assert health.next_check(_closed(due=T2), T1) is None

    def test_a_stream_gone_without_goodbye_is_silent(self) -> None:
        """A closed stream not back by its due time is lost: agent-silent, the isolation asked, then missing."""
        check = health.next_check(_closed(), T2)
        assert check == health.Check((health.AGENT_SILENT,), "lost", Stage.MISSING, LATER, ask_isolation=True)

    @pytest.mark.parametrize("reason", ["system-shutdown", "upgrade"])
    def test_an_expected_absence_is_not_silent(self, reason: str) -> None:
        """A shutdown or an upgrade raises no agent-silent, though an isolated host's loss is still asked about."""
        check = health.next_check(_closed(reason), T2)
        assert check is not None
        assert (check.raise_rules, check.ask_isolation) == ((), True)

    def test_a_service_stop_is_silent(self) -> None:
        """A goodbye for a service stop does not excuse the silence that follows."""
        check = health.next_check(_closed("service-stop"), T2)
        assert check is not None
        assert check.raise_rules == (health.AGENT_SILENT,)

    def test_an_expired_lease_is_a_lost_stream(self) -> None:
        """An open stream whose replica stopped refreshing it is lost."""
        check = health.next_check(_online(), T2)
        assert check is not None
        assert (check.raise_rules, check.reason) == ((health.AGENT_SILENT,), "lost")

    def test_beyond_the_grace_period_it_is_missing(self) -> None:
        """At the missing stage the check raises agent-missing and leaves nothing more due."""
        check = health.next_check(_closed("lost", stage="missing", due=LATER), LATER)
        assert check == health.Check((health.AGENT_MISSING,), "lost", None, "", ask_isolation=False)


class TestVersions:
    @pytest.mark.parametrize(("version", "minimum", "outdated"), [
        ("0.9.0", "1.0.0", True),
        ("1.0", "1.0.0", False),
        ("1.10.0", "1.9.3", False),
        ("v1.2.3-rc1", "1.2.4", True),
        ("test", "1.0.0", False),
        ("1.0.0", "", False),
    ])
    def test_cases(self, version: str, minimum: str, outdated: bool) -> None:
        """Versions compare by their numbers; without numbers on both sides nothing is outdated."""
        assert health.is_outdated(version, minimum) is outdated


SILENT_SK = keys.health_sk("a-1", T0, "agent-silent")
OUTDATED_SK = keys.health_sk("a-1", T0, "agent-outdated")


class TestOutdatedChange:
    @pytest.mark.parametrize(("open_alerts", "outdated", "expected"), [
        ((), False, health.OutdatedChange([], [], "")),
        ((), True, health.OutdatedChange([], [], T2)),
        ((("agent-outdated", OUTDATED_SK),), True, health.OutdatedChange([], [], T0)),
        ((("agent-outdated", OUTDATED_SK),), False, health.OutdatedChange([OUTDATED_SK], [], "")),
        ((("agent-outdated", OUTDATED_SK), ("agent-silent", SILENT_SK)), True,
         health.OutdatedChange([SILENT_SK], ["agent-silent"], T0)),
    ])
    def test_cases(self, open_alerts: tuple[tuple[str, str], ...], outdated: bool,
                   expected: health.OutdatedChange) -> None:
        """An open resolves the absence alerts; agent-outdated's stays (with its first time) while still outdated."""
        assert health.outdated_change(open_alerts, outdated, T2) == expected

    def test_the_time_of_an_alert_key_reads_back(self) -> None:
        """since_of_health_sk gives the time an alert key was built with, and None for another key."""
        assert (keys.since_of_health_sk(OUTDATED_SK), keys.since_of_health_sk("AGENT#a-1")) == (T0, None)


def test_an_unknown_goodbye_reason_counts_as_a_service_stop() -> None:
    """A goodbye whose reason this server does not know is stored as a service stop."""
    assert health.goodbye_reason(ingest_pb2.Goodbye(reason=99)) == "service-stop"  # type: ignore[arg-type]


def test_agent_text_is_clipped_and_control_characters_dropped() -> None:
    """An agent's platform text keeps at most its limit and no control characters."""
    assert health.clip("linux\x1b[31m-x86_64" + "x" * 100, 20) == "linux[31m-x86_64xxx"


class TestPolicy:
    def test_the_default_policy_has_the_agent_health_rules(self) -> None:
        """The built-in policy enables the four agent-health rules at their documented severities."""
        policy = rules.build_policy(rules.load_document(rules.DEFAULT_POLICY_FILE.read_text(), "default"))
        health_rules = (rules.Rule.AGENT_SILENT, rules.Rule.AGENT_MISSING, rules.Rule.AGENT_STOPPED_WHILE_ISOLATED,
                        rules.Rule.AGENT_OUTDATED)
        severities = {r.value: policy.rules[r].severity.name for r in health_rules}
        assert severities == {"agent-silent": "WARNING", "agent-missing": "WARNING",
                              "agent-stopped-while-isolated": "CRITICAL", "agent-outdated": "WARNING"}

    def test_a_tenant_sets_its_grace_period_and_minimum_version(self) -> None:
        """`agent_health` in a tenant's policy sets the grace period, the lost delay and the minimum version."""
        doc = {"agent_health": {"missing_after_seconds": 3600, "lost_after_heartbeats": 3, "minimum_version": "1.2"}}
        assert rules.build_policy(doc).agent_health == health.HealthSettings(3600.0, 3.0, "1.2")

    @pytest.mark.parametrize("spec", [{"missing_after_seconds": 0}, {"minimum_version": "latest"},
                                      {"lost_after_heartbeats": True}, {"grace": 1}])
    def test_a_bad_agent_health_section_is_refused(self, spec: dict[str, object]) -> None:
        """A non-positive delay, a version without numbers or an unknown key is a policy error."""
        with pytest.raises(rules.PolicyError, match="agent_health"):
            rules.build_policy({"agent_health": spec})
