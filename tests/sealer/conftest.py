# TEMPORARY (development only, removed before hand-over): a stack of just ledger + sealer,
# because other services are mid-edit and do not start.
import sys

import pytest

from services.kit import devstack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    saved = devstack.PROCESSES, devstack.WORKERS
    devstack.PROCESSES = tuple(p for p in saved[0] if p[0] in ("ledger", "sealer"))
    devstack.WORKERS = ()
    running = devstack.Stack(state_dir=tmp_path_factory.mktemp("stack"))
    running.addresses.update({"assets": "127.0.0.1:1", "ingest": "127.0.0.1:1"})
    try:
        running.start()
    except BaseException:
        running.stop()
        for name in running.procs:
            log = running.log_path(name)
            if log.exists():
                sys.stderr.write(f"--- {name} log ---\n{log.read_text()[-4000:]}\n")
        raise
    try:
        yield running
    finally:
        running.stop()
        devstack.PROCESSES, devstack.WORKERS = saved
