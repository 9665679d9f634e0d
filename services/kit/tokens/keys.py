"""Keys of operator token items. Identifiers are validated here, before they reach a key.

Tokens live in the tenant's AUTH partition (`TENANT#t#AUTH`), beside the tenant's metadata: a partition
of its own, so IAM can let only the assets service write it (services/kit/iam.py).
"""

from __future__ import annotations

from services.kit.ids import validate_id

ENTITY_PREFIXES = ("TOKEN", "AUTH")


def auth_pk(tenant: str) -> str:
    """`TENANT#t#AUTH`: the tenant's operator tokens and metadata, written by assets only."""
    return f"TENANT#{validate_id('tenant_id', tenant)}#AUTH"


def token_sk(token_id: str) -> str:
    return f"TOKEN#{validate_id('token_id', token_id)}"


TOKEN_SK_PREFIX = "TOKEN#"  # noqa: S105 - a key prefix, not a secret
