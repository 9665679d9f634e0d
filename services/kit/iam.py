"""Least-privilege IAM for every process: one definition, rendered for AWS and for the embedded endpoint.

`GRANTS` says, per service, which actions it may take on which resources and under which
conditions. `policy_document` renders it as an IAM policy for real AWS (resource ARNs and
`dynamodb:LeadingKeys` conditions); the CloudFormation template, the tests and docs/DEPLOY.md all
use it. `emulator_document` renders the same grants as the embedded endpoint (moto) can enforce
them; what that projection leaves out is listed beside it and checked by policy-document tests.

Partitions (DESIGN.md, "The one table"): IAM sees only a request's partition keys
(`dynamodb:LeadingKeys`), never its sort keys, so every entity that needs its own writer has a
partition of its own, and a grant names partition patterns:

| partition                     | holds                                          | written by |
|-------------------------------|------------------------------------------------|------------|
| `TENANT#t`                    | the registry: assets and commands              | assets |
| `TENANT#t#AUTH`               | operator tokens, tenant metadata, re-enrollment approvals | assets |
| `TENANT#t#AGENT_CREDS`             | agent credentials                              | ingest |
| `TENANT#t#LEDGER`             | the custody ledger (put only, never rewritten) | ledger, assets |
| `TENANT#t#SEAL`               | the sealer's checkpoints                       | sealer |
| `TENANT#t#TELEMETRY#SHARD#k`  | telemetry                                      | risk worker |

Every role carries an explicit Deny of writes outside its partitions. Where a role's partitions can
be named by patterns, the Deny is "any partition key NOT like these" (ForAnyValue:StringNotLike);
`TENANT#*` also matches every sub-partition, so assets, which owns the bare `TENANT#t`, is denied
the other roles' partitions by name instead. `tests/deploy/test_iam_matrix.py` evaluates the rendered
documents for every role, partition and action.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from services.kit import table as table_def

SERVICES = ("ingest", "risk-worker", "assets", "ledger", "sealer")

ANY_PARTITION = "TENANT#*"
AUTH_PARTITIONS = "TENANT#*#AUTH"
AGENT_PARTITIONS = "TENANT#*#AGENT_CREDS"
LEDGER_PARTITIONS = "TENANT#*#LEDGER"
SEAL_PARTITIONS = "TENANT#*#SEAL"
TELEMETRY_PARTITIONS = "TENANT#*#TELEMETRY#SHARD#*"
AGENT_WATCH_KEYS = "TENANT#*#AGENT_WATCH"
WATCHED_TENANTS_KEY = "AGENT_WATCH#TENANTS"

# Writes IAM must refuse on a partition a role does not own (PartiQL and batches included, because
# each of them can change or remove items just as UpdateItem and DeleteItem can).
REWRITE_ACTIONS = (
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
FOREIGN_WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:PartiQLInsert", *REWRITE_ACTIONS)
# What may never happen to a seal object or to the seal bucket's guarantees, by any role.
SEAL_TAMPER_ACTIONS = (
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:PutObjectRetention",
    "s3:BypassGovernanceRetention",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucket",
)
# The seal objects the sealer writes: `<tenant>/checkpoint/…`, `<tenant>/tile/…`, `<tenant>/verifier.key`.
SEAL_OBJECT_PATTERNS = ("*/checkpoint/*", "*/tile/*", "*/verifier.key")
# Checkpoints and tiles are write-once; the verifier-key object is republished when keys rotate
# (every version stays under Object Lock).
WRITE_ONCE_PATTERNS = ("*/checkpoint/*", "*/tile/*")

Effect = Literal["Allow", "Deny"]


@dataclass(frozen=True)
class Arns:
    """Where the grants point: concrete ARNs, or CloudFormation `${Logical.Arn}` substitutions."""

    table: str
    bucket: str
    queue: str
    dlq: str

    @classmethod
    def cloudformation(cls) -> Arns:
        return cls(table="${Table.Arn}", bucket="${SealBucket.Arn}", queue="${Queue.Arn}",
                   dlq="${DeadLetterQueue.Arn}")

    @classmethod
    def concrete(cls, *, region: str, account: str, table: str, bucket: str, queue: str, dlq: str,
                 partition: str = "aws") -> Arns:
        return cls(
            table=f"arn:{partition}:dynamodb:{region}:{account}:table/{table}",
            bucket=f"arn:{partition}:s3:::{bucket}",
            queue=f"arn:{partition}:sqs:{region}:{account}:{queue}",
            dlq=f"arn:{partition}:sqs:{region}:{account}:{dlq}",
        )


@dataclass(frozen=True)
class Grant:
    """One policy statement before rendering; `resources` are templates over an `Arns`."""

    sid: str
    effect: Effect
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    # Partition patterns: an Allow requires every partition key of the request to match one
    # (ForAllValues, and the key must be present); a Deny fires when any partition key matches one.
    leading_keys: tuple[str, ...] = ()
    # Deny only: fires when any partition key of the request matches none of these patterns.
    outside_keys: tuple[str, ...] = ()
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The role writes these items inside TransactWriteItems; AWS authorizes each action of a
    # transaction as the underlying PutItem/UpdateItem/ConditionCheckItem, the emulator the call as a whole.
    transactional: bool = False

    def resolved_resources(self, arns: Arns) -> list[str]:
        return [r.format(table=arns.table, bucket=arns.bucket, queue=arns.queue, dlq=arns.dlq)
                for r in self.resources]

    def conditions(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {op: dict(values) for op, values in self.condition.items()}
        if self.leading_keys:
            keys = list(self.leading_keys)
            if self.effect == "Allow":
                out.setdefault("ForAllValues:StringLike", {})["dynamodb:LeadingKeys"] = keys
                # ForAllValues is true when the key is absent (a Scan): demand that it is present.
                out.setdefault("Null", {})["dynamodb:LeadingKeys"] = "false"
            else:
                out.setdefault("ForAnyValue:StringLike", {})["dynamodb:LeadingKeys"] = keys
        if self.outside_keys:
            out.setdefault("ForAnyValue:StringNotLike", {})["dynamodb:LeadingKeys"] = list(self.outside_keys)
        return out


TABLE = "{table}"
INDEXES = "{table}/index/*"
GSI1_INDEX = "{table}/index/" + table_def.GSI1
GSI2_INDEX = "{table}/index/" + table_def.GSI2
BUCKET = "{bucket}"
SEAL_OBJECTS = tuple("{bucket}/" + pattern for pattern in SEAL_OBJECT_PATTERNS)
WRITE_ONCE_OBJECTS = tuple("{bucket}/" + pattern for pattern in WRITE_ONCE_PATTERNS)
VERIFIER_OBJECTS = ("{bucket}/*/verifier.key",)
TABLE_STREAM = "{table}/stream/*"
QUEUE = "{queue}"
DLQ = "{dlq}"


def _deny_ledger_rewrite() -> Grant:
    return Grant("DenyLedgerRewrite", "Deny", REWRITE_ACTIONS, (TABLE,), leading_keys=(LEDGER_PARTITIONS,))


def _deny_seal_tampering() -> Grant:
    return Grant("DenySealTampering", "Deny", SEAL_TAMPER_ACTIONS, (BUCKET, BUCKET + "/*"))


def _readiness() -> Grant:
    return Grant("ReadinessDescribeTable", "Allow", ("dynamodb:DescribeTable",), (TABLE,))


def _resolve_tokens() -> Grant:
    # Tokens are `TENANT#t#AUTH`/`TOKEN#…`; IAM cannot restrict sort keys, so this is GetItem in that partition.
    return Grant("ResolveTokens", "Allow", ("dynamodb:GetItem",), (TABLE,), leading_keys=(AUTH_PARTITIONS,))


def _read_seals() -> tuple[Grant, Grant]:
    return (
        # GetObjectRetention: HEAD and GET show the Object Lock mode only to callers who may read it; the sealer
        # refuses to record a seal it cannot see is under COMPLIANCE retention.
        Grant("ReadSeals", "Allow",
              ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention"),
              SEAL_OBJECTS),
        # HeadBucket (readiness) and ListObjectVersions; without ListBucket a missing key answers 403, not 404.
        Grant("ListSeals", "Allow", ("s3:ListBucket", "s3:ListBucketVersions"), (BUCKET,)),
    )


def _deny_foreign_writes(*partitions: str) -> Grant:
    """Deny writes to the other roles' partitions, named."""
    return Grant("DenyForeignPartitionWrites", "Deny", FOREIGN_WRITE_ACTIONS, (TABLE,), leading_keys=partitions)


def _deny_writes_outside(*owned: str) -> Grant:
    """Deny writes whenever a partition key is not one of the role's own."""
    return Grant("DenyWritesOutsideOwnPartitions", "Deny", FOREIGN_WRITE_ACTIONS, (TABLE,), outside_keys=owned)


GRANTS: dict[str, tuple[Grant, ...]] = {
    "ledger": (
        _readiness(),
        _resolve_tokens(),
        Grant("LedgerAppendAndRead", "Allow",
              ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"),
              (TABLE,), leading_keys=(LEDGER_PARTITIONS,), transactional=True),
        # ListAssetEvents: GSI1 (`TENANT#t#ASSET#a` / `LEDGER#seq`); read-only, see docs/DEPLOY.md.
        Grant("LedgerEventsByAsset", "Allow", ("dynamodb:Query",), (GSI1_INDEX,)),
        # Proofs and verification read the sealer's checkpoints, tiles and checkpoint versions.
        Grant("ReadCheckpoints", "Allow", ("dynamodb:GetItem", "dynamodb:Query"), (TABLE,),
              leading_keys=(SEAL_PARTITIONS,)),
        *_read_seals(),
        _deny_ledger_rewrite(),
        _deny_writes_outside(LEDGER_PARTITIONS),
        _deny_seal_tampering(),
    ),
    "sealer": (
        _readiness(),
        _resolve_tokens(),
        Grant("ReadLedgerAndCheckpoints", "Allow", ("dynamodb:GetItem", "dynamodb:Query"), (TABLE,),
              leading_keys=(LEDGER_PARTITIONS, SEAL_PARTITIONS)),
        Grant("WriteCheckpoints", "Allow", ("dynamodb:PutItem", "dynamodb:ConditionCheckItem"), (TABLE,),
              leading_keys=(SEAL_PARTITIONS,), transactional=True),
        # New ledger events arrive on the table's stream (which carries every item's new image).
        Grant("ReadTableStream", "Allow",
              ("dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"), (TABLE_STREAM,)),
        Grant("WriteSealsOnce", "Allow", ("s3:PutObject",), WRITE_ONCE_OBJECTS,
              condition={"StringEquals": {"s3:if-none-match": "*"}}),
        Grant("PublishVerifierKeys", "Allow", ("s3:PutObject",), VERIFIER_OBJECTS),
        *_read_seals(),
        _deny_ledger_rewrite(),
        _deny_writes_outside(SEAL_PARTITIONS),
        _deny_seal_tampering(),
    ),
    "assets": (
        _readiness(),
        _resolve_tokens(),
        # Assets and commands live in `TENANT#t`, tokens and tenant metadata in `TENANT#t#AUTH`; the
        # isolation transaction also puts the custody event into `TENANT#t#LEDGER` (update and delete
        # there are denied below). `TENANT#*` matches every partition: the others' are denied by name.
        # BatchGetItem: the connection state of a page of assets, from ingest's agent items.
        Grant("AssetsEntities", "Allow",
              ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
               "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"),
              (TABLE,), leading_keys=(ANY_PARTITION,), transactional=True),
        # Assets by employee and state, commands by asset, action-required, pending commands, alerts.
        Grant("AssetsIndexes", "Allow", ("dynamodb:Query",), (INDEXES,)),
        _deny_ledger_rewrite(),
        _deny_foreign_writes(AGENT_PARTITIONS, SEAL_PARTITIONS, TELEMETRY_PARTITIONS),
        _deny_seal_tampering(),
    ),
    "ingest": (
        _readiness(),
        _resolve_tokens(),
        # Agent credentials only (`TENANT#t#AGENT_CREDS`/`AGENT#a`, read in batches when hellos arrive
        # together): code execution in the internet-facing ingest can neither mint operator tokens
        # nor touch assets, commands, custody events or telemetry.
        # Query: the health sweep's re-judgement of a tenant's agent versions (`AGENT#` sort keys).
        Grant("AgentCredentials", "Allow",
              ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
               "dynamodb:ConditionCheckItem", "dynamodb:Query"),
              (TABLE,), leading_keys=(AGENT_PARTITIONS,)),
        # The health sweep's due list and its list of tenants: sparse GSI2 over ingest's own agent items
        # (`TENANT#t#AGENT_WATCH`, `AGENT_WATCH#TENANTS`).
        Grant("AgentHealthDue", "Allow", ("dynamodb:Query",), (GSI2_INDEX,),
              leading_keys=(AGENT_WATCH_KEYS, WATCHED_TENANTS_KEY)),
        Grant("QueueHeartbeats", "Allow", ("sqs:SendMessage", "sqs:GetQueueAttributes"), (QUEUE,)),
        _deny_ledger_rewrite(),
        _deny_writes_outside(AGENT_PARTITIONS),
        _deny_seal_tampering(),
    ),
    "risk-worker": (
        _readiness(),
        Grant("WriteTelemetry", "Allow",
              ("dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:GetItem", "dynamodb:Query"),
              (TABLE,), leading_keys=(TELEMETRY_PARTITIONS,)),
        # The asset's previous inventory (GSI1 `TENANT#t#ASSET#a` / `DATE#ts`).
        Grant("TelemetryByAsset", "Allow", ("dynamodb:Query",), (GSI1_INDEX,)),
        Grant("ConsumeHeartbeats", "Allow",
              ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
               "sqs:GetQueueAttributes"),
              (QUEUE,)),
        Grant("DeadLetter", "Allow", ("sqs:SendMessage",), (DLQ,)),
        _deny_ledger_rewrite(),
        _deny_writes_outside(TELEMETRY_PARTITIONS),
        _deny_seal_tampering(),
    ),
}


def _statement(grant: Grant, arns: Arns) -> dict[str, Any]:
    resources = grant.resolved_resources(arns)
    statement: dict[str, Any] = {
        "Sid": grant.sid,
        "Effect": grant.effect,
        "Action": sorted(grant.actions),
        "Resource": resources[0] if len(resources) == 1 else resources,
    }
    conditions = grant.conditions()
    if conditions:
        statement["Condition"] = conditions
    return statement


def policy_document(service: str, arns: Arns) -> dict[str, Any]:
    """The IAM policy of `service` as AWS evaluates it (ARNs, leading-key and header conditions)."""
    return {"Version": "2012-10-17", "Statement": [_statement(g, arns) for g in GRANTS[service]]}


# What the embedded endpoint (moto 5) cannot evaluate, and what `emulator_document` does about it:
EMULATOR_GAPS = (
    "DynamoDB calls are authorized against resource '*', so DynamoDB statements use Resource '*'.",
    "Conditions (dynamodb:LeadingKeys, s3:if-none-match, Null, ForAnyValue/ForAllValues) are not "
    "evaluated: an Allow keeps its actions without its condition, a conditional Deny is left out "
    "(moto would apply it unconditionally).",
    "TransactWriteItems is authorized as one action rather than per Put/Update/ConditionCheck, so a "
    "role that writes in transactions is also granted dynamodb:TransactWriteItems.",
    "HeadBucket and the SQS batch calls are authorized as actions of their own (AWS authorizes them as "
    "s3:ListBucket, sqs:SendMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility), so a role granted "
    "one of those is also granted its alias.",
)


# Requests AWS authorizes under another action, which the emulator checks under a name of their own.
_EMULATOR_ALIASES = {
    "s3:ListBucket": "s3:HeadBucket",
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}


def emulator_document(service: str, arns: Arns) -> dict[str, Any]:
    """The same grants as the embedded endpoint can enforce them (see EMULATOR_GAPS)."""
    statements: list[dict[str, Any]] = []
    for grant in GRANTS[service]:
        if grant.effect == "Deny" and grant.conditions():
            continue
        projected = replace(grant, leading_keys=(), condition={})
        if grant.transactional:
            projected = replace(projected, actions=(*grant.actions, "dynamodb:TransactWriteItems"))
        implied = tuple(alias for action, alias in _EMULATOR_ALIASES.items() if action in grant.actions)
        if implied:
            projected = replace(projected, actions=(*projected.actions, *implied))
        statement = _statement(projected, arns)
        if all(action.startswith("dynamodb:") for action in projected.actions):
            statement["Resource"] = "*"
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def bucket_policy(arns: Arns) -> dict[str, Any]:
    """The seal bucket's own policy: TLS only, write-once keys, and no deletion or retention change by anyone."""
    objects = arns.bucket + "/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arns.bucket, objects],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                # A put without If-None-Match could replace the current version of a key.
                "Sid": "DenyOverwritingKeys",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": [arns.bucket + "/" + pattern for pattern in WRITE_ONCE_PATTERNS],
                "Condition": {"Null": {"s3:if-none-match": "true"}},
            },
            {
                "Sid": "DenyDeletionAndRetentionChanges",
                "Effect": "Deny",
                "Principal": "*",
                "Action": sorted(
                    ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
                     "s3:BypassGovernanceRetention"]
                ),
                "Resource": objects,
            },
            {
                "Sid": "DenyWeakeningTheBucket",
                "Effect": "Deny",
                "Principal": "*",
                "Action": sorted(
                    ["s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration",
                     "s3:PutBucketVersioning"]
                ),
                "Resource": arns.bucket,
            },
        ],
    }


def allowed_actions(service: str) -> set[str]:
    """Every action some Allow statement of `service` grants (for tests and docs)."""
    return {a for g in GRANTS[service] if g.effect == "Allow" for a in g.actions}


def markdown_table(services: Iterable[str] = SERVICES) -> str:
    """A Markdown summary of the grants, for docs/DEPLOY.md."""
    rows = ["| role | effect | actions | resources | partitions (dynamodb:LeadingKeys) |",
            "|---|---|---|---|---|"]
    for service in services:
        for g in GRANTS[service]:
            actions = ", ".join(a.split(":", 1)[1] for a in sorted(g.actions))
            resources = ", ".join(r.replace("{", "").replace("}", "") for r in g.resources)
            keys = ", ".join([f"`{k}`" for k in g.leading_keys] + [f"not `{k}`" for k in g.outside_keys])
            rows.append(f"| {service} | {g.effect} | {actions} | {resources} | {keys} |")
    return "\n".join(rows)


def to_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False)
