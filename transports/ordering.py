"""Publishing in commit order: the reorder stage between the runner and the bus.

The guarantee (README, "Delivery order"): within one server process, the
changes of writes are published - and so reach every subscriber, of every
protocol - in the order the store committed the writes. Per record, kv
entry, live config entry, inbox document and channel that is the order of
their versions / revisions; across them it is one order for the whole
process, the same for every subscriber.

Why a stage is needed: each action runs in its own trio task, and the store
wakes the tasks of one group commit together; trio runs a batch of woken
tasks in either order (on purpose), so the task of the later commit may
publish first. The store therefore stamps every committing write with its
place in the commit order (``Store.execute_stamped``: 1, 2, 3, ... per
store, no gaps), the runner hands each stamp to the action's ``Ticket``,
and the ticket publishes the action's events through the store's
``Sequencer``, which runs a publish only when every smaller stamp has been
released: published, or released with nothing (a write whose action failed,
was refused, was cancelled, or published nothing). ``Ticket`` is a context
manager whose exit releases whatever it still holds, so every stamp handed
out is released even when its task fails or is cancelled.

What one action's events wait for: an action may make several writes; its
events are published together, as one, at the place of its LAST write
(every stamp it holds is released then). So an action's events never
overtake a write committed before any of its own, but the changes of its
earlier writes wait for everything committed before its last one. Every
protocol's single-write actions (REST and websocket writes of one record,
entry, live config or document, inbox messages over HTTP or UDP) are
exact; the multi-write ones are Directus batches of items, Backpack's
channel bookkeeping and Asnity's community and channel management.

Events of actions that wrote nothing (a subscribe's answer, a broadcast, a
closed connection) hold no stamp; they are published at once unless some
stamped publish is waiting, and then right after the latest of those: a
connection's later reply never overtakes its earlier write's change.

Head-of-line blocking, and its bound: a waiting publish waits only for
stamps below its own, and a stamp is held from its write's commit to the
end of its action - the rest of that action's storage operations and no
more (a write's waiter is woken only after its COMMIT). If a gap stays open
longer than ``stall_limit`` (1 s: something is badly wrong - a task that
never received its stamp, say) or more than ``max_waiting`` publishes pile
up behind it, the stage gives up on the missing stamps, publishes what
waits, and logs it; a stamp given up on publishes at once when it is finally
released (out of order, counted in ``late``). A watchdog system task,
started the first time a publish has to wait, enforces the time bound when
nothing else happens.

The stage is per store instance (``sequencer_for``): every runner and bus of
one store in this process shares its stamps, so a second app on the same
store fills the first one's gaps instead of stalling it. Publishes are plain
synchronous callables (``LocalBus.publish`` of the events); one that raises
is logged and the stage goes on.
"""

from __future__ import annotations

import logging
import weakref
from typing import Callable

import trio

__all__ = ["Sequencer", "Ticket", "sequencer_for"]

log = logging.getLogger("satchel.ordering")

Publish = Callable[[], None]

_sequencers: "weakref.WeakKeyDictionary[object, Sequencer]" = weakref.WeakKeyDictionary()


def sequencer_for(store: object) -> "Sequencer":
    """The reorder stage of ``store``'s commit stamps (one per store instance)."""
    sequencer = _sequencers.get(store)
    if sequencer is None:
        sequencer = _sequencers[store] = Sequencer()
    return sequencer


class Sequencer:
    """Runs publishes in the order of their commit stamps (module docstring)."""

    __slots__ = ("_next", "_waiting", "_highest", "_stalled_since", "_watchdog_run", "stall_limit", "max_waiting",
                 "late", "skipped", "held_back")

    def __init__(self, *, stall_limit: float = 1.0, max_waiting: int = 100_000) -> None:
        # The smallest stamp not yet released.
        self._next = 1
        # Released stamps above ``_next``, each with what it publishes.
        self._waiting: dict[int, list[Publish]] = {}
        self._highest = 0  # the greatest stamp in ``_waiting``
        # trio.current_time() when the gap at ``_next`` was first seen.
        self._stalled_since: float | None = None
        self._watchdog_run: object = None  # the trio run whose watchdog is running
        self.stall_limit = stall_limit
        self.max_waiting = max_waiting
        # Counters: stamps released after being given up on; stamps given
        # up on; publishes that had to wait for a smaller stamp.
        self.late = 0
        self.skipped = 0
        self.held_back = 0

    @property
    def waiting(self) -> int:
        """Released stamps waiting for a smaller one."""
        return len(self._waiting)

    def release(self, stamp: int, publish: Publish | None = None) -> None:
        """Release ``stamp``: run ``publish`` (if any) once every smaller stamp
        is released, then whatever waited for this one."""
        if stamp < self._next:
            # Given up on earlier (or released twice): publish at once.
            self.late += 1
            log.warning("commit stamp %d released after it was given up on: published out of order", stamp)
            if publish is not None:
                _run(publish)
            return
        if stamp != self._next:
            self.held_back += publish is not None
            self._waiting.setdefault(stamp, [])
            if publish is not None:
                self._waiting[stamp].append(publish)
            if stamp > self._highest:
                self._highest = stamp
            if self._stalled_since is None:
                self._stall_started()
            if len(self._waiting) > self.max_waiting:
                self._give_up()
            return
        if publish is not None:
            _run(publish)
        self._next += 1
        if self._waiting:
            self._drain()

    def publish(self, publish: Publish) -> None:
        """Publish what holds no stamp: now, or after the latest waiting publish."""
        if self._waiting:
            self._waiting[self._highest].append(publish)
        else:
            _run(publish)

    def _drain(self) -> None:
        waiting = self._waiting
        while self._next in waiting:
            for publish in waiting.pop(self._next):
                _run(publish)
            self._next += 1
        if waiting:
            self._stall_started()  # progress: the clock restarts for the next gap
        else:
            self._stalled_since = None
            self._highest = 0

    def _give_up(self) -> None:
        """Stop waiting for the stamps missing below the first waiting one."""
        first = min(self._waiting)
        self.skipped += first - self._next
        log.warning("commit stamps %d..%d not released within %.1f s (or %d publishes waiting): "
                    "publishing what waits", self._next, first - 1, self.stall_limit, len(self._waiting))
        self._next = first
        self._drain()

    def _stall_started(self) -> None:
        try:
            self._stalled_since = trio.current_time()
            run = trio.lowlevel.current_trio_token()
        except RuntimeError:  # outside trio (a synchronous test): no watchdog
            self._stalled_since = 0.0
            return
        if self._watchdog_run is not run:
            self._watchdog_run = run
            try:
                trio.lowlevel.spawn_system_task(self._watch, name="satchel commit-order watchdog")
            except RuntimeError:  # the run is ending: the bound on size still holds
                log.debug("no commit-order watchdog: the trio run is ending")

    async def _watch(self) -> None:
        """Enforce ``stall_limit`` when nothing else releases a stamp."""
        try:
            while True:
                await trio.sleep(self.stall_limit / 4)
                since = self._stalled_since
                if self._waiting and since is not None and trio.current_time() - since > self.stall_limit:
                    self._give_up()
        except Exception:  # a system task must not raise
            log.exception("commit-order watchdog failed")
        finally:
            if self._watchdog_run is trio.lowlevel.current_trio_token():
                self._watchdog_run = None

    def ticket(self) -> "Ticket":
        """A ticket for one action's stamps."""
        return Ticket(self)


class Ticket:
    """The commit stamps of one action, and its one publish.

    ``with ticket:`` around running the action and publishing its events;
    the runner ``hold``s each stamp, ``publish`` releases them all with the
    events at the place of the greatest, and leaving the block releases
    whatever is still held (the action failed or was cancelled)."""

    __slots__ = ("_sequencer", "_stamps", "_done")

    def __init__(self, sequencer: Sequencer) -> None:
        self._sequencer = sequencer
        self._stamps: list[int] = []
        self._done = False

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._done:
            self._done = True
            self._release(None)

    def hold(self, stamp: int) -> None:
        """Keep ``stamp`` until the action publishes (the runner calls this)."""
        if self._done:
            self._sequencer.release(stamp)  # after the publish: nothing waits for it
        else:
            self._stamps.append(stamp)

    def publish(self, publish: Publish) -> None:
        """Run ``publish`` in commit order (once; later calls publish at once)."""
        if self._done:
            self._sequencer.publish(publish)
            return
        self._done = True
        if self._stamps:
            self._release(publish)
        else:
            self._sequencer.publish(publish)

    def publish_opening(self, publish: Publish) -> None:
        """Publish the events of a connection's registration (its greeting,
        the Socket.IO connect ack): at once when the action wrote nothing.

        A plain stampless publish waits behind the publishes waiting in the
        stage so that a connection's reply never overtakes its own earlier
        write; a new connection has no earlier write, and what waits there
        was committed before it existed yet is delivered to whoever is
        registered when it goes out - so waiting would let those changes
        reach the new connection before its greeting."""
        if self._stamps or self._done:
            self.publish(publish)
            return
        self._done = True
        _run(publish)

    def _release(self, publish: Publish | None) -> None:
        stamps, self._stamps = self._stamps, []
        if not stamps:
            return
        last = max(stamps)
        release = self._sequencer.release
        for stamp in stamps:
            if stamp != last:
                release(stamp)
        release(last, publish)


def _run(publish: Publish) -> None:
    try:
        publish()
    except Exception:
        log.exception("publishing a change failed")
