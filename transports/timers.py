"""Deadlines for many connections, kept by one task.

The core reads no clock: a mount says when a connection's timer is due
(``Mount.deadline_ms``), an Engine.IO session when its heartbeat is
(``EngineIoSession.next_deadline_ms``), and the transport calls back at that
time. ``Timers`` keeps one heap of ``(due, key)`` for all of them and one
task sleeping until the earliest, so a server with thousands of idle
connections runs nothing until a timer is due, and costs O(log n) per
(re)scheduling. A key is rescheduled by scheduling it again (the old entry
is skipped when popped) and cancelled with ``cancel``.

Times are trio's clock (``trio.current_time()``, seconds); ``schedule_ms``
converts a deadline given in another clock's milliseconds (the core's
``env.now_ms()``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Any, Callable, Hashable

import trio

__all__ = ["Timers"]

log = logging.getLogger(__name__)


class Timers:
    """Calls ``callback(key)`` once each key's deadline has passed."""

    __slots__ = ("_heap", "_due", "_callbacks", "_wake", "_counter")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._callbacks: dict[Hashable, Callable[[Hashable], Any]] = {}
        self._wake = trio.Event()
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, key: Hashable, at: float | None, callback: Callable[[Hashable], Any]) -> None:
        """Call ``callback(key)`` at trio time ``at`` (``None``: cancel)."""
        if at is None:
            self.cancel(key)
            return
        if self._due.get(key) == at:
            return
        earliest = self._heap[0][0] if self._heap else None
        self._due[key] = at
        self._callbacks[key] = callback
        heapq.heappush(self._heap, (at, next(self._counter), key))
        if earliest is None or at < earliest:
            self._wake.set()

    def schedule_ms(self, key: Hashable, due_ms: int | None, now_ms: int, callback: Callable[[Hashable], Any]) -> None:
        """``schedule`` with a deadline in milliseconds of a clock that reads ``now_ms`` now."""
        if due_ms is None:
            self.cancel(key)
            return
        self.schedule(key, trio.current_time() + max(0, due_ms - now_ms) / 1000, callback)

    def cancel(self, key: Hashable) -> None:
        """Forget ``key``'s deadline (idempotent)."""
        self._due.pop(key, None)
        self._callbacks.pop(key, None)

    async def run(self) -> None:
        """Fire deadlines as they pass, until cancelled."""
        while True:
            heap = self._heap
            while heap and self._due.get(heap[0][2]) != heap[0][0]:
                heapq.heappop(heap)  # rescheduled or cancelled since
            self._wake = trio.Event()
            if not heap:
                await self._wake.wait()
                continue
            at = heap[0][0]
            now = trio.current_time()
            if at > now:
                with trio.move_on_at(at):
                    await self._wake.wait()
                continue
            _, _, key = heapq.heappop(heap)
            callback = self._callbacks.pop(key, None)
            self._due.pop(key, None)
            if callback is not None:
                try:
                    callback(key)
                except Exception:
                    log.exception("timer callback failed for %r", key)
            await trio.lowlevel.checkpoint()
