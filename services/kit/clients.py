"""Channels and call metadata for service-to-service calls.

Internal calls present the service token and name the tenant they act for in `x-lz-tenant`; the
callee's authenticator accepts that header only together with the service token. The current trace
context rides along, so one operator action is one trace across services.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from services.kit import telemetry
from services.kit.auth import ACTOR_METADATA_KEY, TENANT_METADATA_KEY
from services.kit.settings import ServerSettings

DEFAULT_TIMEOUT_SECONDS = 10.0


def channel(address: str, settings: ServerSettings, tls_name: str = "") -> grpc.aio.Channel:
    """An aio channel to another service: TLS when a CA is configured, plaintext otherwise (local).

    `tls_name` is the name the server's certificate must carry when `address` is not one of its names
    (a pod IP: ingest replicas reach each other that way, and the certificate names the service).
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if settings.tls_ca_file:
        root = Path(settings.tls_ca_file).read_bytes()
        chain = key = None
        if settings.tls_cert_file and settings.tls_key_file:
            chain = Path(settings.tls_cert_file).read_bytes()
            key = Path(settings.tls_key_file).read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
        if tls_name:
            options.append(("grpc.ssl_target_name_override", tls_name))
        return grpc.aio.secure_channel(address, creds, options=options)
    return grpc.aio.insecure_channel(address, options=options)


def service_metadata(settings: ServerSettings, tenant: str, actor: str = "") -> list[tuple[str, str]]:
    """Metadata for an internal call acting for `tenant` (and naming `actor`, e.g. `policy:<rule>`)."""
    metadata = [("authorization", f"Bearer {settings.service_token}"), (TENANT_METADATA_KEY, tenant)]
    if actor:
        metadata.append((ACTOR_METADATA_KEY, actor))
    return telemetry.inject(metadata)
