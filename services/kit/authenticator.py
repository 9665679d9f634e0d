"""Turns a call's metadata into a Principal, with a short cache so auth costs no read per call."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping
from typing import Any

from services.kit import aws
from services.kit.addresses import peer_host
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
from services.kit.errors import ResourceExhausted, Unauthenticated
from services.kit.ids import is_valid_id
from services.kit.ratelimit import Buckets
from services.kit.tokens import store as token_store

Metadata = tuple[tuple[str, str | bytes], ...]

MAX_KNOWN = 10_000
MAX_UNKNOWN = 1_000
# Table lookups of tokens that turn out unknown, per caller address: enough for typos, not for a flood.
UNKNOWN_LOOKUPS_PER_SECOND = 2.0
UNKNOWN_LOOKUP_BURST = 20


class Authenticator:
    """Resolves bearer tokens: operator tokens from the table, service and bootstrap tokens by hash.

    Each calling service has its own token (`service_callers`: name -> SHA-256), and its principal
    names that service, which the interceptor checks against the method's callers. A service token
    carries no tenant of its own: the caller acts for the tenant named in `x-lz-tenant`, which only a
    holder of a service token may set.

    The cache is an LRU of resolved tokens (`MAX_KNOWN`) beside a much smaller LRU of tokens found
    unknown (`MAX_UNKNOWN`), so a flood of made-up tokens can neither evict good entries nor grow the
    process; and each caller address may cause only `UNKNOWN_LOOKUPS_PER_SECOND` table reads that
    find nothing (RESOURCE_EXHAUSTED beyond, before any read).
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
        self._known: collections.OrderedDict[str, tuple[float, Role]] = collections.OrderedDict()
        self._unknown: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._misses = Buckets(UNKNOWN_LOOKUPS_PER_SECOND, UNKNOWN_LOOKUP_BURST)
        # Lookups in flight by token hash: calls that arrive together with an uncached token (a burst of
        # fifty isolations, or the moment a cached entry expires under load) share one table read.
        self._resolving: dict[str, asyncio.Future[Role | None]] = {}

    async def authenticate(self, metadata: Metadata | None, peer: str = "") -> Principal:
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
        role = await self._resolve_cached(token, parsed, peer_host(peer))
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

    async def _resolve_cached(self, token: str, parsed: Any, peer: str) -> Role | None:
        key = sha256_hex(token)
        now = time.monotonic()
        hit = self._known.get(key)
        if hit is not None and hit[0] > now:
            self._known.move_to_end(key)
            return hit[1]
        unknown_until = self._unknown.get(key)
        if unknown_until is not None and unknown_until > now:
            return None
        if self._misses.exhausted(peer, now):
            raise ResourceExhausted("too many unknown tokens from this address; slow down",
                                    reason="UNKNOWN_TOKEN_RATE")
        in_flight = self._resolving.get(key)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        lookup = asyncio.ensure_future(aws.call(token_store.resolve, self._ddb, self._table, parsed))
        self._resolving[key] = lookup
        try:
            role = await asyncio.shield(lookup)
        finally:
            if self._resolving.get(key) is lookup:
                del self._resolving[key]
        if role is None:
            self._misses.take(peer, now)
            _remember(self._unknown, key, now + self._cache_seconds, MAX_UNKNOWN)
        else:
            self._unknown.pop(key, None)
            _remember(self._known, key, (now + self._cache_seconds, role), MAX_KNOWN)
        return role


def _remember(cache: collections.OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)

