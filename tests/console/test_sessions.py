"""The console's session store and request rules, without a browser: expiry, the bound, CSRF, origins, redirects."""

from __future__ import annotations

import pytest

from services.console import security
from services.console.sessions import SessionStore
from services.kit.auth import Role


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(clock: Clock, idle: float = 60, absolute: float = 600, most: int = 10) -> SessionStore:
    return SessionStore(idle, absolute, most, clock=clock)


class TestSessionStore:
    def test_a_session_unused_past_the_idle_limit_is_gone(self) -> None:
        """A lookup after the idle limit finds nothing, and the session is forgotten."""
        clock = Clock()
        store = _store(clock)
        session = store.create("tok", "t-1", Role.VIEWER, "id1")
        clock.now += 61
        assert store.get(session.session_id) is None and len(store) == 0

    def test_use_keeps_a_session_alive_until_the_absolute_limit(self) -> None:
        """A session used every 50 s lives through 600 s after sign-in and not past it."""
        clock = Clock()
        store = _store(clock)
        session = store.create("tok", "t-1", Role.VIEWER, "id1")
        for _ in range(12):
            clock.now += 50
            assert store.get(session.session_id) is session
        clock.now += 1
        assert store.get(session.session_id) is None

    def test_past_the_bound_the_least_recently_used_session_is_dropped(self) -> None:
        """With the store full, a new sign-in drops the session used longest ago."""
        clock = Clock()
        store = _store(clock, most=2)
        first = store.create("a", "t", Role.VIEWER, "1")
        second = store.create("b", "t", Role.VIEWER, "2")
        store.get(first.session_id)
        store.create("c", "t", Role.VIEWER, "3")
        assert store.get(second.session_id) is None and store.get(first.session_id) is first

    def test_the_csrf_token_must_match_exactly(self) -> None:
        """Only the session's own CSRF token matches; empty and other tokens do not."""
        session = _store(Clock()).create("tok", "t-1", Role.OPERATOR, "id1")
        assert session.csrf_matches(session.csrf)
        assert not session.csrf_matches("") and not session.csrf_matches(session.csrf + "x")

    def test_the_token_is_not_in_the_sessions_repr(self) -> None:
        """A session logged by accident does not show its token or CSRF token."""
        session = _store(Clock()).create("lz1:t-1:id1:secret-value-1234567", "t-1", Role.ADMIN, "id1")
        assert "secret-value" not in repr(session) and session.csrf not in repr(session)


@pytest.mark.parametrize(("origin", "referer", "allowed"), [
    ("http://console.local:8787", None, True),
    ("https://evil.example", None, False),
    ("null", "http://console.local:8787/assets", False),
    (None, "http://console.local:8787/assets/x", True),
    (None, "https://evil.example/x", False),
    (None, None, True),
])
def test_a_post_is_same_origin_only_from_the_consoles_host(origin: str | None, referer: str | None,
                                                           allowed: bool) -> None:
    """Origin (else Referer) must name the console's host; an opaque `null` origin never does."""
    assert security.same_origin(origin, referer, "console.local:8787") is allowed


@pytest.mark.parametrize(("target", "safe"), [
    ("/assets/a-1", "/assets/a-1"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
    ("/\\evil.example", "/"), (None, "/"), ("", "/"),
])
def test_after_sign_in_only_a_local_path_is_followed(target: str | None, safe: str) -> None:
    """The `next` of a sign-in is followed only when it is a path on this console."""
    assert security.safe_next(target) == safe
