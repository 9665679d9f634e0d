"""Connection tracking for the hub: what each stream's open, goodbye and close write, and the health sweep.

Per stream: one write at its first heartbeat (online; resolving the agent-health alerts its absence
raised), one when it closes (with its goodbye's reason), and, while it stays open, a lease extended
inside the durable-seq write-down the hub already does; nothing per heartbeat. The sweep reads the
tenant's due checks from a sparse index once a `LZ_HEALTH_SWEEP_SECONDS` and raises agent-silent,
agent-stopped-while-isolated (with a custody event recorded by assets) and agent-missing. Every
replica sweeps every tenant whose agents have connection state: a tenant is put on a list (a sparse
index) before its first connection is written, and each replica reads that list when it starts and
every `TENANT_LIST_SECONDS`, so a restarted replica finishes the checks of agents that died while it
was down without waiting for one of their tenant's agents to come back. Conditional writes let one
replica win each check. agent-outdated is raised (or resolved) when a stream opens, and by the sweep
for every agent with a known version (connected or not) when the tenant's minimum version changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from lifecyclezero.v1 import ingest_pb2

from services.ingest import domain, health, keys, presence, rules
from services.ingest.assets_client import AssetsClient
from services.ingest.settings import StreamSettings
from services.kit import aws
from services.kit.errors import DomainError, NotFound

log = logging.getLogger(__name__)

LEASE_MARGIN_SECONDS = 30.0
# How often a replica reads the list of tenants to sweep (tenants first seen by another replica).
TENANT_LIST_SECONDS = 60.0
# Open and close writes in flight at once per process (the rest wait their turn in memory).
BACKGROUND_WRITES = 8
_SUMMARIES = {
    health.AGENT_SILENT: "agent silent since {last_seen} ({reason})",
    health.AGENT_MISSING: "agent missing: not seen since {last_seen} ({reason})",
    health.AGENT_STOPPED_WHILE_ISOLATED: "isolated host's agent stopped ({reason}) at {last_seen}: containment "
                                         "can no longer be verified",
}


@dataclass
class StreamPresence:
    """What the tracker keeps of one live stream."""

    stream_id: str
    version: str
    platform: str
    tenant: str = ""
    asset_id: str = ""
    secret_sha256: str = ""
    open_alerts: tuple[tuple[str, str], ...] = ()
    seen: float = field(default_factory=time.time)
    goodbye: str = ""
    refreshed_at: float = field(default_factory=time.monotonic)
    opened: asyncio.Task[None] | None = None


def _ts(seconds: float) -> str:
    return domain.format_ts(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _later(text: str, seconds: float) -> str:
    return domain.format_ts(domain.parse_ts(text) + dt.timedelta(seconds=seconds))


class Tracker:
    """Connection state of the hub's streams, and the health sweep of the tenants they belong to."""

    def __init__(self, settings: StreamSettings, ddb: Any, table: str, assets: AssetsClient,
                 policies: rules.PolicyBook, *, replica: str = "") -> None:
        self.settings = settings
        # This replica's internal address, written on the agent item at open: where nudges are forwarded.
        self.replica = replica
        self._ddb = ddb
        self._table = table
        self._assets = assets
        self._policies = policies
        self.tenants: set[str] = set()
        # Tenants this process put on the sweep's tenant list, and when it last read that list.
        self._marked: set[str] = set()
        self._tenants_listed_at: float | None = None
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Open and close writes queue here rather than all at once: in a reconnect storm thousands of
        # them would otherwise take every AWS call slot and starve the hellos' credential reads.
        self._write_slots = asyncio.Semaphore(BACKGROUND_WRITES)
        self.writes = 0
        self.alerts_raised = 0
        # tenant -> the (enabled, minimum version) its connected agents were last checked against here
        self._outdated_checked: dict[str, tuple[bool, str]] = {}

    @property
    def lease_seconds(self) -> float:
        return 2 * self.settings.seq_persist_seconds + LEASE_MARGIN_SECONDS

    def _health(self, tenant: str) -> tuple[health.HealthSettings, rules.Policy]:
        policy = self._policies.for_tenant(tenant)
        return policy.agent_health, policy

    # ----------------------------------------------------------------------------- stream events

    def opened(self, tenant: str, asset_id: str, secret_sha256: str, hello: ingest_pb2.Hello,
               open_alerts: tuple[tuple[str, str], ...]) -> StreamPresence:
        """Note a new stream; it is recorded online at its first heartbeat (`heard`)."""
        self.tenants.add(tenant)
        return StreamPresence(secrets.token_hex(8), health.clip(hello.agent_version, health.MAX_VERSION_CHARS),
                              health.clip(hello.platform, health.MAX_PLATFORM_CHARS), tenant, asset_id,
                              secret_sha256, open_alerts)

    def heard(self, state: StreamPresence) -> None:
        """Record the stream online at its first heartbeat, in the background (its ack does not wait for it).

        Not at the hello: during a reconnect storm many streams end before they carry anything (their
        agents gave up waiting for the Welcome), and those cost no write at all.
        """
        if state.opened is None:
            state.opened = self._spawn(self._open(state))

    async def _open(self, state: StreamPresence) -> None:
        async with self._write_slots:
            await self._write_open(state)

    async def _write_open(self, state: StreamPresence) -> None:
        tenant, asset_id, secret_sha256 = state.tenant, state.asset_id, state.secret_sha256
        settings, policy = self._health(tenant)
        now = domain.format_ts(domain.now())
        outdated = (policy.rules[rules.Rule.AGENT_OUTDATED].enabled
                    and health.is_outdated(state.version, settings.minimum_version))
        change = health.outdated_change(state.open_alerts, outdated, now)
        if tenant not in self._marked:
            # On the list before its first connection is written: a restarted replica sweeps the tenant.
            await aws.call(presence.mark_tenant_watched, self._ddb, self._table, tenant)
            self._marked.add(tenant)
            self.writes += 1
        if change.resolve:
            # Resolved before the item forgets them: a crash in between resolves them again at the next open.
            await aws.call(presence.resolve_health_alerts, self._ddb, self._table, tenant, change.resolve, now)
        await aws.call(presence.open_connection, self._ddb, self._table, tenant, asset_id, secret_sha256,
                       state.stream_id, now, _later(now, self.lease_seconds),
                       _later(now, settings.missing_after_seconds), state.version, state.platform,
                       change.outdated_since, change.returned_rules, self.replica)
        self.writes += 1 + len(change.resolve)
        if change.outdated_since:
            # Raised after the item names it, and again at every open while outdated (the first write stands),
            # so a crash in between is finished by the next open.
            await self._raise_outdated(state, change.outdated_since, now)

    async def _raise_outdated(self, state: StreamPresence, since: str, now: str) -> None:
        await self._put_outdated_alert(state.tenant, state.asset_id, state.version, since, now)

    async def _put_outdated_alert(self, tenant: str, asset_id: str, version: str, since: str, now: str) -> None:
        settings, policy = self._health(tenant)
        minimum = settings.minimum_version
        summary = f"agent version {version or 'unknown'} is older than the tenant's minimum {minimum}"
        await aws.call(presence.put_health_alert, self._ddb, self._table, tenant, asset_id, since,
                       health.AGENT_OUTDATED, policy.rules[rules.Rule.AGENT_OUTDATED].severity.name, summary,
                       {"agent_version": version, "minimum_version": minimum}, now)
        self.writes += 1

    async def _recheck_outdated(self, tenant: str, now: str) -> None:
        """When the tenant's outdated rule changed (and once per tenant after a start), every agent that reported
        a version is judged against it, connected or not: an open stream's version is known only at its hello
        and streams live long, and an offline agent comes back with the version it last reported (the operator
        raising the minimum wants the whole list of hosts to upgrade, not only those online at that moment)."""
        settings, policy = self._health(tenant)
        rule = (policy.rules[rules.Rule.AGENT_OUTDATED].enabled, settings.minimum_version)
        if self._outdated_checked.get(tenant) == rule:
            return
        after = ""
        while True:
            found, after = await aws.call(presence.list_connections, self._ddb, self._table, tenant, after)
            for connection in found:
                if connection.stream_id:
                    outdated = rule[0] and health.is_outdated(connection.agent_version, rule[1])
                    await self._apply_outdated(tenant, connection, outdated, now)
            if not after:
                break
        self._outdated_checked[tenant] = rule

    async def _apply_outdated(self, tenant: str, connection: health.Connection, outdated: bool, now: str) -> None:
        """Raise or resolve the agent's agent-outdated alert (not when a newer stream opened since it was read:
        that open judged its own version)."""
        held = connection.outdated_since
        if outdated:
            # Named on the item first and put again at every check (the first write stands), so a crash in
            # between is finished by the next start's check.
            marked = bool(held) or await aws.call(presence.set_outdated, self._ddb, self._table, tenant, connection,
                                                  now)
            if marked:
                await self._put_outdated_alert(tenant, connection.asset_id, connection.agent_version, held or now,
                                               now)
        elif held:
            # Resolved before the item forgets it: a crash in between resolves it again at the next check.
            await aws.call(presence.resolve_health_alerts, self._ddb, self._table, tenant,
                           [keys.health_sk(connection.asset_id, held, health.AGENT_OUTDATED)], now)
            await aws.call(presence.set_outdated, self._ddb, self._table, tenant, connection, "")
            self.writes += 2

    def closed(self, state: StreamPresence) -> None:
        """Record the stream's end with its goodbye's reason: not when it was never recorded online, nor
        when the server drains (its agents move to another replica, and their leases cover the move)."""
        if state.opened is not None and not self.draining:
            self._spawn(self._close(state))

    async def _close(self, state: StreamPresence) -> None:
        if state.opened is not None:
            await asyncio.gather(state.opened, return_exceptions=True)
        async with self._write_slots:
            await self._write_close(state)

    async def _write_close(self, state: StreamPresence) -> None:
        tenant, asset_id, secret_sha256 = state.tenant, state.asset_id, state.secret_sha256
        settings, _ = self._health(tenant)
        now = domain.format_ts(domain.now())
        seen = _ts(state.seen)
        due = _later(now, settings.lost_after_heartbeats * self.settings.heartbeat_interval_seconds)
        await aws.call(presence.close_connection, self._ddb, self._table, tenant, asset_id, secret_sha256,
                       state.stream_id, now, state.goodbye, seen, _later(seen, settings.missing_after_seconds),
                       health.Stage.LOST, due)
        self.writes += 1

    async def refresh(self, state: StreamPresence, durable_seq: int | None) -> bool:
        """Extend a live stream's lease (with its durable seq when given); False when the write did not apply."""
        if state.opened is None:
            return False
        tenant, asset_id, secret_sha256 = state.tenant, state.asset_id, state.secret_sha256
        settings, _ = self._health(tenant)
        now = domain.format_ts(domain.now())
        done = await aws.call(presence.refresh_connection, self._ddb, self._table, tenant, asset_id, secret_sha256,
                              state.stream_id, now, _later(now, self.lease_seconds),
                              _later(now, settings.missing_after_seconds), durable_seq)
        self.writes += 1
        if done:
            state.refreshed_at = time.monotonic()
        return done

    async def refresh_idle(self, streams: Iterable[StreamPresence]) -> None:
        """Extend the leases that no durable-seq write extended for a period (a stream with nothing acked)."""
        now = time.monotonic()
        for state in list(streams):
            if state.opened is not None and now - state.refreshed_at >= self.settings.seq_persist_seconds:
                try:
                    await self.refresh(state, None)
                except Exception as exc:
                    log.warning("lease of %s/%s not extended: %s", state.tenant, state.asset_id, exc)

    # ------------------------------------------------------------------------------------ sweep

    async def list_tenants(self) -> None:
        """Add the tenants on the sweep's tenant list, when this replica has not read it for a while."""
        at = time.monotonic()
        if self._tenants_listed_at is not None and at - self._tenants_listed_at < TENANT_LIST_SECONDS:
            return
        self.tenants.update(await aws.call(presence.watched_tenants, self._ddb, self._table))
        self._tenants_listed_at = at

    async def sweep(self) -> int:
        """One pass over the due checks of every tenant with connection state; how many checks were applied."""
        applied = 0
        now = domain.format_ts(domain.now())
        try:
            await self.list_tenants()
        except Exception as exc:
            log.warning("tenants to sweep not listed (the next sweep tries again): %s", exc)
        for tenant in sorted(self.tenants):
            await self._recheck_outdated(tenant, now)
            due = await aws.call(presence.due_connections, self._ddb, self._table, tenant, now)
            for connection in due:
                check = health.next_check(connection, now)
                if check is None:
                    continue
                try:
                    applied += await self._apply(tenant, connection, check, now)
                except DomainError as error:
                    log.warning("health check of %s/%s not done yet: %s", tenant, connection.asset_id,
                                error.message)
        return applied

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_sweep_seconds)
            try:
                await self.sweep()
            except Exception:
                log.exception("health sweep failed")

    async def _apply(self, tenant: str, connection: health.Connection, check: health.Check, now: str) -> bool:
        _, policy = self._health(tenant)
        wanted = [r for r in check.raise_rules if policy.rules[rules.Rule(r)].enabled]
        # A lease that ran out has no close time: the stream was last heard of when it was last seen.
        gone = connection.since if connection.state == health.OFFLINE else connection.last_seen
        evidence: dict[str, Any] = {"reason": check.reason, "last_seen": connection.last_seen,
                                    "disconnect_time": gone, "agent_version": connection.agent_version}
        if check.ask_isolation and policy.rules[rules.Rule.AGENT_STOPPED_WHILE_ISOLATED].enabled:
            try:
                loss = await self._assets.record_agent_loss(tenant, connection.asset_id, check.reason,
                                                            _timestamp(connection.last_seen),
                                                            _loss_request_id(tenant, connection))
            except NotFound:
                log.info("agent %s/%s has no asset: nothing is contained", tenant, connection.asset_id)
            else:
                if loss.isolated:
                    wanted.append(health.AGENT_STOPPED_WHILE_ISOLATED)
                    evidence["custody_seq"] = loss.custody_seq
        raised: dict[str, str] = {}
        for rule_id in wanted:
            spec = policy.rules[rules.Rule(rule_id)]
            summary = _SUMMARIES[rule_id].format(last_seen=connection.last_seen or "never", reason=check.reason)
            raised[rule_id] = await aws.call(presence.put_health_alert, self._ddb, self._table, tenant,
                                             connection.asset_id, connection.since, rule_id, spec.severity.name,
                                             summary, evidence, now)
            self.writes += 1
        applied = await aws.call(presence.apply_check, self._ddb, self._table, tenant, connection, check.reason,
                                 check.next_stage, check.next_due, raised)
        self.writes += 1
        if applied:
            self.alerts_raised += len(raised)
            for rule_id in raised:
                log.warning("%s: %s/%s (%s)", rule_id, tenant, connection.asset_id, check.reason)
            return True
        await self._settle_lost_race(tenant, connection.asset_id, raised, now)
        return False

    async def _settle_lost_race(self, tenant: str, asset_id: str, raised: dict[str, str], now: str) -> None:
        """The check lost to a returning agent (or to another replica): alerts the item does not hold are resolved."""
        current = await aws.call(presence.get_connection, self._ddb, self._table, tenant, asset_id)
        held = set(dict(current.open_alerts).values()) if current is not None else set()
        if current is not None and current.state == health.ONLINE:
            stray = [sk for sk in raised.values() if sk not in held]
            if stray:
                await aws.call(presence.resolve_health_alerts, self._ddb, self._table, tenant, stray, now)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(_logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _logged(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:
        log.warning("connection state not recorded: %s", exc)


def _timestamp(text: str) -> Timestamp | None:
    if not text:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(domain.parse_ts(text))
    return stamp


def _loss_request_id(tenant: str, connection: health.Connection) -> str:
    """One custody event per disconnection, however often the sweep retries it."""
    digest = hashlib.sha256(f"{tenant}\n{connection.asset_id}\n{connection.since}".encode()).hexdigest()
    return f"loss-{digest[:40]}"
