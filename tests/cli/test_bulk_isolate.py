"""`lz isolate` of several assets or of every asset a filter selects, against the running stack."""

from __future__ import annotations

from typing import Any

import grpc
from cli_helpers import Lz, new_asset
from google.protobuf import struct_pb2
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

CRITICAL = common_pb2.SEVERITY_CRITICAL
WARNING = common_pb2.SEVERITY_WARNING


def _finding(rule_id: str, engine: str, severity: int) -> common_pb2.Finding:
    evidence = struct_pb2.Struct()
    evidence.update({"engines": [{"kind": engine, "pid": 42}]})
    return common_pb2.Finding(rule_id=rule_id, severity=severity, summary=f"{engine} {rule_id}", evidence=evidence)


def _set_risk(stack: Any, tenant: str, asset_id: str, severity: int, *findings: common_pb2.Finding) -> None:
    """Give an asset a risk the way the risk worker does (its own service token)."""
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        assets_pb2_grpc.AssetServiceStub(channel).UpdateAssetRisk(
            assets_pb2.UpdateAssetRiskRequest(updates=[assets_pb2.AssetRiskUpdate(
                asset_id=asset_id, risk=common_pb2.RiskSummary(max_severity=severity, findings=findings))]),
            metadata=[("authorization", f"Bearer {stack.service_tokens['risk-worker']}"), ("x-lz-tenant", tenant)])


def _requested(result: Any) -> list[str]:
    return sorted(r["asset"]["asset_id"] for r in result.json()["requested"])


def test_isolate_several_assets_requests_each(admin: Lz) -> None:
    """`lz isolate A B C` orders each asset and lists all three as requested."""
    assets = [new_asset(admin) for _ in range(3)]
    result = admin("isolate", *assets, "--reason", "outbreak", "--json")
    assert result.code == 0, result.err
    assert _requested(result) == sorted(assets)
    assert result.json()["failed"] == []


def test_isolate_several_assets_shows_progress_and_a_summary(admin: Lz) -> None:
    """A bulk isolation reports progress on stderr and ends with a count of requested and failed orders."""
    assets = [new_asset(admin) for _ in range(3)]
    result = admin("isolate", *assets, "--reason", "outbreak")
    assert result.code == 0, result.err
    assert "isolate 3/3" in result.err
    assert "isolate: 3 requested, 0 failed" in result.out


def test_a_failed_order_in_a_bulk_isolation_is_named_and_exits_1(admin: Lz) -> None:
    """An unknown asset among several is listed as failed with its reason and the command exits 1."""
    known = new_asset(admin)
    result = admin("isolate", known, "no-such-asset", "--reason", "outbreak", "--json")
    assert result.code == 1
    assert _requested(result) == [known]
    [failed] = result.json()["failed"]
    assert failed["asset_id"] == "no-such-asset" and "no-such-asset" in failed["error"]


def test_isolate_by_risk_selects_only_critical_assets(admin: Lz, stack: Any, new_tenant: Any) -> None:
    """`--risk critical` isolates the critical assets and leaves warning and clean ones alone."""
    critical, warning, _clean = (new_asset(admin) for _ in range(3))
    _set_risk(stack, new_tenant.tenant, critical, CRITICAL, _finding("exposed-listener", "ollama", CRITICAL))
    _set_risk(stack, new_tenant.tenant, warning, WARNING, _finding("new-model", "ollama", WARNING))
    result = admin("isolate", "--risk", "critical", "--reason", "critical findings", "--json")
    assert result.code == 0, result.err
    assert _requested(result) == [critical]


def test_isolate_by_engine_and_exposure_selects_exposed_hosts_of_that_engine(
        admin: Lz, stack: Any, new_tenant: Any) -> None:
    """`--engine ollama --exposed` picks hosts whose exposed-listener finding names ollama, no other."""
    exposed_ollama, exposed_vllm, local_ollama = (new_asset(admin) for _ in range(3))
    _set_risk(stack, new_tenant.tenant, exposed_ollama, CRITICAL, _finding("exposed-listener", "ollama", CRITICAL))
    _set_risk(stack, new_tenant.tenant, exposed_vllm, CRITICAL, _finding("exposed-listener", "vllm", CRITICAL))
    _set_risk(stack, new_tenant.tenant, local_ollama, WARNING, _finding("new-model", "ollama", WARNING))
    result = admin("isolate", "--engine", "ollama", "--exposed", "--reason", "exposed ollama", "--json")
    assert result.code == 0, result.err
    assert _requested(result) == [exposed_ollama]


def test_isolate_with_names_and_a_filter_is_a_usage_error(admin: Lz) -> None:
    """Naming assets and giving a filter at once is one error line and exit 2."""
    admin("isolate", "ws-1", "ws-2", "--risk", "critical", "--reason", "x").assert_one_line_error(2)


def test_isolate_without_assets_or_filter_is_a_usage_error(admin: Lz) -> None:
    """`lz isolate --reason x` alone is one error line and exit 2."""
    admin("isolate", "--reason", "x").assert_one_line_error(2)
