"""Turns a call's metadata into a Principal, with a short cache so auth costs no read per call."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from services.kit import aws
from services.kit.auth import (
    ACTOR_METADATA_KEY,
    TENANT_METADATA_KEY,
    Principal,
    Role,
    bearer_token,
    metadata_value,
    parse_operator_token,
    same_secret,
    sha256_hex,
)
from services.kit.errors import Unauthenticated
from services.kit.ids import is_valid_id
from services.kit.tokens import store as token_store

Metadata = tuple[tuple[str, str | bytes], ...]


class Authenticator:
    """Resolves bearer tokens: operator tokens from the table, service and bootstrap tokens by hash.

    Each calling service has its own token (`service_callers`: name -> SHA-256), and its principal
    names that service, which the interceptor checks against the method's callers. A service token
    carries no tenant of its own: the caller acts for the tenant named in `x-lz-tenant`, which only a
    holder of a service token may set.
    """

    def __init__(
        self,
        ddb: Any,
        table: str,
        *,
        service_callers: Mapping[str, str] | None = None,
        bootstrap_token_sha256: str = "",
        cache_seconds: float = 5.0,
    ) -> None:
        self._ddb = ddb
        self._table = table
        self._service_callers = dict(service_callers or {})
        self._bootstrap_sha = bootstrap_token_sha256
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Role | None]] = {}

    async def authenticate(self, metadata: Metadata | None) -> Principal:
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing bearer token (authorization: Bearer <token>)")
        for service, digest in self._service_callers.items():
            if same_secret(token, digest):
                return self._service_principal(metadata, service)
        if self._bootstrap_sha and same_secret(token, self._bootstrap_sha):
            return Principal(tenant="", role=Role.BOOTSTRAP, subject="bootstrap")
        parsed = parse_operator_token(token)
        if parsed is None:
            raise Unauthenticated("the bearer token is not a valid token")
        role = await self._resolve_cached(token, parsed)
        if role is None:
            raise Unauthenticated("the bearer token is unknown or revoked")
        return Principal(tenant=parsed.tenant, role=role, subject=f"token:{parsed.token_id}")

    def _service_principal(self, metadata: Metadata | None, service: str) -> Principal:
        tenant = metadata_value(metadata, TENANT_METADATA_KEY) or ""
        if tenant and not is_valid_id(tenant):
            raise Unauthenticated(f"{TENANT_METADATA_KEY} is not a valid tenant id")
        actor = metadata_value(metadata, ACTOR_METADATA_KEY) or "service"
        if len(actor) > 128:
            raise Unauthenticated(f"{ACTOR_METADATA_KEY} is too long")
        return Principal(tenant=tenant, role=Role.SERVICE, subject=actor, service=service)

    async def _resolve_cached(self, token: str, parsed: Any) -> Role | None:
        key = sha256_hex(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        role = await aws.call(token_store.resolve, self._ddb, self._table, parsed)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self._cache_seconds, role)
        return role
