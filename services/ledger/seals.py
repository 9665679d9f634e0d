"""Checkpoint index items (DynamoDB) and seal objects (S3 Object Lock): the only code that builds them.

Objects are written once with `If-None-Match: *`; the bucket's default COMPLIANCE retention locks
them (no Object Lock headers are sent), and every write is checked to have got it. A write that finds the
object already there (a sealer that crashed after writing it, or a second replica) compares bytes
instead of writing a second version; the same tree always yields the same tiles, and Ed25519
signatures are deterministic, so an honest retry finds identical bytes. Checkpoints are read back by
the version id recorded in the index, so a later version of the same key cannot shadow them.

The one home of the write-once seal store: the sealer writes through this module, the ledger reads
through it, and the checks that decide whether a stored checkpoint can be believed (`seal_findings`,
`check_note`) live here too. Keys come from `services.ledger.keys`.

Synchronous boto3; async callers use `aws.call`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.kit import aws
from services.kit.errors import FailedPrecondition
from services.ledger import keys
from services.tlog.compact import CompactRange
from services.tlog.errors import TlogError
from services.tlog.note import Verifier
from services.tlog.tiles import TILE_WIDTH, TileId
from services.tlog.verify import verify_checkpoint


@dataclass(frozen=True)
class CheckpointRecord:
    """One signed checkpoint and the tree state needed to extend it without re-reading leaves."""

    size: int
    root: bytes
    note: bytes
    object_key: str
    version_id: str
    compact: CompactRange
    partial_tiles: dict[int, bytes]
    last_hash: str
    create_time: str
    key_name: str
    # Why the stored index item cannot be trusted as written ('' when it is whole): a damaged item is
    # still read, so that verification names its checkpoint instead of failing as a whole.
    defect: str = ""


class ObjectConflict(FailedPrecondition):
    """A write-once object exists with other bytes than the ones this seal would write."""

    reason = "SEAL_OBJECT_CONFLICT"


# --- DynamoDB: the checkpoint index --------------------------------------------------------------


def put_checkpoint_record(ddb: Any, table: str, tenant: str, record: CheckpointRecord) -> bool:
    """Record a checkpoint once; returns False when the size was already recorded (same root)."""
    values = {
        "PK": keys.seal_pk(tenant),
        "SK": keys.checkpoint_sk(record.size),
        "size": record.size,
        "root": record.root,
        "note": record.note,
        "object_key": record.object_key,
        "version_id": record.version_id,
        "compact": record.compact.to_bytes(),
        "partial_tiles": {str(level): data for level, data in record.partial_tiles.items()},
        "last_hash": record.last_hash,
        "create_time": record.create_time,
        "key_name": record.key_name,
    }
    try:
        ddb.put_item(TableName=table, Item=aws.to_item(values), ConditionExpression="attribute_not_exists(SK)")
    except ddb.exceptions.ConditionalCheckFailedException:
        existing = get_checkpoint_record(ddb, table, tenant, record.size)
        if existing is None or existing.root != record.root:
            raise ObjectConflict(f"checkpoint {record.size} is recorded with another root") from None
        return False
    return True


def latest_checkpoint_record(ddb: Any, table: str, tenant: str) -> CheckpointRecord | None:
    got = ddb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
        ExpressionAttributeValues=aws.to_item({":pk": keys.seal_pk(tenant), ":sk": keys.CHECKPOINT_SK_PREFIX}),
        ScanIndexForward=False,
        Limit=1,
        ConsistentRead=True,
    )
    items = got.get("Items", [])
    return _record(items[0]) if items else None


def previous_checkpoint_record(ddb: Any, table: str, tenant: str, size: int) -> CheckpointRecord | None:
    """The newest checkpoint smaller than `size`."""
    got = ddb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk AND SK BETWEEN :a AND :b",
        ExpressionAttributeValues=aws.to_item(
            {":pk": keys.seal_pk(tenant), ":a": keys.checkpoint_sk(0), ":b": keys.checkpoint_sk(max(size - 1, 0))}
        ),
        ScanIndexForward=False,
        Limit=1,
        ConsistentRead=True,
    )
    items = [i for i in got.get("Items", []) if _record(i).size < size]
    return _record(items[0]) if items else None


def get_checkpoint_record(ddb: Any, table: str, tenant: str, size: int) -> CheckpointRecord | None:
    got = ddb.get_item(
        TableName=table,
        Key=aws.to_item({"PK": keys.seal_pk(tenant), "SK": keys.checkpoint_sk(size)}),
        ConsistentRead=True,
    )
    return _record(got["Item"]) if "Item" in got else None


def list_checkpoint_records(
    ddb: Any, table: str, tenant: str, before_size: int | None, limit: int
) -> tuple[list[CheckpointRecord], int | None]:
    """Newest first, sizes below `before_size` (None: from the newest); and where to continue."""
    top = keys.MAX_SIZE if before_size is None else before_size - 1
    if top < 0:
        return [], None
    got = ddb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk AND SK BETWEEN :a AND :b",
        ExpressionAttributeValues=aws.to_item(
            {":pk": keys.seal_pk(tenant), ":a": keys.checkpoint_sk(0), ":b": keys.checkpoint_sk(top)}
        ),
        ScanIndexForward=False,
        Limit=limit,
        ConsistentRead=True,
    )
    records = [_record(i) for i in got.get("Items", [])]
    more = "LastEvaluatedKey" in got and records
    return records, (records[-1].size if more else None)


def all_checkpoint_records(ddb: Any, table: str, tenant: str, page: int = 500) -> Iterator[CheckpointRecord]:
    """Every checkpoint of the tenant, smallest first."""
    items = aws.query_items(
        ddb,
        TableName=table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
        ExpressionAttributeValues=aws.to_item({":pk": keys.seal_pk(tenant), ":sk": keys.CHECKPOINT_SK_PREFIX}),
        Limit=page,
        ConsistentRead=True,
    )
    for item in items:
        yield _record(item)


def _record(raw: dict[str, Any]) -> CheckpointRecord:
    """An index item as a record; a damaged item (attributes missing, unparsable or disagreeing with
    its key) still becomes a record, with `defect` saying what is wrong."""
    item = aws.from_item(raw)
    parsed = keys.size_of_checkpoint_sk(str(item.get("SK", "")))
    size = parsed or 0
    defects: list[str] = [] if parsed is not None else ["the sort key is not a checkpoint size"]

    def read(name: str, parse: Callable[[Any], Any], empty: Any) -> Any:
        if name not in item:
            defects.append(f"no {name}")
            return empty
        try:
            return parse(item[name])
        except (TypeError, ValueError, AttributeError, TlogError) as exc:
            defects.append(f"{name} unreadable ({exc})")
            return empty

    stated_size = read("size", int, size)
    if stated_size != size:
        defects.append(f"size attribute says {stated_size}")
    record = CheckpointRecord(
        size=size,
        root=read("root", _bytes, b""),
        note=read("note", _bytes, b""),
        object_key=read("object_key", _text, ""),
        version_id=read("version_id", _text, ""),
        compact=read("compact", lambda v: CompactRange.from_bytes(_bytes(v)), CompactRange()),
        partial_tiles=read("partial_tiles", _partials, {}),
        last_hash=read("last_hash", _text, ""),
        create_time=str(item.get("create_time", "")),
        key_name=str(item.get("key_name", "")),
    )
    if not defects and (record.compact.size != size or record.compact.root() != record.root):
        defects.append("compact range does not hash to the recorded root at its size")
    return replace(record, defect="; ".join(defects)) if defects else record


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__}, not a string")
    return value


def _partials(value: Any) -> dict[int, bytes]:
    return {int(level): _bytes(data) for level, data in dict(value).items()}


def _bytes(value: Any) -> bytes:
    return bytes(value.value if hasattr(value, "value") else value)


# --- S3: write-once objects ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """A write-once object as it is in the bucket: its version and its bytes."""

    version_id: str
    body: bytes


class RetentionMissing(FailedPrecondition):
    """A seal object was stored without COMPLIANCE retention: the bucket lacks its default retention."""

    reason = "SEAL_RETENTION_MISSING"


def put_once(
    s3: Any, bucket: str, key: str, body: bytes, *, retention_days: int, accept: Callable[[bytes], bool] | None = None
) -> StoredObject:
    """Write an object once (`If-None-Match: *`) and check that it is under COMPLIANCE retention.

    No Object Lock headers are sent (they need s3:PutObjectRetention, which the role and the bucket
    policy deny): the bucket's default COMPLIANCE retention applies, and `check_retention` proves it
    did. When the key exists already, its bytes must equal `body` (a retried seal) or satisfy
    `accept`; the existing version is returned. Anything else is an ObjectConflict, never a second
    version.
    """
    try:
        got = s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        stored = StoredObject(str(got.get("VersionId", "")), body)
    except Exception as exc:
        if aws.error_code(exc) not in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
            raise
        existing = s3.get_object(Bucket=bucket, Key=key)
        data = bytes(existing["Body"].read())
        if data != body and (accept is None or not accept(data)):
            raise ObjectConflict(f"{key} exists with different bytes") from None
        stored = StoredObject(str(existing.get("VersionId", "")), data)
    check_retention(s3, bucket, key, stored.version_id, retention_days)
    return stored


def check_retention(s3: Any, bucket: str, key: str, version_id: str, retention_days: int) -> None:
    """Raise RetentionMissing unless this object version is COMPLIANCE-locked for `retention_days`.

    The retain-until date is compared with the version's LastModified (the default retention starts
    when the object is written), with an hour of slack for clock differences.
    """
    if not version_id:
        raise RetentionMissing(f"{key} has no version id: the seal bucket is not versioned")
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    mode = head.get("ObjectLockMode")
    until = head.get("ObjectLockRetainUntilDate")
    if mode != "COMPLIANCE" or not isinstance(until, datetime):
        raise RetentionMissing(
            f"{key} (version {version_id}) has Object Lock mode {mode or 'none'}, not COMPLIANCE: "
            "the seal bucket needs a default COMPLIANCE retention"
        )
    written = head.get("LastModified")
    start = written if isinstance(written, datetime) else datetime.now(UTC)
    if until < start + timedelta(days=retention_days) - timedelta(hours=1):
        raise RetentionMissing(
            f"{key} (version {version_id}) is retained until {until.isoformat()}, less than the "
            f"{retention_days} days the sealer is configured for"
        )


def put_tile(s3: Any, bucket: str, tenant: str, tile: TileId, data: bytes, retention_days: int) -> str:  # noqa: PLR0917
    return put_once(s3, bucket, keys.tile_object_key(tenant, tile), data, retention_days=retention_days).version_id


def put_checkpoint_object(  # noqa: PLR0917
    s3: Any, bucket: str, tenant: str, size: int, note: bytes, retention_days: int,
    accept: Callable[[bytes], bool] | None = None,
) -> tuple[str, StoredObject]:
    """Write the signed note of a checkpoint; returns (object key, the stored object).

    `accept` decides whether a different note already stored under the key (one a crashed seal
    wrote, e.g. before a key rotation) may stand for this checkpoint.
    """
    key = keys.checkpoint_object_key(tenant, size)
    return key, put_once(s3, bucket, key, note, retention_days=retention_days, accept=accept)


def unrecorded_checkpoint_size(s3: Any, bucket: str, tenant: str, after: int) -> int | None:
    """The smallest checkpoint object size above `after` (the newest recorded size), if any.

    Such an object is left by a seal that stopped between writing the note and recording it; the
    next seal finishes that one instead of choosing another size. One List call, at most one key.
    """
    got = s3.list_objects_v2(
        Bucket=bucket,
        Prefix=keys.checkpoint_object_prefix(tenant),
        StartAfter=keys.checkpoint_object_key(tenant, after),
        MaxKeys=1,
    )
    for obj in got.get("Contents", []):
        size = keys.size_of_checkpoint_object_key(tenant, str(obj.get("Key", "")))
        if size is not None and size > after:
            return size
    return None


def put_verifier_keys(s3: Any, bucket: str, tenant: str, text: str) -> None:
    """Publish the tenant's verifier keys (newest first) unless the current object already says so."""
    key = keys.verifier_object_key(tenant)
    body = text.encode()
    try:
        if s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body:
            return
    except Exception as exc:
        if aws.error_code(exc) not in {"NoSuchKey", "404"}:
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain")


def read_verifier_keys(s3: Any, bucket: str, tenant: str) -> str:
    return str(s3.get_object(Bucket=bucket, Key=keys.verifier_object_key(tenant))["Body"].read().decode())


def read_checkpoint_object(s3: Any, bucket: str, object_key: str, version_id: str) -> bytes:
    """A checkpoint note by its recorded version (never 'the latest')."""
    return bytes(s3.get_object(Bucket=bucket, Key=object_key, VersionId=version_id)["Body"].read())


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of an object's version history: a stored version or a delete marker."""

    version_id: str
    delete_marker: bool
    modified: datetime | None


def checkpoint_objects(s3: Any, bucket: str, tenant: str) -> dict[int, list[ObjectVersion]]:
    """Every version and delete marker under the tenant's checkpoint prefix, by size, oldest first.

    The write-once store is where checkpoints are found: an index item can be deleted or edited by
    anyone with database access, a COMPLIANCE-locked version cannot. One paginated
    ListObjectVersions of the prefix (1,000 entries a page). Keys that are not `<size>` are ignored.
    """
    found: dict[int, list[ObjectVersion]] = {}
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=keys.checkpoint_object_prefix(tenant)
    )
    for page in pages:
        for marker, entries in ((False, page.get("Versions", [])), (True, page.get("DeleteMarkers", []))):
            for entry in entries:
                size = keys.size_of_checkpoint_object_key(tenant, str(entry.get("Key", "")))
                if size is None:
                    continue
                modified = entry.get("LastModified")
                found.setdefault(size, []).append(ObjectVersion(
                    str(entry.get("VersionId", "")), marker, modified if isinstance(modified, datetime) else None
                ))
    oldest = datetime.min.replace(tzinfo=UTC)
    for versions in found.values():
        versions.sort(key=lambda v: v.modified or oldest)
    return found


class TileReads:
    """Reads tiles of a sealed tree, counting S3 reads (the proofs' cost)."""

    def __init__(self, s3: Any, bucket: str, tenant: str, sealed_size: int) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._tenant = tenant
        self._sealed = sealed_size
        self.reads = 0
        self.paths: list[str] = []

    def __call__(self, tile: TileId) -> bytes:
        """A tile's body; a partial tile that was never written is cut from the wider tile that was.

        Every tile of a checkpointed size exists; a tile of another size <= the sealed size is a
        prefix of the same tile at the sealed size (full or partial), which does exist.
        """
        self.paths.append(tile.path)
        data = self._get(keys.tile_object_key(self._tenant, tile))
        if data is not None:
            return data
        count = self._sealed >> (8 * tile.level)
        width = max(0, min(TILE_WIDTH, count - tile.index * TILE_WIDTH))
        if width < tile.width:
            raise FailedPrecondition(f"tile {tile.path} is beyond the sealed tree of size {self._sealed}")
        wider = self._get(keys.tile_object_key(self._tenant, TileId(tile.level, tile.index, width)))
        if wider is None:
            raise FailedPrecondition(f"tile {tile.path} is missing from the seal bucket")
        return wider[: tile.width * 32]

    def _get(self, key: str) -> bytes | None:
        self.reads += 1
        try:
            return bytes(self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read())
        except Exception as exc:
            if aws.error_code(exc) in {"NoSuchKey", "404"}:
                return None
            raise


# --- checks: whether a stored checkpoint can be believed ---------------------------------------------


@dataclass(frozen=True)
class SealFinding:
    """A checkpoint that the index and the write-once store do not describe alike."""

    size: int
    reason: str
    # The bucket holds a checkpoint the index lacks: also what a seal looks like between writing its
    # note and recording it, so a reader may look again before calling it tampering.
    unindexed: bool = False


def seal_findings(
    records: Sequence[CheckpointRecord],
    objects: Mapping[int, Sequence[ObjectVersion]],
    object_key: Callable[[int], str],
) -> list[SealFinding]:
    """Compare the checkpoint index with every version and delete marker under the checkpoint prefix.

    Each signed checkpoint in the bucket is binding, so the index must hold it, name the one object
    version stored under its key, and be whole; a delete marker or a missing version is a failure.
    `object_key(size)` is where the sealer writes the checkpoint of `size`. Smallest size first.
    """
    by_size = {record.size: record for record in records}
    found: list[SealFinding] = []
    for size in sorted(set(by_size) | set(objects)):
        why = _disagreement(by_size.get(size), list(objects.get(size, ())), object_key(size))
        if why:
            found.append(SealFinding(size, f"checkpoint {size}: {why}", unindexed=size not in by_size))
    return found


def _disagreement(record: CheckpointRecord | None, versions: list[ObjectVersion], key: str) -> str:
    stored = [v.version_id for v in versions if not v.delete_marker]
    if record is None:
        if stored:
            return ("a signed checkpoint object is in the seal bucket but not in the index (deleted from the "
                    "index, or a seal interrupted before recording it: `lz seal now` finishes that)")
        return "the seal bucket holds a delete marker under its key and no version"
    if record.defect:
        return f"the index item is damaged: {record.defect}"
    if record.object_key != key:
        return f"the index names object {record.object_key!r}, not {key!r}"
    if record.version_id not in stored:
        return f"object version {record.version_id!r} named by the index is missing from the seal bucket"
    if any(v.delete_marker for v in versions):
        return "its object has a delete marker (hidden from readers of the latest version)"
    if len(stored) > 1:
        return "the object was overwritten by a newer version"
    return ""


def check_note(
    s3: Any, bucket: str, record: CheckpointRecord, verifiers: Sequence[Verifier], origin: str
) -> str:
    """'' when the checkpoint's note verifies, says what the index says and is the stored object version,
    else why not."""
    try:
        cp = verify_checkpoint(record.note, verifiers)
    except TlogError as exc:
        return f"checkpoint {record.size}: signature: {exc}"
    if cp.origin != origin or cp.size != record.size or cp.root_hash != record.root:
        return f"checkpoint {record.size}: the signed note disagrees with the index"
    try:
        stored = read_checkpoint_object(s3, bucket, record.object_key, record.version_id)
    except Exception as exc:
        return f"checkpoint {record.size}: object unreadable: {exc}"
    if stored != record.note:
        return f"checkpoint {record.size}: the stored object differs from the index"
    return ""
