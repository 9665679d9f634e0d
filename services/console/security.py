"""What every response and every state-changing request of the console must satisfy.

Headers: a Content-Security-Policy that admits only the console's own scripts and styles (no inline
script, no eval), no framing, no MIME sniffing, no referrer sent to other sites. Requests: a POST must come from the
console's own origin (when the browser says where it comes from) and carry the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
))
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
SESSION_COOKIE = "lz_session"
SECURE_SESSION_COOKIE = "__Host-lz_session"
SIGNIN_COOKIE = "lz_signin"
SECURE_SIGNIN_COOKIE = "__Host-lz_signin"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware adding HEADERS (and HSTS over TLS) to every HTTP response, errors included."""

    def __init__(self, app: App, tls: bool) -> None:
        self._app = app
        self._extra = (*HEADERS, HSTS) if tls else HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((n, v) for n, v in self._extra if n not in names)]
            await send(message)

        await self._app(scope, receive, with_headers)


def same_origin(origin: str | None, referer: str | None, host: str | None) -> bool:
    """Whether a POST comes from this console: Origin (or else Referer) names our host; absent both,
    the CSRF token alone decides (some clients send neither)."""
    source = origin if origin not in (None, "", "null") else referer
    if origin == "null":
        return False
    if not source:
        return True
    return bool(host) and urlsplit(source).netloc == host


def session_cookie_name(secure: bool) -> str:
    return SECURE_SESSION_COOKIE if secure else SESSION_COOKIE


def signin_cookie_name(secure: bool) -> str:
    return SECURE_SIGNIN_COOKIE if secure else SIGNIN_COOKIE


def safe_next(target: str | None) -> str:
    """A local path to return to after sign-in; anything else (another host, a scheme) goes to /."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
