"""Custody outbox: custody records written in the caller's transaction, chained by the sequencer.

See README.md and ACCESS_PATTERNS.md in services/ledger.
"""

from services.ledger.outbox.sequencer import CustodySequencer, SweepReport
from services.ledger.outbox.store import CustodyRecord, new_record, record_put

__all__ = ["CustodyRecord", "CustodySequencer", "SweepReport", "new_record", "record_put"]
