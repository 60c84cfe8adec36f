"""The default store: one SQLite file, so ``satchel serve`` needs nothing else.

Theory of operation. SQLite allows one writer at a time and each commit costs
a trip through the journal, so writes are funnelled to ONE writer thread with
its own connection. The thread takes everything that queued up while it was
busy and applies it as one transaction (group commit): under load, hundreds of
writes share one commit instead of paying for one each (STACK.md: ~7k
inserts/s with a thread hop and commit per insert). Each operation runs
inside its own SAVEPOINT, so an operation that fails is rolled back alone and
the rest of its batch still commits. Only after COMMIT returns does the
thread wake the waiting trio tasks, all of a trio run's at once through
``TrioToken.run_sync_soon``.

A waiting task that is cancelled gets ``Cancelled`` only while its write is
still queued, and the write is then dropped: ``Cancelled`` means "not done".
Once the writer has taken the write, cancellation waits for its result and
the task gets it (the cancellation lands at its next checkpoint). A write is
therefore applied exactly once or not at all, and the task knows which.

Commit stamps (``Store.execute_stamped``). After a batch's COMMIT the writer
numbers its stamped writes that changed something (``total_changes`` moved
during the operation's savepoint) 1, 2, 3, ... in commit order, from one
counter per store that only the writer thread touches, and hands each its
number with its result. The numbering is the commit order, whatever order
trio then runs the woken tasks in: the transport's reorder stage
(``satchel.transports.ordering``) publishes their changes by it. A refused
compare-and-swap, a failed operation and a batch whose COMMIT failed draw
no number; nor does a write made through plain ``execute``.

Reads never touch the writer. In WAL mode a reader sees every transaction
committed before its statement began, which makes read-your-writes hold: a
write is acknowledged after its COMMIT, so any later read sees it. Point reads
(by primary key) run inline on the trio thread, on a connection of their
own, without a checkpoint, as ``MemoryStore`` answers everything: the read
takes ~8 us, a checkpoint ~6 us more and a hop to a worker thread ~200 us
(benches/bench_storage.py: ~80k point reads/s against ~5k). The caller's
own I/O is where it yields - a connection yields at each read of its
socket - so a request that only reads costs one trip through the scheduler,
not one more per read (issue 13). Scans, whose cost grows with the data,
run in worker threads on pooled reader connections.

Checkpoints. SQLite's automatic checkpoint runs inside the COMMIT that takes
the WAL past 1000 pages: it copies the pages into the database and, under
``synchronous=NORMAL``, fsyncs the WAL and the database - measured here
10-50 ms per checkpoint (an fsync is 4-10 ms), stalling every write queued
behind that commit, which was the tail of the UDP -> subscriber latency
(p99 21-81 ms). So the writer connection has ``wal_autocheckpoint = 0`` and
a checkpointer thread, on a connection of its own, runs PASSIVE checkpoints
beside it (WAL lets a checkpoint run while the writer commits; a checkpoint
that meets a reader's snapshot copies what it can and the next one goes on)
every ``CHECKPOINT_COMMITS`` commits or ``CHECKPOINT_SECONDS`` after a commit.
Checkpoints are not what makes a commit durable (the WAL is), so nothing
acknowledged waits for one. One thing only the writer can do: SQLite
rewinds the WAL to its start when a write transaction begins with every
frame checkpointed, which never happens while another thread checkpoints
beside a writer that keeps committing - the WAL would grow without end.
So once the WAL holds ``RESTART_FRAMES`` frames, the writer itself runs a
checkpoint between two batches, when nothing is queued (or after a second):
the few frames the checkpointer has not copied yet, two fsyncs (~8 ms here),
once per ``RESTART_FRAMES`` frames - where the automatic checkpoint did the
whole copy every 1000.

Durability. WAL with ``synchronous=NORMAL`` writes each commit into the WAL
file before COMMIT returns but does not fsync it: an acknowledged write
survives kill -9 of the process (the operating system has the bytes), but the
last commits before a power loss or kernel crash may be lost (the database
stays consistent). ``synchronous="FULL"`` fsyncs every commit, and so every
batch, which makes acknowledged writes survive power loss as well.

Queries. ``QueryRecords`` is compiled to SQL on the JSON body
(``satchel.protocol.query.sql``): the filter, the permission filter and the
search become the WHERE clause, the sort an ORDER BY, offset and limit a
LIMIT/OFFSET, so only the rows of the page are read into Python, where the
field selection is made. Every connection has ``satchel_lower``, Python's
``str.lower``, for the case-folding operators.

Layout: this module runs the store (the writer thread, the checkpointer,
the readers); ``sqlite_operations`` holds what each operation does to the
database and ``sqlite_schema`` the versioned migrations.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from typing import Any, Callable

import outcome
import trio

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import (
    DeleteEntry,
    PutEntry,
    OverwriteEntry,
    Operation,
    PutDocument,
    PutSetting,
)
from satchel.protocol.query.sql import LOWER_FUNCTION

from .base import Store
from .memory import check_entry_write
from .sqlite_operations import (
    POINT_READS,
    SCANS,
    WRITES,
    Handler,
    InboxState,
    StoreConnection,
    check_put_document,
    lower_text,
)
from .sqlite_schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore", "SCHEMA_VERSION"]

#: The checkpointer runs after this many commits, or this long after a
#: commit, whichever comes first (module docstring, "Checkpoints").
CHECKPOINT_COMMITS = 256
CHECKPOINT_SECONDS = 1.0
#: WAL frames (pages) after which the writer rewinds the WAL (module docstring).
RESTART_FRAMES = 4096


# -- the writer thread ----------------------------------------------------------


class _Write:
    """A write on its way to the writer thread, and the task waiting for it.

    ``taken`` and ``cancelled`` change only under the store's lock: the
    writer sets ``taken`` when it takes the write, a cancelled waiter sets
    ``cancelled`` if it got there first, and whichever is set first wins.
    """

    __slots__ = ("operation", "task", "trio_token", "taken", "cancelled", "result", "stamped", "changed")

    def __init__(self, operation: Operation, stamped: bool = False) -> None:
        self.operation = operation
        # Whether the waiter wants a commit stamp, and (set by _apply_batch)
        # whether the operation changed anything.
        self.stamped = stamped
        self.changed = False
        self.task = trio.lowlevel.current_task()
        self.trio_token = trio.lowlevel.current_trio_token()
        self.taken = False
        self.cancelled = False
        self.result: outcome.Outcome[Any] | None = None


def _apply_batch(db: sqlite3.Connection, batch: list[_Write]) -> None:
    """Apply ``batch`` in one transaction, setting each write's ``result``."""
    try:
        db.execute("BEGIN IMMEDIATE")
        for write in batch:
            db.execute("SAVEPOINT operation")
            before = db.total_changes
            try:
                write.result = outcome.Value(WRITES[type(write.operation)](db, write.operation))
                write.changed = db.total_changes != before
            except Exception as exc:
                if not db.in_transaction:
                    # SQLite abandoned the whole transaction (disk full, I/O
                    # error): the writes before this one are gone as well.
                    raise
                db.execute("ROLLBACK TO operation")
                write.result = outcome.Error(exc)
            db.execute("RELEASE operation")
        db.execute("COMMIT")
    except Exception as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        for write in batch:
            write.result = outcome.Error(exc)


def _wake_all(writes: list[_Write]) -> None:
    for write in writes:
        trio.lowlevel.reschedule(write.task, write.result)


def _wake(batch: list[_Write]) -> None:
    """Reschedule the waiting tasks: one call into each trio run, not one per write."""
    by_run: defaultdict[trio.lowlevel.TrioToken, list[_Write]] = defaultdict(list)
    for write in batch:
        by_run[write.trio_token].append(write)
    for trio_token, writes in by_run.items():
        trio_token.run_sync_soon(_wake_all, writes)


# -- the store ------------------------------------------------------------------


class SqliteStore(Store):
    """A store in the SQLite file at ``path``, created if missing.

    ``synchronous`` is ``"NORMAL"`` (acknowledged writes survive the process
    being killed) or ``"FULL"`` (they survive power loss too, for an fsync per
    batch). The constructor does blocking file I/O; from async code use
    ``await SqliteStore.open(path)``.
    """

    #: Called in the writer thread with each group commit's size (a metric, ``transports.metrics``).
    observe_batch: Callable[[int], None] | None = None

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self._path = os.fspath(path)
        self._inbox = InboxState()
        writer_db = self._connect()
        try:
            self._prepare(writer_db, synchronous)
        except BaseException:
            writer_db.close()
            raise
        self._point_reader = self._connect_reader()
        self._idle_scan_readers: list[sqlite3.Connection] = []
        # Guards the queue and each queued write's taken/cancelled flags.
        self._queue_changed = threading.Condition()
        self._queue: list[_Write] = []
        self._closing = False
        # The next commit stamp; read and written by the writer thread only.
        self._next_stamp = 1
        # A daemon thread, so that a store nobody closed cannot keep the
        # interpreter alive; nothing acknowledged depends on it finishing.
        self._writer = threading.Thread(
            target=self._write_batches, args=(writer_db,), name=f"satchel-sqlite-writer {self._path}", daemon=True
        )
        self._writer.start()
        # Commits since the last checkpoint (the writer counts, under the
        # condition), and the checkpointer thread on its own connection.
        self._checkpoint_due = threading.Condition()
        self._uncheckpointed = 0
        # Set by the checkpointer (monotonic time) when the WAL should be
        # rewound; the writer clears it when it has checkpointed.
        self._rewind_since: float | None = None
        self._checkpointer = threading.Thread(
            target=self._checkpoint, args=(self._connect(),), name=f"satchel-sqlite-checkpointer {self._path}",
            daemon=True,
        )
        self._checkpointer.start()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> "SqliteStore":
        """Open (or create) the store at ``path`` without blocking the event loop."""
        return await trio.to_thread.run_sync(lambda: cls(path, synchronous=synchronous))

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; the writer says
        # BEGIN and COMMIT itself, and a reader's every SELECT sees the latest
        # commit. Connections move between threads, hence check_same_thread.
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, factory=StoreConnection)
        db.create_function(LOWER_FUNCTION, 1, lower_text, deterministic=True)
        db.inbox = self._inbox
        return db

    def _connect_reader(self) -> sqlite3.Connection:
        db = self._connect()
        db.execute("PRAGMA query_only = ON")
        return db

    def _prepare(self, db: sqlite3.Connection, synchronous: str) -> None:
        (journal_mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if journal_mode != "wal":
            raise RuntimeError(f"{self._path}: SQLite refused WAL mode (journal_mode is {journal_mode})")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        # Checkpoints run in the checkpointer thread, never inside a commit.
        db.execute("PRAGMA wal_autocheckpoint = 0")
        # IMMEDIATE: two processes creating the same file cannot both migrate it.
        db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self._path} has schema version {version}; this Satchel knows up to {SCHEMA_VERSION}")
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def execute(self, operation: Operation) -> Any:
        """Carry out one storage operation; a write returns after its COMMIT.

        Raises ``TypeError`` for an operation that is not a storage operation.
        """
        return await self._execute(operation, False)

    async def execute_stamped(self, operation: Operation) -> tuple[Any, int | None]:
        """``execute``, and the write's commit stamp (``Store.execute_stamped``)."""
        kind = type(operation)
        if kind in WRITES:
            return await self._execute(operation, True)
        read = POINT_READS.get(kind)
        if read is not None and not self._closing:
            # A point read runs inline (see _execute): answered here, without
            # the coroutine and the write checks of _execute - every REST get
            # passes here.
            return read(self._point_reader, operation), None
        return await self._execute(operation, False), None

    async def _execute(self, operation: Operation, stamped: bool) -> Any:
        if self._closing:
            raise trio.ClosedResourceError("the store is closed")
        kind = type(operation)
        if kind is PutDocument:
            check_put_document(operation)  # a bug of the caller: refuse before queueing
        if kind is PutSetting and not isinstance(operation.value, bytes):
            raise LocalProtocolError("a setting's value is bytes")
        if kind is PutEntry or kind is OverwriteEntry or kind is DeleteEntry:
            check_entry_write(operation)  # a bug of the caller: refuse before queueing
        if kind in WRITES:
            return await self._write(operation, stamped)
        if kind in POINT_READS:
            return POINT_READS[kind](self._point_reader, operation)
        if kind in SCANS:
            return await trio.to_thread.run_sync(self._scan, SCANS[kind], operation)
        raise TypeError(f"{kind.__name__} is not a storage operation")

    def _scan(self, handler: Handler, operation: Operation) -> Any:
        # Runs in a worker thread. list.pop and list.append are atomic, so the
        # pool needs no lock; trio's thread limiter bounds its size.
        try:
            reader = self._idle_scan_readers.pop()
        except IndexError:
            reader = self._connect_reader()
        try:
            return handler(reader, operation)
        finally:
            self._idle_scan_readers.append(reader)

    async def _write(self, operation: Operation, stamped: bool = False) -> Any:
        write = _Write(operation, stamped)
        with self._queue_changed:
            self._queue.append(write)
            self._queue_changed.notify()

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            with self._queue_changed:
                if write.taken:
                    return trio.lowlevel.Abort.FAILED
                write.cancelled = True
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _write_batches(self, db: sqlite3.Connection) -> None:
        """The writer thread: apply whatever is queued, one transaction at a
        time, until the store is closed and the queue is empty."""
        try:
            while True:
                with self._queue_changed:
                    while not self._queue and not self._closing:
                        self._queue_changed.wait()
                    if not self._queue:
                        return
                    batch = [write for write in self._queue if not write.cancelled]
                    for write in batch:
                        write.taken = True
                    self._queue.clear()
                if batch:
                    _apply_batch(db, batch)
                    self._stamp(batch)
                    _wake(batch)
                    if self.observe_batch is not None:
                        self.observe_batch(len(batch))
                    with self._checkpoint_due:
                        self._uncheckpointed += 1
                        if self._uncheckpointed == 1 or self._uncheckpointed >= CHECKPOINT_COMMITS:
                            self._checkpoint_due.notify()
                    since = self._rewind_since
                    if since is not None and (not self._queue or time.monotonic() - since > 1.0):
                        self._rewind_since = None
                        try:
                            # No write is in flight: the next BEGIN rewinds the WAL.
                            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        except sqlite3.Error:
                            pass
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        """The checkpointer thread: a PASSIVE checkpoint after
        ``CHECKPOINT_COMMITS`` commits or ``CHECKPOINT_SECONDS`` after the
        first one since the last, until the store closes (module docstring)."""
        try:
            while True:
                with self._checkpoint_due:
                    while not self._uncheckpointed and not self._closing:
                        self._checkpoint_due.wait()
                    if self._closing:
                        return
                    if self._uncheckpointed < CHECKPOINT_COMMITS:
                        self._checkpoint_due.wait(CHECKPOINT_SECONDS)
                    if self._closing:
                        return
                    self._uncheckpointed = 0
                try:
                    (_, frames, _), = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    # A checkpoint is an optimization: the next one retries.
                    continue
                if frames >= RESTART_FRAMES and self._rewind_since is None:
                    self._rewind_since = time.monotonic()
        finally:
            db.close()

    def _stamp(self, batch: list[_Write]) -> None:
        """In the writer thread, after COMMIT: number the batch's stamped
        writes that changed something, in commit order (module docstring)."""
        for write in batch:
            if write.stamped:
                result = write.result
                if type(result) is outcome.Value:
                    stamp = None
                    if write.changed:
                        stamp = self._next_stamp
                        self._next_stamp += 1
                    write.result = outcome.Value((result.value, stamp))

    async def aclose(self) -> None:
        """Finish the queued writes, stop the writer thread and close every
        connection. Call it when no operation is in flight."""
        with self._queue_changed:
            self._closing = True
            self._queue_changed.notify()
        with self._checkpoint_due:
            self._checkpoint_due.notify()
        await trio.to_thread.run_sync(self._checkpointer.join)
        await trio.to_thread.run_sync(self._writer.join)
        self._point_reader.close()
        for reader in self._idle_scan_readers:
            reader.close()
        self._idle_scan_readers.clear()
