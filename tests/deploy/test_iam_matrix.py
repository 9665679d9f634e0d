"""Every role x partition x DynamoDB action, decided by evaluating the rendered IAM documents themselves.

The embedded endpoint drops conditions (iam.EMULATOR_GAPS), so this evaluates the AWS documents the way
IAM does for the parts they use: explicit Deny wins, else an Allow must match action, resource and every
condition (ForAllValues/ForAnyValue StringLike and StringNotLike on dynamodb:LeadingKeys, Null). The
expected matrix is written out by hand: a role that gains a write it should not have fails here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.kit import iam

ARNS = iam.Arns.concrete(region="eu-west-1", account="111122223333", table="lz", bucket="lz-seals",
                         queue="lz-heartbeats", dlq="lz-heartbeats-dlq")

PARTITIONS = {
    "registry": "TENANT#acme",
    "auth": "TENANT#acme#AUTH",
    "agents": "TENANT#acme#AGENT_CREDS",
    "ledger": "TENANT#acme#LEDGER",
    "seal": "TENANT#acme#SEAL",
    "telemetry": "TENANT#acme#TELEMETRY#SHARD#3",
}
WRITES = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
          "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete")
READS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")

PUT, UPDATE, DELETE, BATCH = WRITES[:4]
GET, BATCH_GET, QUERY = READS
# role -> partition -> the DynamoDB actions (of WRITES and READS) allowed on the table there; all else denied.
EXPECTED: dict[str, dict[str, set[str]]] = {
    # Assets' grant is `TENANT#*` (IAM cannot single out the bare `TENANT#t`), so it reads every partition;
    # BatchGetItem (#27) reads the connection states of a page of assets from ingest's agent items.
    "assets": {"registry": {PUT, UPDATE, DELETE, GET, BATCH_GET, QUERY},
               "auth": {PUT, UPDATE, DELETE, GET, BATCH_GET, QUERY},
               "ledger": {PUT, GET, BATCH_GET, QUERY}, "agents": {GET, BATCH_GET, QUERY},
               "seal": {GET, BATCH_GET, QUERY}, "telemetry": {GET, BATCH_GET, QUERY}},
    # Query (#27): the health sweep re-judges a tenant's agent versions when its minimum changes.
    "ingest": {"auth": {GET}, "agents": {PUT, UPDATE, GET, BATCH_GET, QUERY}},
    "ledger": {"auth": {GET}, "ledger": {PUT, GET, QUERY}, "seal": {GET, QUERY}},
    "sealer": {"auth": {GET}, "ledger": {GET, QUERY}, "seal": {PUT, GET, QUERY}},
    "risk-worker": {"telemetry": {PUT, BATCH, GET, QUERY}},
}


def _like(pattern: str, value: str) -> bool:
    """IAM StringLike: `*` is any run of characters (`#` included), `?` any one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, values: Any, leading_keys: list[str]) -> bool:
    patterns = _as_list(values)
    if operator == "ForAllValues:StringLike":
        return all(any(_like(p, k) for p in patterns) for k in leading_keys)
    if operator == "ForAnyValue:StringLike":
        return any(any(_like(p, k) for p in patterns) for k in leading_keys)
    if operator == "ForAnyValue:StringNotLike":
        return any(not any(_like(p, k) for p in patterns) for k in leading_keys)
    if operator == "Null":
        return (values == "true") == (not leading_keys)
    raise AssertionError(f"the evaluator does not know {operator}; teach it before using it in iam.py")


def _matches(statement: dict[str, Any], action: str, resource: str, leading_keys: list[str]) -> bool:
    if action not in _as_list(statement["Action"]):
        return False
    if not any(_like(r, resource) for r in _as_list(statement["Resource"])):
        return False
    return all(_condition_holds(operator, values, leading_keys)
               for operator, block in statement.get("Condition", {}).items()
               for key, values in block.items() if key == "dynamodb:LeadingKeys" or operator == "Null")


def allowed(role: str, action: str, partition: str) -> bool:
    """IAM's decision for `role` doing `action` on the table with `partition` as the request's leading key."""
    statements = iam.policy_document(role, ARNS)["Statement"]
    keys = [partition]
    if any(s["Effect"] == "Deny" and _matches(s, action, ARNS.table, keys) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, action, ARNS.table, keys) for s in statements)


@pytest.mark.parametrize("role", iam.SERVICES)
@pytest.mark.parametrize("kind", PARTITIONS)
def test_a_role_may_do_exactly_its_expected_actions_in_each_partition(role: str, kind: str) -> None:
    """The documents allow `role` exactly the expected reads and writes in this partition, and nothing else."""
    granted = {a for a in WRITES + READS if allowed(role, a, PARTITIONS[kind])}
    assert granted == EXPECTED[role].get(kind, set())


@pytest.mark.parametrize("role", iam.SERVICES)
def test_every_role_explicitly_denies_writes_outside_its_partitions(role: str) -> None:
    """A write outside the role's partitions hits an explicit Deny (not just a missing Allow) where IAM can say so."""
    statements = iam.policy_document(role, ARNS)["Statement"]
    owned = {kind for kind, actions in EXPECTED[role].items() if actions & set(WRITES)}
    for kind, partition in PARTITIONS.items():
        if kind in owned or (role == "assets" and kind == "registry"):
            continue
        denied = any(s["Effect"] == "Deny" and _matches(s, PUT, ARNS.table, [partition]) for s in statements)
        assert denied, f"{role} has no explicit Deny of PutItem in {kind}"


def test_only_assets_may_write_tokens_and_tenant_metadata() -> None:
    """No role but assets can put, update or delete anything in an AUTH partition (tokens, tenant metadata)."""
    writers = {role for role in iam.SERVICES for action in WRITES if allowed(role, action, PARTITIONS["auth"])}
    assert writers == {"assets"}


def test_only_ingest_may_write_agent_credentials() -> None:
    """No role but ingest can write an AGENTS partition (agent credentials)."""
    writers = {role for role in iam.SERVICES for action in WRITES if allowed(role, action, PARTITIONS["agents"])}
    assert writers == {"ingest"}


def test_a_scan_is_allowed_to_no_role() -> None:
    """A request without leading keys (a Scan or a Query on the table without a key) is allowed to no role."""
    for role in iam.SERVICES:
        statements = iam.policy_document(role, ARNS)["Statement"]
        assert not any(s["Effect"] == "Allow" and _matches(s, GET, ARNS.table, []) for s in statements)
