"""The batcher on the embedded SQS: heartbeats of many streams share envelopes; an outage fails them all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.ingest import domain
from services.ingest.queue import QueueBatcher
from services.kit import aws, embedded
from services.kit.errors import Unavailable
from services.kit.settings import AwsSettings
from tests.ingest.test_domain import _hb

pytestmark = pytest.mark.slow


def _entry(seq: int) -> list[object]:
    return domain.batch_entry("t1", f"a-{seq}", 1, 1_767_323_045_000, _hb(seq).SerializeToString())


async def _submit_all(batcher: QueueBatcher, count: int) -> list[bool]:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[bool]] = [loop.create_future() for _ in range(count)]
    for seq, future in enumerate(futures, start=1):
        batcher.submit(_entry(seq), future.set_result)
    return list(await asyncio.wait_for(asyncio.gather(*futures), 20))


async def test_heartbeats_of_many_streams_share_one_message(embedded_aws: embedded.Resources,
                                                            aws_settings: AwsSettings) -> None:
    """Fifty heartbeats submitted together are acknowledged and sit in one SQS message."""
    sqs = aws.client(aws_settings, "sqs")
    url = sqs.create_queue(QueueName="test-batcher-share")["QueueUrl"]
    batcher = QueueBatcher(sqs, url, linger_seconds=0.05)
    assert await _submit_all(batcher, 50) == [True] * 50
    got: dict[str, Any] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    [message] = got["Messages"]
    seqs = [e.heartbeat.seq for e in domain.decode_message(message["Body"]).envelopes]
    assert seqs == list(range(1, 51)) and batcher.sent_batches == 1


async def test_an_unreachable_queue_fails_every_heartbeat_then_refuses_new_ones(
    embedded_aws: embedded.Resources,
) -> None:
    """When SQS does not answer, every heartbeat in the batch fails and the next submission raises."""
    settings = AwsSettings(table_name="t", endpoint_url=f"http://127.0.0.1:{embedded.free_port()}",
                           region=embedded_aws.region)
    sqs = aws.client(settings, "sqs", retries={"max_attempts": 1}, connect_timeout=1)
    batcher = QueueBatcher(sqs, f"{settings.endpoint_url}/123456789012/none")
    assert await _submit_all(batcher, 3) == [False] * 3
    with pytest.raises(Unavailable):
        batcher.submit(_entry(4), lambda ok: None)
