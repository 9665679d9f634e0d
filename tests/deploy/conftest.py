"""Fixtures of the deploy tests: rendered overlays, and an embedded AWS endpoint that enforces IAM."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import yaml

from services.kit import embedded, iam

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = ("local", "aws")
# What each overlay's render is: kind's overlay, and for aws the example site (the aws Component with
# example stack outputs), which README step 4 copies.
OVERLAY_PATHS = {"local": REPO / "deploy" / "k8s" / "overlays" / "local", "aws": REPO / "deploy" / "site-example"}
ACCOUNT = "123456789012"  # moto's default account
# Calls moto answers without authentication: enough for provisioning and the IAM setup; the rest
# are spent by `_spend_free_calls` so that every call the tests make is checked.
FREE_CALLS = 120


def render_overlay(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is required to render deploy/k8s (apt-get install kubectl); see docs/DEPLOY.md")
    out = subprocess.run([kubectl, "kustomize", str(OVERLAY_PATHS[overlay])],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay rendered once with `kubectl kustomize`."""
    return {overlay: render_overlay(overlay) for overlay in OVERLAYS}


@dataclass
class Enforced:
    """An embedded endpoint with IAM enforcement on, and a boto3 session per role plus an admin."""

    resources: embedded.Resources
    sessions: dict[str, boto3.session.Session]

    def client(self, role: str, service: str) -> Any:
        return self.sessions[role].client(service, endpoint_url=self.resources.endpoint_url,
                                          region_name=self.resources.region)


def arns_for(resources: embedded.Resources) -> iam.Arns:
    return iam.Arns.concrete(region=resources.region, account=ACCOUNT, table=resources.table_name,
                             bucket=resources.bucket_name, queue=resources.queue_url.rsplit("/", 1)[1],
                             dlq=resources.dlq_url.rsplit("/", 1)[1])


def _user(iam_client: Any, name: str, document: dict[str, Any], region: str) -> boto3.session.Session:
    iam_client.create_user(UserName=name)
    iam_client.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(document))
    key = iam_client.create_access_key(UserName=name)["AccessKey"]
    return boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                                 region_name=region)


def _spend_free_calls(url: str, limit: int) -> None:
    client = boto3.client("iam", endpoint_url=url, region_name=embedded.REGION,
                          aws_access_key_id="embedded", aws_secret_access_key="embedded")
    for _ in range(limit):
        try:
            client.list_users()
        except botocore.exceptions.ClientError:
            return  # the unauthenticated calls are spent: moto now checks every call
    raise RuntimeError("moto never started enforcing IAM")


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Enforced]:
    """Provisioned resources, one IAM user per role bound to its policy, then IAM enforced on every call."""
    log = tmp_path_factory.mktemp("iam") / "embedded-aws.log"
    proc, url = embedded.start_endpoint(iam_after_calls=FREE_CALLS, log_file=log)
    try:
        resources = embedded.provision(url)
        iam_client = boto3.client("iam", endpoint_url=url, region_name=resources.region,
                                  aws_access_key_id="embedded", aws_secret_access_key="embedded")
        arns = arns_for(resources)
        sessions = {role: _user(iam_client, role, iam.emulator_document(role, arns), resources.region)
                    for role in iam.SERVICES}
        admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        sessions["admin"] = _user(iam_client, "admin", admin, resources.region)
        _spend_free_calls(url, FREE_CALLS)
        yield Enforced(resources, sessions)
    finally:
        proc.terminate()
        proc.wait(10)


def assert_denied(call: Any, *args: Any, **kwargs: Any) -> None:
    """The call is refused by IAM (moto answers DynamoDB's refusals as an XML 403 AccessDenied)."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(*args, **kwargs)
    response = info.value.response
    error = response.get("Error", {})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403, response
    assert "AccessDenied" in f"{error.get('Code', '')} {error.get('Message', '')}", response
