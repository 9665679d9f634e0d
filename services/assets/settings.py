"""Settings of the assets service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import settings as s


@dataclass(frozen=True)
class AssetsSettings:
    server: s.ServerSettings = s.nested(s.ServerSettings)
    aws: s.AwsSettings = s.nested(s.AwsSettings)


def load_settings() -> AssetsSettings:
    return s.load(AssetsSettings)
