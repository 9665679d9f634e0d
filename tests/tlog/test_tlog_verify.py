"""Shared verification helpers: since-checkpoint verification and entry proofs."""

from __future__ import annotations

import pytest
from tlog_helpers import TENANT, Log, make_log, memory_reader

from services.tlog.compact import CompactRange
from services.tlog.errors import VerificationError
from services.tlog.merkle import inclusion_proof
from services.tlog.verify import verify_since_checkpoint

SEALED = 9


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(14)


def _args(log: Log) -> dict[str, object]:
    frontier = CompactRange()
    frontier.extend(log.leaf_hashes[:SEALED])
    return {
        "tenant": TENANT,
        "checkpoint": log.checkpoint(SEALED),
        "verifiers": [log.verifier],
        "frontier": frontier,
        "last_sealed_event": log.events[SEALED - 1].canonical_bytes,
        "last_sealed_proof": inclusion_proof(SEALED - 1, SEALED, memory_reader(log.leaf_hashes[:SEALED])),
        "events_after": [e.canonical_bytes for e in log.events[SEALED:]],
        "previous": (log.checkpoint(5), log.consistency(5, SEALED)),
    }


def test_since_checkpoint_walks_only_the_tail(log: Log) -> None:
    """Verification from the newest checkpoint checks the tail and returns the new head."""
    result = verify_since_checkpoint(**_args(log))  # type: ignore[arg-type]
    assert (result.ok, result.events_checked, result.tree_size) == (True, 5, 14)


def test_since_checkpoint_names_bad_tail_event(log: Log) -> None:
    """A broken event after the checkpoint is reported with its seq."""
    args = _args(log)
    tail = list(args["events_after"])  # type: ignore[call-overload]
    del tail[1]
    args["events_after"] = tail
    result = verify_since_checkpoint(**args)  # type: ignore[arg-type]
    assert (result.ok, result.first_bad_seq) == (False, SEALED + 2)


def test_since_checkpoint_rejects_stale_frontier(log: Log) -> None:
    """A stored frontier that does not hash to the checkpoint root is a hard failure."""
    args = _args(log)
    stale = CompactRange()
    stale.extend(log.leaf_hashes[: SEALED - 1])
    stale.append(bytes(32))
    args["frontier"] = stale
    with pytest.raises(VerificationError, match="does not match checkpoint"):
        verify_since_checkpoint(**args)  # type: ignore[arg-type]


def test_since_checkpoint_rejects_forged_anchor(log: Log) -> None:
    """A last sealed event that is not the proven leaf fails the inclusion check."""
    args = _args(log)
    args["last_sealed_event"] = log.events[SEALED].canonical_bytes
    with pytest.raises(VerificationError):
        verify_since_checkpoint(**args)  # type: ignore[arg-type]
