"""WhoAmI: the caller's own tenant, role and token id, as its token resolves now (the console's sign-in)."""

from __future__ import annotations

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2

from services.kit.auth import Role, parse_operator_token
from tests.assets.conftest import Assets

_ROLES = {Role.VIEWER: assets_pb2.ROLE_VIEWER, Role.OPERATOR: assets_pb2.ROLE_OPERATOR,
          Role.ADMIN: assets_pb2.ROLE_ADMIN}


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ADMIN])
def test_whoami_names_the_tokens_tenant_role_and_id(assets: Assets, role: Role) -> None:
    """An operator token resolves to its own tenant, its role and its token id."""
    reply = assets.stub.WhoAmI(assets_pb2.WhoAmIRequest(), metadata=assets.md(role))
    token = parse_operator_token(assets.handle.tokens[role])
    assert token is not None
    assert (reply.tenant_id, reply.role, reply.token_id) == (assets.tenant, _ROLES[role], token.token_id)


def test_a_service_token_cannot_ask_whoami(assets: Assets) -> None:
    """A service token acting for a tenant is refused: WhoAmI is for operators."""
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.WhoAmI(assets_pb2.WhoAmIRequest(), metadata=assets.service_md(service="ingest"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
