"""Group commit (`services.kit.grouping.Grouper`): which requests run together, and when.

The groups run an in-process function that records what it was given and waits where the test says,
so that the order of groups is exactly the one each test names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from services.kit.grouping import Grouper


class Recorder:
    """A group runner that records each group and holds it until the test releases it."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release: dict[str, asyncio.Event] = {}

    async def run(self, key: str, requests: list[str]) -> list[str]:
        self.groups.append(requests)
        for request in requests:
            if request in self.release:
                await self.release[request].wait()
        return [f"{key}:{request}" for request in requests]

    def hold(self, request: str) -> asyncio.Event:
        self.release[request] = asyncio.Event()
        return self.release[request]


Select = Callable[[Sequence[str], Sequence[str]], Sequence[int]] | None


def _all(queued: Sequence[str], in_flight: Sequence[str]) -> list[int]:
    return list(range(len(queued)))


def _not_beside(queued: Sequence[str], in_flight: Sequence[str]) -> list[int]:
    """Requests named after a request in flight wait for it ("x" waits for "x-first")."""
    return [i for i, request in enumerate(queued) if not any(r.startswith(request) for r in in_flight)]


async def _settled() -> None:
    """Every task that can run has run as far as it can (the runner does no I/O: a few loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def _first_group_held(request: str, select: Select = None, max_in_flight: int = 1) -> tuple[
    Recorder, Grouper[str, str], asyncio.Event, asyncio.Task[str]
]:
    """A grouper whose first group, of `request` alone, is running and held until the test sets the event."""
    recorder = Recorder()
    grouper: Grouper[str, str] = Grouper(recorder.run, select or _all, max_in_flight=max_in_flight)
    held = recorder.hold(request)
    first = asyncio.create_task(grouper.submit("k", request))
    await _settled()
    assert recorder.groups == [[request]]
    return recorder, grouper, held, first


async def test_one_group_at_a_time_by_default() -> None:
    """A request arriving while a group runs waits for it, then runs with the others that arrived meanwhile."""
    recorder, grouper, held, first = await _first_group_held("a")
    later = [asyncio.create_task(grouper.submit("k", name)) for name in ("b", "c")]
    await _settled()
    assert recorder.groups == [["a"]]
    held.set()
    assert await asyncio.gather(first, *later) == ["k:a", "k:b", "k:c"]
    assert recorder.groups == [["a"], ["b", "c"]]


async def test_a_second_group_runs_while_the_first_is_in_flight() -> None:
    """With two groups allowed, a request arriving while the first group is held runs and is answered at once."""
    _, grouper, held, first = await _first_group_held("a", max_in_flight=2)
    assert await asyncio.wait_for(grouper.submit("k", "b"), 10) == "k:b"
    assert not first.done()
    held.set()
    assert await first == "k:a"


async def test_a_request_select_keeps_out_runs_once_the_group_in_flight_is_done() -> None:
    """A request `select` leaves out while a group is in flight runs in the next group after that one."""
    recorder, grouper, held, first = await _first_group_held("x-first", _not_beside, max_in_flight=2)
    waiting = asyncio.create_task(grouper.submit("k", "x"))
    await _settled()
    assert recorder.groups == [["x-first"]] and not waiting.done()
    held.set()
    assert list(await asyncio.gather(first, waiting)) == ["k:x-first", "k:x"]
    assert recorder.groups == [["x-first"], ["x"]]


async def test_a_cancelled_caller_is_dropped_before_its_group_runs() -> None:
    """A request whose caller went away while it was queued never runs."""
    recorder, grouper, held, first = await _first_group_held("a")
    gone = asyncio.create_task(grouper.submit("k", "gone"))
    kept = asyncio.create_task(grouper.submit("k", "kept"))
    await _settled()
    gone.cancel()
    held.set()
    assert list(await asyncio.gather(first, kept)) == ["k:a", "k:kept"]
    assert recorder.groups == [["a"], ["kept"]]


async def test_quiet_returns_at_once_for_a_key_with_nothing_queued() -> None:
    """Waiting for a quiet key that never had a request, or whose groups are all done, does not wait."""
    recorder = Recorder()
    grouper: Grouper[str, str] = Grouper(recorder.run, _all)
    await asyncio.wait_for(grouper.quiet("k"), 10)
    assert await grouper.submit("k", "a") == "k:a"
    await asyncio.wait_for(grouper.quiet("k"), 10)


async def test_quiet_waits_for_the_group_in_flight_and_the_requests_queued_behind_it() -> None:
    """A key is quiet only once its running group and every request queued meanwhile have been answered."""
    recorder, grouper, held, first = await _first_group_held("a")
    later = asyncio.create_task(grouper.submit("k", "b"))
    quiet = asyncio.create_task(grouper.quiet("k"))
    await _settled()
    assert not quiet.done()
    held.set()
    await asyncio.wait_for(quiet, 10)
    assert first.done() and later.done()
    assert recorder.groups == [["a"], ["b"]]
