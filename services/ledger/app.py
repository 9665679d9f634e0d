"""Wiring of the ledger service: clients, store, domain and servicer, handed to the server bootstrap."""

from __future__ import annotations

from lifecyclezero.v1 import ledger_pb2_grpc
from services.kit import auth, aws
from services.kit.authenticator import Authenticator
from services.kit.server import Service
from services.ledger.settings import LedgerSettings

SERVICE_NAME = "lifecyclezero.v1.LedgerService"
POLICY: dict[str, frozenset[auth.Role]] = {}


async def make_service(settings: LedgerSettings) -> Service:
    ddb = aws.client(settings.aws, "dynamodb")
    authenticator = Authenticator(
        ddb,
        settings.aws.table_name,
        service_token_sha256=settings.server.service_token_sha256,
        bootstrap_token_sha256=settings.server.bootstrap_token_sha256,
        cache_seconds=settings.server.auth_cache_seconds,
    )

    async def check_ready() -> None:
        await aws.call(ddb.describe_table, TableName=settings.aws.table_name)

    servicer = ledger_pb2_grpc.LedgerServiceServicer()
    return Service(
        name="ledger",
        servicers=[(ledger_pb2_grpc.add_LedgerServiceServicer_to_server, servicer, SERVICE_NAME)],
        policy=POLICY,
        authenticator=authenticator,
        check_ready=check_ready,
    )
