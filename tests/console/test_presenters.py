"""The console's pure shaping: the Overview's tally, relative times, chart bars, the custody timeline and a full
walk's progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.struct_pb2 import Struct
from lifecyclezero.v1 import assets_pb2, common_pb2, ledger_pb2

from services.console import presenters
from services.console.overview import AssetRow, Counting, search, tally
from services.console.walks import Walk

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _asset(status: int, *rules: str) -> common_pb2.Asset:
    return common_pb2.Asset(status=status, risk=common_pb2.RiskSummary(findings=[
        common_pb2.Finding(rule_id=rule) for rule in rules]))


def _alert(severity: int, hours_ago: float) -> common_pb2.Alert:
    alert = common_pb2.Alert(severity=severity)
    alert.observe_time.FromDatetime(NOW - timedelta(hours=hours_ago))
    return alert


class TestTally:
    def test_counts_assets_by_state(self) -> None:
        """Each state's count is the number of listed assets in it."""
        overview = tally([_asset(common_pb2.ASSET_STATUS_ACTIVE), _asset(common_pb2.ASSET_STATUS_ISOLATED),
                          _asset(common_pb2.ASSET_STATUS_ACTIVE)], [], assets_pb2.GetFleetSummaryResponse(), NOW)
        assert dict(overview.by_status)["active"] == 2 and dict(overview.by_status)["isolated"] == 1

    def test_counts_exposed_assets_by_their_finding(self) -> None:
        """An asset counts as exposed when it has an exposed-listener finding."""
        overview = tally([_asset(1, "exposed-listener"), _asset(1, "unapproved-model")], [],
                         assets_pb2.GetFleetSummaryResponse(), NOW)
        assert overview.exposed == 1

    def test_counts_assets_by_engine_kind_most_first(self) -> None:
        """Each kind counts the assets running it (once per asset), most run first and ties by name."""
        assets = [common_pb2.Asset(engine_kinds=["ollama", "vllm"]), common_pb2.Asset(engine_kinds=["ollama"]),
                  common_pb2.Asset(engine_kinds=["llama.cpp"]), common_pb2.Asset()]
        overview = tally(assets, [], assets_pb2.GetFleetSummaryResponse(), NOW)
        assert overview.by_engine == (("ollama", 2), ("llama.cpp", 1), ("vllm", 1))

    def test_counting_page_by_page_gives_the_overview_of_all_at_once(self) -> None:
        """Assets counted as their pages arrive give the same Overview as the whole list counted at once."""
        assets = [common_pb2.Asset(asset_id=f"a{i}", status=1 + i % 3, engine_kinds=["ollama", "vllm"][: i % 3])
                  for i in range(7)] + [_asset(1, "exposed-listener")]
        counting = Counting()
        for start in range(0, len(assets), 3):
            counting.add(assets[start:start + 3])
        fleet = assets_pb2.GetFleetSummaryResponse(online=2)
        assert counting.overview([], fleet, NOW) == tally(assets, [], fleet, NOW)

    def test_buckets_the_last_days_alerts_by_hour_and_severity(self) -> None:
        """Alerts of the last 24 h land in their hour, newest last; older ones are left out."""
        alerts = [_alert(common_pb2.SEVERITY_CRITICAL, 0.5), _alert(common_pb2.SEVERITY_WARNING, 5.5),
                  _alert(common_pb2.SEVERITY_CRITICAL, 30)]
        overview = tally([], alerts, assets_pb2.GetFleetSummaryResponse(), NOW)
        assert (overview.critical_24h, overview.warning_24h) == (1, 1)
        hours = overview.alerts_by_hour
        assert hours[23] == 1 and hours[18] == 1 and sum(hours) == 2


@pytest.mark.parametrize(("seconds", "shown"), [(5, "5 s ago"), (125, "2 min ago"), (7300, "2 h ago"),
                                                (200_000, "2 d ago"), (-3, "just now")])
def test_relative_times_read_as_a_person_would(seconds: int, shown: str) -> None:
    """A moment is shown in its largest whole unit."""
    assert presenters.relative(NOW - timedelta(seconds=seconds), NOW) == shown


def test_bars_scale_to_the_largest_value() -> None:
    """The largest value gets the full drawable height and a zero gets none."""
    drawn = presenters.bars([("a", 10), ("b", 5), ("c", 0)], width=300, height=116)
    assert [bar.height for bar in drawn] == [100, 50, 0]


@pytest.mark.parametrize(("shown", "drawn"), [
    (3, [("a", 5), ("b", 4), ("c", 3)]),
    (2, [("a", 5), ("b", 4), ("other", 3)]),
    (1, [("a", 5), ("other", 7)]),
])
def test_top_keeps_the_first_values_and_sums_the_rest_as_other(shown: int, drawn: list[tuple[str, int]]) -> None:
    """The first `shown` values are kept as they are and the rest are summed into one "other" bar."""
    assert presenters.top([("a", 5), ("b", 4), ("c", 3)], shown) == drawn


def test_the_timeline_lists_newest_first_with_the_facts_an_analyst_reads() -> None:
    """Events come newest first, with the justification and the self test, and empty facts left out."""
    payload = Struct()
    payload.update({"justification": "exposed", "self_test_passed": True, "error": "", "rule_count": 10})
    events = [common_pb2.LedgerEvent(seq=1, action="asset.enrolled"),
              common_pb2.LedgerEvent(seq=2, action="asset.isolate.enforced", payload=payload)]
    shown = presenters.timeline(events, NOW)
    assert [e.seq for e in shown] == [2, 1]
    assert shown[0].facts == (("justification", "exposed"), ("rule_count", "10"), ("self_test_passed", "yes"))


def test_a_long_custody_log_shows_its_newest_events_and_counts_the_rest() -> None:
    """Past TIMELINE_SHOWN events the newest are shown, newest first, and the older ones are counted."""
    events = [common_pb2.LedgerEvent(seq=seq, action="asset.agent.lost") for seq in range(1, 251)]
    shown, older = presenters.recent_timeline(events, NOW)
    assert (len(shown), older) == (presenters.TIMELINE_SHOWN, 250 - presenters.TIMELINE_SHOWN)
    assert (shown[0].seq, shown[-1].seq) == (250, 250 - presenters.TIMELINE_SHOWN + 1)


class TestSearch:
    ROWS = (AssetRow("a-1", "WKS-Legal-00001", 1, 1, 3, True, 0, ("ollama",)),
            AssetRow("a-2", "lt-eng-00002", 3, 1, 0, False, 0, ("llama.cpp", "ollama")),
            AssetRow("a-3", "dev-legal-00003", 1, 2, 2, False, 0, ("vllm",)))

    def test_finds_host_names_containing_the_text_in_any_case(self) -> None:
        """The text matches anywhere in the host name, ignoring case."""
        assert [r.asset_id for r in search(self.ROWS, "legal", False, 0, "")] == ["a-1", "a-3"]

    def test_keeps_only_exposed_hosts_when_asked(self) -> None:
        """The exposed filter keeps only hosts with an exposed listener."""
        assert [r.asset_id for r in search(self.ROWS, "", True, 0, "")] == ["a-1"]

    def test_keeps_only_the_asked_state(self) -> None:
        """A state filter keeps only hosts in that state."""
        assert [r.asset_id for r in search(self.ROWS, "", False, 3, "")] == ["a-2"]

    def test_keeps_only_hosts_running_the_asked_engine_kind(self) -> None:
        """An engine filter keeps the hosts whose engines include that kind, and only a whole kind matches."""
        assert [r.asset_id for r in search(self.ROWS, "", False, 0, "ollama")] == ["a-1", "a-2"]
        assert search(self.ROWS, "", False, 0, "llama") == []


@pytest.mark.parametrize(("status", "changed_ago", "polls"), [
    (common_pb2.ASSET_STATUS_ISOLATION_PENDING, 3600, True),
    (common_pb2.ASSET_STATUS_ISOLATED, 2, True),
    (common_pb2.ASSET_STATUS_ISOLATED, 3600, False),
    (common_pb2.ASSET_STATUS_ACTIVE, 3600, False),
])
def test_the_asset_page_polls_while_an_order_is_pending_or_just_settled(status: int, changed_ago: int,
                                                                        polls: bool) -> None:
    """Polling goes on while an order is pending and shortly after a change, for its custody event."""
    asset = common_pb2.Asset(status=status)
    asset.update_time.FromDatetime(NOW - timedelta(seconds=changed_ago))
    assert presenters.still_settling(asset, NOW) is polls


class TestWalkProgress:
    @pytest.mark.parametrize(("checked", "length", "elapsed", "percent", "rate", "left"), [
        (0, 1000, 0.0, 0, 0, None),
        (250, 1000, 0.5, 25, 500, 1),
        (1000, 1000, 2.0, 100, 500, 0),
        (1200, 1000, 2.0, 100, 600, 0),  # events appended since the walk began are walked too
        (0, 0, 0.1, 100, 0, None),
    ])
    def test_percent_rate_and_time_left_follow_from_the_progress(self, checked: int, length: int, elapsed: float,
                                                                 percent: int, rate: int, left: int | None) -> None:
        """The share checked, events per second and seconds left are those of the ledger's last progress message."""
        walk = Walk(0.0, progress=ledger_pb2.VerificationProgress(events_checked=checked, chain_length=length,
                                                                  elapsed_seconds=elapsed))
        assert (walk.percent, walk.events_per_second, walk.seconds_left) == (percent, rate, left)

    def test_a_walk_without_progress_yet_shows_nothing_done(self) -> None:
        """Before the ledger's first message the walk is at 0 % with no rate and no estimate."""
        assert (Walk(0.0).percent, Walk(0.0).events_per_second, Walk(0.0).seconds_left) == (0, 0, None)
