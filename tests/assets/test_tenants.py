"""Tenants, operator tokens and enrollment secrets on the running assets service."""

from __future__ import annotations

import secrets
import time

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc

from services.kit.auth import sha256_hex
from services.kit.devstack import Stack


def _stub(stack: Stack) -> assets_pb2_grpc.AssetServiceStub:
    return assets_pb2_grpc.AssetServiceStub(grpc.insecure_channel(stack.addresses["assets"]))


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _service(stack: Stack, tenant: str) -> list[tuple[str, str]]:
    return [*_bearer(stack.service_token), ("x-lz-tenant", tenant)]


def _create(stack: Stack) -> tuple[str, assets_pb2.CreateTenantResponse]:
    tenant = f"t-{secrets.token_hex(4)}"
    reply = _stub(stack).CreateTenant(assets_pb2.CreateTenantRequest(tenant_id=tenant, display_name="Acme"),
                                      metadata=_bearer(stack.bootstrap_token))
    return tenant, reply


def _check(stack: Stack, tenant: str, secret: str) -> bool:
    reply = _stub(stack).CheckEnrollmentSecret(assets_pb2.CheckEnrollmentSecretRequest(enrollment_secret=secret),
                                               metadata=_service(stack, tenant))
    return bool(reply.valid)


def test_the_bootstrap_token_creates_a_tenant_with_a_working_admin_token(stack: Stack) -> None:
    """CreateTenant with the bootstrap token returns an admin token that works inside the new tenant."""
    tenant, reply = _create(stack)
    assert reply.tenant.tenant_id == tenant and reply.tenant.display_name == "Acme"
    listed = _stub(stack).ListTokens(assets_pb2.ListTokensRequest(), metadata=_bearer(reply.admin_token))
    assert [t.role for t in listed.tokens] == [assets_pb2.ROLE_ADMIN]


def test_a_tenant_cannot_be_created_twice(stack: Stack) -> None:
    """A second CreateTenant for the same id is ALREADY_EXISTS."""
    tenant, _ = _create(stack)
    with pytest.raises(grpc.RpcError) as caught:
        _stub(stack).CreateTenant(assets_pb2.CreateTenantRequest(tenant_id=tenant),
                                  metadata=_bearer(stack.bootstrap_token))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_an_admin_token_cannot_create_tenants(stack: Stack) -> None:
    """Only the bootstrap principal may call CreateTenant."""
    _, reply = _create(stack)
    with pytest.raises(grpc.RpcError) as caught:
        _stub(stack).CreateTenant(assets_pb2.CreateTenantRequest(tenant_id="t-other"),
                                  metadata=_bearer(reply.admin_token))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_bootstrap_token_has_no_tenant_to_read(stack: Stack) -> None:
    """The bootstrap principal is refused by tenant-scoped calls."""
    with pytest.raises(grpc.RpcError) as caught:
        _stub(stack).ListAssets(assets_pb2.ListAssetsRequest(), metadata=_bearer(stack.bootstrap_token))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_enrollment_secret_is_checked_and_described_by_its_fingerprint(stack: Stack) -> None:
    """The secret from CreateTenant checks as valid, a wrong one does not, and Get shows only a fingerprint."""
    tenant, reply = _create(stack)
    assert _check(stack, tenant, reply.enrollment_secret)
    assert not _check(stack, tenant, reply.enrollment_secret + "x")
    described = _stub(stack).GetEnrollmentSecret(assets_pb2.GetEnrollmentSecretRequest(),
                                                 metadata=_bearer(reply.admin_token))
    assert sha256_hex(reply.enrollment_secret).startswith(described.fingerprint)
    assert len(described.fingerprint) == 16 and described.create_time.seconds > 0


def test_rotating_the_enrollment_secret_retires_the_old_one(stack: Stack) -> None:
    """After RotateEnrollmentSecret the old secret fails and the new one (shown once) passes."""
    tenant, reply = _create(stack)
    rotated = _stub(stack).RotateEnrollmentSecret(assets_pb2.RotateEnrollmentSecretRequest(),
                                                  metadata=_bearer(reply.admin_token))
    assert not _check(stack, tenant, reply.enrollment_secret)
    assert _check(stack, tenant, rotated.enrollment_secret)
    assert sha256_hex(rotated.enrollment_secret).startswith(rotated.fingerprint)


def test_an_enrollment_secret_of_another_tenant_is_invalid(stack: Stack) -> None:
    """A tenant's enrollment secret does not enroll agents into another tenant."""
    _, first = _create(stack)
    other, _ = _create(stack)
    assert not _check(stack, other, first.enrollment_secret)


def test_enrollment_secrets_are_stored_hashed(stack: Stack) -> None:
    """The tenant item holds the secret's SHA-256, never the secret."""
    from services.kit import aws
    from services.kit.settings import AwsSettings

    assert stack.resources is not None
    tenant, reply = _create(stack)
    ddb = aws.client(AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url),
                     "dynamodb")
    item = ddb.get_item(TableName=stack.resources.table_name,
                        Key={"PK": {"S": f"TENANT#{tenant}#AUTH"}, "SK": {"S": "METADATA"}})["Item"]
    assert reply.enrollment_secret not in str(item)
    assert item["enrollment_sha256"]["S"] == sha256_hex(reply.enrollment_secret)


def test_a_new_viewer_token_reads_and_a_revoked_one_stops_working(stack: Stack) -> None:
    """An admin issues a viewer token (shown once) that works until it is revoked."""
    _, reply = _create(stack)
    stub = _stub(stack)
    created = stub.CreateToken(assets_pb2.CreateTokenRequest(role=assets_pb2.ROLE_VIEWER, description="auditor"),
                               metadata=_bearer(reply.admin_token))
    assert created.token_info.role == assets_pb2.ROLE_VIEWER
    stub.ListAssets(assets_pb2.ListAssetsRequest(), metadata=_bearer(created.token))
    listed = stub.ListTokens(assets_pb2.ListTokensRequest(), metadata=_bearer(reply.admin_token))
    assert created.token not in str(listed)
    stub.RevokeToken(assets_pb2.RevokeTokenRequest(token_id=created.token_info.token_id),
                     metadata=_bearer(reply.admin_token))
    deadline = time.monotonic() + 15  # the authenticator trusts a resolved token for LZ_AUTH_CACHE_SECONDS
    while True:
        try:
            stub.ListAssets(assets_pb2.ListAssetsRequest(), metadata=_bearer(created.token))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return
        assert time.monotonic() < deadline, "the revoked token kept working"
        time.sleep(0.5)


def test_an_unknown_role_cannot_be_issued(stack: Stack) -> None:
    """CreateToken without a role is INVALID_ARGUMENT."""
    _, reply = _create(stack)
    with pytest.raises(grpc.RpcError) as caught:
        _stub(stack).CreateToken(assets_pb2.CreateTokenRequest(), metadata=_bearer(reply.admin_token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
