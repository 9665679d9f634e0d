"""Who is calling: bearer tokens, roles and the principal of the current call.

The tenant of every call comes from here and nowhere else. An operator token names its tenant and
is checked against the hash stored under that tenant; the service token and the bootstrap token are
checked against hashes from the settings. Servicers read the principal with `current_principal()`.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from services.kit.errors import PermissionDenied, Unauthenticated
from services.kit.ids import is_valid_id

TOKEN_PREFIX = "lz1"  # noqa: S105 - a format tag, not a secret
TENANT_METADATA_KEY = "x-lz-tenant"
ACTOR_METADATA_KEY = "x-lz-actor"


class Role(enum.Enum):
    """What a principal may do. Operator roles are ordered; the others are separate kinds of caller."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    SERVICE = "service"
    BOOTSTRAP = "bootstrap"


OPERATOR_ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)


def at_least(role: Role) -> frozenset[Role]:
    """The operator roles at or above `role`."""
    return frozenset(OPERATOR_ROLES[OPERATOR_ROLES.index(role) :])


PUBLIC: frozenset[Role] = frozenset()
"""Methods that authenticate in-band (agents' enrollment secret and credential)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. `tenant` is empty only for the bootstrap principal; `service` names
    the calling service of a SERVICE principal."""

    tenant: str
    role: Role
    subject: str
    service: str = ""

    @property
    def actor(self) -> str:
        """How custody events name this caller."""
        return self.subject


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("lz_principal", default=None)


def current_principal() -> Principal:
    """The principal of the call being served; raises if the call was not authenticated."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("this call carries no authenticated principal")
    return principal


def current_tenant() -> str:
    """The caller's tenant; bootstrap callers have none and are refused here."""
    principal = current_principal()
    if not principal.tenant:
        raise PermissionDenied("this credential is not bound to a tenant")
    return principal.tenant


def bind_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def unbind_principal(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(secret: str, stored_sha256: str) -> bool:
    """Compare a presented secret with a stored hash in constant time."""
    return hmac.compare_digest(sha256_hex(secret), stored_sha256)


def new_secret() -> str:
    """At least 256 random bits, URL-safe, never starting with '-'.

    Secrets are pasted after an option on command lines (`lz-agent enroll --secret ...`), where one
    starting with '-' reads as an option (1 in 64 did, and failed `make demo` that often). 264 bits are
    drawn and the rare draw starting with '-' is redrawn, which leaves more than 263 bits.
    """
    while True:
        secret = secrets.token_urlsafe(33)
        if not secret.startswith("-"):
            return secret


@dataclass(frozen=True)
class OperatorToken:
    """The parts of an operator token `lz1:<tenant>:<token_id>:<secret>`."""

    tenant: str
    token_id: str
    secret: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}:{self.tenant}:{self.token_id}:{self.secret}"


def new_operator_token(tenant: str) -> OperatorToken:
    return OperatorToken(tenant=tenant, token_id=secrets.token_hex(8), secret=new_secret())


def parse_operator_token(raw: str) -> OperatorToken | None:
    """Split an operator token, or None when it does not have the operator token's shape."""
    parts = raw.split(":")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX:
        return None
    _, tenant, token_id, secret = parts
    if not (is_valid_id(tenant) and is_valid_id(token_id)) or not 16 <= len(secret) <= 128:
        return None
    return OperatorToken(tenant, token_id, secret)


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    """The token of an `authorization: Bearer ...` header, if there is one."""
    value = metadata_value(metadata, "authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def metadata_value(metadata: tuple[tuple[str, str | bytes], ...] | None, key: str) -> str | None:
    for name, value in metadata or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return None
