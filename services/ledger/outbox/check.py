"""Report custody records still unchained past a bound: custody actions the ledger does not hold yet.

    python -m services.ledger.outbox.check [--older-than SECONDS] [--tenant T]

Reads the table named by the services' AWS settings (LZ_TABLE_NAME, LZ_AWS_ENDPOINT_URL, AWS_REGION)
and prints one JSON line per overdue record, oldest first. Exit 0: none; 1: some are overdue (the
custody sequencer of the assets service is down or failing; its log says why); 2: bad arguments or
the table cannot be read. The sequencer runs the same check at every sweep and logs what it finds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import botocore.exceptions

from services.kit import aws
from services.kit import settings as s
from services.kit.errors import ConfigError
from services.ledger.outbox import store

DEFAULT_OLDER_THAN_SECONDS = 60.0
MAX_REPORTED = 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ledger.outbox.check", description=__doc__.split("\n")[0])
    parser.add_argument("--older-than", type=float, default=DEFAULT_OLDER_THAN_SECONDS, metavar="SECONDS")
    parser.add_argument("--tenant", default="", help="only this tenant's records")
    args = parser.parse_args(argv)
    try:
        settings = s.load(s.AwsSettings)
        ddb = aws.client(settings, "dynamodb")
        bound = datetime.now(UTC) - timedelta(seconds=args.older_than)
        overdue = store.overdue_records(ddb, settings.table_name, bound, limit=MAX_REPORTED)
    except (ConfigError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        sys.stderr.write(f"custody check: {' '.join(str(exc).split())}\n")
        return 2
    found = [r for r in overdue if not args.tenant or r.tenant == args.tenant]
    for record in found:
        sys.stdout.write(json.dumps({"tenant": record.tenant, "asset_id": record.asset_id, "version": record.version,
                                     "action": record.draft.action, "record_time": record.record_time}) + "\n")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
