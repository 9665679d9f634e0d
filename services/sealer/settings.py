"""Settings of the sealer service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import settings as s


@dataclass(frozen=True)
class SealSettings:
    bucket_name: str = s.env("LZ_BUCKET_NAME", doc="S3 bucket (Object Lock) for tiles and checkpoints.")
    origin: str = s.env("LZ_ORIGIN", doc="Deployment origin; a tenant's log is <LZ_ORIGIN>/<tenant>.")
    retention_days: int = s.env(
        "LZ_SEAL_RETENTION_DAYS", s.positive_int, default=365,
        doc="COMPLIANCE retention (days) the bucket's default must give every seal object; checked after each write.",
    )
    signing_key_file: str = s.env(
        "LZ_SIGNING_KEY_FILE", default="", doc="File of C2SP signer keys, newest first (a Kubernetes Secret)."
    )
    signing_key: str = s.env("LZ_SIGNING_KEY", default="", doc="Signer keys, newest first, if no key file.")
    every_events: int = s.env("LZ_SEAL_EVERY_EVENTS", s.positive_int, default=256, doc="Seal after K events.")
    every_seconds: float = s.env(
        "LZ_SEAL_EVERY_SECONDS", s.positive_float, default=2.0, doc="Seal after T seconds of pending events."
    )
    max_batch: int = s.env(
        "LZ_SEAL_MAX_BATCH", s.positive_int, default=4096, doc="Most events one checkpoint adds during catch-up."
    )
    crash_after: str = s.env(
        "LZ_SEALER_CRASH_AFTER", s.choice("", "tiles", "checkpoint", "record"), default="",
        doc="Test hook only: exit with 137 right after this step of a seal (tiles, checkpoint, record).",
    )
    stream_poll_seconds: float = s.env(
        "LZ_STREAM_POLL_SECONDS", s.positive_float, default=0.2,
        doc="Pause between stream reads (none after a full read).",
    )


@dataclass(frozen=True)
class SealerSettings:
    server: s.ServerSettings = s.nested(s.ServerSettings)  # noqa: RUF009 - read by settings.load
    aws: s.AwsSettings = s.nested(s.AwsSettings)  # noqa: RUF009 - read by settings.load
    seal: SealSettings = s.nested(SealSettings)  # noqa: RUF009 - read by settings.load


def load_settings() -> SealerSettings:
    return s.load(SealerSettings)
