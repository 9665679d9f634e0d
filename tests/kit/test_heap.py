"""The garbage-collector settings every service process applies once it has started."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

from services.kit import heap

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import gc, json, weakref
from services.kit import heap

class Node:
    pass

before = Node()
before.self = before
heap.settle()
after = Node()
after.self = after
gone = weakref.ref(after)
del after
gc.collect()
print(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(), "cycle_freed": gone() is None}))
"""


@functools.cache
def _settled() -> dict[str, object]:
    """What a fresh interpreter reports after `heap.settle()` (run apart, so this test process keeps its own GC)."""
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def test_settle_freezes_what_start_up_built() -> None:
    """After settling, the objects start-up made sit in the permanent generation."""
    assert int(str(_settled()["frozen"])) > 1000


def test_settle_spaces_collections_out() -> None:
    """After settling, young collections wait for `YOUNG_THRESHOLD` allocations instead of CPython's 700."""
    assert _settled()["threshold"] == [heap.YOUNG_THRESHOLD, heap.MIDDLE_THRESHOLD, heap.OLD_THRESHOLD]


def test_cycles_made_after_settling_are_still_collected() -> None:
    """The collector stays on: a reference cycle made after settling is freed by a collection."""
    assert _settled()["cycle_freed"] is True
