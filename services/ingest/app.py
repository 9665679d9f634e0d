"""Wiring of the ingest service: clients, store, domain and servicer, handed to the server bootstrap."""

from __future__ import annotations

from lifecyclezero.v1 import ingest_pb2_grpc
from services.kit import auth, aws
from services.kit.authenticator import Authenticator
from services.kit.server import Service
from services.ingest.settings import IngestSettings

SERVICE_NAME = "lifecyclezero.v1.IngestService"
POLICY: dict[str, frozenset[auth.Role]] = {}


async def make_service(settings: IngestSettings) -> Service:
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

    servicer = ingest_pb2_grpc.IngestServiceServicer()
    return Service(
        name="ingest",
        servicers=[(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer, SERVICE_NAME)],
        policy=POLICY,
        authenticator=authenticator,
        check_ready=check_ready,
    )
