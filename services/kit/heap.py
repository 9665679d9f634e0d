"""The cyclic garbage collector, set for processes that hold thousands of live objects and answer in milliseconds.

CPython runs a young collection every 700 net container allocations and, every so often, a full one
that walks every object the process holds, botocore's service models and the protobuf descriptors
included. A collection holds the GIL throughout, so every stream of the process stalls with it. In the
fleet benchmark (5,000 streams) ingest paused for up to 0.9 s in full collections and 20-120 ms in
the others, which was most of its p99 ack latency.

`settle` is called once start-up is over: what start-up built lives as long as the process, so it is
frozen (the collector never walks it again), and young collections wait for `YOUNG_THRESHOLD`
allocations, which makes them rarer and the older generations rarer still. Reference counting frees
almost everything anyway; the collector is only for cycles, and the memory they hold a little longer is
small next to the streams themselves.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100


def settle() -> None:
    """Collect what start-up left, freeze the rest, and space the collections out."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
