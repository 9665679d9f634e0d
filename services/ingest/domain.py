"""Pure logic of ingest: stream sequencing, message checks and the queue envelope (the rate limit is kit.ratelimit).

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
from services.kit.text import check_text

ENVELOPE_VERSION = 1
BATCH_VERSION = 2
MAX_FUTURE_SKEW = dt.timedelta(minutes=5)
_SKEW_SECONDS = MAX_FUTURE_SKEW.total_seconds()
_YEAR_2000 = 946_684_800  # 2000-01-01T00:00:00Z in Unix seconds
_DIGEST = re.compile(r"[0-9a-f]{64}")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_ts(when: dt.datetime) -> str:
    """RFC 3339 UTC with exactly six fractional digits (sorts as text; the key format)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


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
        self.check_at(heartbeat, size, received.timestamp())
        return heartbeat.observe_time.ToDatetime(tzinfo=dt.UTC)

    def check_at(self, heartbeat: ingest_pb2.Heartbeat, size: int, now: float) -> None:
        """`check` on the hot path: `now` in Unix seconds, the observe time compared as integers."""
        if size > self.max_heartbeat_bytes:
            raise InvalidArgument(
                f"heartbeat is {size} bytes; the limit is {self.max_heartbeat_bytes}",
                reason="HEARTBEAT_TOO_LARGE",
            )
        seq = heartbeat.seq
        if seq <= 0:
            raise InvalidArgument.field("heartbeat.seq", "must be positive")
        if seq <= self.last_seq:
            raise InvalidArgument(
                f"heartbeat seq {seq} is not after {self.last_seq} on this stream",
                reason="SEQ_NOT_INCREASING",
                metadata={"last_seq": str(self.last_seq), "seq": str(seq)},
            )
        if not heartbeat.HasField("observe_time"):
            raise InvalidArgument.field("heartbeat.observe_time", "is required")
        observed = heartbeat.observe_time
        if not 0 <= observed.nanos < 1_000_000_000:
            raise InvalidArgument.field("heartbeat.observe_time", "is not a valid time")
        if observed.seconds > now + _SKEW_SECONDS or observed.seconds < _YEAR_2000:
            raise InvalidArgument.field("heartbeat.observe_time", "is too far from the server's clock")
        if not _DIGEST.fullmatch(heartbeat.inventory_digest):
            raise InvalidArgument.field("heartbeat.inventory_digest", "must be a lowercase hex SHA-256")
        if heartbeat.spool_dropped < 0:
            raise InvalidArgument.field("heartbeat.spool_dropped", "must not be negative")
        if heartbeat.HasField("inventory"):
            check_inventory_text(heartbeat.inventory)
        self.last_seq = seq


MAX_HOST_FACT_CHARS = 256


def check_inventory_text(inventory: Any) -> None:
    """InvalidArgument when the host facts that become the asset's record (hostname, os) are not plain text.

    Checked before the heartbeat is queued, so a hostile hostname never reaches the risk worker's batch.
    Engine and model fields (paths, names as found on disk) are evidence and stay exact: any local user
    can name a file, and refusing them would let one blind the agent; `lz` shows them inert.
    """
    check_text("heartbeat.inventory.hostname", inventory.hostname, MAX_HOST_FACT_CHARS)
    check_text("heartbeat.inventory.os", inventory.os, MAX_HOST_FACT_CHARS)


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
    """A version 1 queue message body: one heartbeat, JSON with its protobuf bytes in base64."""
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


# One heartbeat in a version 2 body: [tenant, asset, epoch, received (Unix ms), heartbeat protobuf in base64].
BatchEntry = list[Any]


def batch_entry(tenant: str, asset_id: str, epoch: int, received_ms: int, heartbeat_bytes: bytes) -> BatchEntry:
    return [tenant, asset_id, epoch, received_ms, base64.b64encode(heartbeat_bytes).decode()]


def entry_size(entry: BatchEntry) -> int:
    """Bytes `entry` takes in an encoded body (ids and base64 need no JSON escaping), plus its comma."""
    return len(entry[0]) + len(entry[1]) + len(str(entry[2])) + len(str(entry[3])) + len(entry[4]) + 15


BATCH_OVERHEAD = len('{"v":2,"h":[]}')


def encode_batch(entries: list[BatchEntry]) -> str:
    """A version 2 queue message body: many heartbeats of any streams in one message."""
    return json.dumps({"v": BATCH_VERSION, "h": entries}, separators=(",", ":"))


class BadEnvelope(ValueError):
    """A queue message that can never be processed (poison)."""


@dataclass(frozen=True)
class Decoded:
    """A queue message's heartbeats, and the poison entries of it (a one-entry body each, and why)."""

    envelopes: list[Envelope]
    poison: list[tuple[str, str]]


def decode_message(body: str) -> Decoded:
    """The heartbeats of a version 1 or 2 body; BadEnvelope when the body as a whole is undecodable."""
    try:
        raw = json.loads(body)
    except ValueError:
        raise BadEnvelope("undecodable message: not JSON") from None
    if isinstance(raw, dict) and raw.get("v") == BATCH_VERSION and isinstance(raw.get("h"), list):
        envelopes: list[Envelope] = []
        poison: list[tuple[str, str]] = []
        for entry in raw["h"]:
            try:
                envelopes.append(_decode_entry(entry))
            except BadEnvelope as exc:
                poison.append((json.dumps({"v": BATCH_VERSION, "h": [entry]}, separators=(",", ":")), str(exc)))
        return Decoded(envelopes, poison)
    return Decoded([_decode_v1(raw)], [])


def decode_envelope(body: str) -> Envelope:
    """The one heartbeat of a version 1 body (BadEnvelope otherwise)."""
    try:
        raw = json.loads(body)
    except ValueError:
        raise BadEnvelope("undecodable message: not JSON") from None
    return _decode_v1(raw)


def _decode_v1(raw: Any) -> Envelope:
    try:
        if not isinstance(raw, dict) or raw.get("v") != ENVELOPE_VERSION:
            raise BadEnvelope("not a version 1 heartbeat envelope")
        tenant, asset_id = raw["tenant"], raw["asset"]
        received = str(raw["received"])
        parse_ts(received)
        return _envelope(tenant, asset_id, int(raw.get("epoch", 0)), received, raw["hb"])
    except BadEnvelope:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BadEnvelope(f"undecodable message: {type(exc).__name__}") from None


def _decode_entry(entry: Any) -> Envelope:
    try:
        if not isinstance(entry, list) or len(entry) != 5:
            raise BadEnvelope("not a heartbeat entry")
        tenant, asset_id, epoch, received_ms, hb = entry
        if not isinstance(received_ms, int) or isinstance(received_ms, bool) or received_ms < 0:
            raise BadEnvelope("bad receive time")
        received = format_ts(dt.datetime.fromtimestamp(received_ms / 1000, dt.UTC))
        return _envelope(tenant, asset_id, int(epoch), received, hb)
    except BadEnvelope:
        raise
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise BadEnvelope(f"undecodable heartbeat: {type(exc).__name__}") from None


def _envelope(tenant: Any, asset_id: Any, epoch: int, received: str, hb: Any) -> Envelope:
    if not (isinstance(tenant, str) and isinstance(asset_id, str) and is_valid_id(tenant) and is_valid_id(asset_id)):
        raise BadEnvelope("bad tenant or asset id")
    try:
        heartbeat = ingest_pb2.Heartbeat.FromString(base64.b64decode(hb, validate=True))
    except (TypeError, ValueError, binascii.Error, DecodeError) as exc:
        raise BadEnvelope(f"undecodable heartbeat: {type(exc).__name__}") from None
    if heartbeat.seq <= 0 or not heartbeat.HasField("observe_time"):
        raise BadEnvelope("heartbeat without seq or observe time")
    return Envelope(tenant, asset_id, epoch, received, heartbeat)
