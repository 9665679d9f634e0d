"""Wiring of the ingest service: clients, store, domain and servicer, handed to the server bootstrap."""

from __future__ import annotations

from lifecyclezero.v1 import ingest_pb2_grpc

from services.ingest import rules
from services.ingest.assets_client import AssetsClient
from services.ingest.enrollment import Enrollment
from services.ingest.peers import Peers
from services.ingest.queue import QueueBatcher
from services.ingest.routing import Router
from services.ingest.servicer import IngestServicer
from services.ingest.settings import IngestSettings
from services.ingest.streams import Hub
from services.ingest.tracker import Tracker
from services.kit import auth, aws
from services.kit.authenticator import Authenticator
from services.kit.server import Service
from services.kit.settings import AwsSettings

SERVICE_NAME = "lifecyclezero.v1.IngestService"
_P = f"/{SERVICE_NAME}/"
POLICY: dict[str, frozenset[auth.Role]] = {
    # Enroll and Connect authenticate in-band: the enrollment secret, then the agent credential.
    f"{_P}Enroll": auth.PUBLIC,
    f"{_P}Connect": auth.PUBLIC,
    f"{_P}DeliverCommand": frozenset({auth.Role.SERVICE}),
    f"{_P}DeliverCommands": frozenset({auth.Role.SERVICE}),
    f"{_P}RevokeAgent": frozenset({auth.Role.SERVICE, auth.Role.ADMIN}),
}
# Agents reach ingest through an internet-facing load balancer: these stay on LZ_INTERNAL_PORT, for
# the assets service (its certificate, and its own service token) only.
# Other ingest replicas forward there the nudges and revocations of streams they do not hold (routing.py).
INTERNAL = {f"{_P}DeliverCommand": frozenset({"assets", "ingest"}),
            f"{_P}DeliverCommands": frozenset({"assets"}),
            f"{_P}RevokeAgent": frozenset({"assets", "ingest"})}


async def make_service(settings: IngestSettings) -> Service:
    ddb = aws.client(settings.aws, "dynamodb")
    sqs_settings = settings.aws
    if settings.sqs_endpoint_url:
        sqs_settings = AwsSettings(table_name=settings.aws.table_name, endpoint_url=settings.sqs_endpoint_url,
                                   region=settings.aws.region)
    sqs = aws.client(sqs_settings, "sqs")
    authenticator = Authenticator(
        ddb,
        settings.aws.table_name,
        service_callers=dict(settings.server.service_callers),
        bootstrap_token_sha256=settings.server.bootstrap_token_sha256,
        cache_seconds=settings.server.auth_cache_seconds,
    )
    batcher = QueueBatcher(sqs, settings.queue_url, linger_seconds=settings.stream.linger_seconds)
    assets = AssetsClient(settings.assets_address, settings.server)
    tracker = Tracker(settings.stream, ddb, settings.aws.table_name, assets,
                      rules.load_book(settings.policy_file, settings.policy_dir), replica=settings.advertise_address)
    hub = Hub(settings.stream, ddb, settings.aws.table_name, batcher, assets, tracker=tracker)
    peers = Peers(settings.server)
    router = Router(hub, peers, ddb, settings.aws.table_name, settings.advertise_address)

    async def check_ready() -> None:
        # NOT_SERVING while the table or the queue does not answer: an ack must mean "in SQS".
        await aws.call(ddb.describe_table, TableName=settings.aws.table_name)
        await batcher.probe()

    async def on_stop() -> None:
        await hub.close()
        await assets.close()
        await peers.close()

    servicer = IngestServicer(hub, Enrollment(assets, ddb, settings.aws.table_name, settings.stream), router)
    return Service(
        name="ingest",
        servicers=[(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer, SERVICE_NAME)],
        policy=POLICY,
        authenticator=authenticator,
        check_ready=check_ready,
        background=[hub.poll_commands_forever, hub.persist_seqs_forever, hub.recheck_credentials_forever,
                    tracker.sweep_forever],
        on_stop=on_stop,
        ready_interval_seconds=1.0,
        internal=INTERNAL,
        callers=INTERNAL,
    )
