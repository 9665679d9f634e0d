"""The pure assets domain: the state machine table, the action-required rule, keys and page tokens."""

from __future__ import annotations

import itertools

import pytest

from services.assets import domain, keys
from services.assets.domain import Severity, Status, Trigger
from services.kit.errors import FailedPrecondition, InvalidArgument

LEGAL = {
    (Status.ACTIVE, Trigger.ISOLATE): Status.ISOLATION_PENDING,
    (Status.ISOLATION_PENDING, Trigger.ISOLATION_APPLIED): Status.ISOLATED,
    (Status.ISOLATION_PENDING, Trigger.ISOLATION_FAILED): Status.ISOLATION_FAILED,
    (Status.ISOLATION_FAILED, Trigger.ISOLATE): Status.ISOLATION_PENDING,
    (Status.ISOLATION_FAILED, Trigger.RELEASE): Status.RELEASE_PENDING,
    (Status.ISOLATED, Trigger.RELEASE): Status.RELEASE_PENDING,
    (Status.RELEASE_PENDING, Trigger.RELEASE_APPLIED): Status.ACTIVE,
    (Status.RELEASE_PENDING, Trigger.RELEASE_FAILED): Status.ISOLATED,
}


@pytest.mark.parametrize(("current", "trigger"), list(itertools.product(Status, Trigger)))
def test_the_state_machine_allows_exactly_the_documented_transitions(current: Status, trigger: Trigger) -> None:
    """Each (status, trigger) pair either leads where the design says or is refused naming the current status."""
    if (current, trigger) in LEGAL:
        assert domain.next_status(current, trigger) is LEGAL[(current, trigger)]
    else:
        with pytest.raises(FailedPrecondition) as caught:
            domain.next_status(current, trigger)
        assert current.value in caught.value.message
        assert caught.value.metadata["current_status"] == current.value


@pytest.mark.parametrize(("status", "severity", "needs"), [
    (Status.ACTIVE, Severity.CRITICAL, True),
    (Status.RELEASE_PENDING, Severity.CRITICAL, True),
    (Status.ISOLATION_PENDING, Severity.CRITICAL, False),
    (Status.ISOLATED, Severity.CRITICAL, False),
    (Status.ACTIVE, Severity.WARNING, False),
    (Status.ISOLATION_FAILED, Severity.UNSPECIFIED, True),
])
def test_action_is_required_for_uncontained_critical_assets_and_failed_isolations(
    status: Status, severity: Severity, needs: bool
) -> None:
    """Action is required for CRITICAL assets not contained or being contained, and for failed isolations."""
    assert domain.action_required(status, severity) is needs


@pytest.mark.parametrize("bad", ["", "a#b", "a/b", "..", "x" * 65])
def test_key_builders_refuse_malformed_ids(bad: str) -> None:
    """Every key builder validates its identifiers before building a key."""
    for build in (keys.tenant_pk, keys.asset_sk, lambda v: keys.command_sk("a", v), lambda v: keys.command_sk(v, "c"),
                  lambda v: keys.employee_gsi1pk("t", v), lambda v: keys.asset_gsi1pk(v, "a")):
        with pytest.raises(InvalidArgument):
            build(bad)


def test_a_page_token_belongs_to_one_list() -> None:
    """A page token decodes only for the list that issued it."""
    token = domain.encode_page_token("assets", {"a": "host-1"})
    assert domain.decode_page_token("assets", token, ("a",)) == {"a": "host-1"}
    with pytest.raises(InvalidArgument):
        domain.decode_page_token("employee", token, ("a", "s"))


def test_command_ids_follow_the_request_id() -> None:
    """The same request on the same asset gives the same command id; anything else a different one."""
    same = domain.command_id_for("t", "a", domain.CommandKind.ISOLATE, "r1")
    assert same == domain.command_id_for("t", "a", domain.CommandKind.ISOLATE, "r1")
    assert same != domain.command_id_for("t", "a", domain.CommandKind.RELEASE, "r1")
    assert same != domain.command_id_for("t", "b", domain.CommandKind.ISOLATE, "r1")


def test_engine_kinds_are_distinct_lower_case_sorted_and_printable() -> None:
    """Engine kinds are trimmed, lower-cased, de-duplicated and sorted; empty and unprintable ones are dropped."""
    assert domain.engine_kinds([" Ollama", "vllm", "ollama", "", "bad\x1bkind"]) == ("ollama", "vllm")


def test_engine_kinds_are_bounded_in_count_and_length() -> None:
    """At most MAX_ENGINE_KINDS kinds are kept, each cut to MAX_ENGINE_KIND_CHARS."""
    kinds = domain.engine_kinds([f"{n:03d}" + "k" * 100 for n in range(40)])
    assert len(kinds) == domain.MAX_ENGINE_KINDS
    assert {len(kind) for kind in kinds} == {domain.MAX_ENGINE_KIND_CHARS}


def test_a_risk_update_sets_the_engine_kinds_of_its_inventory() -> None:
    """A newer risk update with engine kinds replaces the asset's kinds; one without kinds keeps them."""
    asset = domain.Asset("a1", "h", "e", "linux", "1.0", engine_kinds=("vllm",))
    risk = domain.Risk(evaluate_time="2026-01-01T00:00:00.000000Z")
    with_kinds = domain.apply_risk_update(asset, domain.RiskUpdate("a1", risk=risk, engine_kinds=("ollama",)), "t")
    without = domain.apply_risk_update(asset, domain.RiskUpdate("a1", risk=risk), "t")
    assert with_kinds is not None and with_kinds.engine_kinds == ("ollama",)
    assert without is not None and without.engine_kinds == ("vllm",)
