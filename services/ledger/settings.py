"""Settings of the ledger service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import settings as s


@dataclass(frozen=True)
class SealAccess:
    """Where the seals are and which keys they must verify with (the ledger never signs)."""

    bucket_name: str = s.env("LZ_BUCKET_NAME", doc="S3 bucket (Object Lock) with tiles and checkpoints.")
    origin: str = s.env("LZ_ORIGIN", doc="Deployment origin; a tenant's log is <LZ_ORIGIN>/<tenant>.")
    verifier_keys: str = s.env(
        "LZ_VERIFIER_KEYS", default="", doc="Deployment verifier keys, newest first (public; preferred)."
    )
    verifier_key_file: str = s.env("LZ_VERIFIER_KEY_FILE", default="", doc="File of deployment verifier keys.")
    signing_key_file: str = s.env(
        "LZ_SIGNING_KEY_FILE", default="", doc="Fallback: verifier keys are derived from these signer keys."
    )
    signing_key: str = s.env("LZ_SIGNING_KEY", default="", doc="Fallback like LZ_SIGNING_KEY_FILE.")


@dataclass(frozen=True)
class LedgerSettings:
    server: s.ServerSettings = s.nested(s.ServerSettings)  # noqa: RUF009 - read by settings.load
    aws: s.AwsSettings = s.nested(s.AwsSettings)  # noqa: RUF009 - read by settings.load
    seals: SealAccess = s.nested(SealAccess)  # noqa: RUF009 - read by settings.load
    expensive_per_tenant: int = s.env(
        "LZ_LEDGER_EXPENSIVE_PER_TENANT", s.positive_int, default=2,
        doc="Concurrent VerifyLedger FULL (and WatchFullVerification) and ExportBundle calls per tenant; "
        "more get RESOURCE_EXHAUSTED.",
    )


def load_settings() -> LedgerSettings:
    return s.load(LedgerSettings)
