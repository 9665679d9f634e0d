"""The asset registry on the running service: create, get, paged lists and the action-required list."""

from __future__ import annotations

import datetime as dt
import secrets

import grpc
import pytest
from google.protobuf import timestamp_pb2
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.kit.auth import Role
from tests.assets.conftest import Assets


def _list(assets: Assets, **filters: object) -> list[str]:
    """Every asset id of a filtered list, walking its pages two at a time."""
    ids: list[str] = []
    token = ""
    while True:
        reply = assets.stub.ListAssets(assets_pb2.ListAssetsRequest(page_size=2, page_token=token, **filters),
                                       metadata=assets.md(Role.VIEWER))
        ids.extend(a.asset_id for a in reply.assets)
        token = reply.next_page_token
        if not token:
            return ids


def _risk(assets: Assets, asset_id: str, severity: int, when: dt.datetime) -> int:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    update = assets_pb2.AssetRiskUpdate(
        asset_id=asset_id, last_seen_time=stamp,
        risk=common_pb2.RiskSummary(max_severity=severity, evaluate_time=stamp, findings=[
            common_pb2.Finding(rule_id="exposed-engine", severity=severity, summary="ollama on 0.0.0.0")]),
    )
    reply = assets.stub.UpdateAssetRisk(assets_pb2.UpdateAssetRiskRequest(updates=[update]),
                                        metadata=assets.service_md(service="risk-worker"))
    return reply.updated


def test_a_created_asset_can_be_read_back(assets: Assets) -> None:
    """GetAsset returns the asset as created, ACTIVE."""
    created = assets.create_asset()
    got = assets.stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=created.asset_id), metadata=assets.md(Role.VIEWER))
    assert got.asset == created
    assert got.asset.status == common_pb2.ASSET_STATUS_ACTIVE


def test_creating_an_existing_asset_is_already_exists(assets: Assets) -> None:
    """A second CreateAsset for the same id without the same request id is ALREADY_EXISTS."""
    created = assets.create_asset()
    with pytest.raises(grpc.RpcError) as caught:
        assets.create_asset(created.asset_id)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_retried_create_with_the_same_request_id_answers_the_stored_asset(assets: Assets) -> None:
    """CreateAsset retried with its request id (as ingest does on enrollment) returns the stored asset."""
    request = assets_pb2.CreateAssetRequest(asset=common_pb2.Asset(asset_id="h-retry", hostname="h", employee_id="e"),
                                            request_id="enroll-1")
    first = assets.stub.CreateAsset(request, metadata=assets.service_md())
    again = assets.stub.CreateAsset(request, metadata=assets.service_md())
    assert again.asset == first.asset


def test_assets_are_listed_by_employee_across_pages(assets: Assets) -> None:
    """ListAssets by employee returns exactly that employee's assets, page by page."""
    mine = sorted(assets.create_asset(employee_id="alice").asset_id for _ in range(3))
    assets.create_asset(employee_id="bob")
    assert sorted(_list(assets, employee_id="alice")) == mine


def test_assets_are_listed_by_status(assets: Assets) -> None:
    """ListAssets by status returns the assets in that status only."""
    isolated = assets.create_asset().asset_id
    assets.create_asset()
    assets.isolate(isolated)
    assert _list(assets, status=common_pb2.ASSET_STATUS_ISOLATION_PENDING) == [isolated]


def test_every_asset_is_listed_without_a_filter(assets: Assets) -> None:
    """ListAssets without a filter pages through all of the tenant's assets."""
    ids = sorted(assets.create_asset().asset_id for _ in range(5))
    assert _list(assets) == ids


def test_a_critical_asset_needs_action_until_it_is_isolated(assets: Assets) -> None:
    """A CRITICAL asset is in the action-required list while ACTIVE and leaves it once isolation is ordered."""
    critical = assets.create_asset().asset_id
    calm = assets.create_asset().asset_id
    now = dt.datetime.now(dt.UTC)
    assert _risk(assets, critical, common_pb2.SEVERITY_CRITICAL, now) == 1
    assert _risk(assets, calm, common_pb2.SEVERITY_WARNING, now) == 1
    assert _list(assets, action_required=True) == [critical]
    assets.isolate(critical)
    assert _list(assets, action_required=True) == []


def test_a_failed_isolation_needs_action(assets: Assets) -> None:
    """An asset whose isolation failed is in the action-required list."""
    asset_id = assets.create_asset().asset_id
    order = assets.isolate(asset_id)
    assets.result(asset_id, order.command.command_id, applied=False, error="no nftables")
    assert _list(assets, action_required=True) == [asset_id]


def test_an_older_risk_update_does_not_overwrite_a_newer_one(assets: Assets) -> None:
    """UpdateAssetRisk ignores an update older than what is stored (coalesced, last writer by time)."""
    asset_id = assets.create_asset().asset_id
    now = dt.datetime.now(dt.UTC)
    assert _risk(assets, asset_id, common_pb2.SEVERITY_CRITICAL, now) == 1
    assert _risk(assets, asset_id, common_pb2.SEVERITY_INFO, now - dt.timedelta(minutes=5)) == 0
    got = assets.stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset_id), metadata=assets.md(Role.VIEWER))
    assert got.asset.risk.max_severity == common_pb2.SEVERITY_CRITICAL
    assert got.asset.risk.findings[0].rule_id == "exposed-engine"


def test_a_risk_update_for_an_unknown_asset_is_skipped(assets: Assets) -> None:
    """UpdateAssetRisk counts only the assets it updated; unknown ids are skipped."""
    assert _risk(assets, f"nope-{secrets.token_hex(3)}", common_pb2.SEVERITY_CRITICAL, dt.datetime.now(dt.UTC)) == 0


@pytest.mark.parametrize("token", ["garbage", "eyJrIjoiYXNzZXRzIiwiYSI6IiMifQ", "x" * 2000])
def test_a_forged_page_token_is_invalid_argument(assets: Assets, token: str) -> None:
    """A page token the service did not issue (or with a bad id inside) is INVALID_ARGUMENT."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.ListAssets(assets_pb2.ListAssetsRequest(page_token=token), metadata=assets.md(Role.VIEWER))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_two_filters_at_once_are_invalid_argument(assets: Assets) -> None:
    """ListAssets with more than one filter is INVALID_ARGUMENT."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.ListAssets(assets_pb2.ListAssetsRequest(employee_id="e", action_required=True),
                               metadata=assets.md(Role.VIEWER))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_alerts_of_a_quiet_tenant_are_an_empty_list(assets: Assets) -> None:
    """ListAlerts answers from ingest's alert index; a tenant without telemetry has none."""
    reply = assets.stub.ListAlerts(assets_pb2.ListAlertsRequest(), metadata=assets.md(Role.VIEWER))
    assert list(reply.alerts) == [] and reply.next_page_token == ""
