"""Group commit: requests of one key (a tenant) that arrive while a group is in flight are queued and
handled together by the next group.

One drain task per key. `select` picks which queued requests join the next group (indexes into the
queue, in queue order; the others wait for a later group), given the requests of the groups still in
flight, and `run` handles a group and answers each of its requests with a result, or with an exception
for that request alone; an exception raised by `run` itself answers every request of the group. A
request whose caller was cancelled while it waited is dropped, never run (one cancelled while its group
runs is still run).

At most `max_in_flight` groups of a key run at once (one by default: each group then sees everything
the previous one wrote, as the ledger's chain needs). With more, the next group starts while others
are in flight, so the caller's work on one group overlaps the store's on another; `select` keeps out
what must wait for a group in flight. When nothing queued may join a group, the queue waits for one.

`quiet(key)` waits until nothing of a key is queued or running: background work of the same key (the
custody sequencer's chaining) can let a burst through first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")


@dataclass
class _Call(Generic[RequestT, ResultT]):
    request: RequestT
    done: asyncio.Future[ResultT]


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class _Queue(Generic[RequestT, ResultT]):
    calls: list[_Call[RequestT, ResultT]] = field(default_factory=list)
    # The groups in flight, by the task running each; `arrived` wakes a drain waiting on them.
    running: dict[asyncio.Task[None], list[RequestT]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while no drain runs: nothing queued, no group in flight.
    drained: asyncio.Event = field(default_factory=_set_event)


class Grouper(Generic[RequestT, ResultT]):
    """Per-key queues whose requests are handled in groups; see the module docstring."""

    def __init__(self, run: Callable[[str, list[RequestT]], Awaitable[Sequence[ResultT | BaseException]]],
                 select: Callable[[Sequence[RequestT], Sequence[RequestT]], Sequence[int]],
                 max_in_flight: int = 1) -> None:
        self._run = run
        self._select = select
        self._max_in_flight = max_in_flight
        self._queues: dict[str, _Queue[RequestT, ResultT]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.groups = 0

    async def quiet(self, key: str) -> None:
        """Return once nothing of `key` is queued or running (at once when nothing is)."""
        queue = self._queues.get(key)
        if queue is not None:
            await queue.drained.wait()

    async def submit(self, key: str, request: RequestT) -> ResultT:
        """Queue one request; resolves with its answer once its group has run."""
        queue = self._queues.setdefault(key, _Queue())
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        queue.calls.append(_Call(request, done))
        queue.arrived.set()
        if queue.drained.is_set():
            queue.drained.clear()
            task = asyncio.create_task(self._drain(key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _drain(self, key: str, queue: _Queue[RequestT, ResultT]) -> None:
        try:
            while True:
                queue.calls = [c for c in queue.calls if not c.done.done()]
                if not queue.calls and not queue.running:
                    break
                if queue.calls and len(queue.running) < self._max_in_flight and self._start_group(key, queue):
                    continue
                queue.arrived.clear()
                arrival = asyncio.ensure_future(queue.arrived.wait())
                try:
                    await asyncio.wait([*queue.running, arrival], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    arrival.cancel()
                for task in [task for task in queue.running if task.done()]:
                    del queue.running[task]
        except asyncio.CancelledError:
            for task in queue.running:
                task.cancel()
            raise
        finally:
            queue.drained.set()

    def _start_group(self, key: str, queue: _Queue[RequestT, ResultT]) -> bool:
        """Start the next group of the queued requests; False when `select` takes none while others run."""
        in_flight = [request for group in queue.running.values() for request in group]
        chosen = set(self._select([c.request for c in queue.calls], in_flight))
        if not chosen:
            if queue.running:
                return False
            chosen = {0}
        group = [c for i, c in enumerate(queue.calls) if i in chosen]
        queue.calls = [c for i, c in enumerate(queue.calls) if i not in chosen]
        queue.running[asyncio.create_task(self._answer(key, group))] = [c.request for c in group]
        return True

    async def _answer(self, key: str, group: list[_Call[RequestT, ResultT]]) -> None:
        try:
            answers = await self._run(key, [c.request for c in group])
            self.groups += 1
        except Exception as exc:
            for call in group:
                if not call.done.done():
                    call.done.set_exception(exc)
            return
        for call, answer in zip(group, answers, strict=True):
            if call.done.done():
                continue
            if isinstance(answer, BaseException):
                call.done.set_exception(answer)
            else:
                call.done.set_result(answer)
