"""Wiring of the sealer service: clients, keys, loops and servicer, handed to the server bootstrap."""

from __future__ import annotations

from lifecyclezero.v1 import sealer_pb2_grpc

from services.kit import auth, aws
from services.kit.auth import Role, at_least
from services.kit.authenticator import Authenticator
from services.kit.errors import FailedPrecondition
from services.kit.server import Service
from services.ledger.signing import TenantKeys, load_signer_keys
from services.sealer.loop import LoopSettings, SealerLoops
from services.sealer.sealing import SealContext
from services.sealer.servicer import SealerServicer
from services.sealer.settings import SealerSettings

SERVICE_NAME = "lifecyclezero.v1.SealerService"
_PREFIX = f"/{SERVICE_NAME}/"
_READ = at_least(Role.VIEWER) | {Role.SERVICE}
# No service calls this one: the Service names no callers, so every service token is refused here.
POLICY: dict[str, frozenset[auth.Role]] = {
    f"{_PREFIX}SealNow": at_least(Role.OPERATOR) | {Role.SERVICE},
    f"{_PREFIX}GetSealStatus": _READ,
    f"{_PREFIX}GetCheckpoint": _READ,
    f"{_PREFIX}ListCheckpoints": _READ,
    f"{_PREFIX}GetVerifierKeys": _READ,
}


async def make_service(settings: SealerSettings) -> Service:
    ddb = aws.client(settings.aws, "dynamodb")
    s3 = aws.client(settings.aws, "s3")
    streams = aws.client(settings.aws, "dynamodbstreams")
    authenticator = Authenticator(
        ddb,
        settings.aws.table_name,
        service_callers=dict(settings.server.service_callers),
        bootstrap_token_sha256=settings.server.bootstrap_token_sha256,
        cache_seconds=settings.server.auth_cache_seconds,
    )
    seal = settings.seal
    keys = TenantKeys(seal.origin, load_signer_keys(seal.signing_key_file, seal.signing_key))
    ctx = SealContext(
        ddb, s3, settings.aws.table_name, seal.bucket_name, seal.retention_days, keys, set(), seal.crash_after
    )
    loops = SealerLoops(
        ctx,
        streams,
        LoopSettings(seal.every_events, seal.every_seconds, seal.max_batch, seal.stream_poll_seconds),
    )

    async def check_ready() -> None:
        await aws.call(ddb.describe_table, TableName=settings.aws.table_name)
        await aws.call(s3.head_bucket, Bucket=seal.bucket_name)
        if loops.problem:
            raise FailedPrecondition(loops.problem, reason="SEAL_RETENTION_MISSING")

    return Service(
        name="sealer",
        servicers=[(sealer_pb2_grpc.add_SealerServiceServicer_to_server, SealerServicer(ctx, loops), SERVICE_NAME)],
        policy=POLICY,
        authenticator=authenticator,
        check_ready=check_ready,
        background=[loops.run_stream],
        on_stop=loops.stop,
    )
