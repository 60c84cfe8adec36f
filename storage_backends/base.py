"""The store interface every backend implements.

The core never calls a store: it yields ``satchel.protocol.operations``
values, and the runner passes each one to ``Store.execute``. A backend is
therefore a single dispatch from operation type to implementation, and the
operations' docstrings are the contract (the conformance suite checks it).

Contract shared by all backends:
- ``execute`` returns only after the effect is durable: an acknowledged
  write survives kill -9 of the server process.
- Each operation is atomic. ``ReplaceRecord`` is a compare-and-swap on the
  record's revision, which is how the core makes read-modify-write (PATCH,
  channel bookkeeping) safe under concurrent writers.
- Records come back as new dicts with their keys in the order they were
  written; callers may keep and change them. A record is JSON: it comes
  back as a JSON round trip of what was stored (tuples become lists).
- The user and session tables are separate from collections: no collection
  operation can ever reach them. So are ``TakeNumber``'s sequences.

Commit stamps (``execute_stamped``), what delivery in commit order rests on
(``satchel.transports.ordering``): the stamp of a write is a number the store
gives it as it commits, so that whoever publishes the write's change can
publish in commit order, however its tasks are scheduled afterwards.
- A write requested through ``execute_stamped`` that changed stored state
  gets an ``int`` stamp; reads, writes that changed nothing (a refused
  compare-and-swap, a delete of something absent, a merge that kept what was
  stored), writes that failed (raised) and writes requested through plain
  ``execute`` get ``None``.
- The stamps of one store instance are 1, 2, 3, ... with no gap and no
  repeat, in commit order: a write with a smaller stamp committed before
  one with a greater stamp (a read that sees the later sees the earlier).
  No gap matters: a reorder stage waits for every stamp below the ones it
  holds, so a stamp must not be drawn unless it is handed to the caller
  with the result (draw them after the commit, for the writes that
  committed).
- They count from 1 for each store instance and are not stored: they order
  what one process publishes, not anything across restarts or processes.
- The conformance suite (``conformance_order``) checks all of this,
  concurrent writers included. The default implementation stamps nothing,
  which gives no order (changes publish as their tasks wake).
"""

from __future__ import annotations

import abc
from typing import Any

from satchel.protocol.operations import Operation

__all__ = ["Store", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store cannot be reached now (its database restarted, its network
    went away): the operation was not carried out, or - a write whose
    connection was lost during its COMMIT - its outcome is unknown, and it
    was not acknowledged. A later operation may succeed. Each protocol
    answers it with its own 503-style error (``satchel.transports``); what
    was acknowledged before stays stored."""


class Store(abc.ABC):
    """An async store that executes the core's storage operations."""

    @abc.abstractmethod
    async def execute(self, operation: Operation) -> Any:
        """Carry out one storage operation and return its documented result.

        Raises ``TypeError`` for an operation that is not a storage operation.
        """

    async def execute_stamped(self, operation: Operation) -> tuple[Any, int | None]:
        """``execute``, returning ``(result, stamp)``: the write's commit
        stamp (module docstring), or ``None``. Raises as ``execute`` does,
        and then no stamp was drawn."""
        return await self.execute(operation), None

    async def aclose(self) -> None:
        """Release connections and threads. The store is unusable afterwards."""

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
