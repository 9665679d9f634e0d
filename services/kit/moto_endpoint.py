"""The embedded AWS server process: moto's WSGI app, made to behave like DynamoDB under concurrency.

Two differences from real DynamoDB matter to a ledger and are corrected here, in the emulator only:
- moto does not isolate concurrent requests: a cancelled TransactWriteItems restores a snapshot of
  the table taken before it began, erasing writes committed meanwhile. The endpoint therefore runs
  DynamoDB (and Streams) requests one at a time; S3 and SQS stay concurrent (SQS long polling).
- moto's TransactWriteItems deep-copies every table it touches, once per item, so a 99-item group
  commit on a table of a few thousand items takes seconds. `_transact_write_items` checks every
  condition first and then applies the writes, undoing only the touched items if one fails — the
  same all-or-nothing result at a cost proportional to the transaction.
- moto answers every Query by sorting the whole table and comparing every key of the partition, so
  one page of a small partition cost seconds once the test session's table held a few hundred
  thousand items, and reading a 20,000-event ledger page by page was quadratic. `_patch_query` hands
  moto only the candidates: for the table, the page of the partition that the sort-key condition,
  the start key and the limit leave (found by bisection); for an index, the items whose index hash
  attribute matches, from a map of the table kept up by every write (`_IndexHashes`: a scan of the
  table per index Query was most of the endpoint's time while the risk worker looked up the last
  inventory of 5,000 newly seen assets). moto's own code then checks, sorts, pages and filters them
  as before. The candidates keep the items past the sort-key condition's end, which moto's loop
  still looks at (the first one gets a last key when the page is full), and a partition's sorted
  keys are kept until a write adds or removes one of them (`_sorted_keys_kept`): a walk sorted them
  for every page, and rewriting an existing item (a heartbeat's last-seen) leaves the order as it is.
- For an index Query moto then sorted every item of the index partition and sized each one in its page
  loop, matching or not: ingest's health sweep (`GSI2SK <= :hi`, Limit 100, every second) over a
  tenant's 575 online agents cost the endpoint 16-28 ms of CPU, all of it under the DynamoDB lock.
  `_index_range_narrowed` leaves out the candidates failing the sort-key condition whose only effect
  in moto's loop could be a break it shows cannot happen (string keys, sizes within 1 MB), keeping
  the first one after the last match for the break a full page makes there; item sizes are kept
  until a write touches the item. 3.0-5.5 ms per sweep after (medians, the same runs, the machine
  shared; tests/kit/test_embedded_index_pages.py compares every page with released moto's).
- A forward Query of the table, projected (the ledger's whole-log walks) or not (an asset list), is
  answered by `_page`: moto's loop sized every item twice and deep-copied the page. `_page` keeps
  moto's items, counts and last key (tests/kit/test_embedded_pages.py compares every page with
  released moto's); a walk of 10,000 ledger events cost the endpoint about 200 µs of CPU per event
  before, about 70 µs after (same run).
- moto then turns such a page into DynamoType dicts, walks botocore's shape model over each attribute
  and runs a regular expression over the whole body looking for an XML request id: most of what a
  ledger walk still cost the endpoint. `_patch_query_answer` writes a page whose attributes are all
  strings, numbers and binaries into moto's own answer for an empty page (its counts, last key,
  ConsumedCapacity and headers), encoded as moto's serializer encodes a body; the page comparison
  checks the bodies byte for byte against released moto's. A VerifyLedger FULL of 10^5 events cost the
  endpoint 5.2-7.7 s of CPU before, 2.5-4.3 s after (same sessions, loaded machine; the walk client's
  own parsing included on the other side). One difference is deliberate:
  released moto rewrites any `<RequestId>...</RequestId>` text inside a JSON answer (its XML
  request-id substitution runs over every body); a plain page keeps the strings as stored.
- moto 5.2 builds every answer by walking botocore's shape model, asking each of the ten members of
  every AttributeValue for a value under several aliases: about 2 ms per item read, so a hello's
  100-key BatchGetItem took 200 ms and a fleet reconnecting timed out waiting for its credentials.
  `_patch_serializer` passes an AttributeValue through as it is when it is already its JSON wire
  form (no binary anywhere in it), and a binary one as its base64 (the custody events' bytes: a
  10,000-event page of the ledger took seconds); anything else goes the model's way.
- moto parses each update expression twice per request and walks its tree ten times, each walk
  rebuilding its map of node types at every node: ingest's 14-assignment stream-open UpdateItem cost
  the endpoint 11.5 ms, and UpdateItem is most of the writes here. `_patch_update_expressions` keeps a
  parsed tree by its text and builds each walker's map once: 21.6 → 4.7 ms per such update in one run
  (tests/kit/test_embedded_updates.py compares items and errors with released moto's).
- moto parses every JSON request by walking botocore's shape model too, each structure asking each of
  its members for a value (ten lookups per AttributeValue). `_patch_request_parsing` looks up only the
  keys a request has and takes an AttributeValue without binaries as sent: parsing a 99-put
  TransactWriteItems of custody-like items took 3.8-4.0 ms, 1.9 ms after (fastest of 300 each, one
  process). moto's stream record also turned the old and the new item to JSON at every write, for the
  table's KEYS_ONLY stream, which carries neither: `_patch_stream_records` hands it the keys only.
  Together they save 3.3-5.0 ms of the 99-put transaction's 22-37 ms (paired medians of 80, loaded
  machine). tests/kit/test_embedded_requests.py compares the parsed parameters with moto's own
  parser's, dict order included, and the stream records with moto's and released moto's.

moto's SQS is quadratic in the queue's length: each message considered by a receive asks for the
whole attribute set (which counts every message, twice), and each visibility check builds datetimes.
A backlog of a thousand envelopes made every call slower than the one before. `_patch_sqs` reads the
retention period directly and checks visibility against `time.time()`: the same answers, linear. It
also makes a receive copy the set of in-flight messages before reading their groups, since receives
and deletes on other threads change that set (moto failed such receives with "Set changed size").
Each message sent built the whole attribute set of its queue to read one flag, counting every message
three times, and each receipt handle deleted scanned the queue twice and rebuilt it: while the risk worker
held a few hundred envelopes in flight, these were half the endpoint's SQS time. A send now skips the
counts (it reads none of them), and a batch delete removes all its messages in one pass, under the lock
a send appends under (moto rebuilt the list without it, so a message sent meanwhile could vanish).
moto converts every attribute name from CamelCase with a character loop, thousands of times a second;
the pure conversion is cached. It also lists the handler class's methods with `inspect.getmembers` on
every request to see whether the action is one of them, a tenth of the endpoint's CPU per GetItem;
the list is taken once per class.

The app is served by waitress rather than moto's werkzeug development server: werkzeug closes the
connection after every response, so each boto3 call paid a TCP connect and the server a new thread,
while waitress keeps connections alive and serves them from a fixed pool. Its pool is large because
SQS long polls hold a thread for up to 20 s. moto also lists its own package directory on disk to
route every request; the listing is taken once. Under a fleet benchmark these costs were about half
of the endpoint's CPU and a tenth of ingest's.

Run as `python -m services.kit.moto_endpoint HOST PORT`; `embedded.start_endpoint` does.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import inspect
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from services.kit import heap

try:
    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
except ModuleNotFoundError as missing:
    if __name__ != "__main__":
        raise
    # The production image has no embedded endpoint: say which extra holds it, in one line.
    print(f"python -m services.kit.moto_endpoint: {missing.name} is not installed "
          "(the embedded extra: pip install 'lifecyclezero[embedded]')", file=sys.stderr)
    raise SystemExit(2) from None

_dynamodb_lock = threading.Lock()

# Long polls (up to 20 s each) of every worker and sealer hold threads; the rest is short requests.
_THREADS = 48
_CONNECTIONS = 2000

_SWITCH_INTERVAL_SECONDS = 0.05

StartResponse = Callable[..., Any]


def _serialised(app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            with _dynamodb_lock:
                # Consume the body inside the lock: the request is done only when its answer is built.
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wsgi


def _item_key(table: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    """TransactWriteItems: every condition checked, then every write applied, or nothing at all."""
    from moto.dynamodb import exceptions as exc
    from moto.dynamodb.comparisons import get_filter_expression

    if len(transact_items) > 100:
        raise exc.TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    planned: list[tuple[str, dict[str, Any], dict[str, Any], Any]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise exc.TransactWriteSingleOpException()
        op_type, op = next(iter(entry.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise exc.MockValidationException("Unsupported transaction operation")
        table_name = op["TableName"]
        key = _item_key(backend.get_table(table_name), op_type, op)
        marker = (str(table_name), str(sorted(key.items())))
        if marker in seen:
            raise exc.MultipleTransactionsException()
        seen.add(marker)
        current = backend.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        if condition is not None:
            check = get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            )
            if not check.expr(current):
                old = current.to_json()["Attributes"] if current and \
                    op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
                errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
                continue
        errors.append((None, None, None))
        planned.append((op_type, op, key, current))
    if any(code is not None for code, _, _ in errors):
        raise exc.TransactionCanceledException(errors)
    # What each write replaces, to put back if a later one fails: a put or a delete leaves the stored
    # item object as it was (the table holds a new one, or none); an update changes it in place.
    undo: list[tuple[str, dict[str, Any], Any]] = []
    try:
        for op_type, op, key, current in planned:
            table_name = op["TableName"]
            undo.append((table_name, key, copy.deepcopy(current) if current and op_type == "Update" else current))
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                backend.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                backend.delete_item(table_name, key)
            elif op_type == "Update":
                backend.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                    expression_attribute_names=names, expression_attribute_values=values)
    except Exception:
        for table_name, key, old in reversed(undo):
            if old is None:
                backend.delete_item(table_name, key)
            else:
                backend.put_item(table_name, old.to_json()["Attributes"])
        raise


def _query_candidates(table: Any, arguments: dict[str, Any]) -> list[Any] | None:
    """The items a Query can match, in key order: a superset of what moto's own loop keeps (it checks
    every condition again, and sorts, pages and filters as before), or None to let moto read the whole table.
    """
    if arguments.get("index_name"):
        return _index_candidates(table, arguments)
    hash_key = arguments.get("hash_key")
    if hash_key is None:
        return None
    partition = table.items.get(hash_key)
    if partition is None:
        return []
    if not table.range_key_attr:
        return [partition]
    narrowed = _narrowed_range(table, hash_key, arguments)
    return list(narrowed[0]) if narrowed is not None else list(partition.values())


_COMPARISONS = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}


def _sorted_keys(table: Any, hash_key: Any) -> tuple[list[Any], list[str]] | None:
    """The partition's sort keys in order and their values, or None unless every sort key is a string.

    Kept per partition until a write adds or removes a key of it (`_sorted_keys_kept`): a walk of a
    large partition page by page sorted all its keys for every page. Only keys are kept, and the items
    read from the partition when a page is built, because PutItem replaces an existing key's item.
    """
    kept = _sorted_keys_kept(table)
    if hash_key not in kept:
        ordered = list(table.items[hash_key])
        if any(key.type != "S" for key in ordered):
            return None
        ordered.sort(key=lambda key: key.value)
        kept[hash_key] = (ordered, [key.value for key in ordered])
    return kept[hash_key]


def _narrowed_range(table: Any, hash_key: Any, arguments: dict[str, Any]) -> tuple[Iterator[Any], int] | None:
    """The partition's items from the start key and the sort-key condition on, in the order a Query reads
    them, with how many of the first of them meet the condition; None when it cannot tell (a sort key
    not a string, a condition it does not know).

    Only string sort keys are narrowed, compared as moto compares them (as Python strings). The items
    past the condition's end stay: moto's loop still looks at them, and sets a last key on the first
    one when the page is full (by Limit, or by size). When more than `limit` items meet the condition,
    the items are cut to `limit + 1`, the last one enough to show that another page follows; only
    without a filter, since moto counts only matching items towards the limit.
    """
    found = _sorted_keys(table, hash_key)
    if found is None:
        return None
    ordered, keys = found
    lo, hi = 0, len(keys)
    comparison = arguments.get("range_comparison")
    bounds = arguments.get("range_objs") or []
    if comparison:
        comparison = _COMPARISONS.get(comparison, comparison.upper())
        if len(arguments.get("range_key_conditions") or []) > 1 or not bounds or any(b.type != "S" for b in bounds):
            return None
        first, last = bounds[0].value, bounds[-1].value
        if comparison == "EQ":
            lo, hi = bisect.bisect_left(keys, first), bisect.bisect_right(keys, first)
        elif comparison == "GE":
            lo = bisect.bisect_left(keys, first)
        elif comparison == "GT":
            lo = bisect.bisect_right(keys, first)
        elif comparison == "LE":
            hi = bisect.bisect_right(keys, first)
        elif comparison == "LT":
            hi = bisect.bisect_left(keys, first)
        elif comparison == "BETWEEN":
            lo, hi = bisect.bisect_left(keys, first), bisect.bisect_right(keys, last)
        elif comparison == "BEGINS_WITH":
            lo = bisect.bisect_left(keys, first)
            hi = _prefix_end(keys, first, lo)
        else:
            return None
    forward = arguments.get("scan_index_forward", True) is not False
    start = (arguments.get("exclusive_start_key") or {}).get(table.range_key_attr) or {}
    if "S" in start:
        if forward:
            lo = max(lo, bisect.bisect_right(keys, start["S"]))
        else:
            hi = min(hi, bisect.bisect_left(keys, start["S"]))
    matching = max(hi - lo, 0)
    limit = arguments.get("limit")
    page = limit + 1 if isinstance(limit, int) and limit > 0 and not arguments.get("filter_kwargs") else 0
    if forward:
        chosen = ordered[lo:lo + page] if 0 < page < matching else ordered[lo:]
    else:
        chosen = ordered[hi - page:hi] if 0 < page < matching else ordered[:hi]
    # Looked up as read: a page cut at 1 MB reads a fraction of a large Limit's items, and each lookup
    # hashes a DynamoType key in Python.
    return map(table.items[hash_key].__getitem__, chosen), min(matching, len(chosen))


def _prefix_end(keys: list[str], prefix: str, start: int) -> int:
    """The index after the last of the sorted `keys` from `start` on that start with `prefix`.

    The strings starting with `prefix` are exactly those from `prefix` up to, not including, `prefix`
    with its last character incremented, in Python's (code point) order.
    """
    if prefix and ord(prefix[-1]) < sys.maxunicode:
        return bisect.bisect_left(keys, prefix[:-1] + chr(ord(prefix[-1]) + 1), start)
    end = start
    while end < len(keys) and keys[end].startswith(prefix):
        end += 1
    return end


def _sorted_keys_kept(table: Any) -> dict[Any, tuple[list[Any], list[str]]]:
    """The sorted keys `_sorted_keys` keeps for a table's partitions, until a key is added or removed."""
    kept: dict[Any, tuple[list[Any], list[str]]] = table.__dict__.setdefault("_lz_sorted_keys", {})
    return kept


def _partition_size(table: Any, hash_key: Any) -> int:
    partition = table.items.get(hash_key)
    return len(partition) if isinstance(partition, dict) else int(partition is not None)


def _keys_changed_by(table: Any, hash_key: Any, range_key: Any, write: Callable[[], Any]) -> Any:
    """Run a write of one item of the partition, keeping its sorted keys when the write added or removed one.

    One put, update or delete changes the partition's size exactly when it adds or removes its key: the
    key is put in its place or taken out (a ledger's partition gains a key with every event, and sorting
    thousands of keys again for the next tail read cost 50 ms); any other change forgets them.
    """
    before = _partition_size(table, hash_key)
    try:
        return write()
    finally:
        change = _partition_size(table, hash_key) - before
        if change:
            _keep_sorted(table, hash_key, range_key, change)


def _keep_sorted(table: Any, hash_key: Any, range_key: Any, change: int) -> None:
    kept = _sorted_keys_kept(table)
    if hash_key not in kept:
        return
    ordered, values = kept[hash_key]
    if getattr(range_key, "type", None) != "S" or abs(change) != 1:
        del kept[hash_key]
        return
    at = bisect.bisect_left(values, range_key.value)
    present = at < len(values) and values[at] == range_key.value
    if change > 0 and not present:
        values.insert(at, range_key.value)
        ordered.insert(at, range_key)
    elif change < 0 and present:
        del values[at], ordered[at]
    else:
        del kept[hash_key]


def _index_candidates(table: Any, arguments: dict[str, Any]) -> list[Any] | None:
    """The items whose index hash attribute equals the query's, from the table's `_IndexHashes`, less those
    moto's loop would pass over without effect (`_index_range_narrowed`)."""
    for name, wanted in arguments.get("hash_key_conditions") or ():
        if wanted.type == "S":
            hashes = _IndexHashes.of(table)
            return _index_range_narrowed(table, arguments, name, hashes.items(table, name, wanted.value), hashes)
    return None


def _index_range_narrowed(table: Any, arguments: dict[str, Any], hash_attribute: str, candidates: list[Any],
                          hashes: _IndexHashes) -> list[Any]:
    """The `candidates` of an index Query less the ones not meeting its sort-key condition that moto's loop
    would look at without effect; all of them when that cannot be shown (`_index_range_narrowable`).

    moto sorts the candidates (by index hash, index range, table hash, table range), reverses them for
    ScanIndexForward false, skips those up to the start key, and then for each one first breaks if the
    page is full (`len(results) == limit`) or would pass 1 MB with it (`result_size + item.size()`), and
    only then appends it if it meets the condition (ScannedCount counts only those appended). One that
    does not meet it appends nothing, so it matters only by breaking there:
    - by the limit: the page was full at the last item appended; the next candidate kept then breaks
      the same way with the same page and last key, as nothing was appended in between. One is kept
      after the last match for that: the first candidate after it in moto's order.
    - by size: kept only when the matches' sizes (a bound of the page's) plus the largest candidate
      dropped stay within 1 MB, so no dropped one can break by size (nor, on an empty page, fail).
    The start key is compared with each candidate alone, and with string keys (required) that comparison
    holds for a leading run of moto's order: dropping candidates leaves the same kept ones in that run.
    Candidates without the index's sort-key attribute are kept: moto leaves them out itself.
    """
    from moto.dynamodb.comparisons import get_comparison_func
    from moto.dynamodb.models.table import RESULT_SIZE_LIMIT

    range_attribute = _index_range_narrowable(table, arguments, hash_attribute)
    if range_attribute is None:
        return candidates
    # What `DynamoType.compare` calls for a string: moto's comparison of the value with the bounds' values.
    meets = get_comparison_func(arguments["range_comparison"])
    bounds = [bound.value for bound in arguments["range_objs"]]
    order_attributes = [hash_attribute, range_attribute, table.hash_key_attr, table.range_key_attr]
    if table.range_key_attr is None:
        order_attributes.pop()
    lacking: list[Any] = []
    matching: list[tuple[tuple[str, ...], Any]] = []
    others: list[tuple[tuple[str, ...], Any]] = []
    for item in candidates:
        value = item.attrs.get(range_attribute)
        if value is None:
            lacking.append(item)
            continue
        order = _string_order(item, order_attributes)
        if order is None:
            return candidates
        (matching if meets(value.value, *bounds) else others).append((order, item))
    forward = arguments.get("scan_index_forward", True) is not False
    kept = [item for _, item in matching]
    if matching:
        last = max(matching)[0] if forward else min(matching)[0]
        after = [pair for pair in others if (pair[0] > last if forward else pair[0] < last)]
        if after:
            boundary = min(after) if forward else max(after)
            kept.append(boundary[1])
            others.remove(boundary)
    page_bound = sum(hashes.size_of(item) for _, item in matching)
    if page_bound + max((hashes.size_of(item) for _, item in others), default=0) > RESULT_SIZE_LIMIT:
        return candidates
    return kept + lacking


def _index_range_narrowable(table: Any, arguments: dict[str, Any], hash_attribute: str) -> str | None:
    """The index's sort-key attribute when `_index_range_narrowed` can narrow the Query, else None.

    That is: an index of one hash and one sort key, one condition on each, the sort key's with a comparison
    moto knows and string values, no legacy filter, a positive Limit or none, and a start key, if any,
    holding every attribute moto orders by as a string (moto's start-key comparison then orders as strings).
    """
    from moto.dynamodb.comparisons import get_comparison_func

    indexes = {index.name: index for index in table.all_indexes()}
    index = indexes.get(arguments.get("index_name"))
    conditions = arguments.get("range_key_conditions") or []
    if index is None or len(arguments.get("hash_key_conditions") or []) != 1 or len(conditions) != 1:
        return None
    schema = {key["KeyType"]: key["AttributeName"] for key in index.schema}
    if len(index.schema) != 2 or schema.get("HASH") != hash_attribute or conditions[0][0] != schema.get("RANGE"):
        return None
    comparison, bounds, limit = arguments.get("range_comparison"), arguments.get("range_objs"), arguments.get("limit")
    if (arguments.get("filter_kwargs") or not isinstance(comparison, str) or get_comparison_func(comparison) is None
            or not bounds
            or any(bound.type != "S" or type(bound.value) is not str for bound in bounds)
            or not (limit is None or (type(limit) is int and limit > 0))):
        return None
    start = arguments.get("exclusive_start_key")
    ordered_by = [hash_attribute, schema["RANGE"], table.hash_key_attr, table.range_key_attr]
    if start is not None and not all(
            isinstance(start.get(name), dict) and set(start[name]) == {"S"} and type(start[name]["S"]) is str
            for name in ordered_by if name is not None):
        return None
    return str(schema["RANGE"])


def _string_order(item: Any, attributes: list[str]) -> tuple[str, ...] | None:
    """The item's values of `attributes`, when all are strings: moto's sort key for it, compared as moto compares."""
    values = []
    for name in attributes:
        value = item.attrs.get(name)
        if value is None or value.type != "S" or type(value.value) is not str:
            return None
        values.append(value.value)
    return tuple(values)


class _IndexHashes:
    """One table's items by the string value of each attribute an index Query has asked about.

    Built by one pass over the table at the first Query naming the attribute, then kept up from the
    keys that writes touched since (`touched`, called by every write path: PutItem, DeleteItem and
    UpdateItem, which batches and transactions go through). UpdateItem changes items in place, so a
    touched key is read again rather than trusted from the write.
    """

    def __init__(self) -> None:
        self.by_attribute: dict[str, dict[str, dict[tuple[Any, Any], Any]]] = {}
        self.value_of: dict[str, dict[tuple[Any, Any], str]] = {}
        self.dirty: set[tuple[Any, Any]] = set()

    @staticmethod
    def of(table: Any) -> _IndexHashes:
        hashes: _IndexHashes | None = getattr(table, "_lz_index_hashes", None)
        if hashes is None:
            hashes = table._lz_index_hashes = _IndexHashes()
        return hashes

    @staticmethod
    def touched(table: Any, hash_key: Any, range_key: Any) -> None:
        hashes: _IndexHashes | None = getattr(table, "_lz_index_hashes", None)
        if hashes is not None and hashes.by_attribute:
            hashes.dirty.add((hash_key, range_key if table.range_key_attr else None))

    def items(self, table: Any, attribute: str, value: str) -> list[Any]:
        if attribute not in self.by_attribute:
            self.by_attribute[attribute], self.value_of[attribute] = {}, {}
            for partition in table.items.values():
                for item in (partition.values() if table.range_key_attr else (partition,)):
                    self._place(attribute, (item.hash_key, item.range_key), item)
        if self.dirty:
            for key in self.dirty:
                partition = table.items.get(key[0])
                item = partition.get(key[1]) if partition is not None and table.range_key_attr else partition
                if item is not None:
                    item.__dict__.pop("_lz_size", None)  # an update changes the item in place
                for name in self.by_attribute:
                    self._place(name, key, item)
            self.dirty.clear()
        return list(self.by_attribute[attribute].get(value, {}).values())

    @staticmethod
    def size_of(item: Any) -> int:
        """`item.size()`, kept on an item `items` has just returned until a write touches it (moto re-sums
        every attribute): the health sweep sizes every online agent of a tenant every second."""
        size: int | None = item.__dict__.get("_lz_size")
        if size is None:
            size = item.__dict__["_lz_size"] = item.size()
        return size

    def _place(self, attribute: str, key: tuple[Any, Any], item: Any) -> None:
        old = self.value_of[attribute].pop(key, None)
        if old is not None:
            self.by_attribute[attribute][old].pop(key, None)
        got = item.attrs.get(attribute) if item is not None else None
        if got is not None and got.type == "S":
            self.by_attribute[attribute].setdefault(got.value, {})[key] = item
            self.value_of[attribute][key] = got.value


def _patch_index_upkeep() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    moto_put, moto_delete, moto_update = Table.put_item, Table.delete_item, DynamoDBBackend.update_item

    def put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        raw_hash = item_attrs.get(self.hash_key_attr) if isinstance(item_attrs, dict) else None
        if raw_hash is None:  # moto refuses the item itself
            return moto_put(self, item_attrs, *args, **kwargs)
        raw_range = item_attrs.get(self.range_key_attr) if self.range_key_attr else None
        item = _keys_changed_by(self, DynamoType(raw_hash), DynamoType(raw_range) if raw_range is not None else None,
                                lambda: moto_put(self, item_attrs, *args, **kwargs))
        _IndexHashes.touched(self, item.hash_key, item.range_key)
        return item

    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        try:
            return _keys_changed_by(self, hash_key, range_key, lambda: moto_delete(self, hash_key, range_key))
        finally:
            _IndexHashes.touched(self, hash_key, range_key)

    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        table = self.get_table(table_name)
        if table.hash_key_attr not in key:
            return moto_update(self, table_name, key, *args, **kwargs)
        hash_key = DynamoType(key[table.hash_key_attr])
        range_value = key.get(table.range_key_attr) if table.range_key_attr else None
        range_key = DynamoType(range_value) if range_value is not None else None
        try:
            return _keys_changed_by(table, hash_key, range_key,
                                    lambda: moto_update(self, table_name, key, *args, **kwargs))
        finally:
            _IndexHashes.touched(table, hash_key, range_key)

    Table.put_item = put_item  # type: ignore[method-assign]
    Table.delete_item = delete_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]


def _plain_page(table: Any, arguments: dict[str, Any]) -> bool:
    """True for a forward Query of the table (no index, no filter), whole items or top-level attributes,
    from the start or from a key of the same partition: the case `_page` answers as moto's loop would."""
    from moto.dynamodb.comparisons import OpDefault

    projection, hash_key = arguments.get("projection_expressions") or [], arguments.get("hash_key")
    if arguments.get("index_name") or arguments.get("filter_kwargs") or not table.range_key_attr or hash_key is None:
        return False
    if arguments.get("scan_index_forward", True) is False or any(
            len(path) != 1 or "[" in path[0] for path in projection):
        return False
    condition = arguments.get("filter_expression")
    if condition is not None and not isinstance(condition, OpDefault):
        return False
    start = arguments.get("exclusive_start_key")
    if start is None:
        return True
    return (set(start) == {table.hash_key_attr, table.range_key_attr}
            and start[table.hash_key_attr] == {hash_key.type: hash_key.value} and "S" in start[table.range_key_attr])


def _stored_size(item: Any) -> int:
    """`Item.size()` as moto counts it, directly for the scalar types the ledger stores.

    A string's UTF-8 length is its length when it is ASCII (checked without encoding it).
    """
    size = 0
    for name, value in item.attrs.items():
        kind, inner = value.type, value.value
        if kind in {"S", "B"}:
            size += len(inner) if isinstance(inner, bytes) or inner.isascii() else len(inner.encode("utf-8"))
        elif kind == "N":
            size += len(str(inner))
        else:
            size += value.size()
        size += len(name) if name.isascii() else len(name.encode("utf-8"))
    return size


def _page(table: Any, candidates: Iterable[Any], matching: int, arguments: dict[str, Any]) -> tuple[
    list[Any], int, dict[str, Any] | None
]:
    """moto's Query loop for a `_plain_page`: the same items (unprojected), counts and last key, without its
    per-item costs.

    moto sizes each item twice, deep-copies the whole page and then projects the copy (a projection
    builds new items anyway); here each item is sized once, and the table's items are projected or
    written out directly (`_projected`, `_wire_items`). The first `matching` candidates
    (`_narrowed_range`, looked up as they are read) are the items after the start key that meet the
    sort-key condition, in key order: bisection applied the condition with the string comparisons
    moto's loop makes. The ones after them are only looked at, as moto looks at them, for a full page.
    """
    from moto.dynamodb.models.table import RESULT_SIZE_LIMIT

    limit = arguments.get("limit")
    results: list[Any] = []
    result_size = 0
    last_key = None
    for index, item in enumerate(candidates):
        size = _stored_size(item)
        if len(results) == limit or result_size + size > RESULT_SIZE_LIMIT:
            last_key = table._get_last_evaluated_key(results[-1], None)
            break
        if index < matching:
            results.append(item)
            result_size += size
    return results, len(results), last_key


def _projected(items: list[Any], projection: list[list[str]] | None) -> list[Any]:
    """A `_page`'s items as moto's Query hands them to its handler: projected, or the stored items themselves.

    moto hands back deep copies; the answer is built from these items inside the request lock
    (`_serialised`), where no write can change them, and nothing in building it changes them.
    """
    return [item.project(projection) for item in items] if projection else items


_wire_pages = threading.local()
"""Set by the Query handler of `_patch_query_answer` while moto runs a Query: `wanted` asks for a plain
page in its wire form, which `_plain_answer` leaves in `items` (and hands moto an empty page)."""


def _plain_answer(table: Any, candidates: Iterable[Any], matching: int, arguments: dict[str, Any]) -> tuple[
    list[Any], int, dict[str, Any] | None
]:
    """A `_plain_page`'s answer to moto's Query handler; in wire form aside when the handler wants it and can."""
    results, scanned, last_key = _page(table, candidates, matching, arguments)
    projection = arguments.get("projection_expressions")
    if getattr(_wire_pages, "wanted", False):
        wire = _wire_items(results, projection)
        if wire is not None:
            _wire_pages.items = wire
            return [], scanned, last_key
    return _projected(results, projection), scanned, last_key


_WIRE_AS_STORED = frozenset({"S", "N"})


def _wire_items(items: list[Any], projection: list[list[str]] | None) -> list[dict[str, dict[str, str]]] | None:
    """The items (top-level attributes of `projection`, or whole) as a DynamoDB answer spells them, or None
    unless every value written is a string, number or binary.

    A string or number is its stored text; a binary is the base64 of its bytes, however it was stored
    (moto keeps a written binary as the base64 text it was sent, and its answer decodes and re-encodes it).
    """
    names = list(dict.fromkeys(path[0] for path in projection)) if projection else None
    wire = []
    for item in items:
        attrs = item.attrs
        chosen = attrs.items() if names is None else [(name, attrs[name]) for name in names if name in attrs]
        encoded: dict[str, dict[str, str]] = {}
        for name, value in chosen:
            kind, inner = value.type, value.value
            if kind == "B":
                inner = _base64_of(inner)
                if inner is None:
                    return None
            elif kind not in _WIRE_AS_STORED or type(inner) is not str:
                return None
            encoded[name] = {kind: inner}
        wire.append(encoded)
    return wire


def _base64_of(binary: Any) -> str | None:
    """A stored binary's wire form: the base64 of its bytes (decoded first when stored as base64 text), or
    None when it is neither, or not base64 (moto's own answer then fails as it does)."""
    try:
        plain = binascii.a2b_base64(binary) if type(binary) is str else binary
        return binascii.b2a_base64(plain, newline=False).decode("ascii") if type(plain) is bytes else None
    except ValueError:
        return None


def _patch_query_answer() -> None:
    """A plain page's Query answer is written from its items directly (`_wire_items`), the rest by moto.

    moto turns a page into DynamoType dicts (`dynamo_to_dict`), walks the model's shapes over every
    attribute, and then runs a regular expression over the whole body looking for an XML request id;
    for a walk's pages of a few thousand events these were a third of the endpoint's time. Here moto
    still parses, validates and answers the request, with an empty page (its Count, ScannedCount, last
    key, ConsumedCapacity, headers and status), and the items are put into that answer, encoded as
    moto's serializer encodes a body (`json.dumps`). Select=COUNT and every other Query go moto's way.
    """
    import json

    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoHandler

    moto_query = DynamoHandler.query

    def query(handler: Any) -> Any:
        if handler.body.get("Select") == "COUNT":
            return moto_query(handler)
        _wire_pages.wanted, _wire_pages.items = True, None
        try:
            answer = moto_query(handler)
        finally:
            items, _wire_pages.wanted, _wire_pages.items = _wire_pages.items, False, None
        if items is None:
            return answer
        result = cast(dict[str, Any], answer.result)  # the handler's answer body, a dict (DynamoResult)
        result["Count"] = len(items)
        status, headers, body = handler.serialized(ActionResult(result))
        document = json.loads(body)
        document["Items"] = items
        # moto's call_action reads the status from the headers, 200 when absent (a success is always 200);
        # a body in bytes is left alone by its request-id substitution, which rewrites XML text only.
        return status, headers, json.dumps(document).encode("ascii")

    DynamoHandler.query = query  # type: ignore[method-assign]


def _patch_query() -> None:
    from moto.dynamodb.models.table import Table

    moto_query = Table.query
    signature = inspect.signature(moto_query)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        if _plain_page(self, arguments):
            exact: tuple[Iterable[Any], int] | None = _narrowed_range(self, arguments["hash_key"], arguments) \
                if arguments["hash_key"] in self.items else ([], 0)
            if exact is not None:
                return _plain_answer(self, *exact, arguments)
        candidates = _query_candidates(self, arguments)
        if candidates is None:
            return moto_query(self, *args, **kwargs)
        self.all_items = lambda: candidates  # DynamoDB requests run one at a time (`_serialised`)
        try:
            return moto_query(self, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query  # type: ignore[method-assign]


_JSON_NATIVE_TYPES = frozenset({"S", "N", "BOOL", "NULL", "SS", "NS"})


def _json_native(value: Any) -> bool:
    """True when `value` is an AttributeValue already in its wire form: one type, no binary anywhere."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind == "M":
        return isinstance(inner, dict) and all(_json_native(v) for v in inner.values())
    if kind == "L":
        return isinstance(inner, list) and all(_json_native(v) for v in inner)
    return kind in _JSON_NATIVE_TYPES and inner is not None


def _plain_binary(value: Any) -> bool:
    """True for a top-level binary AttributeValue: its wire form is its bytes in base64, as the model spells it."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("B"), bytes | str)


def _patch_serializer() -> None:
    from moto.core.serialize import BaseJSONSerializer

    moto_structure = BaseJSONSerializer._serialize_type_structure

    def structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            if _json_native(value):
                serialized[self.get_serialized_name(shape, key)] = value
                return
            if _plain_binary(value):
                serialized[self.get_serialized_name(shape, key)] = {"B": self._base64(value["B"])}
                return
        moto_structure(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = structure  # type: ignore[method-assign]


def _patch_request_parsing() -> None:
    """A JSON request is parsed into the same parameters as moto parses it, without asking every member.

    moto walks botocore's shape model over each request, and a structure asks each of its members for
    a value: ten lookups for every AttributeValue (a quarter of what a grouped 99-write transaction cost
    the endpoint). Here a structure looks up only the keys the request has, and an AttributeValue without
    binaries is taken as sent (`_structure_parser`).
    """
    from moto.core.parse import BaseJSONParser

    BaseJSONParser._parse_structure = _structure_parser(BaseJSONParser._parse_structure)  # type: ignore[method-assign]


def _structure_parser(moto_structure: Callable[..., Any]) -> Callable[..., Any]:
    """moto's JSON `_parse_structure` (`moto_structure`), made to read only the keys a request has.

    moto's loop goes over the model's members in order, keeps each one whose value is there and not
    null, and parses it; here the request's keys are looked up in a map of the members by their wire
    name and parsed in the model's order, so the result is the same dict, in the same order, from the
    same parse calls. An AttributeValue that `_passes_as_sent` is the value itself: moto's parse of it
    builds an equal copy (strings and booleans are taken as they are, lists and maps copied member for
    member), also inside a map of names to AttributeValues (`_attribute_map`: an item, a key), whose other
    values are parsed as moto parses them. Anything else (a document, a null, a model whose wire names
    collide) is moto's.
    """
    from moto.core.parse import RequestParser

    members_of: dict[Any, dict[str, tuple[int, str, Any]] | None] = {}
    copies_plainly: dict[type, bool] = {}

    def members(shape: Any) -> dict[str, tuple[int, str, Any]] | None:
        if shape not in members_of:
            by_name = {member.serialization.get("name", name): (index, name, member)
                       for index, (name, member) in enumerate(shape.members.items())}
            members_of[shape] = by_name if len(by_name) == len(shape.members) else None
        return members_of[shape]

    def plain_copies(parser: type) -> bool:
        """True when `parser` takes strings and booleans as they are and copies lists and maps (rest-json does not)."""
        if parser not in copies_plainly:
            copies_plainly[parser] = (not hasattr(parser, "_parse_string") and not hasattr(parser, "_parse_boolean")
                                      and parser._parse_list is RequestParser._parse_list  # type: ignore[attr-defined]
                                      and parser._parse_map is RequestParser._parse_map)  # type: ignore[attr-defined]
        return copies_plainly[parser]

    def structure(self: Any, shape: Any, value: Any) -> Any:
        if type(value) is not dict or shape.is_document_type:
            return moto_structure(self, shape, value)
        if shape.name == "AttributeValue" and _passes_as_sent(shape, value) and plain_copies(type(self)):
            return value
        named = members(shape)
        if named is None:
            return moto_structure(self, shape, value)
        present = sorted(named[key] + (raw,) for key, raw in value.items() if key in named and raw is not None)
        parsed = self.MAP_TYPE()
        for _, name, member, raw in present:
            if member.type_name == "map" and _attribute_map(member, raw) and plain_copies(type(self)):
                parsed[name] = attribute_map(self, member.value, raw)
            else:
                parsed[name] = self._parse_shape(member, raw)
        return parsed

    def attribute_map(self: Any, value_shape: Any, value: dict[str, Any]) -> Any:
        """moto's parse of a map of names to AttributeValues, each one that `_passes_as_sent` taken as it is."""
        parsed = self.MAP_TYPE()
        for key, inner in value.items():
            as_sent = type(inner) is dict and _passes_as_sent(value_shape, inner)
            parsed[key] = inner if as_sent else self._parse_shape(value_shape, inner)
        return parsed

    return structure


# DynamoDB's AttributeValue members whose parse keeps the value as sent: (member, type, its members' shape).
_AS_SENT_MEMBERS = frozenset({("S", "string", None), ("N", "string", None), ("BOOL", "boolean", None),
                              ("NULL", "boolean", None), ("SS", "list", "StringAttributeValue"),
                              ("NS", "list", "NumberAttributeValue"), ("M", "map", "AttributeValue"),
                              ("L", "list", "AttributeValue")})
_as_sent_shapes: dict[Any, bool] = {}


def _passes_as_sent(shape: Any, value: dict[str, Any]) -> bool:
    """True when parsing the AttributeValue `value` of `shape` gives `value` again: it is `_json_native`, its
    sets are lists, and `shape` is DynamoDB's (its members of those types, not renamed)."""
    if shape not in _as_sent_shapes:
        kinds = {(name, member.type_name, getattr(member, "value", getattr(member, "member", None)))
                 for name, member in shape.members.items() if not member.serialization}
        named = {(name, kind, inner.name if inner is not None else None) for name, kind, inner in kinds}
        _as_sent_shapes[shape] = named >= _AS_SENT_MEMBERS
    return _as_sent_shapes[shape] and _json_native(value) and _sets_are_lists(value)


def _attribute_map(shape: Any, value: Any) -> bool:
    """True when `value`, of the map `shape`, is a dict of names to AttributeValues: an item, a key, expression
    values (moto's parse of it parses each name, a string taken as it is, and each value in turn)."""
    return type(value) is dict and shape.value.name == "AttributeValue" and shape.key.type_name == "string"


def _sets_are_lists(value: dict[str, Any]) -> bool:
    """True when every SS and NS in the `_json_native` `value` is a list (moto's parse iterates whatever it is)."""
    ((kind, inner),) = value.items()
    if kind in ("SS", "NS"):
        return type(inner) is list
    if kind == "M":
        return all(_sets_are_lists(v) for v in inner.values())
    if kind == "L":
        return all(_sets_are_lists(v) for v in inner)
    return True


class _KeysOnly:
    """An item as a stream record without images reads it: its keys, and no attributes to convert."""

    __slots__ = ("hash_key", "range_key")

    def __init__(self, item: Any) -> None:
        self.hash_key, self.range_key = item.hash_key, item.range_key

    @staticmethod
    def of(item: Any) -> _KeysOnly | None:
        return None if item is None else _KeysOnly(item)

    def to_json(self) -> dict[str, Any]:
        return {"Attributes": {}}


def _patch_stream_records() -> None:
    """A stream record converts the images only its view type carries (the table's is KEYS_ONLY).

    moto turned the old and the new item to JSON for every write and then kept neither: a tenth of a
    grouped transaction's cost (`_stream_record_init`).
    """
    from moto.dynamodb.models.table import StreamRecord

    StreamRecord.__init__ = _stream_record_init(StreamRecord.__init__)  # type: ignore[method-assign]


def _stream_record_init(moto_init: Callable[..., None]) -> Callable[..., None]:
    """moto's StreamRecord.__init__ (`moto_init`), handed an image only when the view type carries it.

    Otherwise it gets the item's keys (`_KeysOnly`), from which it takes the record's Keys; a missing
    image stays missing, so the event name is the same. The record (keys, sequence number, and SizeBytes,
    the length of the record without images) is the one moto builds.
    """
    def init(self: Any, table: Any, stream_type: str, event_name: str,  # noqa: PLR0917 - moto's signature
             old: Any, new: Any, seq: int) -> None:
        moto_init(self, table, stream_type, event_name,
                  old if stream_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") else _KeysOnly.of(old),
                  new if stream_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") else _KeysOnly.of(new), seq)

    return init


_PROJECTED_AS_STORED = frozenset({"S", "B"})


def _patch_projection() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    moto_project = Item.project

    def project(self: Any, projection_expressions: list[list[str]]) -> Any:
        names = [path[0] for path in projection_expressions if len(path) == 1 and "[" not in path[0]]
        chosen = [(name, self.attrs[name]) for name in names if name in self.attrs]
        if len(names) != len(projection_expressions) or any(v.type not in _PROJECTED_AS_STORED for _, v in chosen):
            return moto_project(self, projection_expressions)
        projected: Any = Item.__new__(Item)
        projected.hash_key, projected.range_key = self.hash_key, self.range_key
        attrs = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(attrs)
        for name, value in chosen:
            # As moto's own projection leaves it: a binary value as bytes, however it was stored.
            plain = base64.b64decode(value.value) if value.type == "B" and isinstance(value.value, str) else value.value
            copied = DynamoType.__new__(DynamoType)
            copied.type, copied.value = value.type, plain
            dict.__setitem__(attrs, name, copied)
        projected.attrs = attrs
        return projected

    Item.project = project  # type: ignore[method-assign]


def _patch_update_expressions() -> None:
    """UpdateItem's expression work, without its repeated parts; the same trees, checks and errors.

    moto parses every update expression twice per request (the handler, then the backend) and runs ten
    tree walks over it, each of which rebuilt its walker's map of node types at every node: a 14-assignment
    update (ingest's stream-open write) cost the endpoint 11.5 ms. A parsed tree is kept by its text
    (nothing changes it: the validator works on its own deep copy, the handler only reads it).

    Every node class has moto's `ABCMeta` as its metaclass, so each `isinstance` of a walk goes the slow
    way, and the validator's deep copy of the tree went through `copy`'s generic reconstruction: a
    100-update transaction (the custody sequencer's marks) spent most of its time in these. Whether a
    node is a `Node`, a clause to descend into, or which entry of a walker's map takes it depends on
    the node's class alone (moto's maps are fixed per walker class), so it is found once; each walker
    builds its map once; a node copies itself attribute by attribute through the same `deepcopy` memo.
    The reserved words are looked up in a set instead of a list of 573.
    """
    import functools

    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        DepthFirstTraverser,
        Expression,
        Node,
        UpdateExpressionFunction,
    )
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    parse: Any = functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make.__func__)
    UpdateExpressionParser.make = classmethod(parse)

    is_node: dict[type, bool] = {}
    descends: dict[type, bool] = {}
    # (walker class, node class) -> the map entry taking that node: moto's maps are fixed per walker class.
    taken_by: dict[tuple[type, type], type | None] = {}

    def processing_map(walker: Any) -> dict[type, Callable[[Any], Any]]:
        kept: dict[type, Callable[[Any], Any]] | None = walker.__dict__.get("_lz_processing_map")
        if kept is None:
            kept = walker.__dict__["_lz_processing_map"] = walker._processing_map()
        return kept

    def processor_for(walker: Any, kind: type) -> Callable[[Any], Any] | None:
        """The processor moto's `process` would pick for a node of class `kind`: the map's first match."""
        key = (type(walker), kind)
        if key not in taken_by:
            taken_by[key] = next((node_type for node_type in processing_map(walker) if issubclass(kind, node_type)),
                                 None)
        node_type = taken_by[key]
        return None if node_type is None else processing_map(walker)[node_type]

    def traverse_node_recursively(walker: Any, node: Any, child_id: int = -1) -> Any:
        kind = type(node)
        if kind not in is_node:
            is_node[kind] = isinstance(node, Node)
        if not is_node[kind]:
            return node
        parent_node = node.parent
        if node.children is not None:
            for index, child_node in enumerate(node.children):
                walker.pre_processing_of_child(node, index)
                walker.traverse_node_recursively(child_node, index)
        processor = processor_for(walker, kind)
        if processor is not None:
            node = processor(node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    def find_clauses(self: Any, clause_types: Any) -> list[Any]:
        clauses: list[Any] = []
        for child in self.children or []:
            kind = type(child)
            if kind in clause_types:
                clauses.append(child)
                continue
            if kind not in descends:
                descends[kind] = isinstance(child, Expression | UpdateExpressionFunction)
            if descends[kind]:
                clauses.extend(child.find_clauses(clause_types))
        return clauses

    def node_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
        copied = object.__new__(type(self))
        memo[id(self)] = copied
        for name, value in self.__dict__.items():
            copied.__dict__[name] = copy.deepcopy(value, memo)
        return copied

    class _Keywords(list[str]):
        def __init__(self, words: list[str]) -> None:
            super().__init__(words)
            self._set = frozenset(words)

        def __contains__(self, word: object) -> bool:
            return word in self._set

    ReservedKeywords.KEYWORDS = _Keywords(ReservedKeywords.get_reserved_keywords())
    # moto's `process` and `nodes_to_be_processed` are called only by the walk replaced here.
    DepthFirstTraverser.traverse_node_recursively = traverse_node_recursively
    Node.find_clauses = find_clauses
    Node.__deepcopy__ = node_deepcopy


def _patch_item_sizing() -> None:
    """A new item is sized once, not once per attribute: the same items and the same ItemSizeTooLarge.

    moto's `LimitedSizeDict` re-sums the whole item at every attribute it sets, so building an item of
    n attributes costs n^2 sizings (a fifth of a grouped 99-write transaction). An item being built
    only grows, so the size after its last attribute is the largest one moto would have checked.
    """
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key, self.range_key = hash_key, range_key
        self.attrs = LimitedSizeDict()
        for key, value in attrs.items():
            dict.__setitem__(self.attrs, key, DynamoType(value))
        if sum(bytesize(key) + value.size() for key, value in self.attrs.items()) > _ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge

    Item.__init__ = init  # type: ignore[method-assign]


# moto's limit for an item (LimitedSizeDict): between the 409 and 410 KB DynamoDB accepts.
_ITEM_SIZE_LIMIT = 405_000


def _patch_condition_parsing() -> None:
    """A condition expression's tree is kept by its text and the names and values it uses: ingest,
    assets and the ledger send a few expressions over and over (`attribute_not_exists(SK)` on every
    new item), and moto parses each condition of a transaction twice (the handler's check, then the
    write). A tree is only read when a condition is checked (nothing in moto's comparisons assigns to
    a node after building it), so one tree serves every request with the same text, names and values.
    The values and names a condition uses are the placeholders in its text; the others of a request
    (an update's own values) do not change its tree. A condition that fails to parse is never kept.
    """
    import collections
    import json
    import re

    from moto.dynamodb.comparisons import ConditionExpressionParser

    moto_parse = ConditionExpressionParser.parse
    placeholder = re.compile(r"[:#][A-Za-z0-9_\-]+")
    kept: collections.OrderedDict[tuple[str, str], tuple[Any, list[str], list[str]]] = collections.OrderedDict()

    def parse(self: Any) -> Any:
        text = self.condition_expression
        if not text:
            return moto_parse(self)
        used = set(placeholder.findall(text))
        names = self.expression_attribute_names or {}
        values = self.expression_attribute_values or {}
        key = (text, json.dumps([{n: names[n] for n in sorted(used) if n in names},
                                 {v: values[v] for v in sorted(used) if v in values}], sort_keys=True, default=str))
        if key not in kept:
            kept[key] = (moto_parse(self), list(self.expr_attr_names_found), list(self.expr_attr_values_found))
            if len(kept) > _CONDITION_TREES_KEPT:
                kept.popitem(last=False)
            return kept[key][0]
        tree, names_found, values_found = kept[key]
        # What moto's handlers read back from the parser after a parse (the unused-name checks).
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return tree

    ConditionExpressionParser.parse = parse  # type: ignore[method-assign]


_CONDITION_TREES_KEPT = 4096


def _patch_condition_lexing() -> None:
    """A condition expression's tokens are kept by its text (for the conditions `_patch_condition_parsing`
    has not kept whole, as their values change with every item). Tokens depend on the text alone (names
    and values are applied later, to fresh nodes); each parse gets its own copy of the token list and of
    each token's children.
    """
    import functools

    from moto.dynamodb.comparisons import ConditionExpressionParser

    moto_lex = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=1024)
    def tokens(text: str) -> tuple[Any, ...]:
        parser = ConditionExpressionParser.__new__(ConditionExpressionParser)
        parser.condition_expression = text
        return tuple(moto_lex(parser))

    def lex(self: Any) -> Any:
        from collections import deque

        return deque(node._replace(children=list(node.children)) for node in tokens(self.condition_expression))

    ConditionExpressionParser._lex_condition_expression = lex  # type: ignore[method-assign]


def _patch_dynamodb() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign,assignment]
    _patch_query()
    _patch_query_answer()
    _patch_projection()
    _patch_index_upkeep()
    _patch_serializer()
    _patch_update_expressions()
    _patch_item_sizing()
    _patch_condition_lexing()
    _patch_condition_parsing()
    _patch_request_parsing()
    _patch_stream_records()


# Queue attributes a send computes through `Queue.attributes` and never reads.
_QUEUE_COUNTS = ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
                 "approximate_number_of_messages_not_visible")
_send_state = threading.local()


def _sending(send: Callable[..., Any]) -> Callable[..., Any]:
    def marked(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_send_state, "active", False)
        _send_state.active = True
        try:
            return send(*args, **kwargs)
        finally:
            _send_state.active = outer

    return marked


def _skipped_while_sending(count: Callable[[Any], int]) -> Callable[[Any], int]:
    def counted(queue: Any) -> int:
        return 0 if getattr(_send_state, "active", False) else count(queue)

    return counted


def _delete_messages(queue: Any, receipt_handles: Iterable[str]) -> set[str]:
    """Delete the messages that ever had one of `receipt_handles`, in one pass; the handles now deleted.

    The queue's list is rebuilt under its lock, the lock a send appends under: moto rebuilt it without,
    so a message sent while a delete ran could vanish.
    """
    wanted = set(receipt_handles) - queue.deleted_messages
    if wanted:
        with queue._messages_lock:
            kept = []
            for message in queue._messages:
                handles = message.all_receipt_handles
                if wanted.isdisjoint(handles):
                    kept.append(message)
                else:
                    queue.pending_messages.discard(message)
                    queue.deleted_messages.update(handles)
            queue._messages = kept
    deleted: set[str] = queue.deleted_messages.intersection(receipt_handles)
    return deleted


def _delete_message(queue: Any, receipt_handle: str) -> None:
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle not in _delete_messages(queue, [receipt_handle]):
        raise ReceiptHandleIsInvalid()


def _delete_message_batch(backend: Any, queue_name: str, receipts: list[dict[str, Any]]) -> tuple[
    list[str], list[dict[str, Any]]
]:
    deleted = _delete_messages(backend.get_queue(queue_name), [r["ReceiptHandle"] for r in receipts])
    success = [r["Id"] for r in receipts if r["ReceiptHandle"] in deleted]
    errors = [{"Id": r["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid",
               "Message": f'The input receipt handle "{r["ReceiptHandle"]}" is not a valid receipt handle.'}
              for r in receipts if r["ReceiptHandle"] not in deleted]
    return success, errors


def _patch_sqs() -> None:
    from moto.sqs.models import Message, Queue, SQSBackend

    def visible(message: Any) -> bool:
        return bool(time.time() * 1000 > message.visible_at)

    def delayed(message: Any) -> bool:
        return bool(time.time() * 1000 < message.delayed_until)

    def within_retention(backend: Any, queue_name: str, message: Any) -> bool:
        period = int(backend.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > time.time())

    def pending_message_groups(queue: Any) -> set[str]:
        # A snapshot first: receives and deletes on other threads change the set while moto iterates it.
        return {message.group_id for message in tuple(queue._pending_messages) if message.group_id is not None}

    for name in _QUEUE_COUNTS:
        setattr(Queue, name, property(_skipped_while_sending(getattr(Queue, name).fget)))
    for name in ("send_message", "send_message_batch"):
        setattr(SQSBackend, name, _sending(getattr(SQSBackend, name)))
    Queue.delete_message = _delete_message  # type: ignore[method-assign,assignment]
    SQSBackend.delete_message_batch = _delete_message_batch  # type: ignore[method-assign,assignment]
    Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[method-assign,assignment]
    Message.visible = property(visible)  # type: ignore[method-assign,assignment]
    Message.delayed = property(delayed)  # type: ignore[method-assign,assignment]
    SQSBackend.is_message_valid_based_on_retention_period = within_retention  # type: ignore[method-assign,assignment]


def _patch_routing() -> None:
    from moto import backends

    modules = frozenset(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def _patch_name_conversion() -> None:
    from moto.core import utils

    _cache_everywhere(utils, "camelcase_to_underscores", maxsize=4096)
    # A handler class's methods are fixed once the patches are in: callers only ask whether the action
    # is among them.
    _cache_everywhere(utils, "method_names_from_class", maxsize=None)


def _cache_everywhere(source: Any, name: str, maxsize: int | None) -> None:
    """Replace the pure function `source.name` by a cached one wherever moto bound it by name."""
    import functools

    original = getattr(source, name)
    cached = functools.lru_cache(maxsize=maxsize)(original)
    # Bound by name in every module that imported it, the source included: rebinding the loaded
    # modules rebinds the source, so modules imported later get the cached one too.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto") and getattr(module, name, None) is original:
            setattr(module, name, cached)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m services.kit.moto_endpoint HOST PORT", file=sys.stderr)
        raise SystemExit(2)
    host, port = argv[0], int(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _patch_dynamodb()
    _patch_sqs()
    _patch_routing()
    _patch_name_conversion()
    logging.basicConfig(level=logging.WARNING)
    # The thread holding the DynamoDB lock (`_serialised`) keeps the interpreter for longer stretches:
    # at the default 5 ms it lost it to the request threads parsing and sending, and held the lock
    # idle for half of each burst. The others queue behind that lock anyway.
    sys.setswitchinterval(_SWITCH_INTERVAL_SECONDS)
    app = DomainDispatcherApplication(create_backend_app)
    # The stored items are long-lived objects, and a full collection walked them all while every request
    # waited: 150-330 ms at 300,000-500,000 objects, several times a run under the isolation benchmark.
    heap.settle()
    server = waitress.create_server(_serialised(app), host=host, port=port, threads=_THREADS,
                                    connection_limit=_CONNECTIONS, channel_timeout=300, ident="moto",
                                    asyncore_use_poll=True)
    print(f"embedded AWS endpoint on http://{host}:{port}", flush=True)
    server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
