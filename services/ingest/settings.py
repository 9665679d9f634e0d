"""Settings of the ingest service and of the risk worker (environment variables, checked at start)."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import settings as s


@dataclass(frozen=True)
class StreamSettings:
    """The agent stream: pacing, limits and command delivery."""

    heartbeat_interval_seconds: int = s.env(
        "LZ_HEARTBEAT_INTERVAL_SECONDS", s.positive_int, default=5, doc="Heartbeat period asked of agents."
    )
    rate_per_second: float = s.env(
        "LZ_AGENT_RATE_PER_SECOND", s.positive_float, default=1.0,
        doc="Messages a second one agent may send, sustained (token bucket).",
    )
    burst: int = s.env("LZ_AGENT_BURST", s.positive_int, default=10, doc="Token bucket size per agent.")
    max_heartbeat_bytes: int = s.env(
        "LZ_MAX_HEARTBEAT_BYTES", s.positive_int, default=128 * 1024,
        doc="Largest heartbeat accepted (SQS takes 256 KiB a batch).",
    )
    hello_timeout_seconds: float = s.env(
        "LZ_HELLO_TIMEOUT_SECONDS", s.positive_float, default=10.0, doc="Time a new stream has to say hello."
    )
    linger_seconds: float = s.env(
        "LZ_QUEUE_LINGER_SECONDS", s.positive_float, default=0.01,
        doc="How long a heartbeat waits for others to share its SendMessageBatch.",
    )
    seq_persist_seconds: float = s.env(
        "LZ_SEQ_PERSIST_SECONDS", s.positive_float, default=120.0,
        doc="At most this often an agent's highest durable seq is written to its credential item.",
    )
    command_poll_seconds: float = s.env(
        "LZ_COMMAND_POLL_SECONDS", s.positive_float, default=3.0,
        doc="Per-tenant poll of pending commands, for tenants with live streams and pending commands (at their "
            "last poll, or nudged since).",
    )
    command_idle_poll_seconds: float = s.env(
        "LZ_COMMAND_IDLE_POLL_SECONDS", s.positive_float, default=60.0,
        doc="The same poll for tenants with live streams but no pending command: nudges reach the replica "
            "holding the stream, so this only catches a lost nudge. R replicas and T such tenants cost "
            "R x T / this ListPendingCommands a second.",
    )
    command_resend_seconds: float = s.env(
        "LZ_COMMAND_RESEND_SECONDS", s.positive_float, default=15.0,
        doc="A command without a result is sent again after this long.",
    )
    credential_recheck_seconds: float = s.env(
        "LZ_CREDENTIAL_RECHECK_SECONDS", s.positive_float, default=60.0,
        doc="A live stream's credential is read again at least this often (and at each command result), so a "
            "revocation or re-enrollment on another replica ends it.",
    )
    enroll_rate_per_second: float = s.env(
        "LZ_ENROLL_RATE_PER_SECOND", s.positive_float, default=20.0,
        doc="Enrollments a second one tenant may perform on one ingest process, sustained (token bucket).",
    )
    enroll_burst: int = s.env(
        "LZ_ENROLL_BURST", s.positive_int, default=1000, doc="Enrollment token bucket size per tenant.",
    )
    health_sweep_seconds: float = s.env(
        "LZ_HEALTH_SWEEP_SECONDS", s.positive_float, default=1.0,
        doc="How often the agent-health sweep reads the due connection checks of each tenant it has seen.",
    )


@dataclass(frozen=True)
class IngestSettings:
    server: s.ServerSettings = s.nested(s.ServerSettings)  # noqa: RUF009 - a nested settings group
    aws: s.AwsSettings = s.nested(s.AwsSettings)  # noqa: RUF009 - a nested settings group
    stream: StreamSettings = s.nested(StreamSettings)  # noqa: RUF009 - a nested settings group
    queue_url: str = s.env("LZ_QUEUE_URL", s.url, doc="The heartbeat queue (SQS).")
    assets_address: str = s.env("LZ_ASSETS_ADDRESS", s.address, doc="host:port of the assets service.")
    sqs_endpoint_url: str = s.env(
        "LZ_SQS_ENDPOINT_URL", s.url, default="", doc="SQS endpoint when it differs from LZ_AWS_ENDPOINT_URL."
    )
    advertise_address: str = s.env(
        "LZ_ADVERTISE_ADDRESS", s.address, default="",
        doc="host:port of this replica's internal port as the other replicas reach it (in Kubernetes the pod "
            "IP from the downward API); recorded on the agent item when a stream opens, so a nudge taken by "
            "any replica is forwarded to the one holding the stream. Empty: one replica, nothing forwarded.",
    )
    policy_file: str = s.env("LZ_POLICY_FILE", default="", doc="Default risk policy (YAML); empty: the built-in.")
    policy_dir: str = s.env(
        "LZ_POLICY_DIR", default="", doc="Directory of per-tenant policy overrides, <tenant>.yaml."
    )


@dataclass(frozen=True)
class WorkerSettings:
    server: s.ServerSettings = s.nested(s.ServerSettings)  # noqa: RUF009 - a nested settings group
    aws: s.AwsSettings = s.nested(s.AwsSettings)  # noqa: RUF009 - a nested settings group
    queue_url: str = s.env("LZ_QUEUE_URL", s.url, doc="The heartbeat queue (SQS).")
    dlq_url: str = s.env("LZ_DLQ_URL", s.url, doc="The dead-letter queue for poison messages.")
    assets_address: str = s.env("LZ_ASSETS_ADDRESS", s.address, doc="host:port of the assets service.")
    shards: int = s.env("LZ_TELEMETRY_SHARDS", s.positive_int, default=10, doc="Telemetry write shards.")
    ttl_days: int = s.env("LZ_TELEMETRY_TTL_DAYS", s.positive_int, default=30, doc="Telemetry lifetime.")
    keepalive_seconds: float = s.env(
        "LZ_TELEMETRY_KEEPALIVE_SECONDS", s.positive_float, default=300.0,
        doc="An unchanged heartbeat is recorded at most this often per asset (coalescing).",
    )
    last_seen_seconds: float = s.env(
        "LZ_LAST_SEEN_SECONDS", s.positive_float, default=180.0,
        doc="An asset's last-seen time is sent to assets at most this often when nothing else changed.",
    )
    concurrency: int = s.env("LZ_WORKER_CONCURRENCY", s.positive_int, default=4, doc="Parallel queue pollers.")
    wait_seconds: int = s.env(
        "LZ_WORKER_WAIT_SECONDS", s.positive_int, default=8, doc="SQS long-poll wait (1-8)."
    )
    gather_seconds: float = s.env(
        "LZ_WORKER_GATHER_SECONDS", s.positive_float, default=0.25,
        doc="A poller whose receive was not full waits this long before the next, so envelopes gather.",
    )
    max_tries: int = s.env(
        "LZ_WORKER_MAX_TRIES", s.positive_int, default=5,
        doc="Receives after which a failing message is moved to the dead-letter queue.",
    )
    retry_seconds: int = s.env(
        "LZ_WORKER_RETRY_SECONDS", s.positive_int, default=10,
        doc="Visibility timeout given to a message that failed, before it is tried again.",
    )
    policy_file: str = s.env("LZ_POLICY_FILE", default="", doc="Default risk policy (YAML); empty: the built-in.")
    policy_dir: str = s.env(
        "LZ_POLICY_DIR", default="", doc="Directory of per-tenant policy overrides, <tenant>.yaml."
    )


def load_settings() -> IngestSettings:
    return s.load(IngestSettings)


def load_worker_settings() -> WorkerSettings:
    return s.load(WorkerSettings)
