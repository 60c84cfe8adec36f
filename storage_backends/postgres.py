"""The scale-out store: PostgreSQL, shared by every Satchel process that points at it.

Theory of operation. psycopg 3's async API is asyncio-only, so under trio
the store drives sync psycopg from its own threads, over connections from a
``psycopg_pool.ConnectionPool`` (which replaces broken connections). A trip
to PostgreSQL costs a round trip and a commit costs a WAL flush, so, as in
``SqliteStore``, requests are funnelled to threads that take everything
queued while they were busy and send it as one batch:

- ONE writer thread applies each batch of writes in one transaction, the
  statements pipelined (psycopg's pipeline mode: sent without waiting for
  each answer), so a batch of hundreds of writes costs about one round trip
  and one WAL flush. Each write is written to fail without an SQL error
  (``ON CONFLICT DO NOTHING``, compare-and-swaps as ``UPDATE ... WHERE
  revision = ...``), so a duplicate id fails alone without a savepoint
  (savepoints are subtransactions, which cost PostgreSQL dearly in bulk). If
  a statement fails all the same, the batch is rolled back and its writes
  are applied one per transaction, so that the guilty one fails alone. A
  deadlock or serialization failure against another node rolls the batch
  back and it is applied again.
- READER threads send each batch of point reads (by primary key) pipelined
  on one connection, each read its own statement in autocommit, so it sees
  every transaction committed before it was sent: read-your-writes holds,
  because a write is acknowledged only after its COMMIT returned.
- Scans, whose cost grows with the data, run in trio worker threads, one
  pooled connection each.

Why batches (benches/bench_postgres.py, one run on a busy 2-core machine):
with 256 tasks, ~11.7k get-by-id/s and ~3.6k inserts/s, against ~1.3k and
~0.6k for one ``trio.to_thread`` hop and one statement per operation. Per
statement, psycopg and PostgreSQL cost far more than per row, so a batch's
record reads, session and user reads and record inserts go as one statement
each (``unnest``/``ANY``); the rest of a batch is pipelined, or sent plainly
when it is too small for pipeline mode to pay. One operation alone costs a
round trip through a thread: ~0.35 ms for a read (SQLite reads inline in
~10 us); a write costs PostgreSQL's WAL flush (~4 ms here; 0.45 ms with
``synchronous_commit=off``).

A waiting task that is cancelled gets ``Cancelled`` only while its request
is still queued (and it is dropped): once a thread took it, the task waits
for its result, exactly as in ``SqliteStore``.

Several nodes on one database. Everything one operation reads and writes is
decided inside PostgreSQL under its row locks: compare-and-swaps re-check
the revision after waiting for a concurrent writer (READ COMMITTED), unique
emails are a UNIQUE index, ``TakeNumber`` is one upsert, and ``ApplyMessage``
reads the inbox ``FOR UPDATE`` before it merges, so two nodes merging into
one inbox take turns.

Commit stamps (``Store.execute_stamped``). After a batch's COMMIT the writer
thread numbers its stamped writes that changed something 1, 2, 3, ... in
the order it applied them, from one counter per store instance: the commit
order of this process's writes (each node orders what it publishes).

Durability. A write is acknowledged after PostgreSQL answered its COMMIT,
with ``synchronous_commit`` as the server has it (on by default: the WAL is
flushed to disk), so an acknowledged write survives kill -9 of the Satchel
process and of its connections. A connection lost while its COMMIT was in
flight leaves the outcome unknown: the writes of that batch fail with the
connection's error although they may have been applied (as with any
database client).

PostgreSQL away (a restart, a network cut). An operation whose connection
is lost, or that gets no connection within the pool's wait (the URL's
``connect_timeout``, else 5 s), raises ``StoreUnavailable``, which every
protocol answers with its own 503; reads are first sent once more on a new
connection, writes never (above). After one such wait, requests wait only
``_AWAY_WAIT`` until a connection comes again, so that a queue of requests
is answered at once rather than one pool wait per batch. The pool reconnects
by itself, its backoff capped at 2 s, so the first requests after
PostgreSQL is back succeed without restarting Satchel.

Schema. The server creates and migrates it (``postgres_schema.MIGRATIONS``), holding an
advisory lock so that two nodes starting at once do not both migrate, and
records each applied version in ``satchel_migrations``. A database whose
schema is newer than this Satchel knows is refused with ``SchemaTooNew``.
``schema=`` puts the tables in a PostgreSQL schema of their own (created if
missing); the tests use one per store.

Queries. ``QueryRecords`` is compiled to SQL on the jsonb column
(``satchel.protocol.query.postgres_sql``): filter, permission and search
become the WHERE clause, the sort an ORDER BY, offset and limit LIMIT/OFFSET,
so only the page is read into Python. Records are kept as their exact JSON
text (``body``: jsonb would not keep the key order) with a jsonb copy
(``doc``, a generated column) for queries and ``folded``, their strings
lowered by Python, for the case-folding operators.

Layout: this module runs the store (the batching threads, the pool, the
reconnection); ``postgres_operations`` holds what each operation sends to
PostgreSQL and the dispatch tables, ``postgres_schema`` the migrations.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections import defaultdict
from typing import Any, Callable, Iterator

import outcome
import psycopg
import psycopg.errors
import trio
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout

from satchel.protocol.operations import (
    ApplyMessage,
    ApplyMessages,
    Operation,
)

from .base import Store, StoreUnavailable
from .postgres_operations import (
    apply_message,
    apply_messages,
    check_write,
    Finish,
    Grouped,
    GROUPED_READS,
    GROUPED_WRITES,
    Handler,
    Inboxes,
    ONE_STATEMENT,
    POINT_READS,
    SCANS,
    WRITES,
)
from .postgres_schema import MIGRATION_LOCK, MIGRATIONS, SCHEMA_VERSION, SchemaTooNew
from .memory import _READS, _changed

__all__ = ["PostgresStore", "SchemaTooNew", "MIGRATIONS", "SCHEMA_VERSION"]


# -- batching threads ------------------------------------------------------------------


class _Request:
    """An operation on its way to a thread, and the task waiting for it.
    ``taken`` and ``cancelled`` change only under the queue's lock; whichever
    is set first wins."""

    __slots__ = ("operation", "stamped", "task", "trio_token", "taken", "cancelled", "result")

    def __init__(self, operation: Operation, stamped: bool = False) -> None:
        self.operation = operation
        self.stamped = stamped  # the waiter wants a commit stamp
        self.task = trio.lowlevel.current_task()
        self.trio_token = trio.lowlevel.current_trio_token()
        self.taken = False
        self.cancelled = False
        self.result: outcome.Outcome[Any] | None = None


def _wake_all(requests: list[_Request]) -> None:
    for request in requests:
        trio.lowlevel.reschedule(request.task, request.result)


def _wake(batch: list[_Request]) -> None:
    """Reschedule the waiting tasks: one call into each trio run, not one per request."""
    by_run: defaultdict[trio.lowlevel.TrioToken, list[_Request]] = defaultdict(list)
    for request in batch:
        by_run[request.trio_token].append(request)
    for trio_token, requests in by_run.items():
        trio_token.run_sync_soon(_wake_all, requests)


class _Batcher:
    """A queue and the threads that drain it: each thread takes everything
    queued and hands it to ``run_batch`` as one batch, which must set every
    request's ``result``."""

    def __init__(self, name: str, run_batch: Callable[[list[_Request]], None], threads: int) -> None:
        self._run_batch = run_batch
        self._changed = threading.Condition()
        self._queue: list[_Request] = []
        self._closing = False
        # Daemon threads: a store nobody closed must not keep the interpreter
        # alive; nothing acknowledged depends on them finishing.
        self._threads = [threading.Thread(target=self._drain, name=f"{name}-{n}", daemon=True) for n in range(threads)]
        for thread in self._threads:
            thread.start()

    async def submit(self, operation: Operation, stamped: bool = False) -> Any:
        request = _Request(operation, stamped)
        with self._changed:
            self._queue.append(request)
            self._changed.notify()

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            with self._changed:
                if request.taken:
                    return trio.lowlevel.Abort.FAILED
                request.cancelled = True
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _drain(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closing:
                    self._changed.wait()
                if not self._queue:
                    return
                batch = [request for request in self._queue if not request.cancelled]
                for request in batch:
                    request.taken = True
                self._queue.clear()
            if batch:
                try:
                    self._run_batch(batch)
                except BaseException as exc:  # a bug: every waiter still gets an answer
                    for request in batch:
                        if request.result is None:
                            request.result = outcome.Error(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                _wake(batch)

    def close(self) -> None:
        """Finish what is queued and stop the threads (blocking)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()


_RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


#: How long a request waits for a connection while PostgreSQL is known to be away.
_AWAY_WAIT = 0.5


def _wait(conninfo: str) -> float:
    """How long a request waits for a pooled connection: libpq's
    ``connect_timeout`` of ``conninfo`` (seconds), else 5."""
    given = psycopg.conninfo.conninfo_to_dict(conninfo).get("connect_timeout")
    try:
        return max(1.0, float(given)) if given is not None else 5.0
    except ValueError:
        return 5.0


def _unreachable(error: psycopg.OperationalError) -> bool:
    """Whether ``error`` says PostgreSQL cannot be reached, rather than that
    one statement failed: no SQLSTATE (libpq lost or could not open the
    connection; ``PoolTimeout``: no connection within the pool's wait), a
    connection exception (class 08), a server shutting down or restarting
    (57P01-57P03, an administrator's ``pg_terminate_backend``) or out of
    connections (53300). A deadlock or a cancelled statement is not."""
    state = error.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03", "53300")


def _run_pipelined(db: psycopg.Connection, batch: list[_Request], handlers: dict[type[Operation], Handler],
                   transaction: bool, grouped: dict[type[Operation], Grouped] | None = None) -> list[_Request]:
    """Send every request of ``batch`` (inside one transaction when
    ``transaction``), pipelined when there is more than one statement, and
    set their results. Requests of a kind in ``grouped`` that occur more
    than once are sent as one statement, before the others (the requests of
    a batch are concurrent: any order is one they could have had). An SQL
    error propagates with no result set (and the transaction rolled back).
    Returns the requests in the order they were applied."""
    if transaction and len(batch) == 1 and type(batch[0].operation) in ONE_STATEMENT:
        transaction = False  # one statement in autocommit is its own transaction
    groups: dict[type[Operation], list[_Request]] = defaultdict(list)
    single: list[_Request] = []
    for request in batch:
        kind = type(request.operation)
        (groups[kind] if grouped and kind in grouped else single).append(request)
    for kind, requests in list(groups.items()):
        if len(requests) == 1:
            single += requests
            del groups[kind]
    finishing: list[tuple[_Request, Finish]] = []
    # psycopg's pipeline mode costs about two plain round trips to enter
    # and leave: worth it from three statements on.
    pipelined = len(groups) + len(single) + (2 if transaction else 0) >= 3
    try:
        with db.pipeline() if pipelined else contextlib.nullcontext():
            if transaction:
                db.execute("BEGIN")
            for kind, requests in groups.items():
                finishing += zip(requests, grouped[kind](db, [request.operation for request in requests]))  # type: ignore[index]
            for request in single:
                try:
                    finishing.append((request, handlers[type(request.operation)](db, request.operation)))
                except psycopg.Error:
                    raise
                except Exception as exc:  # refused before anything was sent (LocalProtocolError, encoding)
                    request.result = outcome.Error(exc)
            if transaction:
                db.execute("COMMIT")
    except BaseException:
        if not db.closed and db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                db.execute("ROLLBACK")
            except psycopg.Error:
                pass
        for request in batch:
            request.result = None
        raise
    for request, finish in finishing:
        request.result = outcome.capture(finish)
    return [request for request, _ in finishing]


class PostgresStore(Store):
    """A store in the PostgreSQL database at ``conninfo`` (a
    ``postgresql://`` URL or a libpq connection string).

    ``schema`` keeps the tables in that PostgreSQL schema (created if
    missing; default: the connection's ``search_path``, normally
    ``public``). ``readers`` is the number of point-read threads. The
    constructor connects and migrates, blocking; from async code use ``await
    PostgresStore.open(conninfo)``.
    """

    #: Called in the writer thread with each batch's size (a metric, ``transports.metrics``).
    observe_batch: Callable[[int], None] | None = None

    def __init__(self, conninfo: str, *, schema: str | None = None, readers: int = 2, max_connections: int = 8) -> None:
        self._conninfo = conninfo
        self._schema = schema
        if schema is not None:
            # The schema goes first on the search_path, after any options the URL gives.
            info = psycopg.conninfo.conninfo_to_dict(conninfo)
            info["options"] = f"{info.get('options', '')} -c search_path={schema}".strip()
            conninfo = psycopg.conninfo.make_conninfo(**info)
        kwargs: dict[str, Any] = {"autocommit": True}
        if "application_name" not in psycopg.conninfo.conninfo_to_dict(conninfo):
            kwargs["application_name"] = "satchel"
        with psycopg.connect(conninfo, **kwargs) as db:
            self._migrate(db)
        self._pool = ConnectionPool(conninfo, kwargs=kwargs, min_size=min(2, max_connections), max_size=max_connections,
                                    # How long a request waits for a connection while PostgreSQL is
                                    # away before it fails with StoreUnavailable (a 503): the URL's
                                    # connect_timeout when it has one, else 5 s.
                                    timeout=_wait(conninfo),
                                    # psycopg_pool retries a lost connection with a backoff that doubles
                                    # up to this: short, so that once PostgreSQL is back the next request
                                    # opens a connection at once instead of waiting out a long backoff.
                                    reconnect_timeout=2,
                                    name=f"satchel {schema or ''}", open=False)
        self._pool.open(wait=True, timeout=30)
        self._closing = False
        # Set when no connection came within the pool's wait, cleared by the next one that does (_connection).
        self._away = False
        self._inboxes = Inboxes()
        self._write_handlers: dict[type[Operation], Handler] = {
            **WRITES,
            ApplyMessage: lambda db, op: apply_message(db, op, self._inboxes),
            ApplyMessages: lambda db, op: apply_messages(db, op, self._inboxes),
        }
        # The next commit stamp; read and written by the writer thread only.
        self._next_stamp = 1
        self._writer = _Batcher("satchel-postgres-writer", self._run_writes, 1)
        self._readers = _Batcher("satchel-postgres-reader", self._run_reads, readers)

    @classmethod
    async def open(cls, conninfo: str, *, schema: str | None = None, readers: int = 2, max_connections: int = 8) -> "PostgresStore":
        """Connect to (and create or migrate) the store without blocking the event loop."""
        return await trio.to_thread.run_sync(lambda: cls(conninfo, schema=schema, readers=readers, max_connections=max_connections))

    def _where(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self._conninfo)
        where = f"PostgreSQL database {info.get('dbname', '')!r} on {info.get('host', 'localhost')}"
        return where + (f", schema {self._schema!r}" if self._schema else "")

    def _migrate(self, db: psycopg.Connection) -> None:
        with db.transaction():
            # Two nodes starting at once: the second waits, then finds the schema done.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if self._schema is not None:
                db.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self._schema)))
            db.execute(
                "CREATE TABLE IF NOT EXISTS satchel_migrations"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            (version,) = db.execute("SELECT coalesce(max(version), 0) FROM satchel_migrations").fetchone()
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the {self._where()} has schema version {version}; this Satchel knows up to {SCHEMA_VERSION}."
                    " Run a newer Satchel against it (the schema is never migrated down)."
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    db.execute(statement)
                db.execute("INSERT INTO satchel_migrations (version) VALUES (%s)", (number,))

    async def execute(self, operation: Operation) -> Any:
        """Carry out one storage operation; a write returns after its COMMIT.

        Raises ``TypeError`` for an operation that is not a storage operation.
        """
        return await self._execute(operation, False)

    async def execute_stamped(self, operation: Operation) -> tuple[Any, int | None]:
        """``execute``, and the write's commit stamp (``Store.execute_stamped``)."""
        if type(operation) in self._write_handlers and type(operation) not in _READS:
            return await self._execute(operation, True)
        return await self._execute(operation, False), None

    async def _execute(self, operation: Operation, stamped: bool) -> Any:
        if self._closing:
            raise trio.ClosedResourceError("the store is closed")
        kind = type(operation)
        try:
            if kind in self._write_handlers:
                check_write(operation)  # a bug of the caller: refuse before queueing
                return await self._writer.submit(operation, stamped)
            if kind in POINT_READS:
                return await self._readers.submit(operation)
            if kind in SCANS:
                return await trio.to_thread.run_sync(self._scan, SCANS[kind], operation)
        except psycopg.OperationalError as error:
            # The one place a lost PostgreSQL becomes the store interface's
            # error, which every protocol answers with its own 503.
            if _unreachable(error):
                raise StoreUnavailable(f"the {self._where()} cannot be reached: {error}") from error
            raise
        raise TypeError(f"{kind.__name__} is not a storage operation")

    def _scan(self, handler: Callable[[psycopg.Connection, Any], Any], operation: Operation) -> Any:
        for attempt in range(3):
            try:
                with self._connection() as db:
                    return handler(db, operation)
            except PoolTimeout:
                raise  # no connection within the pool's wait: PostgreSQL is away, waiting again would double it
            except psycopg.OperationalError:
                if attempt == 2:
                    raise  # scans only read: safe to send again on a new connection
        raise AssertionError("unreachable")

    def _run_reads(self, batch: list[_Request]) -> None:
        for attempt in range(3):
            try:
                with self._connection() as db:
                    try:
                        _run_pipelined(db, batch, POINT_READS, transaction=False, grouped=GROUPED_READS)
                    except psycopg.OperationalError:
                        raise
                    except psycopg.Error:
                        for request in batch:  # one at a time: the failing one fails alone
                            try:
                                _run_pipelined(db, [request], POINT_READS, transaction=False)
                            except psycopg.Error as exc:
                                request.result = outcome.Error(exc)
                return
            except PoolTimeout as exc:
                error = exc  # no connection within the pool's wait: PostgreSQL is away
                break
            except psycopg.OperationalError as exc:
                # The connection was lost (PostgreSQL restarted, an idle
                # connection was terminated): reads are safe to send again,
                # on a new connection.
                error: Exception = exc
            except Exception as exc:
                error = exc
                break
        for request in batch:
            if request.result is None:
                request.result = outcome.Error(error)

    def _run_writes(self, batch: list[_Request]) -> None:
        # No retry once a batch was sent: a connection lost while its COMMIT
        # was in flight leaves the outcome unknown, and applying it again
        # could apply it twice. _connection() makes that rare.
        applied: list[_Request] = []
        try:
            with self._connection() as db:
                applied = self._apply_writes(db, batch)
        except Exception as exc:
            for request in batch:
                if request.result is None:
                    request.result = outcome.Error(exc)
        self._stamp(applied)
        if self.observe_batch is not None:
            self.observe_batch(len(batch))

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection that PostgreSQL has not already closed: an
        idle connection with something to read has been told it is
        terminated (a restart, ``pg_terminate_backend``) - it is dropped
        before anything is sent on it, for another."""
        for _ in range(self._pool.max_size + 1):
            # While PostgreSQL is known to be away, a request waits briefly,
            # not the pool's full timeout: the threads must not spend seconds
            # on each batch, so that the queue is answered 503 at once (a
            # connect on loopback takes milliseconds once it is back).
            try:
                with self._pool.connection(timeout=_AWAY_WAIT if self._away else None) as db:
                    self._away = False
                    if not db.closed and not select.select([db.fileno()], [], [], 0)[0]:
                        yield db
                        return
                    db.close()  # the pool discards it and opens another
            except PoolTimeout:
                self._away = True
                raise
        raise psycopg.OperationalError("no usable connection to PostgreSQL")

    def _stamp(self, applied: list[_Request]) -> None:
        """In the writer thread, after COMMIT: number the stamped writes that
        changed something, in the order they were applied (commit order)."""
        for request in applied:
            if request.stamped and type(request.result) is outcome.Value:
                value = request.result.value
                stamp = None
                if _changed(request.operation, value):
                    stamp = self._next_stamp
                    self._next_stamp += 1
                request.result = outcome.Value((value, stamp))

    def _apply_writes(self, db: psycopg.Connection, batch: list[_Request]) -> list[_Request]:
        """Apply ``batch``; the requests that committed, in commit order."""
        for attempt in range(10):
            try:
                return _run_pipelined(db, batch, self._write_handlers, transaction=True, grouped=GROUPED_WRITES)
            except _RETRIED:
                continue  # another node's transaction won: apply the batch again
            except psycopg.OperationalError:
                raise  # the connection is gone: nothing more to try on it
            except psycopg.Error as exc:
                if len(batch) == 1:
                    batch[0].result = outcome.Error(exc)
                    return []
                applied: list[_Request] = []
                for request in batch:  # one transaction each: the failing write fails alone
                    applied += self._apply_writes(db, [request])
                return applied
        return _run_pipelined(db, batch, self._write_handlers, transaction=True, grouped=GROUPED_WRITES)

    async def aclose(self) -> None:
        """Finish the queued requests, stop the threads and close every
        connection. Call it when no operation is in flight."""
        if self._closing:
            return
        self._closing = True
        await trio.to_thread.run_sync(self._writer.close)
        await trio.to_thread.run_sync(self._readers.close)
        await trio.to_thread.run_sync(self._pool.close)
