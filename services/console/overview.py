"""The Overview's counts, computed at most once per tenant per `fresh_seconds` and shared by every session.

Counting means paging through every asset and the last day's alerts, so no page view does it or waits
for it: a view shows the tenant's last counts and says how old they are, and a view that finds them
missing or older than the freshness (LZ_CONSOLE_OVERVIEW_SECONDS) starts the tenant's one background
refresh. Before a tenant's first counts exist the page polls for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lifecyclezero.v1 import assets_pb2, common_pb2

from services.console import presenters
from services.console.operator_client import OperatorClient
from services.kit.errors import DomainError

log = logging.getLogger("lz.console.overview")

LIST_PAGE_SIZE = 500
ALERT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class AssetRow:
    """What the assets search shows and filters on, kept small: a tenant's rows stay in memory."""

    asset_id: str
    hostname: str
    status: int
    connection_state: int
    max_severity: int
    exposed: bool
    last_seen_seconds: int
    engine_kinds: tuple[str, ...]


@dataclass(frozen=True)
class Overview:
    computed_at: datetime
    rows: tuple[AssetRow, ...]
    by_status: tuple[tuple[str, int], ...]
    by_connection: tuple[tuple[str, int], ...]
    # How many assets run each engine kind, most first (ties by name).
    by_engine: tuple[tuple[str, int], ...]
    assets: int
    exposed: int
    critical_24h: int
    warning_24h: int
    # Alerts (warning and critical) per hour over the last 24 h, oldest first.
    alerts_by_hour: tuple[int, ...]
    versions: tuple[assets_pb2.VersionCount, ...]
    outdated: int


class Counting:
    """An Overview built page by page: each page of assets is counted as it arrives, so a refresh of a
    large tenant never holds the console's event loop for the whole fleet at once (10,000 assets take
    hundreds of milliseconds to shape; one page takes a few)."""

    def __init__(self) -> None:
        self.rows: list[AssetRow] = []
        self.statuses: Counter[str] = Counter()
        self.engines: Counter[str] = Counter()

    def add(self, assets: Iterable[common_pb2.Asset]) -> None:
        for a in assets:
            row = AssetRow(a.asset_id, a.hostname, a.status, a.connection_state, a.risk.max_severity,
                           presenters.exposed(a), a.last_seen_time.seconds, tuple(a.engine_kinds))
            self.rows.append(row)
            self.statuses[presenters.STATUS_LABELS.get(a.status, "unknown")] += 1
            self.engines.update(set(row.engine_kinds))

    def overview(self, alerts: list[common_pb2.Alert], fleet: assets_pb2.GetFleetSummaryResponse,
                 now: datetime) -> Overview:
        """The Overview of the assets added so far, the last day's alerts and the fleet summary."""
        exposed = sum(1 for row in self.rows if row.exposed)
        by_engine = tuple(sorted(self.engines.items(), key=lambda item: (-item[1], item[0])))
        hours = [0] * 24
        severities: Counter[int] = Counter()
        for alert in alerts:
            age = now - alert.observe_time.ToDatetime(tzinfo=UTC)
            if timedelta(0) <= age < ALERT_WINDOW:
                hours[23 - int(age.total_seconds() // 3600)] += 1
                severities[alert.severity] += 1
        connections = (("online", fleet.online), ("offline", fleet.offline), ("missing", fleet.missing),
                       ("never connected", fleet.never_connected))
        return Overview(now, tuple(self.rows),
                        tuple((label, self.statuses[label]) for label in presenters.STATUS_LABELS.values()),
                        connections, by_engine, len(self.rows), exposed, severities[common_pb2.SEVERITY_CRITICAL],
                        severities[common_pb2.SEVERITY_WARNING], tuple(hours), tuple(fleet.versions), fleet.outdated)


def tally(assets: list[common_pb2.Asset], alerts: list[common_pb2.Alert], fleet: assets_pb2.GetFleetSummaryResponse,
          now: datetime) -> Overview:
    """The Overview of the listed assets, the last day's alerts and the fleet summary (pure)."""
    counting = Counting()
    counting.add(assets)
    return counting.overview(alerts, fleet, now)


class OverviewCache:
    """Per-tenant Overviews, recomputed in the background once older than `fresh_seconds`.

    A page view never waits for a count: it gets the tenant's last Overview (None before the first is
    ready) and, when that is missing or stale, starts the tenant's one refresh if none is running.
    """

    def __init__(self, client: OperatorClient, fresh_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._fresh = fresh_seconds
        self._clock = clock
        self._entries: dict[str, tuple[float, Overview]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    @property
    def fresh_seconds(self) -> float:
        return self._fresh

    def peek(self, tenant: str, token: str) -> Overview | None:
        """The tenant's latest Overview, if any; a missing or stale one starts a refresh with `token`."""
        entry = self._entries.get(tenant)
        stale = entry is None or self._clock() - entry[0] >= self._fresh
        if stale and tenant not in self._refreshing:
            self._refreshing[tenant] = asyncio.create_task(self._refresh(tenant, token))
        return entry[1] if entry is not None else None

    async def _refresh(self, tenant: str, token: str) -> None:
        try:
            overview = await self._compute(token)
            self._entries[tenant] = (self._clock(), overview)
        except DomainError as exc:
            # The next view retries with its own session's token (this one may have been revoked).
            log.warning("overview refresh failed", extra={"tenant": tenant, "error": str(exc)})
        finally:
            del self._refreshing[tenant]

    async def _compute(self, token: str) -> Overview:
        now = datetime.now(UTC)
        counting = Counting()
        page = ""
        while True:
            reply = await self._client.list_assets(token, assets_pb2.ListAssetsRequest(
                page_size=LIST_PAGE_SIZE, page_token=page))
            counting.add(reply.assets)
            if not (page := reply.next_page_token):
                break
        alerts: list[common_pb2.Alert] = []
        request = assets_pb2.ListAlertsRequest(page_size=LIST_PAGE_SIZE, min_severity=common_pb2.SEVERITY_WARNING)
        request.start_time.FromDatetime(now - ALERT_WINDOW)
        while True:
            listed = await self._client.list_alerts(token, request)
            alerts.extend(listed.alerts)
            if not listed.next_page_token:
                break
            request.page_token = listed.next_page_token
        fleet = await self._client.fleet_summary(token)
        return counting.overview(alerts, fleet, now)


def search(rows: tuple[AssetRow, ...], text: str, exposed_only: bool, status: int, engine: str) -> list[AssetRow]:
    """Rows whose host name or id contains `text` (any case), exposed ones only if asked, of `status` if set,
    running an engine of kind `engine` (lower case) if set."""
    needle = text.casefold()
    return [row for row in rows
            if (needle in row.hostname.casefold() or needle in row.asset_id.casefold())
            and (row.exposed or not exposed_only) and (row.status == status or not status)
            and (not engine or engine in row.engine_kinds)]
