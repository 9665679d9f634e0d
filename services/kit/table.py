"""The one table: its definition, used by the embedded stack, the tests and the deploy templates.

Every entity lives in this table under keys that start with its tenant; see the README of each
service for its access patterns. The CloudFormation template is generated from `TABLE` (and a test
compares them), so the embedded stack and production cannot drift apart.
"""

from __future__ import annotations

from typing import Any

PK = "PK"
SK = "SK"
GSI1 = "GSI1"
GSI1PK = "GSI1PK"
GSI1SK = "GSI1SK"
GSI2 = "GSI2"
GSI2PK = "GSI2PK"
GSI2SK = "GSI2SK"
TTL_ATTRIBUTE = "expires_at"

ATTRIBUTES = (PK, SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK)


def table_definition(table_name: str) -> dict[str, Any]:
    """Arguments for DynamoDB CreateTable (on-demand, Streams with new images)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in ATTRIBUTES],
        "KeySchema": [
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": GSI1,
                "KeySchema": [
                    {"AttributeName": GSI1PK, "KeyType": "HASH"},
                    {"AttributeName": GSI1SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": GSI2,
                "KeySchema": [
                    {"AttributeName": GSI2PK, "KeyType": "HASH"},
                    {"AttributeName": GSI2SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
    }


TTL_SPECIFICATION = {"Enabled": True, "AttributeName": TTL_ATTRIBUTE}


def create_table(dynamodb: Any, table_name: str) -> None:
    """Create the table and turn on TTL; an existing table is left as it is."""
    try:
        dynamodb.create_table(**table_definition(table_name))
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=TTL_SPECIFICATION)
