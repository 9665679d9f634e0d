"""The embedded AWS endpoint: moto in server mode on loopback, started and provisioned by the project.

The server is `services.kit.moto_endpoint` (moto's app with DynamoDB requests serialised, because moto
does not isolate concurrent transactions the way DynamoDB does).

Local runs and tests use the same boto3 calls as production against this endpoint. It holds the one
table, the seal bucket (Object Lock, COMPLIANCE default retention, versioning), and the heartbeat
queue with its dead-letter queue. With `iam=True` moto enforces IAM on every call after the
provisioning calls, for the tests that prove least privilege.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from services.kit import table as table_def
from services.kit.aws import client
from services.kit.settings import AwsSettings

EMBEDDED_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "embedded", "AWS_SECRET_ACCESS_KEY": "embedded"}
REGION = "us-east-1"


@dataclass(frozen=True)
class Resources:
    endpoint_url: str
    region: str
    table_name: str
    bucket_name: str
    queue_url: str
    dlq_url: str
    retention_days: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_endpoint(port: int = 0, *, iam_after_calls: int | None = None, log_file: Path | None = None) -> tuple[
    subprocess.Popen[bytes], str
]:
    """Start moto server on loopback and wait until it answers; returns the process and its URL."""
    port = port or free_port()
    env = {**os.environ, **EMBEDDED_CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "MOTO_PORT": str(port)}
    if iam_after_calls is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(iam_after_calls)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.kit.moto_endpoint", "127.0.0.1", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, proc)
    return proc, url


def wait_until_up(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"embedded AWS exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 - loopback URL we made
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"embedded AWS did not answer at {url} within {timeout:.0f}s")


def provision(
    endpoint_url: str,
    *,
    table_name: str = "lifecyclezero",
    bucket_name: str = "lifecyclezero-seals",
    queue_name: str = "lifecyclezero-heartbeats",
    retention_days: int = 1,
    max_receive_count: int = 5,
) -> Resources:
    """Create the table, the Object Lock bucket and the queues (idempotent)."""
    for key, value in EMBEDDED_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    aws = AwsSettings(endpoint_url=endpoint_url, region=REGION, table_name=table_name)
    ddb = client(aws, "dynamodb")
    table_def.create_table(ddb, table_name)
    s3 = client(aws, "s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket=bucket_name, ObjectLockEnabledForBucket=True)
    s3.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(
        Bucket=bucket_name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": retention_days}},
        },
    )
    sqs = client(aws, "sqs")
    dlq_url = sqs.create_queue(QueueName=f"{queue_name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=queue_name,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    return Resources(endpoint_url, REGION, table_name, bucket_name, queue_url, dlq_url, retention_days)


def resources_env(resources: Resources) -> dict[str, str]:
    """The environment a service process needs to use these resources."""
    return {
        **EMBEDDED_CREDENTIALS,
        "AWS_REGION": resources.region,
        "AWS_DEFAULT_REGION": resources.region,
        "LZ_AWS_ENDPOINT_URL": resources.endpoint_url,
        "LZ_TABLE_NAME": resources.table_name,
        "LZ_BUCKET_NAME": resources.bucket_name,
        "LZ_QUEUE_URL": resources.queue_url,
        "LZ_DLQ_URL": resources.dlq_url,
        "LZ_SEAL_RETENTION_DAYS": str(resources.retention_days),
    }


def as_dict(resources: Resources) -> dict[str, Any]:
    return asdict(resources)


EMBEDDED_ACCOUNT = "123456789012"


def least_privilege_credentials(resources: Resources) -> dict[str, dict[str, str]]:
    """One IAM user per service, bound to that service's policy as the emulator can enforce it.

    Returns each process's AWS credentials, for an endpoint started with `iam_after_calls`; the caller
    then spends the remaining unauthenticated calls (`start_enforcing`) so every later call is checked.
    """
    from services.kit import iam

    admin = client(AwsSettings(table_name=resources.table_name, endpoint_url=resources.endpoint_url,
                               region=resources.region), "iam")
    arns = iam.Arns.concrete(region=resources.region, account=EMBEDDED_ACCOUNT, table=resources.table_name,
                             bucket=resources.bucket_name, queue=resources.queue_url.rsplit("/", 1)[1],
                             dlq=resources.dlq_url.rsplit("/", 1)[1])
    credentials: dict[str, dict[str, str]] = {}
    for service in iam.SERVICES:
        admin.create_user(UserName=f"lz-{service}")
        admin.put_user_policy(UserName=f"lz-{service}", PolicyName=f"lz-{service}",
                              PolicyDocument=json.dumps(iam.emulator_document(service, arns)))
        key = admin.create_access_key(UserName=f"lz-{service}")["AccessKey"]
        credentials[service] = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    return credentials


def start_enforcing(resources: Resources, limit: int) -> None:
    """Spend the endpoint's remaining unauthenticated calls, so that IAM checks every call after this."""
    probe = client(AwsSettings(table_name=resources.table_name, endpoint_url=resources.endpoint_url,
                               region=resources.region), "iam", retries={"max_attempts": 1})
    for _ in range(limit):
        try:
            probe.list_users()
        except botocore.exceptions.ClientError:
            return
    raise RuntimeError("the embedded endpoint never started enforcing IAM")
