"""Wiring of the ledger service: clients, store, domain and servicer, handed to the server bootstrap."""

from __future__ import annotations

from pathlib import Path

from lifecyclezero.v1 import ledger_pb2_grpc

from services.kit import auth, aws
from services.kit.auth import Role, at_least
from services.kit.authenticator import Authenticator
from services.kit.errors import ConfigError
from services.kit.server import Service
from services.ledger.committer import GroupCommitter
from services.ledger.proofs import SealReader
from services.ledger.servicer import LedgerServicer
from services.ledger.settings import LedgerSettings, SealAccess
from services.ledger.signing import TenantKeys, load_signer_keys, parse_key_list

SERVICE_NAME = "lifecyclezero.v1.LedgerService"
_PREFIX = f"/{SERVICE_NAME}/"
_READ = at_least(Role.VIEWER) | {Role.SERVICE}
# No service calls this one: the Service names no callers, so every service token is refused here.
POLICY: dict[str, frozenset[auth.Role]] = {
    f"{_PREFIX}AppendEvents": at_least(Role.OPERATOR) | {Role.SERVICE},
    f"{_PREFIX}GetEvent": _READ,
    f"{_PREFIX}ListEvents": _READ,
    f"{_PREFIX}ListAssetEvents": _READ,
    f"{_PREFIX}GetInclusionProof": _READ,
    f"{_PREFIX}GetConsistencyProof": _READ,
    f"{_PREFIX}ExportProof": _READ,
    f"{_PREFIX}ExportBundle": _READ,
    f"{_PREFIX}VerifyLedger": _READ,
    f"{_PREFIX}WatchFullVerification": _READ,
}


def tenant_keys(seals: SealAccess) -> TenantKeys:
    """Verifier keys from LZ_VERIFIER_KEYS / _FILE, else derived from the signer keys (public half only)."""
    text = seals.verifier_keys
    if seals.verifier_key_file:
        try:
            text = Path(seals.verifier_key_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read LZ_VERIFIER_KEY_FILE: {exc.strerror or exc}") from None
    verifiers = parse_key_list(text)
    if verifiers:
        return TenantKeys(seals.origin, verifier_keys=verifiers)
    signers = load_signer_keys(seals.signing_key_file, seals.signing_key)
    derived = TenantKeys(seals.origin, signer_keys=signers)
    return TenantKeys(seals.origin, verifier_keys=derived.deployment_verifiers())


async def make_service(settings: LedgerSettings) -> Service:
    ddb = aws.client(settings.aws, "dynamodb")
    s3 = aws.client(settings.aws, "s3")
    authenticator = Authenticator(
        ddb,
        settings.aws.table_name,
        service_callers=dict(settings.server.service_callers),
        bootstrap_token_sha256=settings.server.bootstrap_token_sha256,
        cache_seconds=settings.server.auth_cache_seconds,
    )
    reader = SealReader(ddb, s3, settings.aws.table_name, settings.seals.bucket_name, tenant_keys(settings.seals),
                        walker=aws.walk_client(settings.aws))
    servicer = LedgerServicer(GroupCommitter(ddb, settings.aws.table_name), reader,
                              expensive_per_tenant=settings.expensive_per_tenant)

    async def check_ready() -> None:
        await aws.call(ddb.describe_table, TableName=settings.aws.table_name)

    return Service(
        name="ledger",
        servicers=[(ledger_pb2_grpc.add_LedgerServiceServicer_to_server, servicer, SERVICE_NAME)],
        policy=POLICY,
        authenticator=authenticator,
        check_ready=check_ready,
    )
