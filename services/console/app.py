"""Wiring of the console: settings, sessions, the peers' client, templates and routes, served by uvicorn."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.console import ledger_views, security, token_views, views
from services.console.operator_client import OperatorClient
from services.console.overview import OverviewCache
from services.console.sessions import SessionStore
from services.console.settings import ConsoleSettings, load_settings
from services.console.walks import FullWalks
from services.kit import logs, telemetry
from services.kit.errors import (
    ConfigError,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

HERE = Path(__file__).resolve().parent
log = logging.getLogger("lz.console")
# The page status of each peer error; anything else (Unavailable, deadlines) is 503.
_STATUS = ((NotFound, 404), (PermissionDenied, 403), (InvalidArgument, 400), (FailedPrecondition, 409))


def make_app(settings: ConsoleSettings) -> Starlette:
    secure = settings.tls or settings.sessions.secure_cookies

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The peers' aio channels belong to the serving loop, so they are opened here and not before.
        client = OperatorClient(settings.peers, settings.server)
        console = views.Console(
            sessions=SessionStore(settings.sessions.idle_seconds, settings.sessions.absolute_seconds,
                                  settings.sessions.max_sessions),
            client=client,
            overview=OverviewCache(client, settings.pages.overview_seconds),
            walks=FullWalks(client),
            templates=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True),
            secure_cookies=secure,
            absolute_seconds=settings.sessions.absolute_seconds,
        )
        app.state.console = console
        yield
        await console.client.close()

    routes = [
        Route("/signin", views.signin_page, methods=["GET"]),
        Route("/signin", views.signin, methods=["POST"]),
        Route("/signout", views.signout, methods=["POST"]),
        Route("/", views.overview),
        Route("/overview/counts", views.overview_counts),
        Route("/assets", views.assets_page),
        Route("/assets/{asset_id}", views.asset_page),
        Route("/assets/{asset_id}/containment", views.containment_fragment),
        Route("/assets/{asset_id}/isolate", views.isolate, methods=["POST"]),
        Route("/assets/{asset_id}/release", views.release, methods=["POST"]),
        Route("/alerts", views.alerts_page),
        Route("/ledger", ledger_views.ledger_page),
        Route("/ledger/verify", ledger_views.verify, methods=["POST"]),
        Route("/ledger/walk", ledger_views.walk_fragment),
        Route("/ledger/bundle.zip", ledger_views.bundle_download),
        Route("/ledger/events/{seq}.{part:str}", views.proof_download),
        Route("/ledger/verifier.keys", views.verifier_keys),
        Route("/tokens", token_views.tokens_page, methods=["GET"]),
        Route("/tokens", token_views.create, methods=["POST"]),
        Route("/tokens/enrollment-secret", token_views.rotate_enrollment_secret, methods=["POST"]),
        Route("/tokens/{token_id}/revoke", token_views.revoke, methods=["POST"]),
        Route("/healthz", _healthy),
        Route("/readyz", _ready),
        Route("/favicon.ico", _no_icon),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={DomainError: on_domain_error})


async def on_domain_error(request: Request, exc: Exception) -> Response:
    """A peer's (or our own) refusal as a page: a dead token ends the session; the rest say what failed."""
    console: views.Console = request.app.state.console
    if isinstance(exc, Unauthenticated):
        session = request.scope.get("lz_session")
        if session is not None:
            console.sessions.end(session.session_id)
        return console.to_signin(request)
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 503)
    if status == 503:
        log.warning("peer call failed", extra={"path": request.url.path, "error": str(exc)})
    return console.render(request, "error.html", status_code=status, message=str(exc), status=status)


async def _healthy(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)


async def _ready(request: Request) -> Response:
    console: views.Console = request.app.state.console
    serving = await console.client.assets_serving()
    return PlainTextResponse("ok" if serving else "assets unreachable", status_code=200 if serving else 503)


def run_console() -> None:
    """Entry point of the console process: settings (bad ones exit 2), JSON logs, telemetry, serve."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"lz-console: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure("console", settings.server.log_level)
    telemetry.configure("console", settings.server)
    app = security.SecurityHeaders(make_app(settings), tls=settings.tls)
    server = settings.server
    print(f"console listening on {server.listen_host}:{server.port}", flush=True)
    uvicorn.run(app, host=server.listen_host, port=server.port, log_config=None, access_log=False,
                ssl_certfile=server.tls_cert_file or None, ssl_keyfile=server.tls_key_file or None,
                proxy_headers=False, server_header=False, timeout_graceful_shutdown=int(server.grace_seconds))
