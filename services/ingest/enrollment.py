"""Enrollment: the tenant's enrollment secret buys a NEW asset; an existing asset is re-keyed only with proof.

- no asset id: a new asset (its id derived from the request id, so a retry finds it), within the tenant's
  quota and enrollment rate;
- asset id and its current agent credential: key rotation by the agent itself (refused once revoked);
- asset id and an operator's one-time re-enrollment code (`lz assets re-enroll`): re-admission.

Anything else that names an existing asset is PERMISSION_DENIED, and the credential item is only ever
written conditionally (never replaced without the proof being re-checked in the write itself). Each
enrollment is a custody event, its custody record written by assets in the transaction that records it
(chained into the ledger moments later), before the credential exists: a crash in between leaves a
record whose retry (same request id) finishes the enrollment, never a credential without its event.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from lifecyclezero.v1 import assets_pb2, common_pb2, ingest_pb2

from services.ingest import domain, store
from services.ingest.assets_client import AssetsClient
from services.ingest.settings import StreamSettings
from services.kit import auth, aws
from services.kit.errors import Aborted, InvalidArgument, PermissionDenied, ResourceExhausted, Unauthenticated
from services.kit.ids import validate_id
from services.kit.ratelimit import Buckets
from services.kit.text import check_text

MAX_FACT_CHARS = 256
MAX_SECRET_CHARS = 256
MAX_TENANT_BUCKETS = 10_000
RECORD_ATTEMPTS = 5


@dataclass(frozen=True)
class Enrolled:
    asset_id: str
    credential: str
    kind: assets_pb2.EnrollmentKind.ValueType


def _fact(name: str, value: str, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidArgument.field(name, "is required")
    return check_text(name, value, MAX_FACT_CHARS)


def new_asset_id(tenant: str, request_id: str) -> str:
    """The asset id of a new enrollment: derived from its request id (a retry gets the same), else random."""
    if not request_id:
        return f"a-{secrets.token_hex(8)}"
    return "a-" + hashlib.blake2b(f"{tenant}\n{request_id}".encode(), digest_size=8).hexdigest()


def enrollment_kind(request: ingest_pb2.EnrollRequest) -> assets_pb2.EnrollmentKind.ValueType:
    """What the request asks for, or PermissionDenied when it names an asset without proof."""
    if request.agent_credential and request.reenroll_code:
        raise InvalidArgument("set at most one of agent_credential and reenroll_code")
    if not request.asset_id:
        if request.agent_credential or request.reenroll_code:
            raise InvalidArgument.field("asset_id", "is required with agent_credential or reenroll_code")
        return assets_pb2.ENROLLMENT_KIND_NEW
    if request.agent_credential:
        return assets_pb2.ENROLLMENT_KIND_ROTATION
    if request.reenroll_code:
        return assets_pb2.ENROLLMENT_KIND_REENROLL
    raise PermissionDenied(
        f"asset {request.asset_id} is enrolled; enrolling it again needs its current agent credential or an "
        "operator's re-enrollment code (lz assets re-enroll)", reason="PROOF_REQUIRED")


class TenantRate:
    """Per-tenant token buckets for enrollments on this process (bounded: the least recent are forgotten)."""

    def __init__(self, rate: float, burst: int) -> None:
        self._buckets = Buckets(rate, burst, MAX_TENANT_BUCKETS)

    def take(self, tenant: str) -> None:
        wait = self._buckets.take(tenant, time.monotonic())
        if wait:
            raise ResourceExhausted("too many enrollments for this tenant; retry later", reason="ENROLL_RATE_LIMITED",
                                    metadata={"retry_after_ms": str(int(wait * 1000) + 1)})


class Enrollment:
    """Runs Enroll: checks, the custody record in assets, then the conditional credential write."""

    def __init__(self, assets: AssetsClient, ddb: Any, table: str, settings: StreamSettings) -> None:
        self._assets = assets
        self._ddb = ddb
        self._table = table
        self._rate = TenantRate(settings.enroll_rate_per_second, settings.enroll_burst)

    async def enroll(self, request: ingest_pb2.EnrollRequest) -> Enrolled:
        tenant = validate_id("tenant_id", request.tenant_id)
        if not request.enrollment_secret or len(request.enrollment_secret) > MAX_SECRET_CHARS:
            raise Unauthenticated("wrong enrollment secret", reason="BAD_ENROLLMENT_SECRET")
        asset = common_pb2.Asset(hostname=_fact("hostname", request.hostname, required=True),
                                 employee_id=_fact("employee_id", request.employee_id), os=_fact("os", request.os),
                                 agent_version=_fact("agent_version", request.agent_version))
        request_id = validate_id("request_id", request.request_id) if request.request_id else ""
        kind = enrollment_kind(request)
        asset.asset_id = (validate_id("asset_id", request.asset_id) if request.asset_id
                          else new_asset_id(tenant, request_id))
        if not await self._assets.check_enrollment_secret(tenant, request.enrollment_secret):
            raise Unauthenticated("wrong enrollment secret", reason="BAD_ENROLLMENT_SECRET")
        # Only holders of the secret spend the tenant's enrollment budget, so a stranger cannot use it up.
        self._rate.take(tenant)
        current = await aws.call(store.get_agent, self._ddb, self._table, tenant, asset.asset_id)
        if kind == assets_pb2.ENROLLMENT_KIND_ROTATION:
            _check_rotation(request.agent_credential, current)
        await self._record(tenant, kind, asset, request_id, request.reenroll_code[:MAX_SECRET_CHARS])
        credential = auth.new_secret()
        await aws.call(_store_credential, self._ddb, self._table, tenant, asset.asset_id, kind, current,
                       auth.sha256_hex(credential))
        return Enrolled(asset.asset_id, credential, kind)


    async def _record(self, tenant: str, kind: assets_pb2.EnrollmentKind.ValueType, asset: common_pb2.Asset,
                      request_id: str, code: str) -> None:
        """RecordEnrollment, again after ABORTED: the asset changed under every attempt, or a re-enrollment's
        approval is not chained into the ledger yet; an aborted attempt committed nothing."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                await self._assets.record_enrollment(tenant, kind, asset, request_id, code)
                return
            except Aborted:
                if attempt == RECORD_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not crypto


def _check_rotation(presented: str, current: store.AgentRecord | None) -> None:
    stored = current.secret_sha256 if current is not None and not current.revoked else ""
    if not auth.same_secret(presented[:MAX_SECRET_CHARS], stored or auth.sha256_hex("no agent has this credential")):
        raise PermissionDenied("the agent credential is wrong or revoked; an operator can approve re-enrollment "
                               "(lz assets re-enroll)", reason="BAD_CREDENTIAL")


def _store_credential(  # noqa: PLR0917 - called positionally through aws.call
    ddb: Any, table: str, tenant: str, asset_id: str, kind: assets_pb2.EnrollmentKind.ValueType,
    current: store.AgentRecord | None, secret_sha256: str,
) -> None:
    now = domain.now()
    epoch, when = int(now.timestamp() * 1000), domain.format_ts(now)
    if kind == assets_pb2.ENROLLMENT_KIND_NEW:
        store.create_agent(ddb, table, tenant, asset_id, secret_sha256, epoch, when)
        return
    previous = current.secret_sha256 if current is not None else None
    store.replace_agent(ddb, table, tenant, asset_id, previous, secret_sha256, epoch, when,
                        readmit=kind == assets_pb2.ENROLLMENT_KIND_REENROLL)
