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
"""

from __future__ import annotations

import abc
from typing import Any

from satchel.protocol.operations import Operation

__all__ = ["Store"]


class Store(abc.ABC):
    """An async store that executes the core's storage operations."""

    @abc.abstractmethod
    async def execute(self, operation: Operation) -> Any:
        """Carry out one storage operation and return its documented result.

        Raises ``TypeError`` for an operation that is not a storage operation.
        """

    async def aclose(self) -> None:
        """Release connections and threads. The store is unusable afterwards."""

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
