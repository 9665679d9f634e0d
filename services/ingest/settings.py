"""Settings of the ingest service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import settings as s


@dataclass(frozen=True)
class IngestSettings:
    server: s.ServerSettings = s.nested(s.ServerSettings)
    aws: s.AwsSettings = s.nested(s.AwsSettings)


def load_settings() -> IngestSettings:
    return s.load(IngestSettings)
