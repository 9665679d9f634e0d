"""Keys of the sealer's items and objects: the only code that writes `CHECKPOINT#` and the SEAL partition.

DynamoDB: the checkpoint index of a tenant lives in `TENANT#<t>#SEAL`, one item per signed size
under `CHECKPOINT#<size, 20 digits>` (sort order = size order). S3: `<tenant>/checkpoint/<size, 20
digits>`, `<tenant>/tile/...` (C2SP tlog-tiles paths) and `<tenant>/verifier.key`.
"""

from __future__ import annotations

from services.kit.errors import InvalidArgument
from services.kit.ids import validate_id
from services.tlog.tiles import TileId

ENTITY_PREFIXES = ("CHECKPOINT", "SEAL")

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
