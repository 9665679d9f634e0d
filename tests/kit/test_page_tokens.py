"""Page tokens are bounded everywhere: an absurd token is INVALID_ARGUMENT, never INTERNAL."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import (
    assets_pb2,
    assets_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    sealer_pb2,
    sealer_pb2_grpc,
)

from services.kit.auth import Role

HUGE = "9" * 5000

LISTS = [
    ("sealer", lambda ch: sealer_pb2_grpc.SealerServiceStub(ch).ListCheckpoints,
     sealer_pb2.ListCheckpointsRequest(page_token=HUGE)),
    ("ledger", lambda ch: ledger_pb2_grpc.LedgerServiceStub(ch).ListEvents,
     ledger_pb2.ListEventsRequest(page_token=HUGE)),
    ("ledger", lambda ch: ledger_pb2_grpc.LedgerServiceStub(ch).ListAssetEvents,
     ledger_pb2.ListAssetEventsRequest(asset_id="a-1", page_token=HUGE)),
    ("assets", lambda ch: assets_pb2_grpc.AssetServiceStub(ch).ListAssets,
     assets_pb2.ListAssetsRequest(page_token=HUGE)),
    ("assets", lambda ch: assets_pb2_grpc.AssetServiceStub(ch).ListTokens,
     assets_pb2.ListTokensRequest(page_token=HUGE)),
]


@pytest.mark.parametrize(("service", "method", "request_message"), LISTS)
def test_a_five_thousand_digit_page_token_is_invalid_argument(new_tenant: Any, service: str, method: Any,
                                                               request_message: Any) -> None:
    """Each list answers a 5,000-digit page token with INVALID_ARGUMENT naming page_token."""
    with pytest.raises(grpc.RpcError) as caught:
        method(new_tenant.channel(service))(request_message, metadata=new_tenant.metadata(Role.ADMIN), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in caught.value.details()
