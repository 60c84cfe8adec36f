"""The transport's one heap of deadlines (``transports/timers.py``): it fires
each key once at its latest deadline, and its memory stays bounded however
often keys are rescheduled (the soak's RSS grew while every websocket
message left a stale entry an hour deep)."""

from __future__ import annotations

import trio

from satchel.transports.timers import Timers


async def test_rescheduling_fires_once_at_the_latest_deadline_and_cancel_forgets() -> None:
    timers = Timers()
    fired: list[object] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        now = trio.current_time()
        timers.schedule("a", now + 0.05, fired.append)
        timers.schedule("a", now + 0.02, fired.append)  # earlier: wins
        timers.schedule("b", now + 0.01, fired.append)
        timers.schedule("b", None, fired.append)  # cancelled
        timers.schedule_ms("c", 1_000_030, 1_000_000, fired.append)
        timers.schedule_ms("c", 1_000_030, 1_000_000, fired.append)  # the same deadline again
        timers.schedule("d", now + 0.03, fired.append)
        timers.cancel("d")
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert sorted(fired, key=str) == ["a", "c"]
    assert len(timers) == 0


async def test_the_heap_stays_bounded_however_often_a_key_moves() -> None:
    timers = Timers()
    callback = lambda key: None  # noqa: E731
    now = trio.current_time()
    for n in range(20_000):
        # A deadline an hour away that moves a little with every message.
        timers.schedule(("mount", n % 10), now + 3600 + n / 1e6, callback)
    assert len(timers) == 10
    assert timers.heap_size() <= 2 * 10 + Timers.SLACK + 1
    for n in range(20_000):
        # The same deadline in the core's clock, converted afresh each time.
        timers.schedule_ms(("conn", n % 10), 5_000_000, 1_000_000 + n % 7, callback)
    assert len(timers) == 20
    assert timers.heap_size() <= 2 * 20 + Timers.SLACK + 1
