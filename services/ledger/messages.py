"""Checkpoint records as `lifecyclezero.v1.Checkpoint` messages (shared by sealer and ledger servicers)."""

from __future__ import annotations

import contextlib
from datetime import datetime

from lifecyclezero.v1 import common_pb2, ledger_pb2

from services.ledger.domain import VerifyOutcome
from services.ledger.seals import CheckpointRecord
from services.ledger.watch import Progress
from services.tlog.checkpoint import Checkpoint


def checkpoint_message(record: CheckpointRecord) -> common_pb2.Checkpoint:
    text = record.note.decode("utf-8", "replace")
    split = text.rfind("\n\n")
    origin = ""
    if split >= 0:
        try:
            origin = Checkpoint.parse(text[: split + 1]).origin
        except ValueError:
            origin = ""
    message = common_pb2.Checkpoint(
        tree_size=record.size,
        root_hash=record.root,
        signed_note=record.note,
        origin=origin,
        object_key=record.object_key,
        object_version_id=record.version_id,
        key_name=record.key_name,
    )
    if record.create_time:
        # A damaged index item is still shown, without a time.
        with contextlib.suppress(ValueError):
            message.create_time.FromDatetime(datetime.fromisoformat(record.create_time))
    return message


def verify_message(outcome: VerifyOutcome, since_checkpoint: bool) -> ledger_pb2.VerifyLedgerResponse:
    return ledger_pb2.VerifyLedgerResponse(
        mode=ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT if since_checkpoint else ledger_pb2.VERIFY_MODE_FULL,
        newest_checkpoint=outcome.newest_checkpoint,
        ok=outcome.ok,
        first_bad_seq=outcome.first_bad_seq,
        reason=outcome.reason,
        events_checked=outcome.events_checked,
        checkpoints_checked=outcome.checkpoints_checked,
        tree_size=outcome.tree_size,
    )


def watch_message(update: Progress | VerifyOutcome) -> ledger_pb2.WatchFullVerificationResponse:
    """A full walk's progress, or its outcome as VerifyLedger FULL answers it."""
    if isinstance(update, Progress):
        return ledger_pb2.WatchFullVerificationResponse(progress=ledger_pb2.VerificationProgress(
            events_checked=update.events_checked, chain_length=update.chain_length,
            elapsed_seconds=update.elapsed_seconds))
    return ledger_pb2.WatchFullVerificationResponse(result=verify_message(update, since_checkpoint=False))
