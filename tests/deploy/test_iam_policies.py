"""The IAM documents themselves: the conditions the embedded endpoint cannot evaluate are present and right."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.kit import iam
from tests.deploy.conftest import REPO

ARNS = iam.Arns.concrete(region="eu-west-1", account="111122223333", table="lz", bucket="lz-seals",
                         queue="lz-heartbeats", dlq="lz-heartbeats-dlq")
LEDGER_UPDATE_AND_DELETE = {"dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def _like(pattern: str, value: str) -> bool:
    """IAM StringLike: `*` is any run of characters, `?` any one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _statements(service: str) -> list[dict[str, Any]]:
    return list(iam.policy_document(service, ARNS)["Statement"])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _by_sid(service: str, sid: str) -> dict[str, Any]:
    return next(s for s in _statements(service) if s["Sid"] == sid)


@pytest.mark.parametrize("service", iam.SERVICES)
def test_every_role_denies_update_and_delete_on_ledger_partitions(service: str) -> None:
    """Every role carries an explicit Deny of UpdateItem and DeleteItem whenever a key is a ledger partition."""
    deny = _by_sid(service, "DenyLedgerRewrite")
    assert deny["Effect"] == "Deny"
    assert set(deny["Action"]) >= LEDGER_UPDATE_AND_DELETE
    assert deny["Resource"] == ARNS.table
    assert deny["Condition"] == {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["TENANT#*#LEDGER"]}}


def test_ledger_partition_pattern_matches_ledger_partitions_only() -> None:
    """`TENANT#*#LEDGER` matches every tenant's ledger partition and no other entity's partition."""
    assert _like(iam.LEDGER_PARTITIONS, "TENANT#acme-1#LEDGER")
    for other in ("TENANT#acme-1", "TENANT#acme-1#SEAL", "TENANT#acme-1#TELEMETRY#SHARD#3", "TENANT#acme-1#LEDGERX"):
        assert not _like(iam.LEDGER_PARTITIONS, other)


def test_ledger_role_grants_only_put_and_read() -> None:
    """The ledger role may put and read items and only read seal objects; nothing changes or removes anything."""
    assert iam.allowed_actions("ledger") == {
        "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
        "dynamodb:ConditionCheckItem",
        "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:ListBucket", "s3:ListBucketVersions",
    }


def test_ledger_writes_are_confined_to_ledger_partitions() -> None:
    """The ledger role's put is allowed only when every partition key is a ledger partition."""
    grant = _by_sid("ledger", "LedgerAppendAndRead")
    assert grant["Resource"] == ARNS.table
    assert grant["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["TENANT#*#LEDGER"]}


@pytest.mark.parametrize("service", iam.SERVICES)
def test_leading_key_allows_require_the_key(service: str) -> None:
    """Every Allow scoped by leading keys also demands the key be present, so it never admits a Scan."""
    for statement in _statements(service):
        condition = statement.get("Condition", {})
        if statement["Effect"] == "Allow" and "ForAllValues:StringLike" in condition:
            assert condition["Null"] == {"dynamodb:LeadingKeys": "false"}


@pytest.mark.parametrize("service", iam.SERVICES)
def test_no_role_scans_or_uses_wildcard_actions(service: str) -> None:
    """No role is granted Scan, PartiQL or a wildcard action."""
    for action in iam.allowed_actions(service):
        assert "*" not in action
        assert action not in {"dynamodb:Scan"} and not action.startswith("dynamodb:PartiQL")


@pytest.mark.parametrize("service", iam.SERVICES)
def test_no_role_deletes_or_weakens_seals(service: str) -> None:
    """No role is allowed, and every role is explicitly denied, deleting seals or changing their retention."""
    forbidden = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:BypassGovernanceRetention"}
    assert not forbidden & iam.allowed_actions(service)
    deny = _by_sid(service, "DenySealTampering")
    assert set(deny["Action"]) >= forbidden
    assert set(_as_list(deny["Resource"])) == {ARNS.bucket, ARNS.bucket + "/*"}
    assert "Condition" not in deny


def test_sealer_puts_require_if_none_match() -> None:
    """The sealer may put checkpoints and tiles only with `If-None-Match: *`."""
    grant = _by_sid("sealer", "WriteSealsOnce")
    assert grant["Condition"] == {"StringEquals": {"s3:if-none-match": "*"}}
    assert set(_as_list(grant["Resource"])) == {f"{ARNS.bucket}/*/checkpoint/*", f"{ARNS.bucket}/*/tile/*"}


def test_sealer_writes_only_checkpoint_partitions() -> None:
    """The sealer's item writes are confined to checkpoint partitions."""
    grant = _by_sid("sealer", "WriteCheckpoints")
    assert grant["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["TENANT#*#SEAL"]}


def test_assets_may_not_write_agent_seal_or_telemetry_partitions() -> None:
    """Assets, whose grant spans every tenant partition, is denied writes to agent, seal and telemetry partitions."""
    deny = _by_sid("assets", "DenyForeignPartitionWrites")
    assert "dynamodb:PutItem" in deny["Action"]
    assert deny["Condition"]["ForAnyValue:StringLike"]["dynamodb:LeadingKeys"] == [
        iam.AGENT_PARTITIONS, iam.SEAL_PARTITIONS, iam.TELEMETRY_PARTITIONS]


def test_ingest_may_write_nothing_but_agent_credentials() -> None:
    """Ingest is denied any write whose partition key is not an agent-credential partition."""
    deny = _by_sid("ingest", "DenyWritesOutsideOwnPartitions")
    assert "dynamodb:PutItem" in deny["Action"]
    assert deny["Condition"] == {"ForAnyValue:StringNotLike": {"dynamodb:LeadingKeys": [iam.AGENT_PARTITIONS]}}


def test_bucket_policy_refuses_puts_without_if_none_match() -> None:
    """The bucket policy denies every checkpoint or tile put that lacks If-None-Match, so none is overwritten."""
    statement = next(s for s in iam.bucket_policy(ARNS)["Statement"] if s["Sid"] == "DenyOverwritingKeys")
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"] == [f"{ARNS.bucket}/*/checkpoint/*", f"{ARNS.bucket}/*/tile/*"]
    assert statement["Condition"] == {"Null": {"s3:if-none-match": "true"}}


def test_bucket_policy_denies_deletion_to_everyone() -> None:
    """The bucket policy denies deleting objects and changing retention to every principal, without exception."""
    statement = next(s for s in iam.bucket_policy(ARNS)["Statement"] if s["Sid"] == "DenyDeletionAndRetentionChanges")
    assert statement["Principal"] == "*" and "Condition" not in statement
    assert set(statement["Action"]) == {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
                                        "s3:BypassGovernanceRetention"}


@pytest.mark.parametrize("service", iam.SERVICES)
def test_emulator_projection_keeps_every_allow_and_unconditional_deny(service: str) -> None:
    """The emulator's document has every Allow's actions and every unconditional Deny of the AWS document."""
    projected = {s["Sid"]: s for s in iam.emulator_document(service, ARNS)["Statement"]}
    for statement in _statements(service):
        if statement["Effect"] == "Deny" and "Condition" in statement:
            assert statement["Sid"] not in projected
            continue
        assert set(statement["Action"]) <= set(projected[statement["Sid"]]["Action"])
        assert "Condition" not in projected[statement["Sid"]]


def test_deploy_doc_lists_the_current_grants() -> None:
    """docs/DEPLOY.md shows the grants exactly as services/kit/iam.py defines them."""
    assert iam.markdown_table() in (REPO / "docs" / "DEPLOY.md").read_text()
