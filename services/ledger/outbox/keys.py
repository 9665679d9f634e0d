"""Keys of custody records: the only code that writes the `CUSTODY` and `CUSTODY_PENDING` prefixes.

A custody record is a custody event waiting for (or holding) its ledger seq. It lives in the tenant's
registry partition beside the asset it is about (`TENANT#t` / `CUSTODY#a#<asset version>`), so the
transaction that changes the asset writes it without touching any item another asset's transaction
writes. Until it is chained it is also in the sparse GSI2 list `CUSTODY_PENDING#<shard>`, sorted by
the time it was recorded; the shard is calculated from (tenant, asset), so the sequencer finds every
pending record by reading each of the `PENDING_SHARDS` partitions.
"""

from __future__ import annotations

import hashlib
import re

from services.kit.errors import InvalidArgument
from services.kit.ids import validate_id

ENTITY_PREFIXES = ("CUSTODY", "CUSTODY_PENDING")

CUSTODY_SK_PREFIX = "CUSTODY#"
PENDING_SHARDS = 8
VERSION_DIGITS = 20
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def registry_pk(tenant: str) -> str:
    """The tenant's registry partition, where its assets and their custody records live."""
    return f"TENANT#{validate_id('tenant_id', tenant)}"


def custody_sk(asset_id: str, version: int) -> str:
    """`CUSTODY#a#<version>`: the record of the state change that made `version` of the asset."""
    return f"{custody_sk_prefix(asset_id)}{_version(version)}"


def custody_sk_prefix(asset_id: str) -> str:
    return f"{CUSTODY_SK_PREFIX}{validate_id('asset_id', asset_id)}#"


def pending_shard(tenant: str, asset_id: str) -> int:
    digest = hashlib.sha256(f"{validate_id('tenant_id', tenant)}/{validate_id('asset_id', asset_id)}".encode())
    return digest.digest()[0] % PENDING_SHARDS


def pending_gsi2pk(shard: int) -> str:
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < PENDING_SHARDS:
        raise InvalidArgument.field("shard", f"must be 0..{PENDING_SHARDS - 1}")
    return f"CUSTODY_PENDING#{shard:02d}"


def pending_gsi2sk(record_time: str, tenant: str, asset_id: str, version: int) -> str:
    """`<record time>#t#a#<version>`: oldest first, so the overdue check reads only the head."""
    if not _TS.fullmatch(record_time):
        raise InvalidArgument.field("record_time", "must be a UTC timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return (f"{record_time}#{validate_id('tenant_id', tenant)}#{validate_id('asset_id', asset_id)}"
            f"#{_version(version)}")


def ledger_request_id(tenant: str, asset_id: str, version: int) -> str:
    """The ledger request id of a record's append: a second append of the same record finds the first."""
    digest = hashlib.sha256(f"{validate_id('tenant_id', tenant)}/{validate_id('asset_id', asset_id)}/"
                            f"{_version(version)}".encode()).hexdigest()
    return f"custody-{digest[:40]}"


def version_of_custody_sk(sk: str, asset_id: str) -> int | None:
    """The asset version a custody record key names, or None for other keys."""
    prefix = custody_sk_prefix(asset_id)
    digits = sk[len(prefix):] if sk.startswith(prefix) else ""
    return int(digits) if len(digits) == VERSION_DIGITS and digits.isdigit() else None


def _version(version: int) -> str:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 10**VERSION_DIGITS:
        raise InvalidArgument.field("version", f"must be 1..{10**VERSION_DIGITS - 1}")
    return f"{version:0{VERSION_DIGITS}d}"
