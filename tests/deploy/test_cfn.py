"""The CloudFormation template: generated from the definitions, lint-clean, and the same as the embedded stack."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

from services.kit import embedded, iam
from services.kit import table as table_def
from tests.deploy.conftest import REPO

TEMPLATE = REPO / "deploy" / "aws" / "lifecyclezero.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    return loaded


def test_committed_template_matches_the_generator() -> None:
    """Regenerating the template gives exactly the committed file (run `make deploy-render`)."""
    fresh = subprocess.run([sys.executable, "-m", "deploy.aws.render"], cwd=REPO, check=True,
                           capture_output=True, text=True, timeout=60).stdout
    assert fresh == TEMPLATE.read_text()


def test_template_passes_cfn_lint() -> None:
    """cfn-lint reports nothing on the template."""
    cfn_lint = shutil.which("cfn-lint", path=str(REPO / ".venv" / "bin")) or shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is a dev dependency"
    result = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_table_matches_the_table_definition(template: dict[str, Any]) -> None:
    """The template's table has the keys, indexes, stream and TTL of services/kit/table.py."""
    props = template["Resources"]["Table"]["Properties"]
    definition = table_def.table_definition("x")
    for field in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"):
        assert props[field] == definition[field]
    assert props["StreamSpecification"] == {"StreamViewType": "KEYS_ONLY"}
    assert props["TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": table_def.TTL_ATTRIBUTE}


def test_table_has_point_in_time_recovery_and_is_retained(template: dict[str, Any]) -> None:
    """The table keeps point-in-time recovery, deletion protection and is retained when the stack goes."""
    table = template["Resources"]["Table"]
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["Properties"]["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


def test_table_matches_the_embedded_stack(template: dict[str, Any], embedded_aws: embedded.Resources,
                                          ddb: Any) -> None:
    """The embedded stack's live table has the template's keys, indexes, stream view and TTL attribute."""
    props = template["Resources"]["Table"]["Properties"]
    live = ddb.describe_table(TableName=embedded_aws.table_name)["Table"]
    assert live["KeySchema"] == props["KeySchema"]
    assert sorted(live["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        props["AttributeDefinitions"], key=lambda a: a["AttributeName"])
    live_indexes = {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in live["GlobalSecondaryIndexes"]}
    assert live_indexes == {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in props["GlobalSecondaryIndexes"]}
    assert live["StreamSpecification"]["StreamViewType"] == props["StreamSpecification"]["StreamViewType"]
    ttl = ddb.describe_time_to_live(TableName=embedded_aws.table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]


def test_queue_matches_the_embedded_stack(template: dict[str, Any], embedded_aws: embedded.Resources,
                                          aws_settings: Any) -> None:
    """The template's queue has the embedded queue's visibility timeout and redrive count."""
    from services.kit import aws

    attributes = aws.client(aws_settings, "sqs").get_queue_attributes(
        QueueUrl=embedded_aws.queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"])["Attributes"]
    props = template["Resources"]["Queue"]["Properties"]
    assert props["VisibilityTimeout"] == int(attributes["VisibilityTimeout"])
    assert props["RedrivePolicy"]["maxReceiveCount"] == int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])


def test_bucket_is_object_locked_in_compliance_mode(template: dict[str, Any]) -> None:
    """The seal bucket has Object Lock with COMPLIANCE default retention, versioning and no public access."""
    props = template["Resources"]["SealBucket"]["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())


def test_bucket_policy_is_the_generated_one(template: dict[str, Any]) -> None:
    """The template's bucket policy is services/kit/iam.py's, with ARNs substituted by CloudFormation."""
    document = template["Resources"]["SealBucketPolicy"]["Properties"]["PolicyDocument"]
    sids = [s["Sid"] for s in document["Statement"]]
    assert sids == [s["Sid"] for s in iam.bucket_policy(iam.Arns.cloudformation())["Statement"]]


@pytest.mark.parametrize("service", iam.SERVICES)
def test_each_role_carries_its_generated_policy(template: dict[str, Any], service: str) -> None:
    """Each service's role holds exactly the statements iam.policy_document defines for it."""
    from deploy.aws import render

    role = template["Resources"][render.ROLE_LOGICAL_IDS[service]]["Properties"]
    document = role["Policies"][0]["PolicyDocument"]
    expected = iam.policy_document(service, iam.Arns.cloudformation())
    assert [s["Sid"] for s in document["Statement"]] == [s["Sid"] for s in expected["Statement"]]
    assert [s["Action"] for s in document["Statement"]] == [s["Action"] for s in expected["Statement"]]


@pytest.mark.parametrize("service", iam.SERVICES)
def test_each_role_trusts_only_its_service_account(template: dict[str, Any], service: str) -> None:
    """Each role may be assumed only by its own ServiceAccount through the cluster's OIDC provider."""
    from deploy.aws import render

    role = template["Resources"][render.ROLE_LOGICAL_IDS[service]]["Properties"]
    text, variables = role["AssumeRolePolicyDocument"]["Fn::Sub"]
    trust = json.loads(text)["Statement"][0]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"]["StringEquals"] == {
        "${Issuer}:aud": "sts.amazonaws.com",
        "${Issuer}:sub": f"system:serviceaccount:${{Namespace}}:lz-{service}",
    }
    assert "Issuer" in variables
