"""Stream protocol pieces: rate limit, sequencing, the queue envelope and the telemetry shards."""

from __future__ import annotations

import collections
import datetime as dt
import json

import pytest
from lifecyclezero.v1 import ingest_pb2

from services.ingest import domain, keys
from services.kit.errors import InvalidArgument
from services.kit.ratelimit import TokenBucket

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
DIGEST = "0" * 64


def _hb(seq: int, when: dt.datetime = NOW) -> ingest_pb2.Heartbeat:
    hb = ingest_pb2.Heartbeat(seq=seq, inventory_digest=DIGEST)
    hb.observe_time.FromDatetime(when)
    return hb


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    """A full bucket passes `burst` messages at once, then one a second."""
    bucket = TokenBucket(rate=1.0, burst=10, now=0.0)
    assert [bucket.take(0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(0.0) == pytest.approx(1.0)
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0


def test_sequence_numbers_must_increase_on_a_stream() -> None:
    """A heartbeat whose seq is not above the previous one is refused with SEQ_NOT_INCREASING."""
    seq = domain.Sequencer(max_heartbeat_bytes=1000)
    seq.check(_hb(5), 10, NOW)
    with pytest.raises(InvalidArgument) as caught:
        seq.check(_hb(5), 10, NOW)
    assert caught.value.reason == "SEQ_NOT_INCREASING"


def test_heartbeat_from_the_future_is_refused() -> None:
    """An observe time far ahead of the server's clock is refused."""
    with pytest.raises(InvalidArgument, match="observe_time"):
        domain.Sequencer(1000).check(_hb(1, NOW + dt.timedelta(hours=1)), 10, NOW)


def test_oversized_heartbeat_is_refused() -> None:
    """A heartbeat above the size limit is refused with HEARTBEAT_TOO_LARGE."""
    with pytest.raises(InvalidArgument) as caught:
        domain.Sequencer(100).check(_hb(1), 101, NOW)
    assert caught.value.reason == "HEARTBEAT_TOO_LARGE"


def test_envelope_round_trips() -> None:
    """An encoded envelope decodes to the same tenant, asset, epoch and heartbeat."""
    body = domain.encode_envelope("t1", "a1", 7, NOW, _hb(3).SerializeToString())
    env = domain.decode_envelope(body)
    assert (env.tenant, env.asset_id, env.epoch, env.heartbeat.seq) == ("t1", "a1", 7, 3)


@pytest.mark.parametrize("body", ["", "{}", "not json", '{"v":1,"tenant":"a#b","asset":"x"}',
                                  '{"v":1,"tenant":"t","asset":"a","received":"2026-01-01T00:00:00.000000Z",'
                                  '"hb":"!!!"}'])
def test_undecodable_envelopes_are_poison(body: str) -> None:
    """Bodies that are not heartbeat envelopes raise BadEnvelope."""
    with pytest.raises(domain.BadEnvelope):
        domain.decode_envelope(body)


def test_ten_thousand_heartbeats_spread_evenly_over_the_shards() -> None:
    """10,000 heartbeats of 2,000 assets land on all 10 shards within 20 % of even."""
    counts = collections.Counter(keys.shard_of(f"a-{i % 2000:05d}", 1 + i // 2000, 10) for i in range(10_000))
    assert len(counts) == 10
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_one_asset_spreads_over_the_shards() -> None:
    """A single asset's heartbeats do not pile onto one shard."""
    counts = collections.Counter(keys.shard_of("a-only", seq, 10) for seq in range(1, 10_001))
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def _entry(seq: int, asset: str = "a1") -> list[object]:
    return domain.batch_entry("t1", asset, 7, 1_767_323_045_000, _hb(seq).SerializeToString())


def test_a_batch_envelope_round_trips() -> None:
    """A version 2 body decodes to each of its heartbeats with tenant, asset, epoch and receive time."""
    body = domain.encode_batch([_entry(1), _entry(2, "a2")])
    decoded = domain.decode_message(body)
    assert [(e.tenant, e.asset_id, e.epoch, e.heartbeat.seq) for e in decoded.envelopes] == [
        ("t1", "a1", 7, 1), ("t1", "a2", 7, 2)]
    assert decoded.envelopes[0].received == "2026-01-02T03:04:05.000000Z" and decoded.poison == []


def test_a_poison_heartbeat_is_singled_out_of_its_envelope() -> None:
    """One undecodable entry becomes a one-entry poison body; the others still decode."""
    bad = ["t1", "a1", 7, 1, "!!!"]
    decoded = domain.decode_message(domain.encode_batch([_entry(1), bad, _entry(3)]))
    assert [e.heartbeat.seq for e in decoded.envelopes] == [1, 3]
    [(body, why)] = decoded.poison
    assert json.loads(body) == {"v": 2, "h": [bad]} and "undecodable" in why


def test_version_one_bodies_still_decode_as_messages() -> None:
    """A version 1 body (one heartbeat) decodes through decode_message too."""
    body = domain.encode_envelope("t1", "a1", 7, NOW, _hb(3).SerializeToString())
    assert [e.heartbeat.seq for e in domain.decode_message(body).envelopes] == [3]


def test_entry_sizes_bound_the_encoded_body() -> None:
    """The sizes the batcher adds up are never below the body's real length."""
    entries = [_entry(seq, f"asset-{seq}") for seq in range(1, 200)]
    assert domain.BATCH_OVERHEAD + sum(domain.entry_size(e) for e in entries) >= len(domain.encode_batch(entries))


def test_a_heartbeat_from_before_2000_is_refused() -> None:
    """An observe time before the year 2000 is refused like one from the future."""
    with pytest.raises(InvalidArgument, match="observe_time"):
        domain.Sequencer(1000).check(_hb(1, dt.datetime(1999, 12, 31, tzinfo=dt.UTC)), 10, NOW)
