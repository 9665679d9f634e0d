"""Connection state on the agent item, on the embedded DynamoDB: writes about a stream touch only that stream."""

from __future__ import annotations

import secrets
from typing import Any

from services.ingest import health, presence, store
from services.ingest.health import Stage
from services.kit import auth
from services.kit.settings import AwsSettings

T0 = "2026-12-06T10:00:00.000000Z"
T1 = "2026-12-06T10:00:05.000000Z"
T2 = "2026-12-06T10:00:10.000000Z"
LEASE = "2026-12-06T10:05:00.000000Z"
MISSING = "2026-12-07T10:00:00.000000Z"


def _agent(ddb: Any, table: str) -> tuple[str, str, str]:
    tenant, asset = f"t-pres-{secrets.token_hex(3)}", "a-1"
    secret = auth.sha256_hex("credential")
    store.put_agents(ddb, table, [(tenant, asset, secret)], 1, T0)
    return tenant, asset, secret


def _open(ddb: Any, table: str, tenant: str, asset: str, secret: str, stream: str, when: str) -> bool:
    return presence.open_connection(ddb, table, tenant, asset, secret, stream, when, LEASE, MISSING, "1.0.0",
                                    "linux-x86_64", False, [])


def test_the_close_of_a_replaced_stream_leaves_the_newer_one_online(ddb: Any, aws_settings: AwsSettings) -> None:
    """A stream that closes after a newer stream of its agent opened does not mark the agent offline."""
    table = aws_settings.table_name
    tenant, asset, secret = _agent(ddb, table)
    _open(ddb, table, tenant, asset, secret, "old", T0)
    _open(ddb, table, tenant, asset, secret, "new", T1)
    closed = presence.close_connection(ddb, table, tenant, asset, secret, "old", T2, "", T1, MISSING, Stage.LOST,
                                       T2)
    connection = presence.get_connection(ddb, table, tenant, asset)
    assert not closed
    assert connection is not None
    assert health.state_at(connection, T2) == (health.State.ONLINE, "")


def test_a_write_with_another_credential_changes_nothing(ddb: Any, aws_settings: AwsSettings) -> None:
    """An open under a credential that was replaced (re-enrollment) is refused and leaves the item as it was."""
    table = aws_settings.table_name
    tenant, asset, _ = _agent(ddb, table)
    assert not _open(ddb, table, tenant, asset, auth.sha256_hex("old credential"), "s-1", T0)
    connection = presence.get_connection(ddb, table, tenant, asset)
    assert connection is not None
    assert health.state_at(connection, T1) == (health.State.NEVER, "")


def test_a_closed_stream_is_due_for_its_check_and_not_before(ddb: Any, aws_settings: AwsSettings) -> None:
    """A close puts the agent on the sweep's due list at its due time, not earlier."""
    table = aws_settings.table_name
    tenant, asset, secret = _agent(ddb, table)
    _open(ddb, table, tenant, asset, secret, "s-1", T0)
    presence.close_connection(ddb, table, tenant, asset, secret, "s-1", T1, "", T0, MISSING, Stage.LOST, T2)
    assert presence.due_connections(ddb, table, tenant, T1) == []
    assert [c.stage for c in presence.due_connections(ddb, table, tenant, T2)] == ["lost"]


def test_a_tenant_marked_twice_is_listed_once(ddb: Any, aws_settings: AwsSettings) -> None:
    """The sweep's tenant list holds a tenant once, however many replicas (or starts) put it there."""
    table = aws_settings.table_name
    tenant, _, _ = _agent(ddb, table)
    presence.mark_tenant_watched(ddb, table, tenant)
    presence.mark_tenant_watched(ddb, table, tenant)
    assert presence.watched_tenants(ddb, table).count(tenant) == 1


def test_the_tenant_marker_is_not_listed_as_an_agent(ddb: Any, aws_settings: AwsSettings) -> None:
    """The marker item beside the tenant's agents is not one of its connections."""
    table = aws_settings.table_name
    tenant, asset, _ = _agent(ddb, table)
    presence.mark_tenant_watched(ddb, table, tenant)
    found, _ = presence.list_connections(ddb, table, tenant)
    assert [c.asset_id for c in found] == [asset]


def _closed(ddb: Any, table: str) -> tuple[str, str, str, health.Connection]:
    """An agent whose stream opened and closed; its tenant, asset id, credential hash and connection as read."""
    tenant, asset, secret = _agent(ddb, table)
    _open(ddb, table, tenant, asset, secret, "s-1", T0)
    presence.close_connection(ddb, table, tenant, asset, secret, "s-1", T1, "", T1, MISSING, Stage.LOST, T2)
    read = presence.get_connection(ddb, table, tenant, asset)
    assert read is not None
    return tenant, asset, secret, read


def test_an_offline_agent_can_be_marked_outdated(ddb: Any, aws_settings: AwsSettings) -> None:
    """The sweep marks an agent whose stream closed outdated, judged on the connection it read."""
    table = aws_settings.table_name
    tenant, asset, _, read = _closed(ddb, table)
    assert presence.set_outdated(ddb, table, tenant, read, T2)
    after = presence.get_connection(ddb, table, tenant, asset)
    assert after is not None
    assert (after.state, after.outdated, after.outdated_since) == ("offline", True, T2)


def test_an_outdated_mark_after_the_agent_came_back_changes_nothing(ddb: Any, aws_settings: AwsSettings) -> None:
    """A mark judged on a closed connection is refused once a new stream opened (that open judged it itself)."""
    table = aws_settings.table_name
    tenant, asset, secret, read = _closed(ddb, table)
    _open(ddb, table, tenant, asset, secret, "s-2", T2)
    assert not presence.set_outdated(ddb, table, tenant, read, T2)
