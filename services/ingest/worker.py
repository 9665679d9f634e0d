"""The risk worker: `python -m services.ingest.worker`. Consumes the heartbeat queue in batches.

For each batch: decode (undecodable bodies go straight to the dead-letter queue), evaluate the rules on
changed inventories, write telemetry (write-sharded, deterministic keys, TTL; alerts on the sparse
GSI2), ask assets to isolate when a CRITICAL rule says so, send coalesced last-seen and risk updates
to assets, and only then delete the messages. A message whose writes failed stays in the queue and is
tried again; after `LZ_WORKER_MAX_TRIES` receives it goes to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.ingest import agent_rules, domain, rules, store
from services.ingest.assets_client import AssetsClient
from services.ingest.settings import WorkerSettings, load_worker_settings
from services.kit import aws, heap, logs
from services.kit.errors import (
    AlreadyExists,
    ConfigError,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.kit.server import Service, start_health_only, stop_server

log = logging.getLogger("services.ingest.worker")

Key = tuple[str, str]
Position = tuple[int, int]  # (enrollment epoch, seq): orders one asset's heartbeats across re-enrollment
_DEFINITIVE = (FailedPrecondition, NotFound, AlreadyExists, InvalidArgument, PermissionDenied)
MAX_REMEMBERED = 200_000
UPDATES_PER_CALL = 50
# The kit's AWS clients time a read out after 10 s, so the long poll stays below that.
MAX_WAIT_SECONDS = 8
MAX_MESSAGES = 10  # SQS's most per ReceiveMessage


def isolation_request_id(tenant: str, asset_id: str, rule_id: str, epoch: int, seq: int) -> str:
    """Deterministic in (asset, rule, seq), so a redelivered heartbeat cannot isolate twice."""
    digest = hashlib.sha256(f"{tenant}\n{asset_id}\n{rule_id}\n{epoch}\n{seq}".encode()).hexdigest()
    return f"policy-{digest[:40]}"


def engine_inventory(inventory: common_pb2.Inventory) -> common_pb2.EngineInventory:
    """What assets keeps of an inventory's engines and models: bounded, process ids left out, every drop counted."""
    kept = common_pb2.EngineInventory(
        engines=inventory.engines, models=inventory.models, engines_omitted=inventory.engines_omitted,
        models_omitted=inventory.models_omitted, omitted_reason=inventory.omitted_reason, errors=inventory.errors)
    for engine in kept.engines:
        engine.ClearField("pid")
    while kept.ByteSize() > agent_rules.MAX_KEPT_BYTES and (kept.models or kept.engines):
        if kept.models:
            del kept.models[-1]
            kept.models_omitted += 1
        else:
            del kept.engines[-1]
            kept.engines_omitted += 1
        kept.omitted_reason = kept.omitted_reason or "over the control plane's item budget"
    return kept


def _severity_proto(severity: rules.Severity | None) -> common_pb2.Severity.ValueType:
    if severity is None:
        return common_pb2.SEVERITY_UNSPECIFIED
    return common_pb2.Severity.Value(f"SEVERITY_{severity.name}")


def finding_proto(finding: rules.Finding) -> common_pb2.Finding:
    evidence = struct_pb2.Struct()
    evidence.update(finding.evidence)
    return common_pb2.Finding(rule_id=finding.rule_id, severity=_severity_proto(finding.severity),
                              summary=finding.summary, evidence=evidence)


@dataclass
class _Message:
    """One received SQS message (an envelope of one or many heartbeats) and how its heartbeats fared."""

    message: dict[str, Any]
    items: list[_Item] = field(default_factory=list)

    @property
    def receive_count(self) -> int:
        return int(self.message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))


@dataclass
class _Item:
    """One heartbeat of a received message and what processing it needs."""

    source: _Message
    envelope: domain.Envelope
    ok: bool = True
    record: store.TelemetryRecord | None = None
    findings: list[rules.Finding] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.envelope.tenant, self.envelope.asset_id)

    @property
    def position(self) -> Position:
        return (self.envelope.epoch, self.envelope.heartbeat.seq)


class _Lru(collections.OrderedDict[Key, Any]):
    def remember(self, key: Key, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


@dataclass
class Stats:
    messages: int = 0
    heartbeats: int = 0
    telemetry_items: int = 0
    write_units: float = 0.0
    risk_updates: int = 0
    isolations: int = 0
    dead_lettered: int = 0


class Worker:
    def __init__(self, settings: WorkerSettings, ddb: Any, sqs: Any, assets: AssetsClient,
                 policies: rules.PolicyBook) -> None:
        self.settings = settings
        self._ddb = ddb
        self._sqs = sqs
        self._assets = assets
        self._policies = policies
        self._table = settings.aws.table_name
        self._models = _Lru()  # key -> (position, observe ts, model keys) of the newest inventory seen
        self._risk_at = _Lru()  # key -> position of the newest risk sent to assets
        self._seen_sent = _Lru()  # key -> (monotonic time, observe ts) of the last last-seen sent
        self._kept_at = _Lru()  # key -> monotonic time of the last unchanged heartbeat recorded
        self._seen_backoff = _Lru()  # key -> monotonic time before which a failed last-seen is not sent again
        self.stats = Stats()

    async def check_queue(self) -> None:
        """Raises unless the heartbeat queue answers: the worker's readiness."""
        await aws.call(self._sqs.get_queue_attributes, QueueUrl=self.settings.queue_url,
                       AttributeNames=["ApproximateNumberOfMessages"])

    # ------------------------------------------------------------------------------------- polling

    async def run(self, stop: asyncio.Event) -> None:
        async def poller() -> None:
            while not stop.is_set():
                try:
                    received = await self.poll_once()
                except Exception:
                    log.exception("poll failed; retrying")
                    received, pause = 0, 1.0
                else:
                    # A receive that was not full returns at the first message; waiting a moment lets the
                    # next one carry several, which costs far fewer calls than a receive per envelope.
                    pause = self.settings.gather_seconds if received < MAX_MESSAGES else 0.0
                if pause:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), pause)

        tasks = [asyncio.create_task(poller()) for _ in range(self.settings.concurrency)]
        await stop.wait()
        # Let the batches in hand finish (their writes and deletes) for a while, then stop.
        _, pending = await asyncio.wait(tasks, timeout=5.0)
        for task in pending:
            task.cancel()

    async def poll_once(self) -> int:
        got = await aws.call(
            self._sqs.receive_message,
            QueueUrl=self.settings.queue_url,
            MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=min(MAX_WAIT_SECONDS, self.settings.wait_seconds),
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        messages = got.get("Messages", [])
        if messages:
            await self.process(messages)
        return len(messages)

    # ---------------------------------------------------------------------------------- processing

    async def process(self, messages: list[dict[str, Any]]) -> None:
        received: list[_Message] = []
        items: list[_Item] = []
        for message in messages:
            try:
                decoded = domain.decode_message(str(message.get("Body", "")))
            except domain.BadEnvelope as exc:
                await self._dead_letter(message, str(exc))
                continue
            if decoded.poison:
                # Poison heartbeats go to the dead-letter queue one by one; the rest of the envelope is processed.
                await self._dead_letter_bodies(message, decoded.poison)
            source = _Message(message)
            source.items = [_Item(source, envelope) for envelope in decoded.envelopes]
            received.append(source)
            items.extend(source.items)
        self.stats.messages += len(messages)
        self.stats.heartbeats += len(items)
        items.sort(key=lambda i: (i.key, i.position))
        now = time.monotonic()
        for item in items:
            try:
                await self._evaluate(item, now)
            except DomainError as error:
                item.ok = False
                log.warning("heartbeat %s of %s/%s not evaluated: %s", item.envelope.heartbeat.seq,
                            item.envelope.tenant, item.envelope.asset_id, error.message)
            except Exception:
                item.ok = False
                log.exception("heartbeat %s of %s/%s not evaluated", item.envelope.heartbeat.seq,
                              item.envelope.tenant, item.envelope.asset_id)
        await self._write_telemetry([i for i in items if i.ok and i.record is not None], now)
        # Risk first, so an isolation the policy asks for finds the asset's risk already recorded.
        await self._update_assets([i for i in items if i.ok], now)
        await self._isolate([i for i in items if i.ok])
        done = [m.message for m in received if all(i.ok for i in m.items)]
        if done:
            await self._delete(done)
        for source in received:
            if not all(i.ok for i in source.items):
                await self._retry_later(source)

    async def _evaluate(self, item: _Item, now: float) -> None:
        env = item.envelope
        hb = env.heartbeat
        observe = domain.format_ts(hb.observe_time.ToDatetime(tzinfo=dt.UTC))
        inventory_bytes: bytes | None = None
        keys_now: list[str] | None = None
        if hb.HasField("inventory"):
            keys_now = rules.model_keys(hb.inventory)
            previous = await self._previous_models(item, observe)
            policy = self._policies.for_tenant(env.tenant)
            item.findings = rules.evaluate(hb.inventory, previous, policy)
            inventory_bytes = hb.inventory.SerializeToString()
            cached = self._models.get(item.key)
            if cached is None or cached[0] < item.position:
                self._models.remember(item.key, (item.position, observe, keys_now))
        elif hb.spool_dropped == 0 and now - self._kept_at.get(item.key, -1e18) < self.settings.keepalive_seconds:
            return  # unchanged and recorded recently: coalesced away (last-seen still goes to assets)
        # Claimed now, so concurrent batches and later heartbeats of this batch coalesce against it.
        self._kept_at.remember(item.key, now)
        item.record = store.TelemetryRecord(
            tenant=env.tenant,
            asset_id=env.asset_id,
            seq=hb.seq,
            epoch=env.epoch,
            observe_time=observe,
            receive_time=env.received,
            inventory_digest=hb.inventory_digest,
            inventory=inventory_bytes,
            model_keys=keys_now,
            findings=[store.FindingRecord(f.rule_id, f.severity.name, f.summary, f.evidence) for f in item.findings],
            spool_dropped=hb.spool_dropped,
            replayed=hb.replayed,
        )

    async def _previous_models(self, item: _Item, observe: str) -> list[str] | None:
        cached = self._models.get(item.key)
        if cached is not None and cached[0] < item.position:
            return list(cached[2])
        found: list[str] | None = await aws.call(
            store.previous_model_keys, self._ddb, self._table, item.envelope.tenant, item.envelope.asset_id,
            observe, item.envelope.heartbeat.seq,
        )
        return found

    async def _write_telemetry(self, items: list[_Item], now: float) -> None:
        if not items:
            return
        ttl = self.settings.ttl_days * 86_400
        wall = time.time()
        payload = [store.telemetry_item(i.record, self.settings.shards, ttl, wall) for i in items if i.record]
        try:
            await aws.call(store.put_telemetry, self._ddb, self._table, payload)
        except Exception as exc:
            log.warning("telemetry of %d heartbeats not written (%s); they are tried again", len(items), exc)
            for item in items:
                item.ok = False
                self._kept_at.pop(item.key, None)
            return
        self.stats.telemetry_items += len(payload)
        self.stats.write_units += sum(store.write_units(p) for p in payload)

    async def _isolate(self, items: list[_Item]) -> None:
        """Order every isolation the batch's findings ask for at once: the assets service commits each
        with its custody record and none waits for another's ledger append (a policy firing on many
        hosts is exactly when orders come together)."""
        orders = [(item, finding) for item in items for finding in item.findings
                  if finding.isolate and finding.severity is rules.Severity.CRITICAL]
        await asyncio.gather(*(self._isolate_one(item, finding) for item, finding in orders))

    async def _isolate_one(self, item: _Item, finding: rules.Finding) -> None:
        env = item.envelope
        request_id = isolation_request_id(env.tenant, env.asset_id, finding.rule_id, env.epoch, env.heartbeat.seq)
        justification = (f"policy rule {finding.rule_id} ({finding.severity.name}) on heartbeat "
                         f"{env.heartbeat.seq}: {finding.summary}")[:1000]
        try:
            await self._assets.isolate_asset(env.tenant, env.asset_id, justification, request_id,
                                             actor=f"policy:{finding.rule_id}")
            self.stats.isolations += 1
            log.info("isolation of %s/%s requested by policy %s", env.tenant, env.asset_id, finding.rule_id)
        except _DEFINITIVE as error:
            # Already isolated (or pending), or the asset is gone: nothing to do again.
            log.info("isolation of %s/%s by %s not needed: %s", env.tenant, env.asset_id,
                     finding.rule_id, error.message)
        except DomainError as error:
            log.warning("isolation of %s/%s not requested yet: %s", env.tenant, env.asset_id, error.message)
            item.ok = False

    async def _update_assets(self, items: list[_Item], now: float) -> None:
        """Coalesced: one update per asset per batch; risk when it was evaluated, last-seen when due."""
        by_tenant: dict[str, dict[str, tuple[assets_pb2.AssetRiskUpdate, list[_Item]]]] = {}
        for item in items:
            env = item.envelope
            update, members = by_tenant.setdefault(env.tenant, {}).setdefault(
                env.asset_id, (assets_pb2.AssetRiskUpdate(asset_id=env.asset_id), []))
            members.append(item)
            hb = env.heartbeat
            if hb.HasField("inventory") and item.position > self._risk_at.get(item.key, (-1, -1)):
                top = rules.max_severity(item.findings)
                update.risk.CopyFrom(common_pb2.RiskSummary(
                    max_severity=_severity_proto(top),
                    findings=[finding_proto(f) for f in item.findings],
                ))
                update.risk.evaluate_time.GetCurrentTime()
                update.hostname = hb.inventory.hostname
                update.os = hb.inventory.os
                update.agent_inventory.CopyFrom(agent_rules.agent_inventory(hb.inventory))
                update.agent_inventory.evaluate_time.CopyFrom(update.risk.evaluate_time)
                update.engine_inventory.CopyFrom(engine_inventory(hb.inventory))
                update.engine_inventory.evaluate_time.CopyFrom(update.risk.evaluate_time)
            seen = self._seen_sent.get(item.key)
            observed = domain.format_ts(hb.observe_time.ToDatetime(tzinfo=dt.UTC))
            newer = seen is None or observed > seen[1]
            due = seen is None or now - seen[0] >= self.settings.last_seen_seconds
            if due and not update.HasField("risk") and now < self._seen_backoff.get(item.key, 0.0):
                due = False  # its last try failed moments ago: no call per batch while assets struggles
            if newer and (update.HasField("risk") or due or update.HasField("last_seen_time")):
                update.last_seen_time.CopyFrom(hb.observe_time)
        for tenant, per_asset in by_tenant.items():
            wanted = [(u, m) for u, m in per_asset.values() if u.HasField("risk") or u.HasField("last_seen_time")]
            for start in range(0, len(wanted), UPDATES_PER_CALL):
                await self._send_updates(tenant, wanted[start:start + UPDATES_PER_CALL], now)

    async def _send_updates(self, tenant: str, chunk: list[tuple[assets_pb2.AssetRiskUpdate, list[_Item]]],
                            now: float) -> None:
        """Send one call's updates; when assets refuses the call, each update alone, so one bad update
        (a hostile hostname) is dropped by itself and the rest of the batch is still recorded."""
        try:
            await self._assets.update_asset_risk(tenant, [u for u, _ in chunk])
        except _DEFINITIVE as error:
            if len(chunk) > 1:
                for one in chunk:
                    await self._send_updates(tenant, [one], now)
                return
            log.warning("risk update of %s/%s refused and dropped: %s", tenant, chunk[0][0].asset_id, error.message)
            return
        except DomainError as error:
            # Risk is retried with its heartbeats; a last-seen alone is best effort: the asset's
            # next heartbeat brings it again (a redelivered envelope would redo all of its work).
            log.warning("risk updates of %s not sent yet: %s", tenant, error.message)
            for update, members in chunk:
                if update.HasField("risk"):
                    for member in members:
                        member.ok = False
                else:
                    self._seen_backoff.remember((tenant, update.asset_id), now + self.settings.retry_seconds)
            return
        self.stats.risk_updates += len(chunk)
        for update, members in chunk:
            key = (tenant, update.asset_id)
            if update.HasField("risk"):
                top_position = max(m.position for m in members if m.envelope.heartbeat.HasField("inventory"))
                self._risk_at.remember(key, top_position)
            if update.HasField("last_seen_time"):
                observed = domain.format_ts(update.last_seen_time.ToDatetime(tzinfo=dt.UTC))
                self._seen_sent.remember(key, (now, observed))

    # -------------------------------------------------------------------------------------- queues

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        got = await aws.call(
            self._sqs.delete_message_batch,
            QueueUrl=self.settings.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        if got.get("Failed"):
            log.warning("%d messages not deleted; they come back and are absorbed (deterministic keys)",
                        len(got["Failed"]))

    async def _retry_later(self, source: _Message) -> None:
        """The whole envelope comes back later (its stored heartbeats are absorbed by their deterministic
        keys); at the last try only its failed heartbeats go to the dead-letter queue."""
        if source.receive_count >= self.settings.max_tries:
            failed = [i for i in source.items if not i.ok]
            why = f"failed {source.receive_count} times"
            if len(failed) == len(source.items) == 1:
                await self._dead_letter(source.message, why)
                return
            bodies = [(domain.encode_batch([_entry(i.envelope)]), why) for i in failed]
            await self._dead_letter_bodies(source.message, bodies)
            await aws.call(self._sqs.delete_message, QueueUrl=self.settings.queue_url,
                           ReceiptHandle=source.message["ReceiptHandle"])
            return
        with contextlib.suppress(Exception):
            await aws.call(self._sqs.change_message_visibility, QueueUrl=self.settings.queue_url,
                           ReceiptHandle=source.message["ReceiptHandle"],
                           VisibilityTimeout=self.settings.retry_seconds)

    async def _dead_letter(self, message: dict[str, Any], why: str) -> None:
        """Move a poison message to the dead-letter queue (with the reason), then off the main queue."""
        log.warning("message %s to the dead-letter queue: %s", message.get("MessageId", "?"), why)
        await aws.call(
            self._sqs.send_message,
            QueueUrl=self.settings.dlq_url,
            MessageBody=str(message.get("Body", "")) or "(empty)",
            MessageAttributes=_dlq_attributes(message, why),
        )
        await aws.call(self._sqs.delete_message, QueueUrl=self.settings.queue_url,
                       ReceiptHandle=message["ReceiptHandle"])
        self.stats.dead_lettered += 1

    async def _dead_letter_bodies(self, message: dict[str, Any], bodies: list[tuple[str, str]]) -> None:
        """Send single heartbeats of `message` (one-entry bodies, each with its reason) to the dead-letter queue."""
        for start in range(0, len(bodies), 10):
            chunk = bodies[start:start + 10]
            log.warning("%d heartbeats of message %s to the dead-letter queue: %s", len(chunk),
                        message.get("MessageId", "?"), chunk[0][1])
            got = await aws.call(
                self._sqs.send_message_batch,
                QueueUrl=self.settings.dlq_url,
                Entries=[{"Id": str(i), "MessageBody": body, "MessageAttributes": _dlq_attributes(message, why)}
                         for i, (body, why) in enumerate(chunk)],
            )
            if got.get("Failed"):
                raise Unavailable(f"the dead-letter queue refused {len(got['Failed'])} heartbeats")
            self.stats.dead_lettered += len(chunk)


def _dlq_attributes(message: dict[str, Any], why: str) -> dict[str, Any]:
    return {
        "lz-error": {"DataType": "String", "StringValue": why[:256]},
        "lz-source-message-id": {"DataType": "String", "StringValue": str(message.get("MessageId", "?"))},
    }


def _entry(envelope: domain.Envelope) -> domain.BatchEntry:
    received_ms = int(domain.parse_ts(envelope.received).timestamp() * 1000)
    return domain.batch_entry(envelope.tenant, envelope.asset_id, envelope.epoch, received_ms,
                              envelope.heartbeat.SerializeToString())


def build_worker(settings: WorkerSettings) -> Worker:
    policies = rules.load_book(settings.policy_file, settings.policy_dir)
    ddb = aws.client(settings.aws, "dynamodb")
    sqs = aws.client(settings.aws, "sqs")
    assets = AssetsClient(settings.assets_address, settings.server)
    return Worker(settings, ddb, sqs, assets, policies)


async def _serve(settings: WorkerSettings) -> None:
    worker = build_worker(settings)
    heap.settle()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The Deployment probes the health port: ready while the queue answers, alive while the process runs.
    health = None
    if settings.server.health_port:
        health = await start_health_only(Service("risk-worker", (), {}, None, check_ready=worker.check_queue),
                                         settings.server)
    print(f"risk-worker polling {settings.queue_url}", flush=True)
    log.info("polling", extra={"queue": settings.queue_url, "concurrency": settings.concurrency})
    await worker.run(stop)
    if health is not None:
        await stop_server(health, 0)
    log.info("stopped", extra={"messages": worker.stats.messages})


def main() -> None:
    try:
        settings = load_worker_settings()
        if not 1 <= settings.wait_seconds <= MAX_WAIT_SECONDS:
            raise ConfigError(f"LZ_WORKER_WAIT_SECONDS={settings.wait_seconds}: must be 1-{MAX_WAIT_SECONDS}")
    except ConfigError as exc:
        print(f"lz-risk-worker: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure("risk-worker", settings.server.log_level)
    try:
        asyncio.run(_serve(settings))
    except ConfigError as exc:
        print(f"lz-risk-worker: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
