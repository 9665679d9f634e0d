"""Isolate and release on the running assets service: one transaction, custody events, retries and results."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from lifecyclezero.v1 import assets_pb2, common_pb2

from services.kit.auth import Role
from services.tlog.events import parse_event
from tests.assets.conftest import Assets

ISOLATED = common_pb2.ASSET_STATUS_ISOLATED


def _custody(assets: Assets, asset_id: str) -> list[common_pb2.LedgerEvent]:
    reply = assets.stub.GetCustodyLog(assets_pb2.GetCustodyLogRequest(asset_id=asset_id),
                                      metadata=assets.md(Role.VIEWER))
    return list(reply.events)


def _commands(assets: Assets, asset_id: str) -> list[dict[str, object]]:
    return [i for i in assets.items(f"TENANT#{assets.tenant}") if i["SK"]["S"].startswith(f"CMD#{asset_id}#")]


def test_isolate_commits_pending_status_command_and_custody_record(assets: Assets) -> None:
    """IsolateAsset moves the asset to ISOLATION_PENDING and writes its command and its custody record together."""
    asset = assets.create_asset()
    reply = assets.isolate(asset.asset_id)
    assert reply.asset.status == common_pb2.ASSET_STATUS_ISOLATION_PENDING
    assert reply.command.kind == common_pb2.COMMAND_KIND_ISOLATE
    [record] = assets.custody_records(asset.asset_id)
    assert (record.prev_version, record.draft.action) == (0, "asset.isolate.requested")
    assert record.draft.payload["command_id"] == reply.command.command_id
    [command] = _commands(assets, asset.asset_id)
    assert command["GSI2PK"]["S"] == f"TENANT#{assets.tenant}#CMD_PENDING"


def test_the_custody_record_is_chained_as_the_assets_requested_event(assets: Assets) -> None:
    """The sequencer appends the isolation's custody record to the ledger and stamps the record with its seq."""
    asset = assets.create_asset()
    reply = assets.isolate(asset.asset_id)
    [record] = assets.chained_records(asset.asset_id)
    [event] = _custody(assets, asset.asset_id)
    assert (event.seq, event.action, event.subject) == (record.ledger_seq, "asset.isolate.requested",
                                                        f"asset:{asset.asset_id}")
    assert event.actor.startswith("token:")
    assert event.payload["command_id"] == reply.command.command_id
    assert event.payload["justification"] == "shadow LLM reading HR files"


def test_get_asset_reports_the_seq_of_the_chained_custody_event(assets: Assets) -> None:
    """Once the order's custody record is chained, GetAsset's last_custody_seq is its ledger seq."""
    asset = assets.create_asset()
    assets.isolate(asset.asset_id)
    [record] = assets.chained_records(asset.asset_id)
    shown = assets.stub.GetAsset(assets_pb2.GetAssetRequest(asset_id=asset.asset_id), metadata=assets.md(Role.VIEWER))
    assert shown.asset.last_custody_seq == record.ledger_seq


def test_command_carries_the_containment_policy(assets: Assets) -> None:
    """The isolate command names the control plane endpoints an isolated host must still reach."""
    asset = assets.create_asset()
    reply = assets.isolate(asset.asset_id)
    expected = assets.stack.env["LZ_CONTROL_PLANE_ENDPOINTS"].split(",")
    assert list(reply.command.policy.control_plane_endpoints) == expected


def test_retry_with_the_same_request_id_answers_the_same_without_a_second_command(assets: Assets) -> None:
    """A retried IsolateAsset with the same request id returns the first answer and writes nothing new."""
    asset = assets.create_asset()
    first = assets.isolate(asset.asset_id, request_id="req-1")
    assets.chained_records(asset.asset_id)
    before = assets.snapshot()
    again = assets.isolate(asset.asset_id, request_id="req-1")
    assert again == first
    assert assets.snapshot() == before


def test_a_retry_after_the_isolation_failed_answers_the_first_command(assets: Assets) -> None:
    """A late retry of an isolation whose host failed it (the state allows isolating again) replays the first answer."""
    asset = assets.create_asset()
    first = assets.isolate(asset.asset_id, request_id="req-late")
    assets.result(asset.asset_id, first.command.command_id, applied=False, error="nft busy")
    again = assets.isolate(asset.asset_id, request_id="req-late")
    assert again == first
    assert len(_commands(assets, asset.asset_id)) == 1


def test_twenty_concurrent_isolations_let_exactly_one_through(assets: Assets) -> None:
    """Of 20 concurrent isolate requests on one asset exactly one succeeds; the rest are refused by state."""
    asset = assets.create_asset()

    def isolate(_: int) -> grpc.StatusCode:
        try:
            assets.isolate(asset.asset_id)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(isolate, range(20)))
    assert codes.count(grpc.StatusCode.OK) == 1
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION}
    assert len(_commands(assets, asset.asset_id)) == 1
    assert len(assets.chained_records(asset.asset_id)) == 1
    assert len(_custody(assets, asset.asset_id)) == 1


def test_twenty_concurrent_retries_of_one_request_get_the_same_answer(assets: Assets) -> None:
    """Twenty concurrent copies of one isolate request all get the same command; one command, one event exist."""
    asset = assets.create_asset()
    request_id = secrets.token_hex(8)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: assets.isolate(asset.asset_id, request_id=request_id), range(20)))
    assert {r.command.command_id for r in replies} == {replies[0].command.command_id}
    assert len(_commands(assets, asset.asset_id)) == 1
    assert len(assets.chained_records(asset.asset_id)) == 1
    assert len(_custody(assets, asset.asset_id)) == 1


def test_an_illegal_transition_names_the_current_state(assets: Assets) -> None:
    """Releasing an ACTIVE asset is FAILED_PRECONDITION and the message names ACTIVE."""
    asset = assets.create_asset()
    with pytest.raises(grpc.RpcError) as caught:
        assets.release(asset.asset_id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ACTIVE" in caught.value.details()


def test_isolating_a_pending_asset_is_refused(assets: Assets) -> None:
    """A second isolate of an asset in ISOLATION_PENDING is FAILED_PRECONDITION naming that state."""
    asset = assets.create_asset()
    assets.isolate(asset.asset_id)
    with pytest.raises(grpc.RpcError) as caught:
        assets.isolate(asset.asset_id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ISOLATION_PENDING" in caught.value.details()


@pytest.mark.parametrize("justification", ["", "   ", "x" * 1001])
def test_a_justification_of_1_to_1000_characters_is_required(assets: Assets, justification: str) -> None:
    """IsolateAsset without a justification, or with one over 1000 characters, is INVALID_ARGUMENT."""
    asset = assets.create_asset()
    with pytest.raises(grpc.RpcError) as caught:
        assets.stub.IsolateAsset(
            assets_pb2.IsolateAssetRequest(asset_id=asset.asset_id, justification=justification),
            metadata=assets.md(Role.OPERATOR),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_applied_result_isolates_the_asset_with_two_custody_events(assets: Assets) -> None:
    """After the agent reports isolation applied the asset is ISOLATED with a request and an enforcement event."""
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    done = assets.result(asset.asset_id, order.command.command_id)
    assert done.asset.status == ISOLATED
    records = assets.chained_records(asset.asset_id)
    events = _custody(assets, asset.asset_id)
    assert [e.action for e in events] == ["asset.isolate.requested", "asset.isolate.enforced"]
    assert [e.seq for e in events] == [r.ledger_seq for r in records]
    assert records[1].prev_version == records[0].version
    assert events[1].payload["ruleset_sha256"] == "a" * 64
    assert events[1].actor == f"agent:{asset.asset_id}"
    for event in events:
        parsed = parse_event(event.canonical)
        assert parsed.hash == event.hash and parsed.seq == event.seq


def test_a_repeated_result_answers_the_same_without_a_second_event(assets: Assets) -> None:
    """Recording the same command's result twice returns the first answer and appends nothing."""
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    first = assets.result(asset.asset_id, order.command.command_id)
    assets.chained_records(asset.asset_id)
    before = assets.snapshot()
    again = assets.result(asset.asset_id, order.command.command_id)
    assert again == first
    assert assets.snapshot() == before


def test_a_recorded_result_leaves_the_pending_commands(assets: Assets) -> None:
    """A command is listed as pending until its result is recorded."""
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)

    def pending() -> list[str]:
        reply = assets.stub.ListPendingCommands(assets_pb2.ListPendingCommandsRequest(asset_id=asset.asset_id),
                                                metadata=assets.service_md())
        return [c.command_id for c in reply.commands]

    assert pending() == [order.command.command_id]
    assets.result(asset.asset_id, order.command.command_id)
    assert pending() == []


def test_a_failed_isolation_records_the_reason_and_allows_a_retry(assets: Assets) -> None:
    """A failed isolation leaves the asset ISOLATION_FAILED with the agent's reason; isolating again is allowed."""
    asset = assets.create_asset()
    order = assets.isolate(asset.asset_id)
    failed = assets.result(asset.asset_id, order.command.command_id, applied=False, error="nft: permission denied")
    assert failed.asset.status == common_pb2.ASSET_STATUS_ISOLATION_FAILED
    assert failed.asset.status_reason == "nft: permission denied"
    assets.chained_records(asset.asset_id)
    assert _custody(assets, asset.asset_id)[-1].action == "asset.isolate.failed"
    retry = assets.isolate(asset.asset_id)
    assert retry.asset.status == common_pb2.ASSET_STATUS_ISOLATION_PENDING


def test_release_returns_an_isolated_asset_to_active(assets: Assets) -> None:
    """Release of an ISOLATED asset goes through RELEASE_PENDING to ACTIVE with its own custody events."""
    asset = assets.create_asset()
    assets.result(asset.asset_id, assets.isolate(asset.asset_id).command.command_id)
    release = assets.release(asset.asset_id)
    assert release.asset.status == common_pb2.ASSET_STATUS_RELEASE_PENDING
    assert release.command.kind == common_pb2.COMMAND_KIND_RELEASE
    done = assets.result(asset.asset_id, release.command.command_id)
    assert done.asset.status == common_pb2.ASSET_STATUS_ACTIVE
    assets.chained_records(asset.asset_id)
    assert [e.action for e in _custody(assets, asset.asset_id)][-2:] == ["asset.release.requested",
                                                                         "asset.release.enforced"]


def test_a_failed_release_leaves_the_asset_isolated_with_the_reason(assets: Assets) -> None:
    """When the agent cannot release, the asset goes back to ISOLATED and says why."""
    asset = assets.create_asset()
    assets.result(asset.asset_id, assets.isolate(asset.asset_id).command.command_id)
    release = assets.release(asset.asset_id)
    done = assets.result(asset.asset_id, release.command.command_id, applied=False, error="table busy")
    assert (done.asset.status, done.asset.status_reason) == (ISOLATED, "table busy")


def test_a_policy_isolation_names_the_rule_as_actor(assets: Assets) -> None:
    """The risk worker isolates with the service token and the custody event's actor is policy:<rule>."""
    asset = assets.create_asset()
    reply = assets.stub.IsolateAsset(
        assets_pb2.IsolateAssetRequest(asset_id=asset.asset_id, justification="critical finding",
                                       request_id="policy-1"),
        metadata=assets.service_md(actor="policy:exposed-engine", service="risk-worker"),
    )
    assert reply.asset.status == common_pb2.ASSET_STATUS_ISOLATION_PENDING
    assets.chained_records(asset.asset_id)
    assert _custody(assets, asset.asset_id)[0].actor == "policy:exposed-engine"
