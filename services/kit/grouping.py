"""Group commit: requests of one key (a tenant) that arrive while a group is in flight are queued and
handled together by the next group.

One drain task per key. `select` picks which queued requests join the next group (indexes into the
queue, in queue order; the others wait for a later group), and `run` handles a group and answers each
of its requests with a result, or with an exception for that request alone; an exception raised by
`run` itself answers every request of the group. A request whose caller was cancelled while it waited
is dropped, never run (one cancelled while its group runs is still run).
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


@dataclass
class _Queue(Generic[RequestT, ResultT]):
    calls: list[_Call[RequestT, ResultT]] = field(default_factory=list)
    draining: bool = False


class Grouper(Generic[RequestT, ResultT]):
    """Per-key queues whose requests are handled in groups; see the module docstring."""

    def __init__(self, run: Callable[[str, list[RequestT]], Awaitable[Sequence[ResultT | BaseException]]],
                 select: Callable[[Sequence[RequestT]], Sequence[int]]) -> None:
        self._run = run
        self._select = select
        self._queues: dict[str, _Queue[RequestT, ResultT]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.groups = 0

    async def submit(self, key: str, request: RequestT) -> ResultT:
        """Queue one request; resolves with its answer once its group has run."""
        queue = self._queues.setdefault(key, _Queue())
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        queue.calls.append(_Call(request, done))
        if not queue.draining:
            queue.draining = True
            task = asyncio.create_task(self._drain(key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _drain(self, key: str, queue: _Queue[RequestT, ResultT]) -> None:
        try:
            while True:
                queue.calls = [c for c in queue.calls if not c.done.done()]
                if not queue.calls:
                    break
                chosen = set(self._select([c.request for c in queue.calls])) or {0}
                group = [c for i, c in enumerate(queue.calls) if i in chosen]
                queue.calls = [c for i, c in enumerate(queue.calls) if i not in chosen]
                await self._answer(key, group)
        finally:
            queue.draining = False

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
