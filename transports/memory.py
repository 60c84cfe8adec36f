"""Memory a mass disconnect freed, handed back to the system (issue 14).

After thousands of websockets end at once their objects are freed, yet the
RSS stays well above its value before them (measured, 19,000 websockets,
loaded 2-core machine: 47 MB before, ~136 MB with them, 90-100 MB 5 s after
they all dropped). What holds it, from ``sys._debugmallocstats`` and glibc's
``mallinfo2``:
- Not glibc's heap: ~12 MB at the peak and after, ~2 MB of it free (it
  only takes objects over 512 bytes and the big tables); ``malloc_trim``
  gives back about 1 MB of it.
- CPython's small-object allocator: 1 MiB arenas, returned to the system
  only once every object in them is gone. 101 at the peak; 55-68 stay after
  the drop for ~19.5 MB of live objects - what 20 arenas held before - the
  rest of them empty pools. A few hundred survivors allocated during the
  peak pin them: the interpreter's free lists (up to 2,000 freed tuples of
  each small size, lists, dicts, kept for reuse), and whatever ordinary work
  (a store query, a REST answer) allocated meanwhile. Until the HTTP parser
  broke its reference cycle (``RequestParser.close``) ~20,000 cyclic
  objects waiting for a full collection pinned ~40 more.
- Under ``PYTHONMALLOC=malloc`` everything is glibc's, and ``malloc_trim``
  returns what is free page by page: 140 MB -> 60 MB 2 s after the drop.

``release_memory`` empties the free lists - with every tracked object
frozen first, so the full collection that does it traverses nothing (0.3 ms
where a plain ``gc.collect`` takes 40-60 ms with no connection left, and
hundreds with thousands) - then calls ``malloc_trim``. ``MemoryReturn``
decides when: once a large share of the peak's connections has gone and the
disconnect's cleanup is over (the close pacer is idle), at most once per
``min_interval``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from typing import Any, Callable

import trio

__all__ = ["MemoryReturn", "release_memory"]

logger = logging.getLogger(__name__)

#: Fewer connections gone than this is ordinary churn, not a mass disconnect.
MIN_DROP = 1000

_libc_trim: Any = None


def _malloc_trim() -> None:
    global _libc_trim
    if _libc_trim is None:
        try:
            # glibc only: musl and the BSDs have no malloc_trim.
            _libc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _libc_trim = False
    if _libc_trim:
        _libc_trim(0)


def _empty_free_lists() -> None:
    """A full collection empties the interpreter's free lists; with every
    tracked object frozen first it traverses none of them. Skipped when
    something else froze objects (``gc.freeze`` before a fork, say): the
    ``unfreeze`` here would undo that."""
    if gc.get_freeze_count():
        return
    gc.freeze()
    try:
        gc.collect()
    finally:
        gc.unfreeze()


def release_memory() -> None:
    """Hand the memory freed since the peak back to the system, as far as
    the allocators allow."""
    _empty_free_lists()
    _malloc_trim()


class MemoryReturn:
    """When to call ``release`` (``release_memory``): ``Server`` reports each
    connection it opens (``opened``) and asks ``check`` about once a second
    (``run``). A return is due once ``MIN_DROP`` connections, and a quarter
    of the peak, have gone since the peak (or since the last return), the
    cleanup is ``settled``, and ``min_interval`` seconds have passed since
    the last return: a server that churns thousands of connections a second
    returns memory once per interval, not at every wave."""

    __slots__ = ("peak", "min_interval", "release", "returns", "_last")

    def __init__(self, release: Callable[[], None] = release_memory, min_interval: float = 5.0) -> None:
        self.peak = 0
        self.min_interval = min_interval
        self.release = release
        #: How many times memory was returned (for tests and benches).
        self.returns = 0
        self._last: float | None = None

    def opened(self, count: int) -> None:
        """A connection opened; ``count`` are open now."""
        if count > self.peak:
            self.peak = count

    def check(self, count: int, now: float, settled: bool) -> bool:
        """Return memory if it is due (see the class); whether it was."""
        if not settled or self.peak - count < max(MIN_DROP, self.peak // 4):
            return False
        if self._last is not None and now - self._last < self.min_interval:
            return False
        self._last = now
        self.peak = count
        started = time.perf_counter()
        self.release()
        self.returns += 1
        logger.debug("returned freed memory after a mass disconnect in %.1f ms",
                      (time.perf_counter() - started) * 1000)
        return True

    async def run(self, count: Callable[[], int], settled: Callable[[], bool], period: float = 1.0) -> None:
        """Check every ``period`` seconds until cancelled."""
        while True:
            await trio.sleep(period)
            self.check(count(), trio.current_time(), settled())
