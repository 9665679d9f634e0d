"""Operator token items: issue, resolve, revoke, list. Synchronous boto3; callers offload with aws.call."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from services.kit import aws
from services.kit.auth import OperatorToken, Role, new_operator_token, same_secret, sha256_hex
from services.kit.errors import InvalidArgument, NotFound
from services.kit.text import check_text
from services.kit.tokens import keys


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    role: Role
    description: str
    create_time: str
    revoked: bool


def issue(ddb: Any, table: str, tenant: str, role: Role, description: str) -> tuple[OperatorToken, TokenRecord]:
    """Store a new token's hash and return the token (shown once) with its record."""
    if role not in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
        raise InvalidArgument.field("role", "must be viewer, operator or admin")
    check_text("description", description, 256)
    token = new_operator_token(tenant)
    now = dt.datetime.now(dt.UTC).isoformat()
    ddb.put_item(
        TableName=table,
        Item=aws.to_item(
            {
                "PK": keys.auth_pk(tenant),
                "SK": keys.token_sk(token.token_id),
                "role": role.value,
                "secret_sha256": sha256_hex(token.secret),
                "description": description,
                "create_time": now,
                "revoked": False,
            }
        ),
        ConditionExpression="attribute_not_exists(SK)",
    )
    return token, TokenRecord(token.token_id, role, description, now, False)


def resolve(ddb: Any, table: str, token: OperatorToken) -> Role | None:
    """The token's role when it exists, is not revoked and its secret matches; else None."""
    got = ddb.get_item(
        TableName=table,
        Key=aws.to_item({"PK": keys.auth_pk(token.tenant), "SK": keys.token_sk(token.token_id)}),
        ConsistentRead=True,
    )
    if "Item" not in got:
        return None
    item = aws.from_item(got["Item"])
    if item.get("revoked") or not same_secret(token.secret, str(item.get("secret_sha256", ""))):
        return None
    return Role(item["role"])


def revoke(ddb: Any, table: str, tenant: str, token_id: str) -> TokenRecord:
    try:
        got = ddb.update_item(
            TableName=table,
            Key=aws.to_item({"PK": keys.auth_pk(tenant), "SK": keys.token_sk(token_id)}),
            UpdateExpression="SET revoked = :t",
            ConditionExpression="attribute_exists(SK)",
            ExpressionAttributeValues={":t": {"BOOL": True}},
            ReturnValues="ALL_NEW",
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        raise NotFound(f"token {token_id} does not exist") from None
    return _record(aws.from_item(got["Attributes"]))


def list_tokens(ddb: Any, table: str, tenant: str, limit: int, start: dict[str, Any] | None) -> tuple[
    list[TokenRecord], dict[str, Any] | None
]:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
        "ExpressionAttributeValues": aws.to_item({":pk": keys.auth_pk(tenant), ":sk": keys.TOKEN_SK_PREFIX}),
        "Limit": limit,
    }
    if start:
        kwargs["ExclusiveStartKey"] = start
    got = ddb.query(**kwargs)
    return [_record(aws.from_item(i)) for i in got.get("Items", [])], got.get("LastEvaluatedKey")


def _record(item: dict[str, Any]) -> TokenRecord:
    return TokenRecord(
        token_id=str(item["SK"]).removeprefix(keys.TOKEN_SK_PREFIX),
        role=Role(item["role"]),
        description=str(item.get("description", "")),
        create_time=str(item.get("create_time", "")),
        revoked=bool(item.get("revoked", False)),
    )
