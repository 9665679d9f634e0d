"""Blocking work the agent must be able to walk away from.

Discovery reads files and talks to local processes that a user controls; a
stuck read must not keep ``lz-agent run`` from stopping. ``asyncio.to_thread``
and ``ThreadPoolExecutor`` threads are joined at interpreter exit (and by
``asyncio.run``), so a hung probe would hold the process; the threads here are
daemons, which the interpreter abandons when the agent exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


def in_daemon_thread(work: Callable[[], _T]) -> asyncio.Future[_T]:
    """A future of ``work()`` run in a new daemon thread; the loop may close before it finishes."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            value = work()
        except BaseException as exc:  # handed to the awaiting coroutine, not lost in the thread
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, lambda: future.set_result(value))

    threading.Thread(target=run, name="lz-agent-work", daemon=True).start()
    return future


def map_with_deadline(
    work: Callable[[_T], _R], items: Iterable[_T], deadline: float, late: Callable[[_T], _R], workers: int = 8
) -> list[_R]:
    """``work`` over ``items`` in up to ``workers`` daemon threads; an item unfinished after ``deadline``
    seconds gives ``late(item)`` instead, and its thread is left behind rather than waited for."""
    todo: Sequence[_T] = list(items)
    results: list[_R | None] = [None] * len(todo)
    done = [False] * len(todo)
    lock = threading.Lock()
    next_index = [0]
    finished = threading.Event()
    remaining = [len(todo)]

    def worker() -> None:
        while True:
            with lock:
                index = next_index[0]
                if index >= len(todo):
                    return
                next_index[0] += 1
            try:
                value = work(todo[index])
            except Exception:
                value = late(todo[index])
            with lock:
                results[index], done[index] = value, True
                remaining[0] -= 1
                if remaining[0] == 0:
                    finished.set()

    if not todo:
        return []
    for _ in range(max(1, min(workers, len(todo)))):
        threading.Thread(target=worker, name="lz-agent-probe", daemon=True).start()
    finished.wait(deadline)
    with lock:
        return [results[i] if done[i] else late(todo[i]) for i in range(len(todo))]  # type: ignore[misc]
