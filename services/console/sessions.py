"""Signed-in sessions: an opaque random id in the cookie, everything else (the token) only here.

The store lives in the console process: a session is as durable as the process that holds it, and a
restart signs everyone out, which loses nothing but a sign-in. Several console replicas need session
affinity at the ingress (deploy/k8s documents it). Expiry is checked on every use: idle (unused for
`idle_seconds`) and absolute (`absolute_seconds` after sign-in, however busy).
"""

from __future__ import annotations

import collections
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.kit.auth import Role

SESSION_ID_BYTES = 32


@dataclass
class Session:
    """One operator's sign-in. `token` never leaves the server; `csrf` is echoed by every POST."""

    session_id: str
    token: str = field(repr=False)
    tenant: str
    role: Role
    token_id: str
    csrf: str = field(repr=False)
    created: float
    last_used: float

    def can(self, role: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
        return self.role in order and order.index(self.role) >= order.index(role)

    @property
    def can_operate(self) -> bool:
        """Whether this session's role may isolate and release (the pages show the buttons only then)."""
        return self.can(Role.OPERATOR)

    @property
    def can_administer(self) -> bool:
        return self.can(Role.ADMIN)

    def csrf_matches(self, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionStore:
    """Sessions by id, least recently used first; expired ones are dropped when they are looked up."""

    def __init__(self, idle_seconds: float, absolute_seconds: float, max_sessions: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._idle = idle_seconds
        self._absolute = absolute_seconds
        self._max = max_sessions
        self._clock = clock
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, token: str, tenant: str, role: Role, token_id: str) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(SESSION_ID_BYTES), token, tenant, role, token_id,
                          secrets.token_urlsafe(32), now, now)
        self._sessions[session.session_id] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id, touched; None when unknown or expired (and then forgotten)."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used > self._idle or now - session.created > self._absolute:
            del self._sessions[session_id]
            return None
        session.last_used = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
