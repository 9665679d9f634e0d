"""Checkpoint records as `lifecyclezero.v1.Checkpoint` messages (shared by sealer and ledger servicers)."""

from __future__ import annotations

import contextlib
from datetime import datetime

from lifecyclezero.v1 import common_pb2

from services.ledger.seals import CheckpointRecord
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
