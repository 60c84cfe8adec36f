"""When the server hands freed memory back after a mass disconnect (issue 14;
``transports/memory.py``), and that doing it costs the loop nothing much."""

from __future__ import annotations

import gc
import time

import re
import sys

import pytest
import trio

from satchel.transports.memory import MIN_DROP, MemoryReturn, release_memory


def _counting() -> tuple[MemoryReturn, list[int]]:
    calls: list[int] = []
    return MemoryReturn(release=lambda: calls.append(1), min_interval=5.0), calls


def test_memory_is_returned_after_a_mass_drop_once_the_cleanup_is_over() -> None:
    memory, calls = _counting()
    for count in range(1, 19_001):
        memory.opened(count)
    # Dropped, but the close pacer is still cleaning up: not yet.
    assert not memory.check(10, now=100.0, settled=False)
    assert calls == []
    assert memory.check(10, now=101.0, settled=True)
    assert calls == [1] and memory.returns == 1
    # Nothing new has gone since: no second return.
    assert not memory.check(10, now=200.0, settled=True)
    assert calls == [1]


def test_ordinary_churn_returns_nothing() -> None:
    memory, calls = _counting()
    memory.opened(19_000)
    # Under a quarter of the peak gone: churn, not a mass disconnect.
    assert not memory.check(19_000 - 19_000 // 4 + 1, now=1.0, settled=True)
    # A quarter of a small peak, but fewer than MIN_DROP connections.
    small, small_calls = _counting()
    small.opened(MIN_DROP)
    assert not small.check(1, now=1.0, settled=True)
    assert calls == [] and small_calls == []


def test_waves_of_drops_return_memory_at_most_once_per_interval() -> None:
    memory, calls = _counting()
    now = 0.0
    for _ in range(20):  # a wave of 5,000 connections and its drop every second
        memory.opened(5_000)
        now += 1.0
        memory.check(0, now=now, settled=True)
    # 20 s of waves, at most one return per 5 s (the first at once).
    assert len(calls) == 4, calls


async def test_run_checks_about_once_a_second() -> None:
    memory, calls = _counting()
    memory.opened(5_000)
    state = {"count": 5_000, "settled": False}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(memory.run, lambda: state["count"], lambda: state["settled"])
        await trio.sleep(1.5)
        state["count"] = 0  # the drop; the pacer still busy
        await trio.sleep(1.0)
        assert calls == []
        state["settled"] = True
        await trio.sleep(1.0)
        assert calls == [1]
        nursery.cancel_scope.cancel()


def _free_pairs(capfd: pytest.CaptureFixture[str]) -> int:
    """Freed 2-tuples the interpreter keeps for reuse (its free list)."""
    capfd.readouterr()
    sys._debugmallocstats()  # to the C stderr
    found = re.search(r"(\d+) free 2-sized PyTupleObjects", capfd.readouterr().err)
    assert found, "no free-list figures from sys._debugmallocstats"
    return int(found.group(1))


def test_release_memory_empties_the_free_lists_without_traversing_what_is_alive(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Freed tuples wait on the interpreter's free list, pinning the memory
    # they sit in; only a full collection empties it. With 300,000 tracked
    # objects alive a full collection takes tens of ms; the frozen one must
    # take a fraction of that.
    alive = [[i] for i in range(300_000)]
    pairs = [(i, i) for i in range(5_000)]
    del pairs
    assert _free_pairs(capfd) > 1_000
    started = time.perf_counter()
    gc.collect()
    full = time.perf_counter() - started
    pairs = [(i, i) for i in range(5_000)]
    del pairs
    assert _free_pairs(capfd) > 1_000
    started = time.perf_counter()
    release_memory()
    released = time.perf_counter() - started
    assert _free_pairs(capfd) < 100
    assert released < full / 5, (released, full)
    # Nothing is left frozen: what is alive is collected as before.
    assert gc.get_freeze_count() == 0
    assert len(alive) == 300_000


def test_release_memory_leaves_an_applications_frozen_objects_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        release_memory()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
