"""Reads that run ahead of a walk: aws.prefetched keeps order, errors and bounds, and stops with its consumer."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from services.kit import aws
from tests.faults.helpers import until


class _Produced:
    """A source that counts what it produced and can fail at one position."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.count = 0
        self.fail_at = fail_at

    def items(self) -> Iterator[int]:
        for i in itertools.count():
            if i == self.fail_at:
                raise RuntimeError(f"read {i} failed")
            self.count += 1
            yield i


def test_items_arrive_in_order_and_complete() -> None:
    """Every item of the source arrives once, in order."""
    assert list(aws.prefetched(iter(range(1000)), 3)) == list(range(1000))


def test_an_error_of_the_source_is_raised_where_the_consumer_reaches_it() -> None:
    """The items before a failed read arrive, then its error is raised in the consumer."""
    got: list[int] = []
    with pytest.raises(RuntimeError, match="read 5 failed"):
        got.extend(aws.prefetched(_Produced(fail_at=5).items(), 2))
    assert got == [0, 1, 2, 3, 4]


def test_the_source_runs_at_most_depth_ahead() -> None:
    """While the consumer holds its first item, the source gets at most `depth` items (and one in hand) ahead."""
    source = _Produced()
    walk = aws.prefetched(source.items(), 3)
    assert next(walk) == 0
    until(lambda: source.count >= 4, 10, "the source filling the read-ahead")
    assert source.count <= 1 + 3 + 1
    walk.close()


def test_a_consumer_that_stops_early_stops_the_source() -> None:
    """Closing the walk ends the producing thread."""
    before = {t.ident for t in threading.enumerate() if t.name == "prefetch"}
    walk = aws.prefetched(_Produced().items(), 2)
    next(walk)
    walk.close()
    assert {t.ident for t in threading.enumerate() if t.name == "prefetch"} <= before


def test_depth_zero_reads_on_the_consumers_thread() -> None:
    """Without read-ahead the source is consumed lazily, item by item."""
    source = _Produced()
    walk = aws.prefetched(source.items(), 0)
    assert (next(walk), source.count) == (0, 1)
