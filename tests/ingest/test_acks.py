"""Acks of one stream as SQS takes its heartbeats: cumulative, in submission order, never past a gap."""

from __future__ import annotations

from services.ingest import domain
from services.ingest.streams import LiveStream


def _stream(*seqs: int) -> LiveStream:
    stream = LiveStream("t1", "a1", "0" * 64, 1, domain.Sequencer(1000))
    for seq in seqs:
        stream.in_flight.append([seq, 0])
    return stream


def test_a_stored_heartbeat_is_acked() -> None:
    """Once SQS holds the only heartbeat in flight, its seq is the new cumulative ack."""
    stream = _stream(4)
    assert stream.stored(4, True) == 4 and stream.acked_seq == 4


def test_acks_wait_for_every_earlier_heartbeat() -> None:
    """A later heartbeat stored first is acked only when the earlier one is stored too."""
    stream = _stream(1, 2)
    assert stream.stored(2, True) == 0
    assert stream.stored(1, True) == 2


def test_a_refused_heartbeat_gaps_the_stream() -> None:
    """After SQS refused a heartbeat, later ones are not acked (the cumulative ack would skip the gap)."""
    stream = _stream(1, 2)
    assert stream.stored(1, False) == 0
    assert stream.stored(2, True) == 0 and stream.gapped and stream.acked_seq == 0
