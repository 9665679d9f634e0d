"""Fixtures of the kit's tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from services.kit import aws, embedded
from services.kit.settings import AwsSettings

TABLE = "lifecyclezero"


@pytest.fixture(scope="module")
def released_moto() -> Iterator[Any]:
    """A DynamoDB client of moto as released, with the embedded endpoint's table."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = embedded.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        embedded.provision(url)
        yield aws.client(AwsSettings(table_name=TABLE, endpoint_url=url, region=embedded.REGION), "dynamodb")
    finally:
        server.stop()

