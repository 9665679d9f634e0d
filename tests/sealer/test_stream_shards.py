"""The sealer reads every shard of the table's stream, however many pages DescribeStream takes."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from services.sealer.loop import stream_shards

ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026-01-01T00:00:00.000"


def _page(first: int, count: int, last: str | None) -> dict:
    description: dict = {
        "StreamArn": ARN,
        "Shards": [{"ShardId": f"shardId-00000001700000000000-{n:05d}"} for n in range(first, first + count)],
    }
    if last:
        description["LastEvaluatedShardId"] = last
    return {"StreamDescription": description}


def test_every_page_of_shards_is_read():
    """Shards on a second DescribeStream page are returned too, the second call starting after the first page.

    A stubbed client stands in for DynamoDB Streams here: the embedded endpoint never has more than
    one page of shards, so it cannot show the paging.
    """
    client = boto3.client("dynamodbstreams", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("describe_stream", _page(0, 100, "shardId-00000001700000000000-00099"), {"StreamArn": ARN})
        stub.add_response("describe_stream", _page(100, 7, None),
                          {"StreamArn": ARN, "ExclusiveStartShardId": "shardId-00000001700000000000-00099"})
        shards = stream_shards(client, ARN)
        stub.assert_no_pending_responses()
    assert [s["ShardId"] for s in shards] == [f"shardId-00000001700000000000-{n:05d}" for n in range(107)]
