"""`aws.walk_client` parses Query answers to exactly what botocore makes of them, and keeps its checks.

Answers come from the embedded endpoint, and, for what it never sends (a damaged checksum, a binary
that is not base64), from a canned HTTP server on loopback.
"""

from __future__ import annotations

import binascii
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.exceptions
import pytest

from services.kit import aws, embedded
from services.kit.settings import AwsSettings

TABLE = "lifecyclezero"
PARTITION = "walk-client"


@pytest.fixture(scope="module")
def clients(aws_settings: AwsSettings) -> tuple[Any, Any]:
    """A walk client and a plain client of the embedded endpoint, and a partition of items of every type:
    strings, numbers and binaries (unusual ones too), and one item with the other types."""
    walker, plain = aws.walk_client(aws_settings), aws.client(aws_settings, "dynamodb")
    for n in range(30):
        plain.put_item(TableName=TABLE, Item=aws.to_item({
            "PK": PARTITION, "SK": f"EVENT#{n:04d}", "hash": f"{n:064x}", "n": n * 10**30 - 7,
            "canonical": bytes(range(256)) * (n % 4) + "caf\u00e9 \"\\\n".encode() * n,
            "text": "\U0001f600 \u2028 <b>x</b>" if n % 5 == 0 else None}))
    plain.put_item(TableName=TABLE, Item={**aws.to_item({"PK": PARTITION, "SK": "EVENT#9999"}),
                                          "tags": {"SS": ["a"]}, "map": {"M": {"b": {"B": b"\x00"}}},
                                          "flags": {"BOOL": False}, "nothing": {"NULL": True}})
    return walker, plain


def _items(client: Any, **more: Any) -> list[list[dict[str, Any]]]:
    """The pages of the partition's items, as the client parses them."""
    return list(aws.query_pages(client, TableName=TABLE, KeyConditionExpression="PK = :p",
                                ExpressionAttributeValues=aws.to_item({":p": PARTITION}), **more))


@pytest.mark.parametrize("query", [
    {"ProjectionExpression": "SK, canonical, #h", "ExpressionAttributeNames": {"#h": "hash"}, "Limit": 7},
    {"ProjectionExpression": "SK, n, #t", "ExpressionAttributeNames": {"#t": "text"}},
    {"Limit": 4},
    {},
], ids=["walk", "numbers-and-strings", "whole-paged", "whole-with-other-types"])
def test_a_walk_client_parses_items_as_botocore(clients: tuple[Any, Any], query: dict[str, Any]) -> None:
    """Query pages read through a walk client are the pages a plain client parses, item for item."""
    walker, plain = clients
    assert _items(walker, **query) == _items(plain, **query)


@pytest.mark.parametrize(("query", "parsed_directly"), [
    ({"ProjectionExpression": "SK, canonical, #h", "ExpressionAttributeNames": {"#h": "hash"}}, True),
    ({}, False),
], ids=["walk", "with-other-types"])
def test_only_pages_of_plain_items_are_parsed_directly(
    clients: tuple[Any, Any], query: dict[str, Any], parsed_directly: bool
) -> None:
    """botocore gets a page without its items when every attribute is a string, number or binary, else all of it."""
    walker = clients[0]
    parsed_bodies: list[bytes] = []

    def keep_body(response_dict: dict[str, Any], **_: Any) -> None:
        parsed_bodies.append(response_dict["body"])

    walker.meta.events.register("before-parse.dynamodb.Query", keep_body)  # runs after the walk client's own
    try:
        pages = _items(walker, **query)
    finally:
        walker.meta.events.unregister("before-parse.dynamodb.Query", keep_body)
    assert len(pages) == len(parsed_bodies) == 1 and pages[0]
    assert (b'"Items"' not in parsed_bodies[0]) is parsed_directly


def test_a_walk_client_reads_binaries_as_bytes(clients: tuple[Any, Any]) -> None:
    """A binary attribute read through a walk client is its bytes, decoded from the answer's base64."""
    pages = _items(clients[0], ProjectionExpression="SK, canonical")
    assert pages[0][3]["canonical"]["B"] == bytes(range(256)) * 3 + "caf\u00e9 \"\\\n".encode() * 3


def test_a_walk_client_error_is_botocores(clients: tuple[Any, Any]) -> None:
    """A Query of a table that does not exist fails through a walk client with the plain client's error."""
    errors = []
    for client in clients:
        with pytest.raises(botocore.exceptions.ClientError) as failed:
            client.query(TableName="no-such-table", KeyConditionExpression="PK = :p",
                         ExpressionAttributeValues=aws.to_item({":p": PARTITION}))
        errors.append((type(failed.value).__name__, failed.value.response["Error"]))
    assert errors[0] == errors[1] and errors[0][1]["Code"] == "ResourceNotFoundException"


class _Canned:
    """A loopback HTTP server answering every request with one DynamoDB answer, counting the requests."""

    def __init__(self, body: bytes, crc32: int) -> None:
        self.requests = 0
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                canned.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amz-crc32", str(crc32))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def canned(request: pytest.FixtureRequest) -> Iterator[_Canned]:
    """A `_Canned` server of the answer and checksum the test is parametrized with."""
    body, crc32 = request.param
    server = _Canned(body, crc32)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join()


def _canned_clients(url: str) -> list[Any]:
    settings = AwsSettings(table_name=TABLE, endpoint_url=url, region=embedded.REGION)
    return [aws.walk_client(settings), aws.client(settings, "dynamodb")]


_ANSWER = json.dumps({"Items": [{"SK": {"S": "EVENT#1"}, "canonical": {"B": "AAEC"}}], "Count": 1,
                      "ScannedCount": 1}).encode()


@pytest.mark.parametrize(("canned", "requests"), [
    ((_ANSWER, binascii.crc32(_ANSWER)), 1),
    ((_ANSWER, binascii.crc32(_ANSWER) ^ 1), 4),  # the first request and aws.client's 3 retries
], indirect=["canned"], ids=["checksum-right", "checksum-wrong"])
def test_a_walk_client_checks_the_answers_checksum(canned: _Canned, requests: int) -> None:
    """An answer whose x-amz-crc32 does not match its body is retried by a walk client as by a plain one."""
    counts = []
    for client in _canned_clients(canned.url):
        before = canned.requests
        client.query(TableName=TABLE, KeyConditionExpression="PK = :p",
                     ExpressionAttributeValues=aws.to_item({":p": "x"}))
        counts.append(canned.requests - before)
    assert counts == [requests, requests]


_NOT_BASE64 = json.dumps({"Items": [{"SK": {"S": "EVENT#1"}, "canonical": {"B": "A"}}], "Count": 1}).encode()


@pytest.mark.parametrize("canned", [(_NOT_BASE64, binascii.crc32(_NOT_BASE64))], indirect=True)
def test_a_binary_that_is_not_base64_fails_as_in_botocore(canned: _Canned) -> None:
    """An answer with a binary that is not base64 fails through a walk client as through a plain client."""
    failures = []
    for client in _canned_clients(canned.url):
        with pytest.raises(Exception) as failed:  # whatever botocore raises: the two are compared
            client.query(TableName=TABLE, KeyConditionExpression="PK = :p",
                         ExpressionAttributeValues=aws.to_item({":p": "x"}))
        failures.append((type(failed.value), str(failed.value)))
    assert failures[0] == failures[1]
