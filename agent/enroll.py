"""Enrollment: trade the tenant's enrollment secret for an asset id and an agent credential.

The identity is kept in ``identity.json`` in the state directory (mode 0600,
written atomically). Enrolling again sends the stored asset id, so the host
keeps its asset and only the credential changes.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
from lifecyclezero.v1 import ingest_pb2, ingest_pb2_grpc

from agent import statefile
from agent.config import ConfigError
from agent.platform import current_platform

IDENTITY_FILE = "identity.json"
SECRET_ENV = "LZ_ENROLLMENT_SECRET"  # noqa: S105 - the name of a variable, not a secret
MAX_SECRET_BYTES = 4096


def agent_version() -> str:
    try:
        return metadata.version("lifecyclezero")
    except metadata.PackageNotFoundError:
        return "0.0.0"


AGENT_VERSION = agent_version()


class NotEnrolledError(RuntimeError):
    """The state directory holds no usable identity: run ``lz-agent enroll`` first."""


@dataclass(frozen=True)
class Identity:
    """Who this agent is to the control plane."""

    tenant_id: str
    asset_id: str
    agent_credential: str
    control_plane: str
    employee_id: str = ""
    heartbeat_interval_seconds: int = 0
    enrolled_at: str = ""

    def redacted(self) -> dict[str, Any]:
        return {**asdict(self), "agent_credential": "<redacted>"}


def read_secret(path: str | None, env_name: str, what: str) -> str:
    """A secret from `path` (`-`: standard input), else from the environment variable `env_name`; "" when absent.

    Secrets never come from a command-line argument: the process list shows those to every local user.
    """
    if path is None:
        return os.environ.get(env_name, "").strip() if env_name else ""
    try:
        raw = sys.stdin.read(MAX_SECRET_BYTES + 1) if path == "-" else Path(path).read_text()[:MAX_SECRET_BYTES + 1]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} from {path}: {exc}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{path} is too long to hold {what}")
    return raw.strip()


def identity_path(state_dir: Path) -> Path:
    return state_dir / IDENTITY_FILE


def load_identity(state_dir: Path) -> Identity | None:
    """The stored identity, or None when the host never enrolled."""
    data = statefile.read_json(identity_path(state_dir))
    if not isinstance(data, dict):
        return None
    try:
        return Identity(**data)
    except TypeError as exc:
        raise NotEnrolledError(f"{identity_path(state_dir)} is not a valid identity: {exc}") from exc


def save_identity(state_dir: Path, identity: Identity) -> None:
    statefile.write_json(identity_path(state_dir), asdict(identity))


def host_facts() -> tuple[str, str]:
    """(hostname, os) of this host, as discovery reports them."""
    host = current_platform()
    return host.hostname(), host.os_name()


def enroll_request(
    tenant_id: str,
    secret: str,
    hostname: str,
    os_name: str,
    *,
    employee_id: str = "",
    asset_id: str = "",
    agent_credential: str = "",
    reenroll_code: str = "",
) -> ingest_pb2.EnrollRequest:
    return ingest_pb2.EnrollRequest(
        tenant_id=tenant_id,
        enrollment_secret=secret,
        hostname=hostname,
        employee_id=employee_id,
        os=os_name,
        agent_version=AGENT_VERSION,
        asset_id=asset_id,
        request_id=uuid.uuid4().hex,
        agent_credential=agent_credential,
        reenroll_code=reenroll_code,
    )


async def enroll_async(
    channel: grpc.aio.Channel, request: ingest_pb2.EnrollRequest, control_plane: str, deadline: float = 30.0
) -> Identity:
    """Call Enroll on ``channel`` and return the identity it grants (not saved)."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    reply: ingest_pb2.EnrollResponse = await stub.Enroll(request, timeout=deadline)
    return Identity(
        tenant_id=request.tenant_id,
        asset_id=reply.asset_id,
        agent_credential=reply.agent_credential,
        control_plane=control_plane,
        employee_id=request.employee_id,
        heartbeat_interval_seconds=reply.heartbeat_interval_seconds,
        enrolled_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def enroll(
    state_dir: Path,
    tenant_id: str,
    secret: str,
    control_plane: str,
    *,
    employee_id: str = "",
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float = 30.0,
    reenroll_code: str = "",
    asset_id: str = "",
) -> Identity:
    """Enroll this host and store the identity.

    A host enrolled before keeps its asset: it proves it with its current credential (key rotation) or,
    once that is revoked or lost, with an operator's one-time re-enrollment code (for `asset_id`, or the
    stored asset when it is not given: a reinstalled host has no stored identity).
    """
    previous = load_identity(state_dir)
    hostname, os_name = host_facts()
    keep = previous is not None and previous.tenant_id == tenant_id
    stored_asset = previous.asset_id if previous is not None and keep else ""
    if reenroll_code and not (asset_id or stored_asset):
        raise ConfigError("a re-enrollment code is for one asset: give --asset ASSET (no stored identity here)")
    request = enroll_request(
        tenant_id,
        secret,
        hostname,
        os_name,
        employee_id=employee_id or (previous.employee_id if previous else ""),
        asset_id=(asset_id or stored_asset) if reenroll_code else stored_asset,
        agent_credential=previous.agent_credential if previous is not None and keep and not reenroll_code else "",
        reenroll_code=reenroll_code,
    )
    if credentials is None:
        channel = grpc.insecure_channel(control_plane)
    else:
        channel = grpc.secure_channel(control_plane, credentials)
    with channel:
        reply: ingest_pb2.EnrollResponse = ingest_pb2_grpc.IngestServiceStub(channel).Enroll(
            request, timeout=timeout
        )
    identity = Identity(
        tenant_id=tenant_id,
        asset_id=reply.asset_id,
        agent_credential=reply.agent_credential,
        control_plane=control_plane,
        employee_id=request.employee_id,
        heartbeat_interval_seconds=reply.heartbeat_interval_seconds,
        enrolled_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_identity(state_dir, identity)
    return identity
