"""What one websocket may cost the others of its server, decided server-wide.

``Pressure`` holds senders back while a reader that keeps up is behind, so
fan-out goes at the pace of the readers that keep up, never closing them
for someone else's flood (issue 14). ``ClosePacer`` spreads the cleanup of a
mass disconnect over scheduler batches so requests keep being answered.
``Server`` holds one of each and hands them to every ``WebsocketConnection``
(connection.py), which reports its outbox to ``Pressure`` and waits its
``ClosePacer.turn`` before cleaning up.
"""

from __future__ import annotations

import collections
import gc
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .connection import WebsocketConnection

__all__ = ["ClosePacer", "Pressure"]


class ClosePacer:
    """Lets at most ``per_batch`` websockets whose peer vanished clean up per
    scheduler batch; the others wait their turn in order.

    A mass disconnect (a client crash, a proxy restart) wakes every one of
    its connections in one scheduler batch: cleaned up at once they would
    hold the loop for a second per ten thousand, and a request arriving then
    would wait for all of them. Paced, the loop polls for I/O between groups
    of ``per_batch`` (issue 14: the next REST request within 250 ms; 16
    measured best here: each costs ~150 us, a request needs a few batches).

    While connections wait their turn, automatic garbage collection is held
    off: a full collection with thousands of connections alive takes a few
    hundred milliseconds, and what a disconnect frees goes by reference
    counting (measured: a mass disconnect leaves no cyclic garbage, since
    the HTTP parser's cycle is broken at the upgrade - RequestParser.close;
    before, 19,000 websockets left 13,000-20,000 cyclic objects).
    """

    __slots__ = ("per_batch", "_admitted", "_waiting", "_task", "_parked", "_gc_held")

    def __init__(self, per_batch: int = 16) -> None:
        self.per_batch = per_batch
        self._admitted = 0
        self._waiting: collections.deque[trio.lowlevel.Task] = collections.deque()
        self._task: trio.lowlevel.Task | None = None
        self._parked = False
        self._gc_held = False

    @property
    def idle(self) -> bool:
        """Whether no connection waits its turn."""
        return not self._waiting

    def _wake(self) -> None:
        if self._parked:
            self._parked = False
            trio.lowlevel.reschedule(self._task)  # type: ignore[arg-type]

    async def turn(self) -> None:
        """Return when this connection may clean up."""
        if self._task is None:
            return  # no pacer running (a connection outside Server)
        if self._admitted < self.per_batch and not self._waiting:
            self._admitted += 1
            self._wake()
            return
        task = trio.lowlevel.current_task()
        self._waiting.append(task)
        if not self._gc_held and gc.isenabled():
            gc.disable()
            self._gc_held = True
        self._wake()

        def abort(raise_cancel: object) -> trio.lowlevel.Abort:
            try:
                self._waiting.remove(task)
            except ValueError:
                pass
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def run(self) -> None:
        """The pacer task (``Server`` runs it)."""
        if self._task is not None:
            return
        self._task = trio.lowlevel.current_task()
        waiting = self._waiting
        try:
            while True:
                if not self._admitted and not waiting:
                    self._parked = True
                    await trio.lowlevel.wait_task_rescheduled(self._abort_park)
                # A later batch than the admissions it counted: a new group.
                count = min(self.per_batch, len(waiting))
                for _ in range(count):
                    trio.lowlevel.reschedule(waiting.popleft())
                self._admitted = count
                await trio.lowlevel.checkpoint()
                if not waiting:
                    self._admitted = 0
                    self._release_gc()
        finally:
            self._release_gc()
            self._task = None
            self._parked = False
            while waiting:
                trio.lowlevel.reschedule(waiting.popleft())

    def _abort_park(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    def _release_gc(self) -> None:
        if self._gc_held:
            self._gc_held = False
            gc.enable()


class Pressure:
    """The connections of one server whose outbox is past its high-water mark.

    ``wait`` holds a sender back while any of them, other than itself, has
    made progress in the last ``stall`` seconds: they are readers that keep
    up, only slower than the senders. Progress means ``min_progress`` bytes
    taken since the last: a reader that trickles a few bytes a second would
    otherwise hold every sender of the server back. One that has stalled is
    left to the slow-consumer rule instead of holding everyone back.
    """

    __slots__ = ("congested", "stall", "min_progress", "_credit", "_relieved", "waits")

    def __init__(self, stall: float = 1.0, min_progress: int = 64 * 1024) -> None:
        # connection -> when it last made progress (trio.current_time()).
        self.congested: dict[WebsocketConnection, float] = {}
        self.stall = stall
        self.min_progress = min_progress
        # connection -> bytes taken since its last progress.
        self._credit: dict[WebsocketConnection, int] = {}
        self._relieved: trio.Event | None = None
        #: How many times a sender was held back (a counter for benches).
        self.waits = 0

    def congest(self, connection: WebsocketConnection) -> None:
        if connection not in self.congested:
            self.congested[connection] = trio.current_time()

    def progress(self, connection: WebsocketConnection, written: int) -> None:
        credit = self._credit.get(connection, 0) + written
        if credit >= self.min_progress:
            self.congested[connection] = trio.current_time()
            credit = 0
        self._credit[connection] = credit

    def relieve(self, connection: WebsocketConnection) -> None:
        self._credit.pop(connection, None)
        if self.congested.pop(connection, None) is not None and self._relieved is not None:
            self._relieved.set()
            self._relieved = None

    def holding(self, sender: WebsocketConnection) -> bool:
        """Whether a reader that keeps up is behind (``sender`` aside)."""
        now = trio.current_time()
        stall = self.stall
        return any(c is not sender and now - t < stall for c, t in self.congested.items())

    async def wait(self, sender: WebsocketConnection) -> None:
        """Return once no reader that keeps up is behind."""
        self.waits += 1
        while self.holding(sender):
            if self._relieved is None:
                self._relieved = trio.Event()
            with trio.move_on_after(self.stall / 4):
                await self._relieved.wait()
