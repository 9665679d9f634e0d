"""Keys of operator token items. Identifiers are validated here, before they reach a key."""

from __future__ import annotations

from services.kit.ids import validate_id

ENTITY_PREFIXES = ("TOKEN",)


def tenant_pk(tenant: str) -> str:
    return f"TENANT#{validate_id('tenant_id', tenant)}"


def token_sk(token_id: str) -> str:
    return f"TOKEN#{validate_id('token_id', token_id)}"


TOKEN_SK_PREFIX = "TOKEN#"  # noqa: S105 - a key prefix, not a secret
