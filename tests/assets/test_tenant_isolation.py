"""Tenant A's credentials never reach tenant B's items, whatever ids A sends."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.kit import aws
from services.kit.auth import Role
from services.kit.settings import AwsSettings
from services.kit.tokens import store as token_store
from tests.assets.conftest import Assets
from tests.conftest import TenantHandle


@pytest.fixture(scope="module")
def victim(stack: Any) -> Iterator[Assets]:
    """A second tenant with one asset that has an isolation pending."""
    assert stack.resources is not None
    ddb = aws.client(AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url),
                     "dynamodb")
    tenant = f"t-{secrets.token_hex(4)}"
    tokens = {role: str(token_store.issue(ddb, stack.resources.table_name, tenant, role, "victim")[0])
              for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN)}
    handle = TenantHandle(stack, tenant, tokens)
    channel = handle.channel("assets")
    other = Assets(handle, channel)
    asset = other.create_asset("shared-name")
    other.isolate(asset.asset_id)
    try:
        yield other
    finally:
        channel.close()


def _bad_ids() -> list[str]:
    return ["shared-name", "shared-name#x", "a/b", "..", ".", "", "x" * 10_000, "TENANT#other#ASSET#shared-name",
            "shared-name\x00", "ASSET#shared-name"]


def _calls(assets: Assets, asset_id: str) -> dict[str, Callable[[], Any]]:
    md = assets.md(Role.ADMIN)
    return {
        "get": lambda: assets.stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=md),
        "isolate": lambda: assets.stub.IsolateAsset(
            assets_pb2.IsolateAssetRequest(asset_id=asset_id, justification="probe"), metadata=md),
        "release": lambda: assets.stub.ReleaseAsset(
            assets_pb2.ReleaseAssetRequest(asset_id=asset_id, justification="probe"), metadata=md),
        "custody": lambda: assets.stub.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id), metadata=md),
        "by-employee": lambda: assets.stub.ListAssets(assets_pb2.ListAssetsRequest(employee_id=asset_id), metadata=md),
        "result": lambda: assets.stub.RecordCommandResult(
            assets_pb2.RecordCommandResultRequest(asset_id=asset_id, result=common_pb2.CommandResult(
                command_id="c1", outcome=common_pb2.COMMAND_OUTCOME_APPLIED)), metadata=assets.service_md()),
    }


@pytest.mark.parametrize("asset_id", _bad_ids(), ids=lambda v: repr(v[:24]))
def test_another_tenants_asset_ids_are_not_found_or_invalid(assets: Assets, victim: Assets, asset_id: str) -> None:
    """Every call with B's ids, or forged ones, from A is NOT_FOUND or INVALID_ARGUMENT, and B is untouched."""
    before = victim.snapshot()
    for name, call in _calls(assets, asset_id).items():
        try:
            reply = call()
        except grpc.RpcError as exc:
            assert exc.code() in {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}, name
        else:
            assert name == "by-employee" and list(reply.assets) == [], name
    assert victim.snapshot() == before


def test_another_tenants_pending_command_cannot_be_completed(assets: Assets, victim: Assets) -> None:
    """A service call for tenant A cannot record the result of tenant B's command."""
    [command] = victim.stub.ListPendingCommands(assets_pb2.ListPendingCommandsRequest(),
                                                metadata=victim.service_md()).commands
    before = victim.snapshot()
    with pytest.raises(grpc.RpcError) as caught:
        assets.result(command.asset_id, command.command_id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert victim.snapshot() == before


def test_a_page_token_of_another_tenant_stays_in_the_callers_tenant(assets: Assets, victim: Assets) -> None:
    """A page token taken from tenant B's listing only ever pages through A's own assets."""
    victim.create_asset("zz-second")
    token = victim.stub.ListAssets(assets_pb2.ListAssetsRequest(page_size=1),
                                   metadata=victim.md(Role.VIEWER)).next_page_token
    assert token
    mine = assets.create_asset("zzz-mine").asset_id
    reply = assets.stub.ListAssets(assets_pb2.ListAssetsRequest(page_token=token), metadata=assets.md(Role.VIEWER))
    assert [a.asset_id for a in reply.assets] == [mine]
