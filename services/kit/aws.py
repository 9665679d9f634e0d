"""AWS clients for the services: one place that knows about the embedded endpoint.

With `LZ_AWS_ENDPOINT_URL` set every client talks to the embedded stack; without it boto3's normal
credential chain and endpoints apply (real AWS, IRSA on Kubernetes). boto3 is synchronous, so async
servers call it through `call`, which runs it on a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import json
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import boto3
import botocore.config
import botocore.exceptions
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from services.kit.errors import Unavailable
from services.kit.settings import AwsSettings

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="aws")
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

UNAVAILABLE_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
)


def client(settings: AwsSettings, service: str, **config: Any) -> Any:
    """A boto3 client with short timeouts, so an outage shows as UNAVAILABLE instead of a hang."""
    defaults: dict[str, Any] = {
        "connect_timeout": 2,
        "read_timeout": 10,
        "retries": {"max_attempts": 3, "mode": "standard"},
        "max_pool_connections": 64,
    }
    cfg = botocore.config.Config(**{**defaults, **config})
    kwargs: dict[str, Any] = {"region_name": settings.region, "config": cfg}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    return boto3.session.Session().client(service, **kwargs)  # type: ignore[call-overload]


def walk_client(settings: AwsSettings) -> Any:
    """A DynamoDB client of its own for long walks of Query pages: items of plain types parsed directly.

    botocore parses an answer by walking the model's shapes over every attribute of every item, which
    was most of a reader's CPU on a walk of a few thousand events per page. This client parses a Query
    answer's items itself when each of its attributes is a string, a number or a binary (`_plain_items`),
    to exactly what botocore makes of them; botocore parses the rest of the answer, every page with an
    item of any other type, and every error, as always. Its own client, so that no other caller's reads
    depend on this parsing.
    """
    ddb = client(settings, "dynamodb")
    ddb.meta.events.register("before-parse.dynamodb.Query", _items_parsed_directly)
    return ddb


def _items_parsed_directly(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
                           **_: Any) -> None:
    """botocore's before-parse hook: a 200 answer's plain items go into the parsed answer as they are, and
    botocore parses the answer without them.

    The body handed to the parser is a copy: DynamoDB's CRC32 check (botocore's retry checker) reads the
    HTTP response's own content, which stays as it came.
    """
    if response_dict.get("status_code") != 200:
        return
    try:
        document = json.loads(response_dict["body"])
    except (ValueError, TypeError, KeyError):
        return  # botocore's parser reports it, as for any client
    items = document.get("Items") if isinstance(document, dict) else None
    parsed = _plain_items(items) if isinstance(items, list) else None
    if parsed is None:
        return
    del document["Items"]
    response_dict["body"] = json.dumps(document).encode("utf-8")
    customized_response_dict["Items"] = parsed


def _plain_items(items: list[Any]) -> list[dict[str, dict[str, Any]]] | None:
    """Items as botocore parses them (a binary decoded from its base64, a string or number as sent), or None
    unless every attribute is a string, a number or a binary, or when a binary is not base64.

    Decoded in place: the items are the hook's own parse of the body, and when it gives up (None) botocore
    parses the body again from its bytes.
    """
    try:
        for item in items:
            for value in item.values():
                if len(value) != 1:
                    return None
                binary = value.get("B")
                if binary is None:
                    if type(value.get("S", value.get("N"))) is not str:
                        return None
                elif type(binary) is str:
                    # botocore's base64.b64decode is this, for the ASCII text a JSON body holds.
                    value["B"] = binascii.a2b_base64(binary)
                else:
                    return None
    except (AttributeError, TypeError, ValueError):
        return None  # not a map of one-type values, or not base64: botocore's parser decides
    return items


async def call(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking boto3 call off the event loop; connection failures become Unavailable."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kwargs))
    except UNAVAILABLE_ERRORS as exc:
        raise Unavailable(f"AWS endpoint unreachable: {exc}") from exc


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def query_pages(ddb: Any, **query: Any) -> Iterator[list[dict[str, Any]]]:
    """The pages of items a DynamoDB Query returns, in order (`Limit` sets the page size)."""
    start: dict[str, Any] | None = None
    while True:
        got = ddb.query(**query, **({"ExclusiveStartKey": start} if start else {}))
        yield got.get("Items", [])
        start = got.get("LastEvaluatedKey")
        if not start:
            return


def query_items(ddb: Any, **query: Any) -> Iterator[dict[str, Any]]:
    """Every item a DynamoDB Query matches, page after page (`Limit` sets the page size)."""
    for page in query_pages(ddb, **query):
        yield from page


_END = object()


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items` as they are, produced on a thread of their own up to `depth` ahead of the consumer.

    For reads that a long walk consumes (pages of a Query): the next page is on its way while this
    one is checked. An error of the producer is raised where the consumer reaches it; a consumer
    that stops early stops the producer too.
    """
    if depth <= 0:
        yield from items
        return
    ahead: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ahead.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
        except Exception as exc:  # handed to the consumer, which raises it in its own thread
            offer((_END, exc))
            return
        offer((_END, None))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item  # type: ignore[misc]  # everything but the _END marker came from `items`
    finally:
        stop.set()
        worker.join()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain Python values to DynamoDB's typed attribute values (None values are left out)."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values to plain Python values (numbers come back as int where integral)."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        plain = _deserializer.deserialize(value)
        out[key] = _plain_number(plain)
    return out


def _plain_number(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
