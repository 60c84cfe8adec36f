"""Runs the core's actions under trio.

An action yields operations; storage operations go to the store, file
operations to the file store, password hashing to a worker thread (argon2id costs ~110 ms and releases the GIL, so
a small limiter keeps a burst of logins from starving everything else).

Commit order: storage operations go through ``Store.execute_stamped``, and
the stamp of each committed write goes to the action's ``Ticket`` when one is
given (``run(action, ticket)``), to be released when its events are published
(``satchel.transports.ordering``); without a ticket it is released at once.
The usual shape::

    with runner.ticket() as ticket:
        outcome = await runner.run(action, ticket)
        bus.publish(outcome.changes, ticket)
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, Awaitable, Callable, TypeVar

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from satchel.protocol.channels import Follow
from satchel.protocol.files import CommitFile, RemoveFile
from satchel.protocol.operations import Action, HashPassword, Operation, VerifyPassword
from satchel.storage_backends.base import Store
from satchel.storage_backends.files import LocalFileStore

from .ordering import Sequencer, Ticket, sequencer_for
from .metrics import METRICS

__all__ = ["Runner"]

T = TypeVar("T")


class Runner:
    """Carries out actions against one store."""

    def __init__(
        self,
        store: Store,
        *,
        files: LocalFileStore | None = None,
        hasher: PasswordHasher | None = None,
        hashing_threads: int = 2,
    ) -> None:
        self.store = store
        self.files = files
        self._hasher = hasher or PasswordHasher()
        self._limiter = trio.CapacityLimiter(hashing_threads)
        self._dummy_hash: str | None = None
        #: The reorder stage of this store's commit stamps.
        self.sequencer: Sequencer = sequencer_for(store)
        #: What a ``Follow`` waits for (a broker-backed bus's ``follow``;
        #: the switchboard answers it itself in one process).
        self.follow: Callable[[Follow], Awaitable[None]] | None = None

    def ticket(self) -> Ticket:
        """A ticket for one action's commit stamps (module docstring)."""
        return self.sequencer.ticket()

    async def run(self, action: Action[T], ticket: Ticket | None = None) -> T:
        """Drive ``action`` to completion and return its result; the stamps of
        its writes go to ``ticket``."""
        try:
            operation = next(action)
            while True:
                operation = action.send(await self._execute(operation, ticket))
        except StopIteration as done:
            return done.value

    async def resume(self, action: Action[T], operation: Operation, ticket: Ticket | None = None) -> T:
        """Drive an action already started with ``next(action)``, which
        yielded ``operation``, to completion (see ``EngineIoEndpoint``: a
        connection's messages start in order and finish concurrently)."""
        try:
            while True:
                operation = action.send(await self._execute(operation, ticket))
        except StopIteration as done:
            return done.value

    async def _execute(self, operation: Operation, ticket: Ticket | None = None) -> Any:
        if isinstance(operation, HashPassword):
            return await trio.to_thread.run_sync(self._hasher.hash, operation.password, limiter=self._limiter)
        if isinstance(operation, VerifyPassword):
            return await trio.to_thread.run_sync(self._verify, operation, limiter=self._limiter)
        if isinstance(operation, (CommitFile, RemoveFile)):
            if self.files is None:
                raise TypeError("this runner has no file store")
            return await self.files.execute(operation)
        if type(operation) is Follow:
            if self.follow is not None:
                await self.follow(operation)  # type: ignore[arg-type]
            return None
        start = perf_counter()
        result, stamp = await self.store.execute_stamped(operation)
        METRICS.store_operation(type(operation), perf_counter() - start)
        if stamp is not None:
            if ticket is None:
                self.sequencer.release(stamp)
            else:
                ticket.hold(stamp)
        return result

    def _verify(self, operation: VerifyPassword) -> bool:
        password_hash = operation.password_hash
        if not password_hash:
            # No such account: verify against a real hash anyway, so the
            # answer takes as long as for a wrong password.
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash("satchel-dummy-password")
            password_hash = self._dummy_hash
        try:
            return self._hasher.verify(password_hash, operation.password) and bool(operation.password_hash)
        except (VerificationError, InvalidHashError):
            return False
