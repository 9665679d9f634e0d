"""The console's pages and form posts: each handler is session → one or two peer calls → template.

Every handler that shows tenant data first finds the signed-in session (else: to sign-in), and calls
the peers with that session's token; errors from the peers surface through `app.on_domain_error`.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from google.protobuf.timestamp_pb2 import Timestamp
from jinja2 import Environment
from lifecyclezero.v1 import assets_pb2, common_pb2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from services.console import presenters, security
from services.console.operator_client import OperatorClient
from services.console.overview import Overview, OverviewCache, search
from services.console.sessions import Session, SessionStore
from services.console.walks import FullWalks
from services.kit.auth import Role, parse_operator_token
from services.kit.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.kit.ids import validate_id

PAGE_SIZE = 50
MAX_QUERY_CHARS = 100
MAX_SEARCH_OFFSET = 10_000_000
_ROLES = {assets_pb2.ROLE_VIEWER: Role.VIEWER, assets_pb2.ROLE_OPERATOR: Role.OPERATOR,
          assets_pb2.ROLE_ADMIN: Role.ADMIN}


@dataclass
class Console:
    """What every handler shares: sessions, the peers, the templates and how cookies are marked."""

    sessions: SessionStore
    client: OperatorClient
    overview: OverviewCache
    walks: FullWalks
    templates: Environment
    secure_cookies: bool
    absolute_seconds: float

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session = request.scope.get("lz_session")
        html = self.templates.get_template(name).render(session=session, path=request.url.path, **context)
        return HTMLResponse(html, status_code=status_code, headers={"cache-control": "no-store"})

    def session_of(self, request: Request) -> Session | None:
        session_id = request.cookies.get(security.session_cookie_name(self.secure_cookies), "")
        session = self.sessions.get(session_id) if session_id else None
        request.scope["lz_session"] = session
        return session

    def to_signin(self, request: Request) -> Response:
        """Where a request without a live session goes: the sign-in page, then back here."""
        target = "/signin?next=" + quote(security.safe_next(request.url.path), safe="/")
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"hx-redirect": target})
        return RedirectResponse(target, status_code=303)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


Handler = Callable[[Request, Console, Session], Awaitable[Response]]


def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The route of `handler`: it runs with the request's live session; without one the browser goes
    to sign-in."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        console = console_of(request)
        session = console.session_of(request)
        if session is None:
            return console.to_signin(request)
        return await handler(request, console, session)

    return endpoint


async def checked_form(request: Request, session: Session) -> FormData:
    """The POST's form once it proved it comes from this session's page (origin and CSRF token)."""
    form = await request.form()
    if not security.same_origin(request.headers.get("origin"), request.headers.get("referer"),
                                request.headers.get("host")):
        raise PermissionDenied("cross-origin form post refused", reason="CSRF")
    if not session.csrf_matches(str(form.get("csrf", ""))):
        raise PermissionDenied("missing or wrong CSRF token", reason="CSRF")
    return form


# --- sign-in ---------------------------------------------------------------------------------------


async def signin_page(request: Request) -> Response:
    console = console_of(request)
    nonce = secrets.token_urlsafe(32)
    response = console.render(request, "signin.html", nonce=nonce, next=security.safe_next(
        request.query_params.get("next")), error="")
    _set_cookie(response, security.signin_cookie_name(console.secure_cookies), nonce, console.secure_cookies, 600)
    return response


async def signin(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    nonce = request.cookies.get(security.signin_cookie_name(console.secure_cookies), "")
    given = str(form.get("csrf", ""))
    if not nonce or not secrets.compare_digest(nonce.encode(), given.encode()):
        raise PermissionDenied("the sign-in form expired or did not come from this console; reload it",
                               reason="CSRF")
    token = str(form.get("token", "")).strip()
    target = security.safe_next(str(form.get("next", "/")))
    if parse_operator_token(token) is None:
        return console.render(request, "signin.html", status_code=401, nonce=nonce, next=target,
                              error="That is not an operator token (lz1:...).")
    try:
        who = await console.client.who_am_i(token)
        role = _ROLES[who.role]
    except (Unauthenticated, PermissionDenied, KeyError):
        return console.render(request, "signin.html", status_code=401, nonce=nonce, next=target,
                              error="That token is unknown, revoked, or may not use the console.")
    # A new sign-in never reuses a session id the browser already had (no fixation).
    console.sessions.end(request.cookies.get(security.session_cookie_name(console.secure_cookies), ""))
    session = console.sessions.create(token, who.tenant_id, role, who.token_id)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(response, security.session_cookie_name(console.secure_cookies), session.session_id,
                console.secure_cookies, int(console.absolute_seconds))
    response.delete_cookie(security.signin_cookie_name(console.secure_cookies), path="/")
    return response


async def signout(request: Request) -> Response:
    console = console_of(request)
    session = console.session_of(request)
    if session is not None:
        await checked_form(request, session)
        console.sessions.end(session.session_id)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(security.session_cookie_name(console.secure_cookies), path="/",
                           secure=console.secure_cookies, httponly=True, samesite="strict")
    return response


def _set_cookie(response: Response, name: str, value: str, secure: bool, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict")


# --- pages -----------------------------------------------------------------------------------------


@signed_in
async def overview(request: Request, console: Console, session: Session) -> Response:
    seal = await console.client.seal_status(session.token)
    return console.render(request, "overview.html", seal=seal, **_counts(console, session))


@signed_in
async def overview_counts(request: Request, console: Console, session: Session) -> Response:
    """The Overview's counts alone: what the Overview polls until a new tenant's first counts exist."""
    return console.render(request, "_overview_counts.html", **_counts(console, session))


def _counts(console: Console, session: Session) -> dict[str, Any]:
    counts = console.overview.peek(session.tenant, session.token)
    age = presenters.relative(counts.computed_at, datetime.now(UTC)) if counts is not None else ""
    return {"o": counts, "age": age, "fresh_seconds": console.overview.fresh_seconds, "charts": presenters}


@signed_in
async def assets_page(request: Request, console: Console, session: Session) -> Response:
    status = request.query_params.get("status", "")
    if status and status not in presenters.STATUS_FILTERS:
        raise InvalidArgument.field("status", f"must be one of {', '.join(presenters.STATUS_FILTERS)}")
    wanted = presenters.STATUS_FILTERS.get(status, common_pb2.ASSET_STATUS_UNSPECIFIED)
    query = request.query_params.get("q", "").strip()[:MAX_QUERY_CHARS]
    exposed = request.query_params.get("exposed") == "1"
    engine = request.query_params.get("engine", "").strip().lower()[:MAX_QUERY_CHARS]
    counts = console.overview.peek(session.tenant, session.token)
    kinds = [kind for kind, _ in counts.by_engine[:presenters.ENGINE_FILTER_KINDS]] if counts is not None else []
    context: dict[str, Any] = {"status": status, "filters": presenters.STATUS_FILTERS, "q": query,
                               "exposed": exposed, "engine": engine, "engine_kinds": kinds, "p": presenters}
    if query or exposed or engine:
        found = _search(request, counts, (query, exposed, wanted, engine))
        return console.render(request, "assets.html", **context, **found)
    reply = await console.client.list_assets(session.token, assets_pb2.ListAssetsRequest(
        page_size=PAGE_SIZE, page_token=request.query_params.get("page", ""), status=wanted))
    now = datetime.now(UTC)
    rows = [(asset, presenters.when(asset.last_seen_time, now)) for asset in reply.assets]
    return console.render(request, "assets.html", rows=rows, next_page=reply.next_page_token, searching=False,
                          **context)


def _search(request: Request, counts: Overview | None,
            wanted: tuple[str, bool, common_pb2.AssetStatus.ValueType, str]) -> dict[str, Any]:
    """A host-name search, the exposed or the engine-kind filter (text, exposed only, state, kind), answered
    from the tenant's cached asset rows (the Overview's, as old as its counts): ListAssets filters on none."""
    offset = _offset(request.query_params.get("page", ""))
    found = search(counts.rows, *wanted) if counts is not None else []
    now = datetime.now(UTC)
    rows = [(row, presenters.when(Timestamp(seconds=row.last_seen_seconds), now))
            for row in found[offset:offset + PAGE_SIZE]]
    return {"rows": rows, "searching": True, "ready": counts is not None, "matches": len(found),
            "age": presenters.relative(counts.computed_at, now) if counts is not None else "",
            "next_page": str(offset + PAGE_SIZE) if offset + PAGE_SIZE < len(found) else ""}


def _offset(raw: str) -> int:
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) > MAX_SEARCH_OFFSET:
        raise InvalidArgument.field("page", "must be a row offset of the search")
    return int(raw)


@signed_in
async def asset_page(request: Request, console: Console, session: Session) -> Response:
    return await _asset_view(request, console, session, "asset.html")


@signed_in
async def containment_fragment(request: Request, console: Console, session: Session) -> Response:
    """The asset's containment box alone: what the asset page polls while an order is pending."""
    return await _asset_view(request, console, session, "_containment.html")


async def _asset_view(request: Request, console: Console, session: Session, template: str) -> Response:
    asset_id = validate_id("asset_id", request.path_params["asset_id"])
    # Both reads at once: the page waits for the slower, not for their sum.
    asset, custody = await asyncio.gather(console.client.get_asset(session.token, asset_id),
                                          console.client.custody_log(session.token, asset_id))
    return console.render(request, template, asset=asset, p=presenters, request_id=secrets.token_hex(12),
                          **_containment(asset, custody))


def _containment(asset: common_pb2.Asset, events: list[common_pb2.LedgerEvent]) -> dict[str, Any]:
    now = datetime.now(UTC)
    shown, older = presenters.recent_timeline(events, now)
    return {"timeline": shown, "older": older, "pending": presenters.still_settling(asset, now),
            "status_label": presenters.STATUS_LABELS.get(asset.status, "unknown")}


@signed_in
async def isolate(request: Request, console: Console, session: Session) -> Response:
    return await _order(request, console, session, "isolate")


@signed_in
async def release(request: Request, console: Console, session: Session) -> Response:
    return await _order(request, console, session, "release")


async def _order(request: Request, console: Console, session: Session, kind: str) -> Response:
    form = await checked_form(request, session)
    if not session.can(Role.OPERATOR):
        raise PermissionDenied("viewers may not isolate or release hosts", reason="ROLE")
    asset_id = validate_id("asset_id", request.path_params["asset_id"])
    reason = str(form.get("reason", "")).strip()
    if not reason:
        raise InvalidArgument.field("reason", "is required: say why")
    request_id = validate_id("request_id", str(form.get("request_id", "")) or secrets.token_hex(12))
    order = console.client.isolate if kind == "isolate" else console.client.release
    await order(session.token, asset_id, reason, request_id)
    return RedirectResponse(f"/assets/{quote(asset_id)}", status_code=303)


@signed_in
async def alerts_page(request: Request, console: Console, session: Session) -> Response:
    critical = request.query_params.get("severity") == "critical"
    since = request.query_params.get("since", "")
    if since and since not in presenters.ALERT_WINDOWS:
        raise InvalidArgument.field("since", f"must be one of {', '.join(presenters.ALERT_WINDOWS)}")
    now = datetime.now(UTC)
    listing = assets_pb2.ListAlertsRequest(
        page_size=PAGE_SIZE, page_token=request.query_params.get("page", ""),
        min_severity=common_pb2.SEVERITY_CRITICAL if critical else common_pb2.SEVERITY_WARNING)
    if since:
        listing.start_time.FromDatetime(now - presenters.ALERT_WINDOWS[since])
    reply = await console.client.list_alerts(session.token, listing)
    rows = [(alert, presenters.when(alert.observe_time, now)) for alert in reply.alerts]
    return console.render(request, "alerts.html", rows=rows, critical=critical, since=since,
                          windows=presenters.ALERT_WINDOWS, next_page=reply.next_page_token, p=presenters)


# --- downloads -------------------------------------------------------------------------------------


@signed_in
async def proof_download(request: Request, console: Console, session: Session) -> Response:
    """The custody event's c2sp tlog-proof (`.proof`) or its logged entry (`.entry`), for lz-verify."""
    seq = _seq(request.path_params["seq"])
    part = request.path_params["part"]
    if part not in ("proof", "entry"):
        raise NotFound(f"no such download: {seq}.{part}")
    proof = await console.client.export_proof(session.token, seq)
    body = proof.tlog_proof if part == "proof" else proof.entry
    return Response(body, media_type="application/octet-stream", headers={
        "content-disposition": f'attachment; filename="{seq}.{part}"', "cache-control": "no-store"})


@signed_in
async def verifier_keys(request: Request, console: Console, session: Session) -> Response:
    keys = await console.client.verifier_keys(session.token)
    return PlainTextResponse("\n".join(keys) + "\n", headers={
        "content-disposition": 'attachment; filename="verifier.keys"', "cache-control": "no-store"})


def _seq(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise InvalidArgument.field("seq", "must be a ledger sequence number")
    return int(raw)
