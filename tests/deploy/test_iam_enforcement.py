"""Each role's policy, bound to its own credentials on an embedded endpoint that enforces IAM."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from services.kit import iam
from tests.deploy.conftest import Enforced, assert_denied


def _tenant() -> str:
    return f"t-{secrets.token_hex(4)}"


def _ledger_item(tenant: str, seq: int = 1) -> dict[str, Any]:
    return {"PK": {"S": f"TENANT#{tenant}#LEDGER"}, "SK": {"S": f"EVENT#{seq:020d}"}, "hash": {"S": "00" * 32}}


def _ledger_key(tenant: str, seq: int = 1) -> dict[str, Any]:
    return {"PK": {"S": f"TENANT#{tenant}#LEDGER"}, "SK": {"S": f"EVENT#{seq:020d}"}}


def _seeded_ledger_event(enforced: Enforced) -> str:
    tenant = _tenant()
    enforced.client("admin", "dynamodb").put_item(TableName=enforced.resources.table_name, Item=_ledger_item(tenant))
    return tenant


def _seeded_seal(enforced: Enforced) -> str:
    key = f"{_tenant()}/checkpoint/00000000000000000001"
    enforced.client("sealer", "s3").put_object(Bucket=enforced.resources.bucket_name, Key=key, Body=b"checkpoint")
    return key


@pytest.mark.parametrize("role", iam.SERVICES)
def test_every_role_describes_the_table_for_readiness(enforced: Enforced, role: str) -> None:
    """Every role may describe the table, which is how a service reports readiness."""
    table = enforced.client(role, "dynamodb").describe_table(TableName=enforced.resources.table_name)
    assert table["Table"]["TableName"] == enforced.resources.table_name


@pytest.mark.parametrize("role", iam.SERVICES)
def test_no_role_deletes_the_table(enforced: Enforced, role: str) -> None:
    """No role may delete the table."""
    assert_denied(enforced.client(role, "dynamodb").delete_table, TableName=enforced.resources.table_name)


def test_unbound_credentials_are_refused(enforced: Enforced) -> None:
    """Credentials that no IAM user owns are refused, so enforcement is on."""
    import boto3
    import botocore.exceptions

    client = boto3.client("dynamodb", endpoint_url=enforced.resources.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="embedded", aws_secret_access_key="embedded")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.describe_table(TableName=enforced.resources.table_name)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_ledger_appends_and_reads_events(enforced: Enforced) -> None:
    """The ledger role puts an event conditionally, gets it and queries its partition."""
    ddb, table, tenant = enforced.client("ledger", "dynamodb"), enforced.resources.table_name, _tenant()
    ddb.put_item(TableName=table, Item=_ledger_item(tenant), ConditionExpression="attribute_not_exists(SK)")
    assert "Item" in ddb.get_item(TableName=table, Key=_ledger_key(tenant), ConsistentRead=True)
    got = ddb.query(TableName=table, KeyConditionExpression="PK = :pk",
                    ExpressionAttributeValues={":pk": {"S": f"TENANT#{tenant}#LEDGER"}})
    assert got["Count"] == 1


def test_ledger_group_commit_is_a_transaction_of_puts(enforced: Enforced) -> None:
    """The ledger role commits several events in one TransactWriteItems of conditional puts."""
    ddb, table, tenant = enforced.client("ledger", "dynamodb"), enforced.resources.table_name, _tenant()
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": _ledger_item(tenant, seq),
                 "ConditionExpression": "attribute_not_exists(SK)"}}
        for seq in (1, 2, 3)
    ])
    assert "Item" in ddb.get_item(TableName=table, Key=_ledger_key(tenant, 3))


def test_ledger_cannot_delete_an_event(enforced: Enforced) -> None:
    """The ledger role's DeleteItem on a ledger event is refused with AccessDenied."""
    tenant = _seeded_ledger_event(enforced)
    assert_denied(enforced.client("ledger", "dynamodb").delete_item,
                  TableName=enforced.resources.table_name, Key=_ledger_key(tenant))


def test_ledger_cannot_update_an_event(enforced: Enforced) -> None:
    """The ledger role's UpdateItem on a ledger event is refused with AccessDenied."""
    tenant = _seeded_ledger_event(enforced)
    assert_denied(enforced.client("ledger", "dynamodb").update_item,
                  TableName=enforced.resources.table_name, Key=_ledger_key(tenant),
                  UpdateExpression="SET #h = :h", ExpressionAttributeNames={"#h": "hash"},
                  ExpressionAttributeValues={":h": {"S": "ff" * 32}})


def test_ledger_cannot_batch_delete_events(enforced: Enforced) -> None:
    """The ledger role's BatchWriteItem (which can delete) is refused with AccessDenied."""
    tenant = _seeded_ledger_event(enforced)
    assert_denied(enforced.client("ledger", "dynamodb").batch_write_item, RequestItems={
        enforced.resources.table_name: [{"DeleteRequest": {"Key": _ledger_key(tenant)}}]})


def test_ledger_cannot_scan_the_table(enforced: Enforced) -> None:
    """The ledger role cannot scan the table."""
    assert_denied(enforced.client("ledger", "dynamodb").scan, TableName=enforced.resources.table_name)


def test_ledger_cannot_touch_the_seal_bucket(enforced: Enforced) -> None:
    """The ledger role cannot write to the seal bucket."""
    assert_denied(enforced.client("ledger", "s3").put_object, Bucket=enforced.resources.bucket_name,
                  Key=f"{_tenant()}/checkpoint/1", Body=b"x")


def test_sealer_writes_and_reads_a_seal_by_version(enforced: Enforced) -> None:
    """The sealer puts a checkpoint object and reads it back by version id."""
    s3, bucket, key = enforced.client("sealer", "s3"), enforced.resources.bucket_name, f"{_tenant()}/checkpoint/1"
    version = s3.put_object(Bucket=bucket, Key=key, Body=b"signed checkpoint")["VersionId"]
    got = s3.get_object(Bucket=bucket, Key=key, VersionId=version)
    assert got["Body"].read() == b"signed checkpoint"


def test_sealer_writes_tiles_and_the_verifier_key(enforced: Enforced) -> None:
    """The sealer puts tiles and the tenant's verifier key."""
    s3, bucket, tenant = enforced.client("sealer", "s3"), enforced.resources.bucket_name, _tenant()
    s3.put_object(Bucket=bucket, Key=f"{tenant}/tile/0/000", Body=b"tile")
    s3.put_object(Bucket=bucket, Key=f"{tenant}/verifier.key", Body=b"key")


def test_sealer_cannot_write_outside_the_seal_prefixes(enforced: Enforced) -> None:
    """The sealer cannot put an object outside `<tenant>/checkpoint|tile/` and `<tenant>/verifier.key`."""
    assert_denied(enforced.client("sealer", "s3").put_object, Bucket=enforced.resources.bucket_name,
                  Key=f"{_tenant()}/other/1", Body=b"x")


def test_sealer_cannot_delete_a_seal(enforced: Enforced) -> None:
    """The sealer's DeleteObject on a seal (which would hide it behind a delete marker) is refused."""
    key = _seeded_seal(enforced)
    assert_denied(enforced.client("sealer", "s3").delete_object, Bucket=enforced.resources.bucket_name, Key=key)


def test_sealer_cannot_delete_a_seal_version(enforced: Enforced) -> None:
    """The sealer's DeleteObject of a specific seal version is refused."""
    key = _seeded_seal(enforced)
    s3 = enforced.client("admin", "s3")
    version = s3.head_object(Bucket=enforced.resources.bucket_name, Key=key)["VersionId"]
    assert_denied(enforced.client("sealer", "s3").delete_object, Bucket=enforced.resources.bucket_name,
                  Key=key, VersionId=version)


def test_sealer_cannot_change_the_object_lock_configuration(enforced: Enforced) -> None:
    """The sealer cannot change the bucket's default retention."""
    assert_denied(enforced.client("sealer", "s3").put_object_lock_configuration,
                  Bucket=enforced.resources.bucket_name,
                  ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                           "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})


def test_sealer_reads_the_ledger_and_writes_checkpoints(enforced: Enforced) -> None:
    """The sealer queries a ledger partition and puts a checkpoint item."""
    tenant = _seeded_ledger_event(enforced)
    ddb, table = enforced.client("sealer", "dynamodb"), enforced.resources.table_name
    got = ddb.query(TableName=table, KeyConditionExpression="PK = :pk",
                    ExpressionAttributeValues={":pk": {"S": f"TENANT#{tenant}#LEDGER"}})
    assert got["Count"] == 1
    ddb.put_item(TableName=table, Item={"PK": {"S": f"TENANT#{tenant}#SEAL"}, "SK": {"S": f"CHECKPOINT#{1:020d}"}},
                 ConditionExpression="attribute_not_exists(SK)")


def test_sealer_cannot_update_an_event(enforced: Enforced) -> None:
    """The sealer's UpdateItem on a ledger event is refused."""
    tenant = _seeded_ledger_event(enforced)
    assert_denied(enforced.client("sealer", "dynamodb").update_item,
                  TableName=enforced.resources.table_name, Key=_ledger_key(tenant),
                  UpdateExpression="SET #h = :h", ExpressionAttributeNames={"#h": "hash"},
                  ExpressionAttributeValues={":h": {"S": "ff" * 32}})


def test_assets_isolation_commits_state_and_custody_event_together(enforced: Enforced) -> None:
    """Assets updates an asset and puts its custody event in one transaction."""
    ddb, table, tenant = enforced.client("assets", "dynamodb"), enforced.resources.table_name, _tenant()
    asset_key = {"PK": {"S": f"TENANT#{tenant}"}, "SK": {"S": "ASSET#a1"}}
    ddb.put_item(TableName=table, Item={**asset_key, "state": {"S": "ACTIVE"}})
    ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": table, "Key": asset_key, "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ExpressionAttributeValues": {":s": {"S": "ISOLATING"}}}},
        {"Put": {"TableName": table, "Item": _ledger_item(tenant), "ConditionExpression": "attribute_not_exists(SK)"}},
    ])
    assert enforced.client("ledger", "dynamodb").get_item(TableName=table, Key=_ledger_key(tenant))["Item"]


def test_assets_cannot_consume_the_queue(enforced: Enforced) -> None:
    """Assets cannot receive from the heartbeat queue."""
    assert_denied(enforced.client("assets", "sqs").receive_message, QueueUrl=enforced.resources.queue_url)


def test_ingest_sends_heartbeats_to_the_queue(enforced: Enforced) -> None:
    """Ingest sends a message to the heartbeat queue."""
    sent = enforced.client("ingest", "sqs").send_message(QueueUrl=enforced.resources.queue_url, MessageBody="{}")
    assert sent["MessageId"]


def test_ingest_cannot_consume_the_queue(enforced: Enforced) -> None:
    """Ingest cannot receive from the heartbeat queue; that is the worker's."""
    assert_denied(enforced.client("ingest", "sqs").receive_message, QueueUrl=enforced.resources.queue_url)


def test_ingest_cannot_send_to_the_dead_letter_queue(enforced: Enforced) -> None:
    """Ingest's queue grant names the heartbeat queue only, not the dead-letter queue."""
    assert_denied(enforced.client("ingest", "sqs").send_message, QueueUrl=enforced.resources.dlq_url,
                  MessageBody="{}")


def test_ingest_records_an_agent_credential(enforced: Enforced) -> None:
    """Ingest puts and reads an agent credential item."""
    ddb, table, tenant = enforced.client("ingest", "dynamodb"), enforced.resources.table_name, _tenant()
    key = {"PK": {"S": f"TENANT#{tenant}#AGENT_CREDS"}, "SK": {"S": "AGENT#a1"}}
    ddb.put_item(TableName=table, Item={**key, "secret_sha256": {"S": "00" * 32}})
    assert "Item" in ddb.get_item(TableName=table, Key=key)


def test_worker_consumes_the_queue(enforced: Enforced) -> None:
    """The risk worker receives and deletes heartbeat messages."""
    queue = enforced.resources.queue_url
    enforced.client("ingest", "sqs").send_message(QueueUrl=queue, MessageBody="{}")
    sqs = enforced.client("risk-worker", "sqs")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert messages
    for message in messages:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_worker_writes_telemetry(enforced: Enforced) -> None:
    """The risk worker puts telemetry items in a batch."""
    tenant = _tenant()
    enforced.client("risk-worker", "dynamodb").batch_write_item(RequestItems={enforced.resources.table_name: [
        {"PutRequest": {"Item": {"PK": {"S": f"TENANT#{tenant}#TELEMETRY#SHARD#{k}"},
                                 "SK": {"S": f"TELEMETRY#a1#2025-01-01T00:00:00Z#{k}"}}}} for k in range(3)]})


def test_worker_cannot_write_to_the_queue(enforced: Enforced) -> None:
    """The risk worker cannot send heartbeats; that is ingest's."""
    assert_denied(enforced.client("risk-worker", "sqs").send_message, QueueUrl=enforced.resources.queue_url,
                  MessageBody="{}")


def test_worker_cannot_update_items(enforced: Enforced) -> None:
    """The risk worker cannot update items (assets' state changes go through the assets service)."""
    assert_denied(enforced.client("risk-worker", "dynamodb").update_item,
                  TableName=enforced.resources.table_name,
                  Key={"PK": {"S": f"TENANT#{_tenant()}"}, "SK": {"S": "ASSET#a1"}},
                  UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "state"},
                  ExpressionAttributeValues={":s": {"S": "RELEASED"}})


def test_ledger_reads_a_seal_by_version(enforced: Enforced) -> None:
    """The ledger role reads a seal object by version id and lists its versions, for proofs and verification."""
    key = _seeded_seal(enforced)
    bucket = enforced.resources.bucket_name
    s3 = enforced.client("ledger", "s3")
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert s3.get_object(Bucket=bucket, Key=key, VersionId=versions[0]["VersionId"])["Body"].read() == b"checkpoint"


def test_worker_dead_letters_a_message(enforced: Enforced) -> None:
    """The risk worker sends an unprocessable message to the dead-letter queue."""
    sent = enforced.client("risk-worker", "sqs").send_message(QueueUrl=enforced.resources.dlq_url, MessageBody="{}")
    assert sent["MessageId"]
