"""Helpers for the assets tests: stubs, service-token metadata, assets to work on, and store reads."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from services.kit import aws
from services.kit.auth import Role
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from services.ledger.outbox import CustodyRecord
from services.ledger.outbox import store as outbox_store
from tests.faults.helpers import chained_custody


class Assets:
    """A tenant's view of the assets service: stub, metadata per role and the table behind it."""

    def __init__(self, handle: Any, channel: grpc.Channel) -> None:
        self.handle = handle
        self.tenant: str = handle.tenant
        self.stack: Stack = handle.stack
        self.stub = assets_pb2_grpc.AssetServiceStub(channel)
        assert self.stack.resources is not None
        settings = AwsSettings(table_name=self.stack.resources.table_name,
                               endpoint_url=self.stack.resources.endpoint_url)
        self.ddb = aws.client(settings, "dynamodb")
        self.table = settings.table_name

    def md(self, role: Role = Role.OPERATOR) -> list[tuple[str, str]]:
        return self.handle.metadata(role)

    def service_md(self, actor: str = "", service: str = "ingest") -> list[tuple[str, str]]:
        """Metadata of `service`'s own service token acting for this tenant."""
        md = [("authorization", f"Bearer {self.stack.service_tokens[service]}"), ("x-lz-tenant", self.tenant)]
        if actor:
            md.append(("x-lz-actor", actor))
        return md

    def create_asset(self, asset_id: str = "", employee_id: str = "emp-1") -> common_pb2.Asset:
        asset_id = asset_id or f"host-{secrets.token_hex(4)}"
        reply = self.stub.CreateAsset(
            assets_pb2.CreateAssetRequest(asset=common_pb2.Asset(
                asset_id=asset_id, hostname=f"{asset_id}.corp", employee_id=employee_id, os="linux",
                agent_version="1.0.0")),
            metadata=self.md(Role.OPERATOR),
        )
        return reply.asset

    def isolate(self, asset_id: str, request_id: str = "",
                role: Role = Role.OPERATOR) -> assets_pb2.IsolateAssetResponse:
        return self.stub.IsolateAsset(
            assets_pb2.IsolateAssetRequest(asset_id=asset_id, justification="shadow LLM reading HR files",
                                           request_id=request_id or secrets.token_hex(8)),
            metadata=self.md(role),
        )

    def release(self, asset_id: str, request_id: str = "") -> assets_pb2.ReleaseAssetResponse:
        return self.stub.ReleaseAsset(
            assets_pb2.ReleaseAssetRequest(asset_id=asset_id, justification="engine removed",
                                           request_id=request_id or secrets.token_hex(8)),
            metadata=self.md(Role.OPERATOR),
        )

    def result(self, asset_id: str, command_id: str, applied: bool = True,
               error: str = "") -> assets_pb2.RecordCommandResultResponse:
        outcome = common_pb2.COMMAND_OUTCOME_APPLIED if applied else common_pb2.COMMAND_OUTCOME_FAILED
        return self.stub.RecordCommandResult(
            assets_pb2.RecordCommandResultRequest(asset_id=asset_id, result=common_pb2.CommandResult(
                command_id=command_id, outcome=outcome, ruleset_sha256="a" * 64, rule_count=12,
                self_test_passed=applied, self_test_detail="control plane reachable" if applied else "",
                error=error)),
            metadata=self.service_md(),
        )

    def items(self, pk: str) -> list[dict[str, Any]]:
        """Every item of one partition, read consistently from the table."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": "PK = :pk",
                                  "ExpressionAttributeValues": {":pk": {"S": pk}}, "ConsistentRead": True}
        while True:
            got = self.ddb.query(**kwargs)
            out.extend(got.get("Items", []))
            if "LastEvaluatedKey" not in got:
                return out
            kwargs["ExclusiveStartKey"] = got["LastEvaluatedKey"]

    def custody_records(self, asset_id: str = "") -> list[CustodyRecord]:
        """The custody records of one asset (of the tenant when '') as stored, chained or not."""
        return outbox_store.asset_records(self.ddb, self.table, self.tenant, asset_id)

    def chained_records(self, asset_id: str = "", within: float = 60.0) -> list[CustodyRecord]:
        """The custody records once the sequencer has given every one its ledger seq."""
        return chained_custody(self.ddb, self.table, self.tenant, asset_id, within)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The tenant's registry partition and ledger partition, exactly as stored."""
        return self.items(f"TENANT#{self.tenant}"), self.items(f"TENANT#{self.tenant}#LEDGER")


@pytest.fixture
def assets(new_tenant: Any) -> Iterator[Assets]:
    """The assets service as seen by a fresh tenant with viewer, operator and admin tokens."""
    channel = new_tenant.channel("assets")
    handle = Assets(new_tenant, channel)
    try:
        yield handle
    finally:
        channel.close()
