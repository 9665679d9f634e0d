"""Keys of custody data: the only code that writes the `EVENT#`, `REQ#` and `CHECKPOINT#` prefixes, the LEDGER
and SEAL partitions and the seal objects' names.

A tenant's ledger is one partition, `TENANT#<t>#LEDGER`, so that IAM can allow PutItem and deny
UpdateItem and DeleteItem on it (the partition is put-only). Sequence numbers are zero-padded to 20
digits so that the sort order of SK is the numeric order of seq.

The seal store (the sealer writes it, through `seals.py`; the ledger reads it): the checkpoint index
of a tenant lives in `TENANT#<t>#SEAL`, one item per signed size under `CHECKPOINT#<size, 20 digits>`
(sort order = size order). S3: `<tenant>/checkpoint/<size, 20 digits>`, `<tenant>/tile/...` (C2SP
tlog-tiles paths) and `<tenant>/verifier.key`.
"""

from __future__ import annotations

from services.kit.errors import InvalidArgument
from services.kit.ids import is_valid_id, validate_id
from services.tlog.tiles import TileId

ENTITY_PREFIXES = ("EVENT", "REQ", "LEDGER", "CHECKPOINT", "SEAL")

EVENT_SK_PREFIX = "EVENT#"
REQUEST_SK_PREFIX = "REQ#"
GSI1SK_PREFIX = "LEDGER#"
ASSET_SUBJECT_PREFIX = "asset:"
SEQ_DIGITS = 20
MAX_SEQ = 10**SEQ_DIGITS - 1


def ledger_pk(tenant: str) -> str:
    """The tenant's ledger partition."""
    return f"TENANT#{validate_id('tenant_id', tenant)}#LEDGER"


def event_sk(seq: int) -> str:
    return f"{EVENT_SK_PREFIX}{_seq(seq)}"


def request_sk(request_id: str) -> str:
    """The marker that makes a retried AppendEvents return the original sequence numbers."""
    return f"{REQUEST_SK_PREFIX}{validate_id('request_id', request_id)}"


def asset_gsi1pk(tenant: str, asset_id: str) -> str:
    """The asset's custody partition in GSI1 (shared with other per-asset items of the tenant)."""
    return f"TENANT#{validate_id('tenant_id', tenant)}#ASSET#{validate_id('asset_id', asset_id)}"


def asset_gsi1sk(seq: int) -> str:
    return f"{GSI1SK_PREFIX}{_seq(seq)}"


def tenant_of_ledger_pk(pk: str) -> str | None:
    """The tenant of a ledger partition key, or None when `pk` is not one (stream records)."""
    if not (pk.startswith("TENANT#") and pk.endswith("#LEDGER")):
        return None
    tenant = pk[len("TENANT#") : -len("#LEDGER")]
    return tenant if "#" not in tenant and tenant else None


def seq_of_event_sk(sk: str) -> int | None:
    """The seq of an event sort key, or None for other items of the partition."""
    if not sk.startswith(EVENT_SK_PREFIX):
        return None
    digits = sk[len(EVENT_SK_PREFIX) :]
    return int(digits) if len(digits) == SEQ_DIGITS and digits.isdigit() else None


def asset_of_subject(subject: str) -> str | None:
    """The asset id when a custody event's subject is `asset:<asset_id>` with a valid id."""
    if not subject.startswith(ASSET_SUBJECT_PREFIX):
        return None
    asset_id = subject[len(ASSET_SUBJECT_PREFIX) :]
    return asset_id if is_valid_id(asset_id) else None


def _seq(seq: int) -> str:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise InvalidArgument.field("seq", f"must be 1..{MAX_SEQ}")
    return f"{seq:0{SEQ_DIGITS}d}"


# --- the seal store ---------------------------------------------------------------------------------

CHECKPOINT_SK_PREFIX = "CHECKPOINT#"
SIZE_DIGITS = 20
MAX_SIZE = 10**SIZE_DIGITS - 1


def seal_pk(tenant: str) -> str:
    return f"TENANT#{validate_id('tenant_id', tenant)}#SEAL"


def checkpoint_sk(size: int) -> str:
    return f"{CHECKPOINT_SK_PREFIX}{_size(size)}"


def size_of_checkpoint_sk(sk: str) -> int | None:
    digits = sk.removeprefix(CHECKPOINT_SK_PREFIX)
    if sk == digits or len(digits) != SIZE_DIGITS or not digits.isdigit():
        return None
    return int(digits)


def checkpoint_object_prefix(tenant: str) -> str:
    return f"{validate_id('tenant_id', tenant)}/checkpoint/"


def checkpoint_object_key(tenant: str, size: int) -> str:
    return f"{checkpoint_object_prefix(tenant)}{_size(size)}"


def size_of_checkpoint_object_key(tenant: str, key: str) -> int | None:
    """The size of a checkpoint object key of `tenant`, or None for any other key."""
    digits = key.removeprefix(checkpoint_object_prefix(tenant))
    if key == digits or len(digits) != SIZE_DIGITS or not digits.isdigit():
        return None
    return int(digits)


def tile_object_key(tenant: str, tile: TileId) -> str:
    return f"{validate_id('tenant_id', tenant)}/{tile.path}"


def verifier_object_key(tenant: str) -> str:
    return f"{validate_id('tenant_id', tenant)}/verifier.key"


def _size(size: int) -> str:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise InvalidArgument.field("tree_size", f"must be 0..{MAX_SIZE}")
    return f"{size:0{SIZE_DIGITS}d}"
