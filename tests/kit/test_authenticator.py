"""The auth cache against the embedded table: unknown tokens cannot flood the table reads or the cache."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from services.kit import authenticator
from services.kit.auth import Role
from services.kit.authenticator import Authenticator
from services.kit.errors import ResourceExhausted, Unauthenticated
from services.kit.settings import AwsSettings
from services.kit.tokens import store as token_store


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _unknown_token(tenant: str) -> str:
    return f"lz1:{tenant}:{secrets.token_hex(8)}:{secrets.token_urlsafe(32)}"


async def _first_refusal(auth: Authenticator, tenant: str, peer: str, attempts: int) -> int:
    """How many unknown tokens `peer` presented until one was refused without a lookup (0: none was)."""
    for attempt in range(1, attempts + 1):
        try:
            await auth.authenticate(_bearer(_unknown_token(tenant)), peer)
        except ResourceExhausted:
            return attempt
        except Unauthenticated:
            continue
    return 0


async def test_a_flood_of_unknown_tokens_from_one_address_is_refused_before_the_table(
    ddb: Any, aws_settings: AwsSettings
) -> None:
    """After its burst of unknown-token lookups, an address gets RESOURCE_EXHAUSTED instead of more table reads."""
    auth = Authenticator(ddb, aws_settings.table_name)
    refused_at = await _first_refusal(auth, f"t-{secrets.token_hex(4)}", "ipv4:192.0.2.7:40001", 200)
    assert authenticator.UNKNOWN_LOOKUP_BURST < refused_at < 200


async def test_one_flooding_address_does_not_lock_out_another(ddb: Any, aws_settings: AwsSettings) -> None:
    """While one address is refused, another address's valid token still resolves."""
    tenant = f"t-{secrets.token_hex(4)}"
    token, _ = token_store.issue(ddb, aws_settings.table_name, tenant, Role.VIEWER, "good")
    auth = Authenticator(ddb, aws_settings.table_name)
    assert await _first_refusal(auth, tenant, "ipv4:192.0.2.7:40001", 200)
    principal = await auth.authenticate(_bearer(str(token)), "ipv4:198.51.100.9:50000")
    assert (principal.tenant, principal.role) == (tenant, Role.VIEWER)


async def test_the_limit_is_per_address_not_per_connection(ddb: Any, aws_settings: AwsSettings) -> None:
    """A caller that opens a new connection (a new port) after its flood is still refused."""
    auth = Authenticator(ddb, aws_settings.table_name)
    tenant = f"t-{secrets.token_hex(4)}"
    assert await _first_refusal(auth, tenant, "ipv4:192.0.2.7:39999", 200)
    with pytest.raises(ResourceExhausted):
        await auth.authenticate(_bearer(_unknown_token(tenant)), "ipv4:192.0.2.7:40002")


async def test_calls_arriving_together_with_an_uncached_token_share_one_table_read(
    ddb: Any, aws_settings: AwsSettings
) -> None:
    """Fifty concurrent calls presenting one token not yet cached all resolve it with a single GetItem."""
    tenant = f"t-{secrets.token_hex(4)}"
    token, _ = token_store.issue(ddb, aws_settings.table_name, tenant, Role.ADMIN, "burst")
    reads: list[str] = []

    def count(params: dict[str, Any], **kwargs: Any) -> None:
        reads.append(params["Key"]["SK"]["S"])

    ddb.meta.events.register("provide-client-params.dynamodb.GetItem", count)
    try:
        auth = Authenticator(ddb, aws_settings.table_name)
        principals = await asyncio.gather(*(auth.authenticate(_bearer(str(token)), "ipv4:192.0.2.8:40001")
                                            for _ in range(50)))
    finally:
        ddb.meta.events.unregister("provide-client-params.dynamodb.GetItem", count)
    assert {(p.tenant, p.role) for p in principals} == {(tenant, Role.ADMIN)}
    assert len(reads) == 1
