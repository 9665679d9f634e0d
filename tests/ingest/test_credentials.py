"""Hellos' credential reads on the embedded DynamoDB: batches form while the read slots are busy."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from services.ingest import store
from services.ingest.streams import CredentialLoader
from services.kit import auth
from services.kit.settings import AwsSettings

pytestmark = pytest.mark.slow

NOW = "2026-12-02T00:00:00.000000Z"


class _HeldReads:
    """The real DynamoDB client, with its first BatchGetItem held until `release` and every call's keys kept."""

    def __init__(self, ddb: Any) -> None:
        self._ddb = ddb
        self.release = threading.Event()
        self.first_started = threading.Event()
        self.calls: list[int] = []

    def batch_get_item(self, **kwargs: Any) -> Any:
        [request] = kwargs["RequestItems"].values()
        self.calls.append(len(request["Keys"]))
        if len(self.calls) == 1:
            self.first_started.set()
            self.release.wait(10)
        return self._ddb.batch_get_item(**kwargs)


def _agents(ddb: Any, table: str, tenant: str, count: int) -> list[str]:
    assets = [f"a-cred-{i:04d}" for i in range(count)]
    store.put_agents(ddb, table, [(tenant, a, auth.sha256_hex(f"secret-{a}")) for a in assets], 1, NOW)
    return assets


async def test_hellos_arriving_while_every_slot_is_busy_share_the_next_reads(ddb: Any,
                                                                             aws_settings: AwsSettings) -> None:
    """Hellos trickling in while the only read slot is busy are read in full batches once it frees."""
    assets = _agents(ddb, aws_settings.table_name, "t-cred-1", 151)
    held = _HeldReads(ddb)
    loader = CredentialLoader(held, aws_settings.table_name, linger_seconds=0.001, max_in_flight=1)
    first = asyncio.ensure_future(loader.get("t-cred-1", assets[0]))
    await asyncio.to_thread(held.first_started.wait, 10)
    later = []
    for asset in assets[1:]:
        later.append(asyncio.ensure_future(loader.get("t-cred-1", asset)))
        await asyncio.sleep(0.003)  # longer than the linger: each hello would have been a read of its own
    held.release.set()
    records = await asyncio.wait_for(asyncio.gather(first, *later), 20)
    assert [r.secret_sha256 if r else None for r in records] == [auth.sha256_hex(f"secret-{a}") for a in assets]
    assert held.calls == [1, 100, 50]


async def test_a_hello_whose_stream_went_away_is_not_read(ddb: Any, aws_settings: AwsSettings) -> None:
    """Credential reads skip the hellos that were cancelled while they waited for a slot."""
    assets = _agents(ddb, aws_settings.table_name, "t-cred-2", 11)
    held = _HeldReads(ddb)
    loader = CredentialLoader(held, aws_settings.table_name, max_in_flight=1)
    first = asyncio.ensure_future(loader.get("t-cred-2", assets[0]))
    await asyncio.to_thread(held.first_started.wait, 10)
    waiting = [asyncio.ensure_future(loader.get("t-cred-2", a)) for a in assets[1:]]
    await asyncio.sleep(0.01)
    for gone in waiting[::2]:
        gone.cancel()
    held.release.set()
    await asyncio.wait_for(asyncio.gather(first, *waiting[1::2]), 20)
    assert held.calls == [1, 5]
