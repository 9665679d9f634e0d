"""`lz assets`, `lz alerts`, `lz isolate`, `lz release` and `lz custody` against the running stack."""

from __future__ import annotations

from typing import Any

from cli_helpers import Lz, isolate_chained, new_asset

from services.kit.auth import Role
from tests.faults.helpers import until


def test_assets_create_and_show(admin: Lz) -> None:
    """A registered asset shows with its hostname, employee and short status name."""
    asset = new_asset(admin, hostname="host-a", employee="emp-7")
    result = admin("assets", "show", asset)
    assert result.code == 0, result.err
    assert "host-a" in result.out and "emp-7" in result.out
    assert "active" in result.out


def test_assets_show_json(admin: Lz) -> None:
    """`assets show --json` has `asset_id` and `status` with the proto enum name."""
    asset = new_asset(admin)
    data = admin("assets", "show", asset, "--json").json()
    assert data["asset_id"] == asset
    assert data["status"] == "ASSET_STATUS_ACTIVE"


def test_assets_show_unknown_is_exit_1(admin: Lz) -> None:
    """An unknown asset is one error line and exit 1."""
    line = admin("assets", "show", "no-such-asset").assert_one_line_error(1)
    assert "no-such-asset" in line


def test_assets_list_table(admin: Lz) -> None:
    """`assets list` shows every asset of the tenant in a table."""
    first, second = new_asset(admin), new_asset(admin)
    result = admin("assets", "list")
    assert result.code == 0, result.err
    assert first in result.out and second in result.out
    assert "STATUS" in result.out


def test_assets_list_json(admin: Lz) -> None:
    """`assets list --json` lists assets with `asset_id` and `status`."""
    asset = new_asset(admin)
    data = admin("assets", "list", "--json").json()
    assert {"asset_id": asset, "status": "ASSET_STATUS_ACTIVE"}.items() <= data["assets"][0].items()
    assert "next_page_token" in data


def test_assets_list_by_employee(admin: Lz) -> None:
    """`--employee` lists only that employee's assets."""
    mine = new_asset(admin, employee="emp-a")
    new_asset(admin, employee="emp-b")
    data = admin("assets", "list", "--employee", "emp-a", "--json").json()
    assert [a["asset_id"] for a in data["assets"]] == [mine]


def test_assets_list_by_status(admin: Lz) -> None:
    """`--status isolation_pending` lists only assets waiting for isolation."""
    isolated = new_asset(admin)
    new_asset(admin)
    assert admin("isolate", isolated, "--reason", "test").code == 0
    data = admin("assets", "list", "--status", "isolation_pending", "--json").json()
    assert [a["asset_id"] for a in data["assets"]] == [isolated]


def test_assets_list_action_required(admin: Lz) -> None:
    """`--action-required` answers with a list (possibly empty) in both modes."""
    new_asset(admin)
    assert admin("assets", "list", "--action-required").code == 0
    assert "assets" in admin("assets", "list", "--action-required", "--json").json()


def test_assets_list_filters_are_exclusive(admin: Lz) -> None:
    """Two filters at once are a usage error (exit 2)."""
    result = admin("assets", "list", "--employee", "e", "--action-required")
    assert result.code == 2


def test_assets_list_all_follows_pages(admin: Lz) -> None:
    """`--all` with a page size of 1 still lists every asset; without it one page comes back."""
    made = {new_asset(admin) for _ in range(3)}
    everything = admin("assets", "list", "--all", "--page-size", "1", "--json").json()
    assert {a["asset_id"] for a in everything["assets"]} == made
    one_page = admin("assets", "list", "--page-size", "1", "--json").json()
    assert len(one_page["assets"]) == 1 and one_page["next_page_token"]


def test_isolate_table(admin: Lz) -> None:
    """`isolate` reports the new status and that the custody event is recorded."""
    asset = new_asset(admin)
    result = admin("isolate", asset, "--reason", "runs an unapproved engine")
    assert result.code == 0, result.err
    assert "isolation_pending" in result.out
    assert "custody event recorded" in result.out


def test_isolate_json(admin: Lz) -> None:
    """`isolate --json` has the asset and the command."""
    asset = new_asset(admin)
    data = admin("isolate", asset, "--reason", "why", "--json").json()
    assert data["asset"]["asset_id"] == asset
    assert data["asset"]["status"] == "ASSET_STATUS_ISOLATION_PENDING"
    assert data["command"]["kind"] == "COMMAND_KIND_ISOLATE"


def test_an_isolations_custody_event_shows_in_lz_custody(admin: Lz) -> None:
    """The custody event of an `lz isolate` appears in `lz custody` with the command it ordered."""
    asset = new_asset(admin)
    command = admin("isolate", asset, "--reason", "why", "--json").json()["command"]["command_id"]

    def requested() -> list[dict[str, Any]]:
        events = admin("custody", asset, "--json").json()["events"]
        return [e for e in events if e["action"] == "asset.isolate.requested"]

    [event] = until(requested, 30, "the isolation's custody event")
    assert event["payload"]["command_id"] == command


def test_isolate_needs_a_reason(admin: Lz) -> None:
    """`isolate` without --reason is a usage error."""
    assert admin("isolate", "ws-1").code == 2


def test_isolate_as_viewer_is_denied(lz: Lz, new_tenant: Any) -> None:
    """A viewer may not isolate: one line, exit 2."""
    asset = new_asset(lz.with_env(LZ_TOKEN=new_tenant.tokens[Role.OPERATOR]))
    lz("isolate", asset, "--reason", "x", token=new_tenant.tokens[Role.VIEWER]).assert_one_line_error(2)


def test_isolate_unknown_asset_is_exit_1(admin: Lz) -> None:
    """Isolating an unknown asset is exit 1."""
    admin("isolate", "no-such-asset", "--reason", "x").assert_one_line_error(1)


def test_release_while_pending_is_refused(admin: Lz) -> None:
    """Releasing an asset whose isolation is still pending is refused with exit 1."""
    asset = new_asset(admin)
    assert admin("isolate", asset, "--reason", "x").code == 0
    admin("release", asset, "--reason", "y").assert_one_line_error(1)


def test_release_active_asset_is_refused_json(admin: Lz) -> None:
    """Releasing an active asset is refused in JSON mode too, with nothing on stdout."""
    asset = new_asset(admin)
    result = admin("release", asset, "--reason", "y", "--json")
    result.assert_one_line_error(1)
    assert result.out == ""


def test_custody_lists_events(admin: Lz) -> None:
    """`custody` lists the asset's custody events with the isolation request."""
    asset = new_asset(admin)
    isolate_chained(admin, asset, "custody test")
    result = admin("custody", asset)
    assert result.code == 0, result.err
    assert "#" in result.out and "isolate" in result.out


def test_custody_json(admin: Lz) -> None:
    """`custody --json` has the events with seq, actor and action."""
    asset = new_asset(admin)
    isolate_chained(admin, asset, "custody test")
    data = admin("custody", asset, "--json").json()
    assert data["asset_id"] == asset
    assert {"seq", "actor", "action"} <= set(data["events"][0])


def test_custody_unknown_asset_is_exit_1(admin: Lz) -> None:
    """The custody log of an unknown asset is exit 1."""
    admin("custody", "no-such-asset").assert_one_line_error(1)


def test_alerts_list_table(viewer: Lz) -> None:
    """`alerts list` answers (no alerts in a fresh tenant) with exit 0."""
    result = viewer("alerts", "list", "--severity", "warning", "--since", "1h")
    assert result.code == 0, result.err


def test_alerts_list_json(viewer: Lz) -> None:
    """`alerts list --json` lists alerts under `alerts`, each with asset_id, severity and rule_id."""
    data = viewer("alerts", "list", "--json", "--since", "2020-01-01T00:00:00Z", "--until", "0s").json()
    assert "alerts" in data
    for alert in data["alerts"]:
        assert {"asset_id", "severity", "rule_id"} <= set(alert)


def test_alerts_list_bad_since_is_usage_error(viewer: Lz) -> None:
    """An unreadable --since is a usage error before any call."""
    assert viewer("alerts", "list", "--since", "yesterday-ish").code == 2


def test_alerts_list_bad_severity_is_usage_error(viewer: Lz) -> None:
    """Only warning and critical are severities of alerts."""
    assert viewer("alerts", "list", "--severity", "info").code == 2


def test_assets_re_enroll_prints_a_one_time_code_and_records_the_approval(admin: Lz) -> None:
    """`assets re-enroll` prints the code alone on stdout, and the custody log shows the approval with its reason."""
    asset = new_asset(admin)
    result = admin("assets", "re-enroll", asset, "--reason", "laptop reimaged, ticket IT-9")
    custody = until(lambda: admin("custody", asset, "--json").json()["events"], 30, "the approval chained")
    assert result.code == 0, result.err
    assert len(result.out.strip()) >= 43 and "\n" not in result.out.strip()
    assert [(e["action"], e["payload"]["reason"]) for e in custody] == [
        ("asset.reenroll.approved", "laptop reimaged, ticket IT-9")]


def test_assets_list_unknown_connection_state_is_exit_2(lz_offline: Lz) -> None:
    """An unknown --state is a one-line usage error (exit 2) before anything is called."""
    result = lz_offline("assets", "list", "--state", "asleep")
    assert result.code == 2
    assert "unknown state 'asleep'" in result.err


def test_assets_list_by_state_shows_a_never_connected_host_nowhere(admin: Lz) -> None:
    """A host registered by hand, whose agent never connected, is neither online nor offline nor missing."""
    asset_id = new_asset(admin)
    listed = [admin("assets", "list", "--state", state, "--json").json()["assets"]
              for state in ("online", "offline", "missing")]
    shown = admin("assets", "show", asset_id, "--json").json()
    assert listed == [[], [], []]
    assert shown["connection_state"] == "CONNECTION_STATE_UNSPECIFIED"
