"""Persistence of tenants, assets and commands: the only code that builds the assets service's keys.

Synchronous boto3 (the servicer offloads with `aws.call`). Orders (isolate, release) and agent
results commit in one TransactWriteItems: the asset (conditioned on the version it was read at),
the command item and the custody record (`services.ledger.outbox`, an item under the asset), so
state, command and custody record commit together or not at all. The record gets its ledger seq
from the custody sequencer moments later; no item of the transaction is shared with another asset's,
so concurrent orders in a tenant never cancel each other. See ACCESS_PATTERNS.md.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from typing import Any, Generic, TypeVar

import botocore.exceptions

from services.assets import domain, keys
from services.assets.domain import (
    Asset,
    Command,
    CommandKind,
    CommandResult,
    ContainmentPolicy,
    EnrollmentKind,
    EventDraft,
    Outcome,
    Risk,
    RiskUpdate,
    Severity,
    Status,
    StoredInventory,
    Tenant,
)
from services.ingest import health, presence
from services.ingest import keys as ingest_keys
from services.ingest import store as ingest_store
from services.ingest.health import Connection
from services.kit import aws
from services.kit.auth import Role, new_secret, same_secret, sha256_hex
from services.kit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from services.kit.tokens import keys as token_keys
from services.kit.tokens import store as token_store
from services.ledger import store as ledger_store
from services.ledger.outbox import CustodyRecord, new_record, record_put
from services.ledger.outbox import store as outbox_store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# One shared TransactWriteItems holds at most 100 actions and 4 MB; item sizes are estimated from their text.
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 3_000_000
# A filtered connection listing reads at most this many pages of agents (1,000 each) for one page of assets.
MAX_CONNECTION_PAGES = 20
T = TypeVar("T")
AnswerT = TypeVar("AnswerT")

# Compared with a presented enrollment secret when the tenant does not exist, so that the answer
# takes as long as for a tenant that does.
_ABSENT_SHA256 = sha256_hex("absent-tenant-placeholder")


@dataclass(frozen=True)
class OrderOutcome:
    asset: Asset
    command: Command
    # True when this answer is a retry's: the command and custody record were written before.
    replayed: bool
    # The custody record this order wrote (None for a replayed answer): for the sequencer.
    custody: CustodyRecord | None = None


@dataclass(frozen=True)
class ResultOutcome:
    asset: Asset
    # The custody event's ledger seq when already chained (a replayed answer), else 0.
    custody_seq: int
    replayed: bool
    custody: CustodyRecord | None = None


# An enrollment answers like a result: the asset after it, the seq once chained and the record to chain.
EnrollmentOutcome = ResultOutcome


@dataclass(frozen=True)
class LossOutcome:
    contained: bool
    # The custody event's ledger seq when already chained (a replayed answer), else 0.
    custody_seq: int
    status: Status
    replayed: bool = False
    # The custody record this loss wrote (None for a replayed or not-contained answer): for the sequencer.
    custody: CustodyRecord | None = None


@dataclass(frozen=True)
class FleetCounts:
    states: dict[str, int]
    versions: dict[str, tuple[int, bool]]
    outdated: int


@dataclass(frozen=True)
class AgentEventOutcome:
    # The custody event's ledger seq when already chained (a replayed answer), else 0.
    custody_seq: int
    replayed: bool
    # The custody record this event wrote (None for a replayed answer): for the sequencer.
    custody: CustodyRecord | None = None


@dataclass(frozen=True)
class ApprovalOutcome:
    code: str
    expire_time: str
    custody: CustodyRecord


@dataclass(frozen=True)
class AssetView:
    """What GetAsset shows of an asset: the asset and its newest inventories (None before the first)."""

    asset: Asset
    agents: StoredInventory | None
    engines: StoredInventory | None


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_token: str


@dataclass(frozen=True)
class Prepared(Generic[AnswerT]):
    """A transaction ready to commit and the answer it gives once committed."""

    transact_items: list[dict[str, Any]]
    outcome: AnswerT


class Conflict(Exception):
    """A prepared transaction was cancelled: something it read changed. A fresh attempt re-reads."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons


@dataclass(frozen=True)
class GroupedWrite(Generic[AnswerT]):
    """One request that may share its tenant's next reads and transaction (an order, an agent's result).

    `reads` are the items it needs; `prepare` builds its transaction from them or answers at once (a
    replay, or the error it raises); `alone` is the request's own path (its reads, retries and
    request-id replay), taken when a shared transaction is cancelled.
    """

    asset_id: str
    reads: tuple[tuple[str, str], ...]
    prepare: Callable[[Sequence[dict[str, Any] | None]], Prepared[AnswerT] | AnswerT]
    alone: Callable[[], AnswerT]
    # An agent's answer to a command already sent (its order is durable and the agent waits on the record).
    confirms: bool = False
    # When the request was made (monotonic): how long a result has waited behind new orders.
    queued_at: float = field(default_factory=time.monotonic)


class AssetStore:
    """Tenants, assets and commands in the one table."""

    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb = ddb
        self.table = table

    # --- tenants ----------------------------------------------------------------------------------

    def create_tenant(self, tenant_id: str, display_name: str, request_id: str) -> tuple[Tenant, str, str]:
        """The new tenant, its first admin token and its enrollment secret (both shown once)."""
        pk = keys.auth_pk(tenant_id)
        secret = new_secret()
        when = domain.format_ts(domain.now())
        tenant = Tenant(tenant_id, domain.validate_display_name(display_name), when, sha256_hex(secret), when)
        item = {"PK": pk, "SK": keys.METADATA_SK, **_tenant_attrs(tenant), "create_request_id": request_id}
        try:
            self.ddb.put_item(TableName=self.table, Item=aws.to_item(item),
                              ConditionExpression="attribute_not_exists(SK)")
        except self.ddb.exceptions.ConditionalCheckFailedException:
            raise AlreadyExists(f"tenant {tenant_id} already exists") from None
        try:
            token, _ = token_store.issue(self.ddb, self.table, tenant_id, Role.ADMIN, "first admin token")
        except BaseException:
            # Without its admin token the tenant could never be used; take it back so a retry works.
            self.ddb.delete_item(TableName=self.table, Key=aws.to_item({"PK": pk, "SK": keys.METADATA_SK}))
            raise
        return tenant, str(token), secret

    def get_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.find_tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} does not exist")
        return tenant

    def find_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant item; None for tenants whose tokens were issued without one (tests, migrations)."""
        item = self._get(keys.auth_pk(tenant_id), keys.METADATA_SK)
        return _tenant_from(item) if item is not None else None

    def rotate_enrollment_secret(self, tenant_id: str) -> tuple[str, str]:
        """A new enrollment secret (shown once) and its fingerprint; the old one stops working."""
        secret = new_secret()
        digest = sha256_hex(secret)
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=aws.to_item({"PK": keys.auth_pk(tenant_id), "SK": keys.METADATA_SK}),
                UpdateExpression="SET enrollment_sha256 = :h, enrollment_create_time = :t",
                ConditionExpression="attribute_exists(SK)",
                ExpressionAttributeValues=aws.to_item({":h": digest, ":t": domain.format_ts(domain.now())}),
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            raise NotFound(f"tenant {tenant_id} does not exist") from None
        return secret, domain.fingerprint(digest)

    def set_resolvers(self, tenant_id: str, resolvers: tuple[str, ...]) -> tuple[str, ...]:
        """Store the resolvers later isolations admit; they go into each new command's policy."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=aws.to_item({"PK": keys.auth_pk(tenant_id), "SK": keys.METADATA_SK}),
                UpdateExpression="SET dns_servers = :d",
                ConditionExpression="attribute_exists(SK)",
                ExpressionAttributeValues=aws.to_item({":d": json.dumps(list(resolvers))}),
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            raise NotFound(f"tenant {tenant_id} does not exist") from None
        return resolvers

    def check_enrollment_secret(self, tenant_id: str, secret: str) -> bool:
        item = self._get(keys.auth_pk(tenant_id), keys.METADATA_SK)
        stored = str(item.get("enrollment_sha256", "")) if item else ""
        matches = same_secret(secret, stored or _ABSENT_SHA256)
        return bool(stored) and matches and bool(secret)

    # --- operator tokens (items owned by services.kit.tokens) -------------------------------------

    def list_tokens(self, tenant_id: str, size: int, page_token: str) -> Page:
        position = domain.decode_page_token("tokens", page_token, ("t",))
        start = None
        if position is not None:
            start = aws.to_item({"PK": token_keys.auth_pk(tenant_id), "SK": token_keys.token_sk(position["t"])})
        records, last = token_store.list_tokens(self.ddb, self.table, tenant_id, size, start)
        token = ""
        if last is not None and records:
            token = domain.encode_page_token("tokens", {"t": records[-1].token_id})
        return Page(list(records), token)

    # --- assets -----------------------------------------------------------------------------------

    def create_asset(self, tenant_id: str, asset: Asset) -> Asset:
        """Store a new asset; a retry with the same request id answers the stored asset."""
        try:
            self.ddb.put_item(TableName=self.table, Item=aws.to_item(_asset_item(tenant_id, asset)),
                              ConditionExpression="attribute_not_exists(SK)")
        except self.ddb.exceptions.ConditionalCheckFailedException:
            existing = self.get_asset(tenant_id, asset.asset_id)
            if asset.create_request_id and existing.create_request_id == asset.create_request_id:
                return existing
            raise AlreadyExists(f"asset {asset.asset_id} already exists") from None
        return asset

    # --- enrollment (ingest checks the secret or credential; this records it with its custody record) ---

    def record_enrollment(self, tenant_id: str, kind: EnrollmentKind, facts: Asset, *, request_id: str,
                          reenroll_code: str = "", max_assets: int) -> EnrollmentOutcome:
        """The asset of an enrollment, committed with its custody record (chained by the sequencer).

        NEW creates the asset (AlreadyExists for an existing id, unless this request created it: then the
        stored answer) within the tenant's quota of `max_assets`; ROTATION records that the agent replaced
        its credential; REENROLL redeems the asset's one-time code (PermissionDenied when there is no
        valid one), re-admitting a revoked asset. The record is chained after the asset's previous one; a
        repeated request id answers the first record's seq once chained (else 0) and writes nothing.
        """
        def attempt() -> EnrollmentOutcome:
            if kind is EnrollmentKind.NEW:
                prepared = self._prepare_new_enrollment(tenant_id, facts, request_id, max_assets)
            elif kind is EnrollmentKind.REENROLL:
                prepared = self._prepare_reenrollment(tenant_id, facts, request_id, reenroll_code)
            else:
                prepared = self._prepare_rotation(tenant_id, facts, request_id)
            if isinstance(prepared, EnrollmentOutcome):
                return prepared
            self.commit(prepared)
            return prepared.outcome

        return self._with_retries(attempt)

    def _prepare_new_enrollment(self, tenant_id: str, facts: Asset, request_id: str,
                                max_assets: int) -> Prepared[EnrollmentOutcome] | EnrollmentOutcome:
        item = self._get(keys.tenant_pk(tenant_id), keys.asset_sk(facts.asset_id))
        if item is not None:
            existing = _asset_from(item)
            if request_id and existing.create_request_id == request_id:
                return self._replayed_enrollment(tenant_id, existing)
            raise AlreadyExists(f"asset {facts.asset_id} already exists")
        tenant = self._get(keys.auth_pk(tenant_id), keys.METADATA_SK)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} does not exist")
        if int(tenant.get("enrolled_assets", 0)) >= max_assets:
            raise ResourceExhausted(f"the tenant has enrolled its quota of {max_assets} assets",
                                    reason="ENROLLMENT_QUOTA")
        version = 1
        record = new_record(tenant_id, facts.asset_id, version, 0, _draft(domain.enrollment_event(
            EnrollmentKind.NEW, facts, request_id=request_id)))
        asset = replace(facts, create_request_id=request_id, version=version, custody_version=version,
                        enrollment_request_id=request_id, enrollment_custody_version=version)
        items = [
            {"Put": {"TableName": self.table, "Item": aws.to_item(_asset_item(tenant_id, asset)),
                     "ConditionExpression": "attribute_not_exists(SK)"}},
            {"Update": {
                "TableName": self.table,
                "Key": aws.to_item({"PK": keys.auth_pk(tenant_id), "SK": keys.METADATA_SK}),
                "UpdateExpression": "SET enrolled_assets = if_not_exists(enrolled_assets, :zero) + :one",
                "ConditionExpression": "attribute_exists(SK) AND "
                                       "(attribute_not_exists(enrolled_assets) OR enrolled_assets < :max)",
                "ExpressionAttributeValues": aws.to_item({":zero": 0, ":one": 1, ":max": max_assets}),
            }},
            record_put(self.table, record),
        ]
        return Prepared(items, EnrollmentOutcome(asset, 0, replayed=False, custody=record))

    def _prepare_rotation(self, tenant_id: str, facts: Asset,
                          request_id: str) -> Prepared[EnrollmentOutcome] | EnrollmentOutcome:
        asset = self.get_asset(tenant_id, facts.asset_id)
        if request_id and asset.enrollment_request_id == request_id:
            return self._replayed_enrollment(tenant_id, asset)
        return self._prepare_enrollment_event(tenant_id, EnrollmentKind.ROTATION, asset, facts, request_id=request_id)

    def _prepare_reenrollment(self, tenant_id: str, facts: Asset, request_id: str,
                              code: str) -> Prepared[EnrollmentOutcome] | EnrollmentOutcome:
        asset = self.get_asset(tenant_id, facts.asset_id)
        approval = self._get(keys.auth_pk(tenant_id), keys.reenroll_sk(facts.asset_id)) or {}
        stored = str(approval.get("code_sha256", ""))
        matches = same_secret(code, stored or _ABSENT_SHA256) and bool(stored) and bool(code)
        redeemed_by = str(approval.get("redeemed_request_id", ""))
        if matches and request_id and redeemed_by == request_id:
            if "redeem_seq" in approval:
                # Redeemed before the outbox: the seq its synchronous append got.
                return EnrollmentOutcome(asset, int(approval["redeem_seq"]), replayed=True)
            seq = self._record_seq(tenant_id, asset.asset_id, int(approval.get("redeem_custody_version", 0)))
            return EnrollmentOutcome(asset, seq, replayed=True)
        if not matches or redeemed_by or str(approval.get("expire_time", "")) < domain.format_ts(domain.now()):
            raise PermissionDenied(f"asset {facts.asset_id} has no valid re-enrollment code like that; "
                                   "an operator issues one with `lz assets re-enroll`", reason="BAD_REENROLL_CODE")
        prepared = self._prepare_enrollment_event(tenant_id, EnrollmentKind.REENROLL, asset, facts,
                                                  request_id=request_id,
                                                  approval_seq=self._approval_seq(tenant_id, facts.asset_id, approval))
        redeem = {"Update": {
            "TableName": self.table,
            "Key": aws.to_item({"PK": keys.auth_pk(tenant_id), "SK": keys.reenroll_sk(facts.asset_id)}),
            "UpdateExpression": "SET redeemed_request_id = :r, redeem_custody_version = :v",
            "ConditionExpression": "code_sha256 = :h AND attribute_not_exists(redeemed_request_id)",
            "ExpressionAttributeValues": aws.to_item({":r": request_id or "-", ":h": stored,
                                                      ":v": prepared.outcome.asset.version}),
        }}
        return Prepared([redeem, *prepared.transact_items], prepared.outcome)

    def _approval_seq(self, tenant_id: str, asset_id: str, approval: dict[str, Any]) -> int:
        """The ledger seq of the approval a code redemption names; Conflict (a retry) while it is not chained."""
        if "approval_seq" in approval:
            # Approved before the outbox: the seq its synchronous append got.
            return int(approval["approval_seq"])
        seq = self._record_seq(tenant_id, asset_id, int(approval.get("approval_custody_version", 0)))
        if not seq:
            # The approval's record is chained within milliseconds (or by the next sweep); the redemption's
            # event names the approval by its seq, so it waits for it rather than naming nothing.
            raise Conflict(["ApprovalNotChained"])
        return seq

    def _prepare_enrollment_event(self, tenant_id: str, kind: EnrollmentKind, asset: Asset, facts: Asset, *,
                                  request_id: str, approval_seq: int = 0) -> Prepared[EnrollmentOutcome]:
        moved = domain.with_host_facts(asset, facts)
        version = asset.version + 1
        record = new_record(tenant_id, asset.asset_id, version, asset.custody_version, _draft(
            domain.enrollment_event(kind, moved, request_id=request_id, approval_seq=approval_seq)))
        after = replace(moved, version=version, custody_version=version, enrollment_request_id=request_id,
                        enrollment_custody_version=version, update_time=domain.format_ts(domain.now()))
        return Prepared([self._put_asset_if_unchanged(tenant_id, after, asset), record_put(self.table, record)],
                        EnrollmentOutcome(after, 0, replayed=False, custody=record))

    def _replayed_enrollment(self, tenant_id: str, asset: Asset) -> EnrollmentOutcome:
        """The answer for the asset's last recorded enrollment: its record's seq once chained, else 0."""
        if not asset.enrollment_custody_version:
            # Enrolled before the outbox: the seq its synchronous append got.
            return EnrollmentOutcome(asset, asset.last_custody_seq, replayed=True)
        seq = self._record_seq(tenant_id, asset.asset_id, asset.enrollment_custody_version)
        return EnrollmentOutcome(asset, seq, replayed=True)

    def approve_reenrollment(self, tenant_id: str, asset_id: str, *, actor: str, reason: str,
                             request_id: str) -> ApprovalOutcome:
        """A one-time re-enrollment code for the asset (shown once), its expiry and the approval's custody record.

        The approval is a custody action of the asset: the asset's new version (nothing else changes), the
        approval item and the custody record commit together, so the record is chained in the asset's order.
        A newer approval replaces an older, unredeemed code.
        """
        draft_of = functools.partial(domain.reenroll_approval_event, actor, asset_id, reason=reason,
                                     request_id=request_id)

        def attempt() -> ApprovalOutcome:
            asset = self.get_asset(tenant_id, asset_id)
            code = new_secret()
            expire = domain.format_ts(domain.now() + domain.REENROLL_CODE_TTL)
            version = asset.version + 1
            record = new_record(tenant_id, asset_id, version, asset.custody_version,
                                _draft(draft_of(expire_time=expire)))
            approval = {"PK": keys.auth_pk(tenant_id), "SK": keys.reenroll_sk(asset_id), "asset_id": asset_id,
                        "code_sha256": sha256_hex(code), "expire_time": expire, "approval_custody_version": version,
                        "actor": actor}
            after = replace(asset, version=version, custody_version=version)
            self.commit(Prepared([self._put_asset_if_unchanged(tenant_id, after, asset),
                                  {"Put": {"TableName": self.table, "Item": aws.to_item(approval)}},
                                  record_put(self.table, record)], None))
            return ApprovalOutcome(code, expire, record)

        return self._with_retries(attempt)

    def _record_seq(self, tenant_id: str, asset_id: str, version: int) -> int:
        """The ledger seq of the asset's custody record of `version` once chained; 0 before (or without one)."""
        if not version:
            return 0
        record = outbox_store.get_record(self.ddb, self.table, tenant_id, asset_id, version)
        return record.ledger_seq if record is not None and record.chained else 0

    def get_asset(self, tenant_id: str, asset_id: str) -> Asset:
        item = self._get(keys.tenant_pk(tenant_id), keys.asset_sk(asset_id))
        if item is None:
            raise NotFound(f"asset {asset_id} does not exist")
        return _asset_from(item)

    def get_asset_view(self, tenant_id: str, asset_id: str) -> AssetView:
        """The asset (`last_custody_seq`: its newest custody record's seq once chained) with its inventories.

        The asset and both inventory items are one BatchGetItem; the custody record a second read.
        """
        pk = keys.tenant_pk(tenant_id)
        asset_item, agents, engines = self._get_many((pk, keys.asset_sk(asset_id)),
                                                     (pk, keys.agent_inventory_sk(asset_id)),
                                                     (pk, keys.engine_inventory_sk(asset_id)))
        if asset_item is None:
            raise NotFound(f"asset {asset_id} does not exist")
        asset = _asset_from(asset_item)
        if asset.custody_version:
            record = outbox_store.get_record(self.ddb, self.table, tenant_id, asset_id, asset.custody_version)
            if record is not None and record.chained:
                asset = replace(asset, last_custody_seq=record.ledger_seq)
        return AssetView(asset, _inventory_from(agents), _inventory_from(engines))

    def list_assets(self, tenant_id: str, size: int, page_token: str) -> Page:
        """Every asset of the tenant, by asset id."""
        position = domain.decode_page_token("assets", page_token, ("a",))
        start = None
        if position is not None:
            start = {"PK": keys.tenant_pk(tenant_id), "SK": keys.asset_sk(position["a"])}
        return self._query_assets(
            "assets", size, start, lambda a: {"a": a.asset_id},
            KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
            ExpressionAttributeValues={":pk": keys.tenant_pk(tenant_id), ":sk": keys.ASSET_SK_PREFIX},
        )

    def list_assets_by_status(self, tenant_id: str, status: Status, size: int, page_token: str) -> Page:
        """Assets in one status: the tenant's asset range, filtered on status (see ACCESS_PATTERNS.md)."""
        position = domain.decode_page_token("status", page_token, ("a",))
        start = None
        if position is not None:
            start = {"PK": keys.tenant_pk(tenant_id), "SK": keys.asset_sk(position["a"])}
        return self._query_assets(
            "status", size, start, lambda a: {"a": a.asset_id},
            KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
            FilterExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":pk": keys.tenant_pk(tenant_id), ":sk": keys.ASSET_SK_PREFIX,
                                       ":status": status.value},
        )

    def list_assets_by_employee(self, tenant_id: str, employee_id: str, size: int, page_token: str) -> Page:
        """An employee's assets (GSI1), grouped by status."""
        gsi1pk = keys.employee_gsi1pk(tenant_id, employee_id)
        position = domain.decode_page_token("employee", page_token, ("a", "s"))
        start = None
        if position is not None:
            start = {"GSI1PK": gsi1pk, "GSI1SK": keys.state_gsi1sk(position["s"], position["a"]),
                     "PK": keys.tenant_pk(tenant_id), "SK": keys.asset_sk(position["a"])}
        return self._query_assets(
            "employee", size, start, lambda a: {"a": a.asset_id, "s": a.status.value},
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": gsi1pk},
        )

    def list_assets_needing_action(self, tenant_id: str, size: int, page_token: str) -> Page:
        """Assets that need action (sparse GSI2), longest-waiting first."""
        gsi2pk = keys.action_required_gsi2pk(tenant_id)
        position = domain.decode_page_token("action", page_token, ("a", "t"))
        start = None
        if position is not None:
            start = {"GSI2PK": gsi2pk, "GSI2SK": keys.ts_asset_gsi2sk(position["t"], position["a"]),
                     "PK": keys.tenant_pk(tenant_id), "SK": keys.asset_sk(position["a"])}
        return self._query_assets(
            "action", size, start, lambda a: {"a": a.asset_id, "t": a.action_since},
            IndexName="GSI2",
            KeyConditionExpression="GSI2PK = :pk",
            ExpressionAttributeValues={":pk": gsi2pk},
        )

    def _query_assets(self, kind: str, size: int, start: dict[str, str] | None,
                      position: Callable[[Asset], dict[str, str]], **query: Any) -> Page:
        items, more = self._query_page(size, start, query)
        assets = [_asset_from(i) for i in items]
        token = domain.encode_page_token(kind, position(assets[-1])) if more and assets else ""
        return Page(assets, token)

    def _query_page(self, size: int, start: dict[str, str] | None, query: dict[str, Any]) -> tuple[
        list[dict[str, Any]], bool
    ]:
        """Up to `size` items and whether more may follow; filtered queries keep reading to fill a page."""
        values = query.pop("ExpressionAttributeValues")
        kwargs: dict[str, Any] = {"TableName": self.table, **query,
                                  "ExpressionAttributeValues": aws.to_item(values)}
        out: list[dict[str, Any]] = []
        last: dict[str, Any] | None = aws.to_item(start) if start else None
        for _ in range(20):
            if last:
                kwargs["ExclusiveStartKey"] = last
            kwargs["Limit"] = size - len(out)
            got = self.ddb.query(**kwargs)
            out.extend(aws.from_item(i) for i in got.get("Items", []))
            last = got.get("LastEvaluatedKey")
            if not last or len(out) >= size:
                break
        return out, bool(last)

    # --- orders: isolate and release -------------------------------------------------------------

    def order(self, tenant_id: str, asset_id: str, kind: CommandKind, *, actor: str, justification: str,
              request_id: str, control_plane_endpoints: Sequence[str]) -> OrderOutcome:
        """Move the asset to the pending status, write the command and the custody record, atomically.

        A retry with the same request id (or a racing twin of it) answers what the first attempt wrote.
        """
        def attempt() -> OrderOutcome:
            prepared = self.prepare_order(tenant_id, asset_id, kind, actor=actor, justification=justification,
                                          request_id=request_id, control_plane_endpoints=control_plane_endpoints)
            if isinstance(prepared, OrderOutcome):
                return prepared
            try:
                self.commit(prepared)
            except Conflict:
                # A twin of this request may have committed the command first: then its answer is ours.
                replayed = self._replayed_order(tenant_id, asset_id, prepared.outcome.command.command_id)
                if replayed is None:
                    raise
                return replayed
            return prepared.outcome

        return self._with_retries(attempt)

    def prepare_order(self, tenant_id: str, asset_id: str, kind: CommandKind, *, actor: str, justification: str,
                      request_id: str, control_plane_endpoints: Sequence[str]) -> Prepared[OrderOutcome] | OrderOutcome:
        """The transaction of an order as read now, or the stored answer when the request was committed before.

        The command (an earlier attempt of this request) is looked up only when the asset's state refuses
        the order; when the state allows it, a stored command makes the commit fail on the command's
        condition, and `order` then answers from it. A fresh order so costs three reads, not four.
        """
        # One round trip for the asset and the tenant's containment settings: under a burst every order's
        # reads queue at the table, so each one saved shortens all the others.
        return self._prepare_order_from(self._get_many(*_order_reads(tenant_id, asset_id)), tenant_id, asset_id,
                                        kind, actor=actor, justification=justification, request_id=request_id,
                                        control_plane_endpoints=control_plane_endpoints)

    def order_write(self, tenant_id: str, asset_id: str, kind: CommandKind, *, actor: str, justification: str,
                    request_id: str, control_plane_endpoints: Sequence[str]) -> GroupedWrite[OrderOutcome]:
        """An order as a write that can share reads and a transaction (`write_group`); alone it is `order`."""
        order: dict[str, Any] = {"actor": actor, "justification": justification, "request_id": request_id,
                                 "control_plane_endpoints": control_plane_endpoints}
        return GroupedWrite(asset_id, _order_reads(tenant_id, asset_id),
                            functools.partial(self._prepare_order_from, tenant_id=tenant_id, asset_id=asset_id,
                                              kind=kind, **order),
                            functools.partial(self.order, tenant_id, asset_id, kind, **order))

    def _prepare_order_from(self, read: Sequence[dict[str, Any] | None], tenant_id: str, asset_id: str,
                            kind: CommandKind, *, actor: str, justification: str, request_id: str,
                            control_plane_endpoints: Sequence[str]) -> Prepared[OrderOutcome] | OrderOutcome:
        """`prepare_order` on the asset and tenant items as read (`_order_reads`)."""
        command_id = domain.command_id_for(tenant_id, asset_id, kind, request_id)
        asset_item, tenant_item = read
        if asset_item is None:
            raise NotFound(f"asset {asset_id} does not exist")
        asset = _asset_from(asset_item)
        try:
            status = domain.next_status(asset.status, domain.ORDER_TRIGGER[kind])
        except FailedPrecondition:
            replayed = self._replayed_order(tenant_id, asset_id, command_id)
            if replayed is None:
                raise
            return replayed
        tenant = _tenant_from(tenant_item) if tenant_item is not None else None
        version = asset.version + 1
        record = new_record(tenant_id, asset_id, version, asset.custody_version, _draft(domain.order_event(
            actor, kind, asset_id, justification=justification, command_id=command_id, request_id=request_id)))
        when = domain.format_ts(domain.now())
        after = domain.with_action_since(
            replace(asset, status=status, status_reason=justification, update_time=when,
                    version=version, custody_version=version, current_command_id=command_id),
            when,
        )
        policy = ContainmentPolicy(
            control_plane_endpoints=tuple(control_plane_endpoints),
            allowlist_cidrs=tenant.allowlist_cidrs if tenant else (),
            stop_engines=tenant.stop_engines if tenant else False,
            dns_servers=tenant.dns_servers if tenant else (),
        )
        command = Command(
            command_id=command_id, asset_id=asset_id, kind=kind, issue_time=when, policy=policy,
            custody_seq=0, actor=actor, justification=justification, request_id=request_id,
            asset_after=after,
        )
        items = [
            self._put_asset_if_unchanged(tenant_id, after, asset),
            {"Put": {"TableName": self.table, "Item": aws.to_item(_command_item(tenant_id, command)),
                     "ConditionExpression": "attribute_not_exists(SK)"}},
            record_put(self.table, record),
        ]
        return Prepared(items, OrderOutcome(after, command, replayed=False, custody=record))

    def _replayed_order(self, tenant_id: str, asset_id: str, command_id: str) -> OrderOutcome | None:
        """The answer an earlier attempt of this request committed, or None when there was none."""
        existing = self.get_command(tenant_id, asset_id, command_id)
        if existing is None:
            return None
        if existing.asset_after is None:
            raise NotFound(f"command {command_id} has no recorded answer")
        return OrderOutcome(existing.asset_after, existing, replayed=True)

    def record_result(self, tenant_id: str, asset_id: str, command_id: str, result: CommandResult,
                      actor: str) -> ResultOutcome:
        """Record the agent's result: move the asset on, close the command, append the second custody event.

        Idempotent by command id: a repeated result answers what the first one recorded.
        """
        domain.validate_result(result)

        def attempt() -> ResultOutcome:
            prepared = self.prepare_result(tenant_id, asset_id, command_id, result, actor)
            if isinstance(prepared, ResultOutcome):
                return prepared
            self.commit(prepared)
            return prepared.outcome

        return self._with_retries(attempt)

    def prepare_result(self, tenant_id: str, asset_id: str, command_id: str, result: CommandResult,
                       actor: str) -> Prepared[ResultOutcome] | ResultOutcome:
        """The transaction recording a result as read now, or the stored answer for a repeated result."""
        return self._prepare_result_from(self._get_many(*_result_reads(tenant_id, asset_id, command_id)), tenant_id,
                                         asset_id, command_id=command_id, result=result, actor=actor)

    def result_write(self, tenant_id: str, asset_id: str, command_id: str, result: CommandResult,
                     actor: str) -> GroupedWrite[ResultOutcome]:
        """An agent's result as a write that can share reads and a transaction; alone it is `record_result`."""
        domain.validate_result(result)
        return GroupedWrite(asset_id, _result_reads(tenant_id, asset_id, command_id),
                            functools.partial(self._prepare_result_from, tenant_id=tenant_id, asset_id=asset_id,
                                              command_id=command_id, result=result, actor=actor),
                            functools.partial(self.record_result, tenant_id, asset_id, command_id, result, actor),
                            confirms=True)

    def _prepare_result_from(self, read: Sequence[dict[str, Any] | None], tenant_id: str, asset_id: str, *,
                             command_id: str, result: CommandResult,
                             actor: str) -> Prepared[ResultOutcome] | ResultOutcome:
        """`prepare_result` on the command and asset items as read (`_result_reads`)."""
        command_item, asset_item = read
        if command_item is None:
            raise NotFound(f"command {command_id} of asset {asset_id} does not exist")
        if asset_item is None:
            raise NotFound(f"asset {asset_id} does not exist")
        command, asset = _command_from(command_item), _asset_from(asset_item)
        if not command.pending:
            return ResultOutcome(command.asset_after_result or asset, command.result_custody_seq, replayed=True)
        when = domain.format_ts(domain.now())
        moved, applies = domain.after_result(asset, command, result, when)
        version = asset.version + 1
        record = new_record(tenant_id, asset_id, version, asset.custody_version,
                            _draft(domain.result_event(actor, command, result, applies)))
        after = replace(moved, version=version, custody_version=version)
        closed = replace(command, result=result, asset_after_result=after)
        items = [
            self._put_asset_if_unchanged(tenant_id, after, asset),
            {"Put": {"TableName": self.table, "Item": aws.to_item(_command_item(tenant_id, closed)),
                     "ConditionExpression": "attribute_exists(SK) AND attribute_not_exists(result_json)"}},
            record_put(self.table, record),
        ]
        return Prepared(items, ResultOutcome(after, 0, replayed=False, custody=record))

    def record_agent_event(self, tenant_id: str, asset_id: str, event: domain.AgentEvent) -> AgentEventOutcome:
        """Write the custody record of an agent event once per event id, chained after the asset's previous record.

        The asset (its version and `custody_version`), a marker naming the record and the record commit in
        one transaction, so the event id is recorded once and the record takes its place in the asset's order;
        the sequencer chains it. A repeated event answers the first record's seq once chained, else 0.
        """
        draft = _draft(domain.agent_event_draft(asset_id, event))

        def attempt() -> AgentEventOutcome:
            replayed = self._replayed_agent_event(tenant_id, asset_id, event.event_id)
            if replayed is not None:
                return replayed
            prepared = self.prepare_agent_event(tenant_id, asset_id, event.event_id, draft)
            self.commit(prepared)  # a racing twin's marker makes this a Conflict; the next attempt replays
            return prepared.outcome

        return self._with_retries(attempt)

    def prepare_agent_event(self, tenant_id: str, asset_id: str, event_id: str,
                            draft: ledger_store.EventDraft) -> Prepared[AgentEventOutcome]:
        """The transaction of an agent event as read now: asset (version-conditioned), marker, custody record."""
        asset = self.get_asset(tenant_id, asset_id)
        version = asset.version + 1
        record = new_record(tenant_id, asset_id, version, asset.custody_version, draft)
        after = replace(asset, version=version, custody_version=version)
        marker = {"PK": keys.tenant_pk(tenant_id), "SK": keys.agent_event_sk(asset_id, event_id),
                  "custody_version": version}
        items = [
            self._put_asset_if_unchanged(tenant_id, after, asset),
            {"Put": {"TableName": self.table, "Item": aws.to_item(marker),
                     "ConditionExpression": "attribute_not_exists(SK)"}},
            record_put(self.table, record),
        ]
        return Prepared(items, AgentEventOutcome(0, replayed=False, custody=record))

    def _replayed_agent_event(self, tenant_id: str, asset_id: str, event_id: str) -> AgentEventOutcome | None:
        """The answer for an event id recorded before (its record's seq once chained, else 0), or None."""
        marker = self._get(keys.tenant_pk(tenant_id), keys.agent_event_sk(asset_id, event_id))
        if marker is None:
            return None
        if "custody_version" not in marker:
            # Markers written before the outbox name the seq their synchronous append got.
            return AgentEventOutcome(int(marker["custody_seq"]), replayed=True)
        record = outbox_store.get_record(self.ddb, self.table, tenant_id, asset_id, int(marker["custody_version"]))
        return AgentEventOutcome(record.ledger_seq if record else 0, replayed=True)

    def commit(self, prepared: Prepared[Any]) -> None:
        """Write a prepared transaction; a lost race (any condition) raises `Conflict` for a fresh attempt."""
        try:
            self.ddb.transact_write_items(TransactItems=prepared.transact_items)
        except botocore.exceptions.ClientError as exc:
            code = aws.error_code(exc)
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                log.info("transaction cancelled", extra={"reasons": reasons})
                raise Conflict(reasons) from exc
            if code in {"TransactionConflictException", "TransactionInProgressException"}:
                raise Conflict([code]) from exc
            raise

    def write_group(self, writes: Sequence[GroupedWrite[Any]]) -> list[Any]:
        """Orders and results of one tenant (each asset at most once) in shared reads and transactions.

        One BatchGetItem reads every write's items (at most 100 keys); each write prepares from them (a
        replay or a refusal is its answer at once); the prepared ones commit together, as many per
        TransactWriteItems as fit. Each answer is the write's outcome or the error it raised.
        DynamoDB cancels a whole transaction for one failed condition or one conflicting transaction:
        the writes its CancellationReasons name then take their own path (`alone`) and the others
        commit together again, so a group never changes what one request answers.
        """
        wanted = list(dict.fromkeys(key for write in writes for key in write.reads))
        found = dict(zip(wanted, self._get_many(*wanted), strict=True))
        answers: list[Any] = [None] * len(writes)
        ready: list[tuple[int, Prepared[Any]]] = []
        for index, write in enumerate(writes):
            try:
                prepared = write.prepare([found[key] for key in write.reads])
            except Exception as exc:  # a refusal, or a failed read of this write's own (a replay's command)
                answers[index] = exc
                continue
            if isinstance(prepared, Prepared):
                ready.append((index, prepared))
            else:
                answers[index] = prepared
        for chunk in _transaction_chunks(ready):
            for index, answer in self._commit_group(chunk, writes):
                answers[index] = answer
        return answers

    def _commit_group(self, group: list[tuple[int, Prepared[Any]]],
                      writes: Sequence[GroupedWrite[Any]]) -> list[tuple[int, Any]]:
        """Commit prepared writes in one transaction; after a cancellation, see `write_group`."""
        try:
            self.commit(Prepared([item for _, prepared in group for item in prepared.transact_items], None))
            return [(index, prepared.outcome) for index, prepared in group]
        except Conflict as conflict:
            named = _named_by(conflict.reasons, group)
            log.info("shared transaction cancelled", extra={"writes": len(group), "named": len(named),
                                                            "reasons": sorted(set(conflict.reasons))})
        # Each round takes at least one write out, so this ends.
        others = [(index, prepared) for index, prepared in group if index not in named]
        answered = [(index, _answer_alone(writes[index])) for index in sorted(named)]
        return answered + (self._commit_group(others, writes) if others else [])

    def get_command(self, tenant_id: str, asset_id: str, command_id: str) -> Command | None:
        item = self._get(keys.tenant_pk(tenant_id), keys.command_sk(asset_id, command_id))
        return _command_from(item) if item is not None else None

    def list_pending_commands(self, tenant_id: str, asset_id: str, size: int, page_token: str) -> Page:
        """Commands without a result: the tenant's (sparse GSI2) or one asset's (GSI1), oldest first."""
        if asset_id:
            gsi1pk = keys.asset_gsi1pk(tenant_id, asset_id)
            position = domain.decode_page_token("asset-cmds", page_token, ("t", "c"))
            start = None
            if position is not None:
                start = {"GSI1PK": gsi1pk, "GSI1SK": keys.command_gsi1sk(position["t"]),
                         "PK": keys.tenant_pk(tenant_id), "SK": keys.command_sk(asset_id, position["c"])}
            items, more = self._query_page(size, start, {
                "IndexName": "GSI1",
                "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :sk)",
                "FilterExpression": "attribute_exists(GSI2PK)",
                "ExpressionAttributeValues": {":pk": gsi1pk, ":sk": keys.GSI1SK_CMD_PREFIX},
            })
            commands = [_command_from(i) for i in items]
            token = ""
            if more and commands:
                token = domain.encode_page_token(
                    "asset-cmds", {"t": commands[-1].issue_time, "c": commands[-1].command_id})
            return Page(commands, token)
        gsi2pk = keys.pending_commands_gsi2pk(tenant_id)
        position = domain.decode_page_token("pending", page_token, ("t", "a", "c"))
        start = None
        if position is not None:
            start = {"GSI2PK": gsi2pk, "GSI2SK": keys.ts_asset_gsi2sk(position["t"], position["a"]),
                     "PK": keys.tenant_pk(tenant_id), "SK": keys.command_sk(position["a"], position["c"])}
        items, more = self._query_page(size, start, {
            "IndexName": "GSI2",
            "KeyConditionExpression": "GSI2PK = :pk",
            "ExpressionAttributeValues": {":pk": gsi2pk},
        })
        commands = [_command_from(i) for i in items]
        token = ""
        if more and commands:
            last = commands[-1]
            token = domain.encode_page_token("pending", {"t": last.issue_time, "a": last.asset_id,
                                                         "c": last.command_id})
        return Page(commands, token)

    def record_agent_loss(self, tenant_id: str, asset_id: str, *, reason: str, last_seen: str, request_id: str,
                          actor: str) -> LossOutcome:
        """Write the custody record `asset.agent.lost` when the asset is contained, once per request id.

        The asset (its new version, `custody_version` and the request id) and the record commit in one
        transaction, so the record takes its place in the asset's order; the sequencer chains it. The
        answer's seq is 0 until chained; a repeated request answers the first record's seq once chained.
        """
        def attempt() -> LossOutcome:
            asset = self.get_asset(tenant_id, asset_id)
            if asset.agent_loss_request_id == request_id:
                return self._replayed_agent_loss(tenant_id, asset)
            if asset.status not in domain.CONTAINED:
                return LossOutcome(False, 0, asset.status)
            prepared = self.prepare_agent_loss(tenant_id, asset, reason=reason, last_seen=last_seen,
                                               request_id=request_id, actor=actor)
            self.commit(prepared)  # a racing twin's version makes this a Conflict; the next attempt replays
            return prepared.outcome

        return self._with_retries(attempt)

    def prepare_agent_loss(self, tenant_id: str, asset: Asset, *, reason: str, last_seen: str, request_id: str,
                           actor: str) -> Prepared[LossOutcome]:
        """The transaction of an agent loss on the asset as read: asset (version-conditioned), custody record."""
        version = asset.version + 1
        record = new_record(tenant_id, asset.asset_id, version, asset.custody_version,
                            _draft(domain.agent_loss_event(actor, asset, reason, last_seen, request_id)))
        after = replace(asset, version=version, custody_version=version, agent_loss_request_id=request_id,
                        agent_loss_custody_seq=0, agent_loss_custody_version=version,
                        update_time=domain.format_ts(domain.now()))
        items = [self._put_asset_if_unchanged(tenant_id, after, asset), record_put(self.table, record)]
        return Prepared(items, LossOutcome(True, 0, asset.status, custody=record))

    def _replayed_agent_loss(self, tenant_id: str, asset: Asset) -> LossOutcome:
        """The answer for the asset's last recorded loss: its record's seq once chained, else 0."""
        if not asset.agent_loss_custody_version:
            # Losses recorded before the outbox hold the seq their synchronous append got.
            return LossOutcome(True, asset.agent_loss_custody_seq, asset.status, replayed=True)
        seq = self._record_seq(tenant_id, asset.asset_id, asset.agent_loss_custody_version)
        return LossOutcome(True, seq, asset.status, replayed=True)

    # --- connection state (agent items owned by ingest, read through its presence store) -----------

    def connections(self, tenant_id: str, asset_ids: Sequence[str]) -> dict[str, Connection]:
        """The agents' connection records of these assets (up to 100)."""
        return presence.get_connections(self.ddb, self.table, tenant_id, asset_ids)

    def list_assets_by_connection(self, tenant_id: str, state: health.State | None, *, outdated: bool, size: int,
                                  page_token: str, now: str) -> tuple[Page, dict[str, Connection]]:
        """Assets whose agent is in `state` at `now` (and outdated, when asked), by asset id, with their records."""
        position = domain.decode_page_token("connection", page_token, ("a",))
        after = position["a"] if position is not None else ""
        chosen: list[Connection] = []
        for _ in range(MAX_CONNECTION_PAGES):
            found, after = presence.list_connections(self.ddb, self.table, tenant_id, after)
            for connection in found:
                if (state is None or health.state_at(connection, now)[0] is state) and (
                        connection.outdated or not outdated):
                    chosen.append(connection)
                if len(chosen) == size:
                    after = connection.asset_id
                    break
            if not after or len(chosen) == size:
                break
        assets = [a for a in (self._find_asset(tenant_id, c.asset_id) for c in chosen) if a is not None]
        token = domain.encode_page_token("connection", {"a": after}) if after else ""
        return Page(assets, token), {c.asset_id: c for c in chosen}

    def fleet_counts(self, tenant_id: str, now: str) -> FleetCounts:
        """How many of the tenant's agents are in each connection state, and run each version."""
        states = {state.value: 0 for state in health.State}
        versions: dict[str, tuple[int, bool]] = {}
        outdated = 0
        after = ""
        while True:
            found, after = presence.list_connections(self.ddb, self.table, tenant_id, after)
            for connection in found:
                states[health.state_at(connection, now)[0].value] += 1
                count, old = versions.get(connection.agent_version, (0, False))
                versions[connection.agent_version] = (count + 1, old or connection.outdated)
                outdated += connection.outdated
            if not after:
                return FleetCounts(states, versions, outdated)

    def _find_asset(self, tenant_id: str, asset_id: str) -> Asset | None:
        item = self._get(keys.tenant_pk(tenant_id), keys.asset_sk(asset_id))
        return _asset_from(item) if item is not None else None

    # --- custody -------------------------------------------------------------------------------------

    def custody_log(self, tenant_id: str, asset_id: str, size: int, page_token: str) -> Page:
        """The asset's custody events in seq order, read through the ledger package (GSI1)."""
        self.get_asset(tenant_id, asset_id)
        position = domain.decode_page_token("custody", page_token, ("s",))
        after = 0
        if position is not None:
            if not position["s"].isdigit() or len(position["s"]) > 19:
                raise InvalidArgument.field("page_token", "is not a page token of this list")
            after = int(position["s"])
        events, more = ledger_store.list_asset_events(self.ddb, self.table, tenant_id, asset_id, after, size)
        token = domain.encode_page_token("custody", {"s": str(more)}) if more is not None else ""
        return Page(list(events), token)

    # --- alerts (telemetry items owned by ingest, read through its store) ---------------------------

    def alerts(self, tenant_id: str, min_severity: str, asset_id: str, *, start: str, end: str, size: int,
               page_token: str) -> Page:
        """The tenant's alerts, newest first, via `services.ingest.store.list_alerts`."""
        cursors = self._alert_cursors(tenant_id, page_token)
        found, next_key = ingest_store.list_alerts(self.ddb, self.table, tenant_id, min_severity, asset_id, start,
                                                   end, size, cursors)
        token = domain.encode_page_token("alerts", {"c": json.dumps(next_key, sort_keys=True)}) if next_key else ""
        return Page(list(found), token)

    @staticmethod
    def _alert_cursors(tenant_id: str, page_token: str) -> dict[str, Any] | None:
        """Decode an alerts page token, accepting only cursors inside this tenant's alert partitions."""
        position = domain.decode_page_token("alerts", page_token, ("c",))
        if position is None:
            return None
        bad = InvalidArgument.field("page_token", "is not a page token of this list")
        try:
            cursors = json.loads(position["c"])
        except ValueError:
            raise bad from None
        if not isinstance(cursors, dict) or not cursors:
            raise bad
        # Shard partitions `TENANT#t#TELEMETRY#SHARD#k`, built by ingest's keys only.
        telemetry_prefix = ingest_keys.telemetry_pk(tenant_id, 0)[:-1]
        for severity, cursor in cursors.items():
            if severity not in ingest_keys.SEVERITIES:
                raise bad
            if cursor is None or cursor == "done":
                continue
            if not isinstance(cursor, dict) or set(cursor) != {"PK", "SK", "GSI2PK", "GSI2SK"}:
                raise bad
            if not all(isinstance(v, str) for v in cursor.values()):
                raise bad
            if cursor["GSI2PK"] != ingest_keys.alert_gsi2pk(tenant_id, severity):
                raise bad
            if not (cursor["PK"].startswith(telemetry_prefix) or cursor["PK"] == ingest_keys.health_pk(tenant_id)):
                raise bad
        return cursors

    # --- risk -------------------------------------------------------------------------------------

    def update_risk(self, tenant_id: str, updates: Sequence[RiskUpdate]) -> int:
        """Apply coalesced last-seen and risk updates; unknown assets and stale updates are skipped."""
        updated = 0
        for update in updates:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    asset = self.get_asset(tenant_id, update.asset_id)
                except NotFound:
                    break
                if attempt == 0 and update.agent_inventory is not None:
                    self._put_inventory(tenant_id, keys.agent_inventory_sk(update.asset_id), update.asset_id,
                                        update.agent_inventory)
                if attempt == 0 and update.engine_inventory is not None:
                    self._put_inventory(tenant_id, keys.engine_inventory_sk(update.asset_id), update.asset_id,
                                        update.engine_inventory)
                changed = domain.apply_risk_update(asset, update, domain.format_ts(domain.now()))
                if changed is None:
                    break
                changed = replace(changed, version=asset.version + 1)
                try:
                    self.ddb.put_item(**self._put_asset_if_unchanged(tenant_id, changed, asset)["Put"])
                except self.ddb.exceptions.ConditionalCheckFailedException:
                    _backoff(attempt)
                    continue
                updated += 1
                break
        return updated

    def _put_inventory(self, tenant_id: str, sk: str, asset_id: str, inventory: StoredInventory) -> None:
        """Written only with a changed inventory (ingest sends it with risk); an older one never replaces a newer."""
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=aws.to_item({"PK": keys.tenant_pk(tenant_id), "SK": sk, "asset_id": asset_id,
                                  "data": inventory.data, "evaluate_time": inventory.evaluate_time}),
                ConditionExpression="attribute_not_exists(SK) OR evaluate_time <= :t",
                ExpressionAttributeValues=aws.to_item({":t": inventory.evaluate_time}),
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            log.info("%s of %s is older than the stored one; kept the stored one", sk, tenant_id)

    # --- internals --------------------------------------------------------------------------------

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        got = self.ddb.get_item(TableName=self.table, Key=aws.to_item({"PK": pk, "SK": sk}), ConsistentRead=True)
        return aws.from_item(got["Item"]) if "Item" in got else None

    def _get_many(self, *wanted: tuple[str, str]) -> list[dict[str, Any] | None]:
        """The items of (PK, SK) pairs, in the order asked (None where absent): one consistent BatchGetItem."""
        request: dict[str, Any] = {"Keys": [aws.to_item({"PK": pk, "SK": sk}) for pk, sk in wanted],
                                   "ConsistentRead": True}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for attempt in range(MAX_ATTEMPTS):
            got = self.ddb.batch_get_item(RequestItems={self.table: request})
            for raw in got.get("Responses", {}).get(self.table, []):
                item = aws.from_item(raw)
                found[(str(item["PK"]), str(item["SK"]))] = item
            request = got.get("UnprocessedKeys", {}).get(self.table)
            if not request:
                return [found.get(key) for key in wanted]
            _backoff(attempt)
        raise Aborted("the table did not answer every read of this request; retry it")

    def _put_asset_if_unchanged(self, tenant_id: str, after: Asset, before: Asset) -> dict[str, Any]:
        return {"Put": {
            "TableName": self.table,
            "Item": aws.to_item(_asset_item(tenant_id, after)),
            "ConditionExpression": "attribute_exists(SK) AND #version = :version AND #status = :status",
            "ExpressionAttributeNames": {"#version": "version", "#status": "status"},
            "ExpressionAttributeValues": aws.to_item({":version": before.version, ":status": before.status.value}),
        }}

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        for n in range(MAX_ATTEMPTS):
            try:
                return attempt()
            except Conflict:
                _backoff(n)
        raise Aborted("too many concurrent changes to this asset; retry the request")


def _order_reads(tenant_id: str, asset_id: str) -> tuple[tuple[str, str], ...]:
    """What an order reads: the asset and the tenant (its containment settings)."""
    return (keys.tenant_pk(tenant_id), keys.asset_sk(asset_id)), (keys.auth_pk(tenant_id), keys.METADATA_SK)


def _result_reads(tenant_id: str, asset_id: str, command_id: str) -> tuple[tuple[str, str], ...]:
    """What recording a result reads: the command and the asset."""
    return (keys.tenant_pk(tenant_id), keys.command_sk(asset_id, command_id)), (keys.tenant_pk(tenant_id),
                                                                                 keys.asset_sk(asset_id))


def _transaction_chunks(ready: list[tuple[int, Prepared[Any]]]) -> Iterator[list[tuple[int, Prepared[Any]]]]:
    """Prepared writes in order, cut into groups that fit one TransactWriteItems (items and bytes)."""
    chunk: list[tuple[int, Prepared[Any]]] = []
    items = size = 0
    for entry in ready:
        count, weight = len(entry[1].transact_items), _approx_bytes(entry[1].transact_items)
        if chunk and (items + count > MAX_TRANSACTION_ITEMS or size + weight > MAX_TRANSACTION_BYTES):
            yield chunk
            chunk, items, size = [], 0, 0
        chunk.append(entry)
        items += count
        size += weight
    if chunk:
        yield chunk


def _approx_bytes(actions: list[dict[str, Any]]) -> int:
    """An estimate of the bytes of transaction actions: their text and binary values plus a margin each."""
    total = 0
    for action in actions:
        for op in action.values():
            for value in (*op.get("Item", {}).values(), *op.get("ExpressionAttributeValues", {}).values()):
                total += len(value.get("S", "")) + len(value.get("B", b"")) + 64
    return total


def _named_by(reasons: list[str], group: list[tuple[int, Prepared[Any]]]) -> set[int]:
    """The writes of a cancelled transaction whose actions the cancellation reasons name; every write
    when the reasons name none or do not line up with the actions (a conflict reported without them)."""
    everyone = {index for index, _ in group}
    sizes = [len(prepared.transact_items) for _, prepared in group]
    if len(reasons) != sum(sizes):
        return everyone
    named: set[int] = set()
    start = 0
    for (index, _), size in zip(group, sizes, strict=True):
        if any(code != "None" for code in reasons[start:start + size]):
            named.add(index)
        start += size
    return named or everyone


def _answer_alone(write: GroupedWrite[Any]) -> Any:
    """The write's answer through its own path: its outcome, or the error it raised (for it alone: the
    group's other writes may have committed already)."""
    try:
        return write.alone()
    except Exception as exc:
        return exc


def _inventory_from(item: dict[str, Any] | None) -> StoredInventory | None:
    if item is None:
        return None
    return StoredInventory(data=bytes(item["data"]), evaluate_time=str(item.get("evaluate_time", "")))


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.01 * (2 ** min(attempt, 5))))  # noqa: S311 - jitter, not crypto


def _draft(draft: EventDraft) -> Any:
    return ledger_store.EventDraft(actor=draft.actor, action=draft.action, subject=draft.subject,
                                   payload=draft.payload)


# --- item mapping ---------------------------------------------------------------------------------


def _tenant_attrs(tenant: Tenant) -> dict[str, Any]:
    return {
        "tenant_id": tenant.tenant_id,
        "display_name": tenant.display_name,
        "create_time": tenant.create_time,
        "enrollment_sha256": tenant.enrollment_sha256,
        "enrollment_create_time": tenant.enrollment_create_time,
        "allowlist_cidrs": json.dumps(list(tenant.allowlist_cidrs)),
        "stop_engines": tenant.stop_engines,
        "dns_servers": json.dumps(list(tenant.dns_servers)),
    }


def _tenant_from(item: dict[str, Any]) -> Tenant:
    return Tenant(
        tenant_id=str(item["tenant_id"]),
        display_name=str(item.get("display_name", "")),
        create_time=str(item.get("create_time", "")),
        enrollment_sha256=str(item.get("enrollment_sha256", "")),
        enrollment_create_time=str(item.get("enrollment_create_time", "")),
        allowlist_cidrs=tuple(json.loads(str(item.get("allowlist_cidrs", "[]")))),
        stop_engines=bool(item.get("stop_engines", False)),
        dns_servers=tuple(json.loads(str(item.get("dns_servers", "[]")))),
    )


def _asset_dict(asset: Asset) -> dict[str, Any]:
    # Field by field rather than `asdict`, which deep-copies every value on the way: every order and
    # result writes the asset twice (its item and its command's answer).
    data = {name: getattr(asset, name) for name in _ASSET_FIELDS}
    data["status"] = asset.status.value
    data["risk"] = {"max_severity": asset.risk.max_severity.name, "findings": list(asset.risk.findings),
                    "evaluate_time": asset.risk.evaluate_time}
    return data


_ASSET_FIELDS = tuple(field.name for field in dataclass_fields(Asset))


def _asset_from_dict(data: dict[str, Any]) -> Asset:
    risk = data.get("risk") or {}
    fields = {k: v for k, v in data.items() if k in Asset.__dataclass_fields__}
    fields["status"] = Status(data["status"])
    fields["risk"] = Risk(
        max_severity=Severity[risk.get("max_severity", "UNSPECIFIED")],
        findings=tuple(risk.get("findings", ())),
        evaluate_time=str(risk.get("evaluate_time", "")),
    )
    fields["engine_kinds"] = tuple(data.get("engine_kinds", ()))
    return Asset(**fields)


def _asset_item(tenant_id: str, asset: Asset) -> dict[str, Any]:
    item: dict[str, Any] = {
        "PK": keys.tenant_pk(tenant_id),
        "SK": keys.asset_sk(asset.asset_id),
        "asset_id": asset.asset_id,
        "status": asset.status.value,
        "version": asset.version,
        "risk_severity": asset.risk.max_severity.name,
        "snapshot": json.dumps(_asset_dict(asset), sort_keys=True),
    }
    if asset.employee_id:
        item["GSI1PK"] = keys.employee_gsi1pk(tenant_id, asset.employee_id)
        item["GSI1SK"] = keys.state_gsi1sk(asset.status.value, asset.asset_id)
    if asset.needs_action:
        item["GSI2PK"] = keys.action_required_gsi2pk(tenant_id)
        item["GSI2SK"] = keys.ts_asset_gsi2sk(asset.action_since, asset.asset_id)
    return item


def _asset_from(item: dict[str, Any]) -> Asset:
    return _asset_from_dict(json.loads(str(item["snapshot"])))


def _command_item(tenant_id: str, command: Command) -> dict[str, Any]:
    item: dict[str, Any] = {
        "PK": keys.tenant_pk(tenant_id),
        "SK": keys.command_sk(command.asset_id, command.command_id),
        "GSI1PK": keys.asset_gsi1pk(tenant_id, command.asset_id),
        "GSI1SK": keys.command_gsi1sk(command.issue_time),
        "command_id": command.command_id,
        "asset_id": command.asset_id,
        "kind": command.kind.value,
        "issue_time": command.issue_time,
        "custody_seq": command.custody_seq,
        "actor": command.actor,
        "justification": command.justification,
        "request_id": command.request_id,
        "policy_json": json.dumps(asdict(command.policy), sort_keys=True),
    }
    if command.asset_after is not None:
        item["asset_after_json"] = json.dumps(_asset_dict(command.asset_after), sort_keys=True)
    if command.result is None:
        item["GSI2PK"] = keys.pending_commands_gsi2pk(tenant_id)
        item["GSI2SK"] = keys.ts_asset_gsi2sk(command.issue_time, command.asset_id)
    else:
        result = asdict(command.result)
        result["outcome"] = command.result.outcome.value
        item["result_json"] = json.dumps(result, sort_keys=True)
        item["result_outcome"] = command.result.outcome.value
        item["result_custody_seq"] = command.result_custody_seq
        if command.asset_after_result is not None:
            item["asset_after_result_json"] = json.dumps(_asset_dict(command.asset_after_result), sort_keys=True)
    return item


def _command_from(item: dict[str, Any]) -> Command:
    policy = json.loads(str(item["policy_json"]))
    result = None
    if "result_json" in item:
        raw = json.loads(str(item["result_json"]))
        raw["outcome"] = Outcome(raw["outcome"])
        result = CommandResult(**raw)
    after = json.loads(str(item["asset_after_json"])) if "asset_after_json" in item else None
    after_result = json.loads(str(item["asset_after_result_json"])) if "asset_after_result_json" in item else None
    return Command(
        command_id=str(item["command_id"]),
        asset_id=str(item["asset_id"]),
        kind=CommandKind(item["kind"]),
        issue_time=str(item["issue_time"]),
        policy=ContainmentPolicy(
            control_plane_endpoints=tuple(policy.get("control_plane_endpoints", ())),
            allowlist_cidrs=tuple(policy.get("allowlist_cidrs", ())),
            stop_engines=bool(policy.get("stop_engines", False)),
            dns_servers=tuple(policy.get("dns_servers", ())),
        ),
        custody_seq=int(item["custody_seq"]),
        actor=str(item.get("actor", "")),
        justification=str(item.get("justification", "")),
        request_id=str(item.get("request_id", "")),
        asset_after=_asset_from_dict(after) if after is not None else None,
        result=result,
        result_custody_seq=int(item.get("result_custody_seq", 0)),
        asset_after_result=_asset_from_dict(after_result) if after_result is not None else None,
    )

