"""Settings of the assets service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import settings as s


@dataclass(frozen=True)
class AssetsSettings:
    server: s.ServerSettings = s.nested(s.ServerSettings)  # noqa: RUF009 - read from the environment
    aws: s.AwsSettings = s.nested(s.AwsSettings)  # noqa: RUF009 - read from the environment
    ingest_addresses: tuple[str, ...] = s.env(
        "LZ_INGEST_ADDRESSES", s.address_list, default=(),
        doc="host:port of ingest's internal port (one address: any replica forwards to the one holding "
            "the stream), comma-separated when several; nudged after each new command.",
    )
    control_plane_endpoints: tuple[str, ...] = s.env(
        "LZ_CONTROL_PLANE_ENDPOINTS", s.address_list, default=(),
        doc="host:port pairs an isolated host must still reach (sent in every containment policy).",
    )
    max_assets_per_tenant: int = s.env(
        "LZ_MAX_ASSETS_PER_TENANT", s.positive_int, default=100_000,
        doc="Assets a tenant may enroll in all (the quota that bounds a leaked enrollment secret).",
    )
    custody_sweep_seconds: float = s.env(
        "LZ_CUSTODY_SWEEP_SECONDS", s.positive_float, default=5.0,
        doc="how often the custody sequencer reads the pending custody records (it also does at start).",
    )
    custody_overdue_seconds: float = s.env(
        "LZ_CUSTODY_OVERDUE_SECONDS", s.positive_float, default=60.0,
        doc="a custody record still unchained this long after its state change is reported (logged as an error).",
    )


def load_settings() -> AssetsSettings:
    return s.load(AssetsSettings)
