"""The threads that run blocking metric queries, the slowest endpoint's first.

An analysis puts all its queries (zones x metrics x 2) in the pool at once, and their Python work
— building each request, reading each answer — is serialised by the interpreter's lock: the last
one started waits for every other one's. Taking the queued query of the endpoint that answered
slowest last time first starts the query that ends the analysis first, so the analysis costs
about its slowest query and not that plus every other query's start (longest job first). Ties (and
endpoints not asked yet) keep the order they were put in. Callers: ``metrics.prometheus``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class SlowestFirst:
    """A thread pool (threads made as needed, up to ``size``, then kept) with a priority queue."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._queue: list[tuple[float, int, Callable[[], None]]] = []  # a heap: (-latency, order, work)
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._threads = 0
        self._idle = 0  # threads waiting for work that no submit has woken yet

    def submit(self, latency: float, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` in a thread; among queued calls, the highest ``latency`` runs first."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():  # cancelled while queued (a timeout)
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, as an executor does
                future.set_exception(exc)

        with self._cond:
            heapq.heappush(self._queue, (-latency, next(self._order), work))
            if self._idle:
                self._idle -= 1
                self._cond.notify()
            elif self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._worker, name=f"{self.name}-{self._threads}", daemon=True).start()
        return future

    async def run(self, latency: float, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(latency, fn, *args))

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._idle += 1
                    self._cond.wait()
                _, _, work = heapq.heappop(self._queue)
            work()
