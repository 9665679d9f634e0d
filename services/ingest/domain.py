"""Pure logic of ingest: stream sequencing, the per-agent rate limit, message checks and the queue envelope.

Nothing here does I/O: no gRPC, no boto3, no clock of its own (callers pass `now`), so each rule of the
stream protocol is testable on its own.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from lifecyclezero.v1 import ingest_pb2

from services.kit.errors import InvalidArgument
from services.kit.ids import is_valid_id, validate_id

ENVELOPE_VERSION = 1
MAX_FUTURE_SKEW = dt.timedelta(minutes=5)
_DIGEST = re.compile(r"[0-9a-f]{64}")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_ts(when: dt.datetime) -> str:
    """RFC 3339 UTC with exactly six fractional digits (sorts as text; the key format)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


class TokenBucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up. Starts full."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when allowed, else the seconds until a token is due (nothing is taken)."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class HelloFacts:
    tenant: str
    asset_id: str
    credential: str
    last_acked_seq: int
    agent_version: str


def check_hello(request: ingest_pb2.ConnectRequest) -> HelloFacts:
    """The hello's facts, or InvalidArgument when the first message is not a well-formed hello."""
    if request.WhichOneof("message") != "hello":
        raise InvalidArgument("the first message on a stream must be a hello", reason="HELLO_REQUIRED")
    hello = request.hello
    validate_id("hello.tenant_id", hello.tenant_id)
    validate_id("hello.asset_id", hello.asset_id)
    if not 16 <= len(hello.agent_credential) <= 128:
        raise InvalidArgument.field("hello.agent_credential", "must be the credential Enroll returned")
    if hello.last_acked_seq < 0:
        raise InvalidArgument.field("hello.last_acked_seq", "must not be negative")
    if len(hello.agent_version) > 64:
        raise InvalidArgument.field("hello.agent_version", "must be at most 64 characters")
    return HelloFacts(hello.tenant_id, hello.asset_id, hello.agent_credential, hello.last_acked_seq,
                      hello.agent_version)


class Sequencer:
    """Checks the heartbeats of one stream: sequence numbers only go up, times are plausible."""

    def __init__(self, max_heartbeat_bytes: int) -> None:
        self.last_seq = 0
        self.max_heartbeat_bytes = max_heartbeat_bytes

    def check(self, heartbeat: ingest_pb2.Heartbeat, size: int, received: dt.datetime) -> dt.datetime:
        """The heartbeat's observe time when it may be stored; InvalidArgument (nothing stored) otherwise."""
        if size > self.max_heartbeat_bytes:
            raise InvalidArgument(
                f"heartbeat is {size} bytes; the limit is {self.max_heartbeat_bytes}",
                reason="HEARTBEAT_TOO_LARGE",
            )
        if heartbeat.seq <= 0:
            raise InvalidArgument.field("heartbeat.seq", "must be positive")
        if heartbeat.seq <= self.last_seq:
            raise InvalidArgument(
                f"heartbeat seq {heartbeat.seq} is not after {self.last_seq} on this stream",
                reason="SEQ_NOT_INCREASING",
                metadata={"last_seq": str(self.last_seq), "seq": str(heartbeat.seq)},
            )
        if not heartbeat.HasField("observe_time"):
            raise InvalidArgument.field("heartbeat.observe_time", "is required")
        try:
            observed = heartbeat.observe_time.ToDatetime(tzinfo=dt.UTC)
        except (ValueError, OverflowError):
            raise InvalidArgument.field("heartbeat.observe_time", "is not a valid time") from None
        if observed > received + MAX_FUTURE_SKEW or observed.year < 2000:
            raise InvalidArgument.field("heartbeat.observe_time", "is too far from the server's clock")
        if not _DIGEST.fullmatch(heartbeat.inventory_digest):
            raise InvalidArgument.field("heartbeat.inventory_digest", "must be a lowercase hex SHA-256")
        if heartbeat.spool_dropped < 0:
            raise InvalidArgument.field("heartbeat.spool_dropped", "must not be negative")
        self.last_seq = heartbeat.seq
        return observed


def check_command_result(result: Any) -> str:
    """The command id of a result the agent sent, or InvalidArgument."""
    return validate_id("command_result.command_id", result.command_id)


@dataclass(frozen=True)
class Envelope:
    """What ingest hands the risk worker through the queue for one heartbeat."""

    tenant: str
    asset_id: str
    epoch: int
    received: str
    heartbeat: ingest_pb2.Heartbeat


def encode_envelope(tenant: str, asset_id: str, epoch: int, received: dt.datetime,
                    heartbeat_bytes: bytes) -> str:
    """The queue message body: JSON with the heartbeat's protobuf bytes in base64."""
    return json.dumps(
        {
            "v": ENVELOPE_VERSION,
            "tenant": tenant,
            "asset": asset_id,
            "epoch": epoch,
            "received": format_ts(received),
            "hb": base64.b64encode(heartbeat_bytes).decode(),
        },
        separators=(",", ":"),
    )


class BadEnvelope(ValueError):
    """A queue message that can never be processed (poison)."""


def decode_envelope(body: str) -> Envelope:
    try:
        raw = json.loads(body)
        if not isinstance(raw, dict) or raw.get("v") != ENVELOPE_VERSION:
            raise BadEnvelope("not a version 1 heartbeat envelope")
        tenant, asset_id = raw["tenant"], raw["asset"]
        if not (is_valid_id(tenant) and is_valid_id(asset_id)):
            raise BadEnvelope("bad tenant or asset id")
        received = str(raw["received"])
        parse_ts(received)
        heartbeat = ingest_pb2.Heartbeat.FromString(base64.b64decode(raw["hb"], validate=True))
        epoch = int(raw.get("epoch", 0))
    except BadEnvelope:
        raise
    except (KeyError, TypeError, ValueError, binascii.Error, DecodeError) as exc:
        raise BadEnvelope(f"undecodable message: {type(exc).__name__}") from None
    if heartbeat.seq <= 0 or not heartbeat.HasField("observe_time"):
        raise BadEnvelope("heartbeat without seq or observe time")
    return Envelope(tenant, asset_id, epoch, received, heartbeat)
