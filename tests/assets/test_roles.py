"""Who may call what on the assets service: roles, bad tokens and internal-only methods."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2

from services.kit.auth import Role
from tests.assets.conftest import Assets


def test_a_viewer_cannot_isolate(assets: Assets) -> None:
    """IsolateAsset with a viewer token is PERMISSION_DENIED and writes nothing."""
    asset = assets.create_asset()
    before = assets.snapshot()
    with pytest.raises(grpc.RpcError) as caught:
        assets.isolate(asset.asset_id, role=Role.VIEWER)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert assets.snapshot() == before


@pytest.mark.parametrize("header", [
    ("authorization", "Bearer lz1:t-x:abcdef0123456789:not-a-real-secret-at-all"),
    ("authorization", "Bearer nonsense"),
    ("authorization", "Basic abc"),
])
def test_a_bad_token_is_unauthenticated(assets: Assets, header: tuple[str, str]) -> None:
    """A call with an unknown, malformed or non-bearer credential is UNAUTHENTICATED."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.ListAssets(assets_pb2.ListAssetsRequest(), metadata=[header])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_call_without_a_token_is_unauthenticated(assets: Assets) -> None:
    """A call with no credential at all is UNAUTHENTICATED."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.GetAsset(assets_pb2.GetAssetRequest(asset_id="a"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_operator_cannot_issue_tokens(assets: Assets) -> None:
    """CreateToken needs the admin role."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.CreateToken(assets_pb2.CreateTokenRequest(role=assets_pb2.ROLE_ADMIN),
                                metadata=assets.md(Role.OPERATOR))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_operators_cannot_record_command_results(assets: Assets) -> None:
    """RecordCommandResult is for ingest's service token only, even for an admin."""
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.RecordCommandResult(
            assets_pb2.RecordCommandResultRequest(asset_id=asset.asset_id),
            metadata=assets.md(Role.ADMIN),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert order.command.command_id


def test_the_service_token_without_a_tenant_is_refused(assets: Assets) -> None:
    """The service token acts only for the tenant named in x-lz-tenant; without one nothing is read."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.ListPendingCommands(assets_pb2.ListPendingCommandsRequest(),
                                        metadata=[("authorization", f"Bearer {assets.stack.service_token}")])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(("service", "method", "request_message"), [
    ("ingest", "IsolateAsset", assets_pb2.IsolateAssetRequest(asset_id="host-1", justification="j", request_id="r")),
    ("ingest", "UpdateAssetRisk", assets_pb2.UpdateAssetRiskRequest()),
    ("risk-worker", "CreateAsset", assets_pb2.CreateAssetRequest()),
    ("risk-worker", "CheckEnrollmentSecret", assets_pb2.CheckEnrollmentSecretRequest()),
    ("assets", "ListPendingCommands", assets_pb2.ListPendingCommandsRequest()),
])
def test_a_service_token_is_refused_what_its_service_does_not_call(assets: Assets, service: str, method: str,
                                                                     request_message: Any) -> None:
    """A service's own token calling an assets method meant for another service gets PERMISSION_DENIED."""
    with pytest.raises(grpc.RpcError) as caught:
        getattr(assets.stub, method)(request_message, metadata=assets.service_md(service=service))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"service {service} may not call {method}" in (caught.value.details() or "")


def test_each_service_token_calls_what_its_service_needs(assets: Assets) -> None:
    """Ingest's token lists pending commands and the risk worker's token updates risk."""
    pending = assets.stub.ListPendingCommands(assets_pb2.ListPendingCommandsRequest(),
                                              metadata=assets.service_md(service="ingest"))
    updated = assets.stub.UpdateAssetRisk(assets_pb2.UpdateAssetRiskRequest(),
                                          metadata=assets.service_md(service="risk-worker"))
    assert list(pending.commands) == [] and updated.updated == 0
