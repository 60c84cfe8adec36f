"""Deadlines for many connections, kept by one task.

The core reads no clock: a mount says when a connection's timer is due
(``Mount.deadline_ms``), an Engine.IO session when its heartbeat is
(``EngineIoSession.next_deadline_ms``), and the transport calls back at that
time. ``Timers`` keeps one heap of ``(due, key)`` for all of them and one
task sleeping until the earliest, so a server with thousands of idle
connections runs nothing until a timer is due, and costs O(log n) per
(re)scheduling. A key is rescheduled by scheduling it again (the old entry
is skipped when popped) and cancelled with ``cancel``.

Memory. A rescheduled key leaves its old entry in the heap until that
entry's time comes, so a connection that reschedules on every message with
a deadline an hour away (a token's expiry) left an entry per message for an
hour: the 10-minute soak's RSS grew ~0.5 MB a minute, tracemalloc pointed
here. Two bounds: ``schedule_ms`` with the deadline it already has changes
nothing (the common case: most messages do not move a connection's
deadline, but the conversion to trio's clock made every call look new),
and once stale entries outnumber the live ones the heap is rebuilt from the
live deadlines (O(n), at most once per n reschedulings).

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

    __slots__ = ("_heap", "_due", "_due_ms", "_callbacks", "_wake", "_counter")

    #: Stale entries allowed beyond one per live key before the heap is rebuilt.
    SLACK = 64

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        # The deadline each key was given through schedule_ms, in that clock.
        self._due_ms: dict[Hashable, int] = {}
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
        self._due_ms.pop(key, None)
        self._schedule(key, at, callback)

    def schedule_ms(self, key: Hashable, due_ms: int | None, now_ms: int, callback: Callable[[Hashable], Any]) -> None:
        """``schedule`` with a deadline in milliseconds of a clock that reads
        ``now_ms`` now; the deadline the key already has changes nothing."""
        if due_ms is None:
            self.cancel(key)
            return
        if self._due_ms.get(key) == due_ms and key in self._due:
            self._callbacks[key] = callback
            return
        self._due_ms[key] = due_ms
        self._schedule(key, trio.current_time() + max(0, due_ms - now_ms) / 1000, callback)

    def _schedule(self, key: Hashable, at: float, callback: Callable[[Hashable], Any]) -> None:
        self._callbacks[key] = callback
        if self._due.get(key) == at:
            return
        heap = self._heap
        earliest = heap[0][0] if heap else None
        self._due[key] = at
        heapq.heappush(heap, (at, next(self._counter), key))
        if len(heap) > 2 * len(self._due) + self.SLACK:
            due = self._due
            self._heap = heap = [entry for entry in heap if due.get(entry[2]) == entry[0]]
            heapq.heapify(heap)
        if earliest is None or at < earliest:
            self._wake.set()

    def cancel(self, key: Hashable) -> None:
        """Forget ``key``'s deadline (idempotent)."""
        self._due.pop(key, None)
        self._due_ms.pop(key, None)
        self._callbacks.pop(key, None)

    def heap_size(self) -> int:
        """Entries in the heap, stale ones included (bounded: the module docstring)."""
        return len(self._heap)

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
            self._due_ms.pop(key, None)
            if callback is not None:
                try:
                    callback(key)
                except Exception:
                    log.exception("timer callback failed for %r", key)
            await trio.lowlevel.checkpoint()
