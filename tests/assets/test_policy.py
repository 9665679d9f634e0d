"""The assets service's POLICY names every RPC and who may call it."""

from __future__ import annotations

from lifecyclezero.v1 import assets_pb2

from services.assets.app import POLICY, SERVICE_NAME
from services.kit.auth import Role


def test_every_rpc_has_a_policy_entry() -> None:
    """POLICY lists exactly the methods of AssetService."""
    service = assets_pb2.DESCRIPTOR.services_by_name["AssetService"]
    assert set(POLICY) == {f"/{SERVICE_NAME}/{m.name}" for m in service.methods}


def test_only_operators_and_above_or_the_risk_worker_may_isolate() -> None:
    """IsolateAsset is open to operators, admins and the service token, never to viewers."""
    assert POLICY[f"/{SERVICE_NAME}/IsolateAsset"] == {Role.OPERATOR, Role.ADMIN, Role.SERVICE}


def test_only_the_bootstrap_principal_creates_tenants() -> None:
    """CreateTenant is open to the installation bootstrap principal alone."""
    assert POLICY[f"/{SERVICE_NAME}/CreateTenant"] == {Role.BOOTSTRAP}
