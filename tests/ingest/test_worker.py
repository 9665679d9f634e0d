"""The risk worker as its own process on queues of its own: telemetry, idempotence, poison, shards, alerts."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2, ingest_pb2

from services.ingest import domain, keys, store
from services.kit import aws, embedded
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from services.kit.table import TTL_ATTRIBUTE
from tests.ingest.agents import IngestTenant, digest_of, enroll

pytestmark = pytest.mark.slow


class Queues:
    def __init__(self, sqs: Any, url: str, dlq: str) -> None:
        self.sqs, self.url, self.dlq = sqs, url, dlq

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def depth(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self, wait: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            got = self.sqs.receive_message(QueueUrl=self.dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           MessageAttributeNames=["All"])
            if got.get("Messages"):
                return list(got["Messages"])
        return []


def _aws(stack: Stack) -> AwsSettings:
    assert stack.resources is not None
    return AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url)


@pytest.fixture
def ddb(stack: Stack) -> Any:
    return aws.client(_aws(stack), "dynamodb")


@pytest.fixture
def start_worker(stack: Stack, tmp_path: Any) -> Iterator[Callable[..., Queues]]:
    """Starts risk workers on fresh queues (with a dead-letter queue) of the stack's embedded AWS."""
    procs: list[subprocess.Popen[bytes]] = []
    sqs = aws.client(_aws(stack), "sqs")

    def start(**env: str) -> Queues:
        name = f"test-{secrets.token_hex(4)}"
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}),
        })["QueueUrl"]
        full = {**os.environ, **embedded.EMBEDDED_CREDENTIALS, **stack.env, "LZ_QUEUE_URL": url, "LZ_DLQ_URL": dlq,
                "LZ_WORKER_WAIT_SECONDS": "1", "LZ_WORKER_RETRY_SECONDS": "1",
                "LZ_SERVICE_TOKEN": stack.service_tokens["risk-worker"], **env}
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "services.ingest.worker"], env=full, stdout=log,
                                      stderr=subprocess.STDOUT))
        return Queues(sqs, url, dlq)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(15)


def _envelope(tenant: str, asset_id: str, seq: int, inventory: common_pb2.Inventory | None = None,
              when: dt.datetime | None = None, dropped: int = 0) -> str:
    hb = ingest_pb2.Heartbeat(seq=seq, inventory_digest=digest_of(inventory), spool_dropped=dropped)
    hb.observe_time.FromDatetime(when or dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC))
    if inventory is not None:
        hb.inventory.CopyFrom(inventory)
    return domain.encode_envelope(tenant, asset_id, 1, dt.datetime.now(dt.UTC), hb.SerializeToString())


def _wait_for(check: Callable[[], Any], wait: float = 20.0) -> Any:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


EXPOSED = common_pb2.Inventory(hostname="ws", os="linux", engines=[common_pb2.Engine(
    kind="ollama", pid=7, executable="/usr/bin/ollama", listen=[common_pb2.Endpoint(address="0.0.0.0", port=11434)])])


def test_a_heartbeat_becomes_a_sharded_telemetry_item_with_ttl(stack: Stack, ingest_tenant: IngestTenant, ddb: Any,
                                                              start_worker: Callable[..., Queues]) -> None:
    """An inventory heartbeat is written under its shard with a TTL, the asset index and the alert index."""
    queues = start_worker()
    asset = enroll(stack.addresses["ingest"], ingest_tenant).asset_id
    queues.send(_envelope(ingest_tenant.tenant, asset, 1, EXPOSED))
    ts = "2026-05-01T12:00:00.000000Z"
    item = _wait_for(lambda: store.get_telemetry(ddb, _aws(stack).table_name, ingest_tenant.tenant, asset, ts, 1, 10))
    assert item["PK"] == keys.telemetry_pk(ingest_tenant.tenant, keys.shard_of(asset, 1, 10))
    assert item["GSI1PK"] == keys.asset_gsi1pk(ingest_tenant.tenant, asset)
    assert item["GSI2PK"] == keys.alert_gsi2pk(ingest_tenant.tenant, "CRITICAL")
    assert item[TTL_ATTRIBUTE] > time.time() + 29 * 86_400


def test_redelivery_gives_one_record(stack: Stack, ingest_tenant: IngestTenant, ddb: Any,
                                     start_worker: Callable[..., Queues]) -> None:
    """The same heartbeat delivered three times is stored once."""
    queues = start_worker()
    asset = enroll(stack.addresses["ingest"], ingest_tenant).asset_id
    body = _envelope(ingest_tenant.tenant, asset, 1, EXPOSED)
    for _ in range(3):
        queues.send(body)
    _wait_for(lambda: queues.depth(queues.url) == 0)
    assert store.count_telemetry(ddb, _aws(stack).table_name, ingest_tenant.tenant, asset) == 1


def test_an_undecodable_message_goes_to_the_dead_letter_queue(start_worker: Callable[..., Queues]) -> None:
    """A body that is not a heartbeat envelope is moved to the dead-letter queue with the reason."""
    queues = start_worker()
    queues.send("this is not an envelope")
    dead = queues.dead_letters()
    assert [m["Body"] for m in dead] == ["this is not an envelope"]
    assert "undecodable" in dead[0]["MessageAttributes"]["lz-error"]["StringValue"]


def test_a_message_that_keeps_failing_is_dead_lettered_after_bounded_tries(
    ingest_tenant: IngestTenant, start_worker: Callable[..., Queues]
) -> None:
    """When assets never answers, a heartbeat is tried LZ_WORKER_MAX_TRIES times, then dead-lettered."""
    queues = start_worker(LZ_ASSETS_ADDRESS=f"127.0.0.1:{embedded.free_port()}", LZ_WORKER_MAX_TRIES="2")
    queues.send(_envelope(ingest_tenant.tenant, "a-unreachable", 1, EXPOSED))
    dead = queues.dead_letters(wait=40)
    assert len(dead) == 1
    assert dead[0]["MessageAttributes"]["lz-error"]["StringValue"] == "failed 2 times"


def test_unchanged_heartbeats_are_coalesced(stack: Stack, ingest_tenant: IngestTenant, ddb: Any,
                                            start_worker: Callable[..., Queues]) -> None:
    """Digest-only heartbeats after an inventory are not recorded again within the keepalive period."""
    queues = start_worker()
    asset = enroll(stack.addresses["ingest"], ingest_tenant).asset_id
    base = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    queues.send(_envelope(ingest_tenant.tenant, asset, 1, EXPOSED, when=base))
    _wait_for(lambda: queues.depth(queues.url) == 0)
    for seq in range(2, 12):
        queues.send(_envelope(ingest_tenant.tenant, asset, seq, when=base + dt.timedelta(seconds=5 * seq)))
    _wait_for(lambda: queues.depth(queues.url) == 0)
    assert store.count_telemetry(ddb, _aws(stack).table_name, ingest_tenant.tenant, asset) == 1


def test_heartbeats_spread_over_every_shard(stack: Stack, ingest_tenant: IngestTenant, ddb: Any,
                                            start_worker: Callable[..., Queues]) -> None:
    """300 recorded heartbeats land on all 10 shards, each where the sharding function puts it."""
    queues = start_worker()
    asset = enroll(stack.addresses["ingest"], ingest_tenant).asset_id
    base = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    for seq in range(1, 301):
        queues.send(_envelope(ingest_tenant.tenant, asset, seq, when=base + dt.timedelta(seconds=seq), dropped=1))
    table = _aws(stack).table_name
    _wait_for(lambda: store.count_telemetry(ddb, table, ingest_tenant.tenant, asset) == 300, wait=60)
    counts = {}
    for shard in range(10):
        got = ddb.query(TableName=table, KeyConditionExpression="PK = :pk", Select="COUNT",
                        ExpressionAttributeValues={":pk": {"S": keys.telemetry_pk(ingest_tenant.tenant, shard)}})
        counts[shard] = got["Count"]
    expected = collections.Counter(keys.shard_of(asset, seq, 10) for seq in range(1, 301))
    assert counts == dict(expected) and min(counts.values()) > 0


def test_alerts_are_listed_newest_first_with_evidence(stack: Stack, ingest_tenant: IngestTenant, ddb: Any,
                                                      start_worker: Callable[..., Queues]) -> None:
    """list_alerts returns WARNING and CRITICAL findings from the sparse index, newest first, page by page."""
    queues = start_worker()
    asset = enroll(stack.addresses["ingest"], ingest_tenant).asset_id
    outbound = common_pb2.Inventory(hostname="ws", engines=[common_pb2.Engine(
        kind="ollama", pid=7, outbound=[common_pb2.OutboundConnection(remote_address="203.0.113.5", remote_port=443)])])
    base = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    queues.send(_envelope(ingest_tenant.tenant, asset, 1, EXPOSED, when=base))
    queues.send(_envelope(ingest_tenant.tenant, asset, 2, outbound, when=base + dt.timedelta(minutes=1)))
    table = _aws(stack).table_name
    _wait_for(lambda: store.count_telemetry(ddb, table, ingest_tenant.tenant, asset) == 2)
    first, cursor = store.list_alerts(ddb, table, ingest_tenant.tenant, "WARNING", asset, "", "", 1, None)
    assert [a.rule_id for a in first] == ["outbound-connection"] and cursor is not None
    second, cursor = store.list_alerts(ddb, table, ingest_tenant.tenant, "WARNING", asset, "", "", 1, cursor)
    assert [a.rule_id for a in second] == ["exposed-listener"]
    assert second[0].evidence["engines"][0]["listen"][0]["port"] == 11434
    assert second[0].to_proto().severity == common_pb2.SEVERITY_CRITICAL
    assert cursor is None
    critical, _ = store.list_alerts(ddb, table, ingest_tenant.tenant, "CRITICAL", "", "", "", 10, None)
    assert [a.rule_id for a in critical] == ["exposed-listener"]


def test_a_poison_heartbeat_in_an_envelope_is_dead_lettered_alone(stack: Stack, ingest_tenant: IngestTenant,
                                                                   ddb: Any,
                                                                   start_worker: Callable[..., Queues]) -> None:
    """Of an envelope with one undecodable heartbeat, only that heartbeat goes to the dead-letter queue."""
    queues = start_worker()
    asset = enroll(stack.addresses["ingest"], ingest_tenant).asset_id
    good = [json.loads(_envelope(ingest_tenant.tenant, asset, seq, dropped=1,
                                 when=dt.datetime(2026, 5, 1, 12, 0, seq, tzinfo=dt.UTC))) for seq in (1, 2)]
    entries = [[ingest_tenant.tenant, asset, 1, 1_767_323_045_000, g["hb"]] for g in good]
    poison = [ingest_tenant.tenant, asset, 1, 1_767_323_045_000, "not base64!"]
    queues.send(domain.encode_batch([entries[0], poison, entries[1]]))
    dead = queues.dead_letters()
    assert [json.loads(m["Body"]) for m in dead] == [{"v": 2, "h": [poison]}]
    table = _aws(stack).table_name
    _wait_for(lambda: store.count_telemetry(ddb, table, ingest_tenant.tenant, asset) == 2)


def test_one_hostile_hostname_does_not_drop_the_other_assets_risk(
    stack: Stack, ingest_tenant: IngestTenant, start_worker: Callable[..., Queues]
) -> None:
    """In one batch, the update whose hostname holds an escape sequence is dropped alone; the other asset's risk is
    recorded."""
    queues = start_worker()
    good, bad = (enroll(stack.addresses["ingest"], ingest_tenant, hostname=h).asset_id for h in ("ws-good", "ws-bad"))
    hostile = common_pb2.Inventory()
    hostile.CopyFrom(EXPOSED)
    hostile.hostname = "ws\x1b]0;pwned\x07"
    entries = []
    for asset, inventory in ((bad, hostile), (good, EXPOSED)):
        hb = ingest_pb2.Heartbeat(seq=1, inventory_digest=digest_of(inventory), inventory=inventory)
        hb.observe_time.FromDatetime(dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC))
        entries.append(domain.batch_entry(ingest_tenant.tenant, asset, 1, int(time.time() * 1000),
                                          hb.SerializeToString()))
    queues.send(domain.encode_batch(entries))
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        stub = assets_pb2_grpc.AssetServiceStub(channel)

        def risk(asset: str) -> int:
            got = stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset), metadata=ingest_tenant.admin(), timeout=10)
            return int(got.asset.risk.max_severity)

        assert _wait_for(lambda: risk(good) == common_pb2.SEVERITY_CRITICAL)
        _wait_for(lambda: queues.depth(queues.url) == 0)
        assert risk(bad) == common_pb2.SEVERITY_UNSPECIFIED
