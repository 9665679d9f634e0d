"""The Tokens page (admins): create a token (shown once), list and revoke; the enrollment secret's
fingerprint and its rotation (the new secret shown once)."""

from __future__ import annotations

import secrets

from lifecyclezero.v1 import assets_pb2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.console.sessions import Session
from services.console.views import Console, checked_form, signed_in
from services.kit.auth import Role
from services.kit.errors import InvalidArgument, PermissionDenied
from services.kit.ids import validate_id

ROLES = {"viewer": assets_pb2.ROLE_VIEWER, "operator": assets_pb2.ROLE_OPERATOR, "admin": assets_pb2.ROLE_ADMIN}
ROLE_NAMES = {value: name for name, value in ROLES.items()}
MAX_DESCRIPTION_CHARS = 200


def _admin(session: Session) -> None:
    if not session.can(Role.ADMIN):
        raise PermissionDenied("only admins manage tokens and the enrollment secret", reason="ROLE")


@signed_in
async def tokens_page(request: Request, console: Console, session: Session) -> Response:
    _admin(session)
    return await _render(console, request, session, created="", secret="")


@signed_in
async def create(request: Request, console: Console, session: Session) -> Response:
    form = await checked_form(request, session)
    _admin(session)
    role = ROLES.get(str(form.get("role", "")))
    if role is None:
        raise InvalidArgument.field("role", "must be viewer, operator or admin")
    description = str(form.get("description", "")).strip()[:MAX_DESCRIPTION_CHARS]
    reply = await console.client.create_token(session.token, role, description, secrets.token_hex(12))
    return await _render(console, request, session, created=reply.token, secret="")


@signed_in
async def revoke(request: Request, console: Console, session: Session) -> Response:
    await checked_form(request, session)
    _admin(session)
    token_id = validate_id("token_id", request.path_params["token_id"])
    await console.client.revoke_token(session.token, token_id, secrets.token_hex(12))
    return RedirectResponse("/tokens", status_code=303)


@signed_in
async def rotate_enrollment_secret(request: Request, console: Console, session: Session) -> Response:
    await checked_form(request, session)
    _admin(session)
    reply = await console.client.rotate_enrollment_secret(session.token, secrets.token_hex(12))
    return await _render(console, request, session, created="", secret=reply.enrollment_secret)


async def _render(console: Console, request: Request, session: Session, created: str, secret: str) -> Response:
    tokens = await console.client.list_tokens(session.token, request.query_params.get("page", ""))
    enrollment = await console.client.enrollment_secret(session.token)
    return console.render(request, "tokens.html", tokens=tokens, enrollment=enrollment, created=created,
                          secret=secret, roles=ROLE_NAMES)
