"""Settings of the console: where its peers are, how long a session lives, and how it is served."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import settings as s


@dataclass(frozen=True)
class SessionSettings:
    idle_seconds: float = s.env(
        "LZ_CONSOLE_IDLE_SECONDS", s.positive_float, default=900.0,
        doc="A session unused this long is over (the operator signs in again).",
    )
    absolute_seconds: float = s.env(
        "LZ_CONSOLE_SESSION_SECONDS", s.positive_float, default=8 * 3600.0,
        doc="A session is over this long after sign-in, however busy.",
    )
    max_sessions: int = s.env(
        "LZ_CONSOLE_MAX_SESSIONS", s.positive_int, default=10_000,
        doc="Sessions kept at once; past it the least recently used is signed out.",
    )
    secure_cookies: bool = s.env(
        "LZ_CONSOLE_SECURE_COOKIES", s.boolean, default=False,
        doc="Mark cookies Secure although this process serves plain HTTP (TLS ends at an ingress in front). "
            "Serving TLS itself (LZ_TLS_CERT_FILE) always marks them Secure.",
    )


@dataclass(frozen=True)
class PeerSettings:
    assets_address: str = s.env("LZ_ASSETS_ADDRESS", s.address, doc="host:port of the assets service.")
    ledger_address: str = s.env("LZ_LEDGER_ADDRESS", s.address, doc="host:port of the ledger service.")
    sealer_address: str = s.env("LZ_SEALER_ADDRESS", s.address, doc="host:port of the sealer service.")
    call_timeout: float = s.env(
        "LZ_CONSOLE_CALL_TIMEOUT_SECONDS", s.positive_float, default=10.0, doc="Deadline of each call to a peer."
    )


@dataclass(frozen=True)
class PageSettings:
    overview_seconds: float = s.env(
        "LZ_CONSOLE_OVERVIEW_SECONDS", s.positive_float, default=30.0,
        doc="The Overview's counts are at most this old (each tenant's are recomputed once per period, "
            "by paging its assets and the last day's alerts).",
    )


@dataclass(frozen=True)
class ConsoleSettings:
    # LZ_PORT and LZ_LISTEN_HOST are the HTTP port and address; LZ_TLS_CERT_FILE/KEY_FILE make it HTTPS;
    # LZ_TLS_CA_FILE is the CA of the peers' gRPC certificates.
    server: s.ServerSettings = s.nested(s.ServerSettings)  # noqa: RUF009 - read by settings.load
    sessions: SessionSettings = s.nested(SessionSettings)  # noqa: RUF009 - read by settings.load
    peers: PeerSettings = s.nested(PeerSettings)  # noqa: RUF009 - read by settings.load
    pages: PageSettings = s.nested(PageSettings)  # noqa: RUF009 - read by settings.load

    @property
    def tls(self) -> bool:
        return bool(self.server.tls_cert_file and self.server.tls_key_file)


def load_settings() -> ConsoleSettings:
    return s.load(ConsoleSettings)
