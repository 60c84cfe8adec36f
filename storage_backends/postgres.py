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

Schema. The server creates and migrates it (``MIGRATIONS``), holding an
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
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections import defaultdict
from typing import Any, Callable, Iterator

import msgspec
import outcome
import psycopg
import psycopg.errors
import trio
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.inbox.documents import MessageTable, NotAnInbox, apply_to_table
from satchel.protocol.operations import (
    ApplyMessage,
    ApplyMessages,
    DocumentKeys,
    GetDocumentKeys,
    MessageEdit,
    DeleteEntry,
    DeleteRecord,
    DeleteRecords,
    DeleteSession,
    DeleteSessions,
    Document,
    Entry,
    GetDocument,
    GetDocumentByWriteKey,
    GetEntry,
    GetRecord,
    GetSession,
    GetSetting,
    GetUser,
    GetUserByEmail,
    HeldRoles,
    InsertNumbered,
    InsertRecord,
    InsertSession,
    InsertUser,
    ListCollections,
    ListEntries,
    ListRecordRange,
    ListRecords,
    ListSessions,
    MessageWrite,
    Operation,
    PutDocument,
    PutEntry,
    OverwriteEntry,
    PutSetting,
    QueryRecords,
    QueryResult,
    ReplaceRecord,
    SearchRecords,
    Session,
    SetUserRole,
    SetUserPassword,
    ListUsers,
    ListDocuments,
    StoredJson,
    StoredRecord,
    StoredSetting,
    TakeNumber,
    User,
)
from satchel.protocol.query import project, redact
from satchel.protocol.query.postgres_sql import folded_record, nul_free, order_sql, search_sql, where_sql
from satchel.protocol.records import matches_query

from .base import Store, StoreUnavailable
from .memory import _READS, _changed, check_entry_write, check_messages

__all__ = ["PostgresStore", "SchemaTooNew", "MIGRATIONS", "SCHEMA_VERSION"]

# Migration N takes a database from schema version N to N + 1; each applied
# version is a row of satchel_migrations. Add migrations, never edit a
# released one.
MIGRATIONS: list[list[str]] = [
    [
        # seq: creation order (ties of a sort, ListRecords). Text that is
        # compared or ordered is COLLATE "C": UTF-8 bytes, code point order,
        # the order Python compares strings in, whatever the database locale.
        # body is the record's exact JSON (key order kept); doc the jsonb the
        # queries read, U+0000 (which jsonb refuses) replaced by U+FFFD;
        # folded its strings lowered by Python (postgres_sql.folded_record).
        r"""CREATE TABLE records (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection text COLLATE "C" NOT NULL,
            id text COLLATE "C" NOT NULL,
            body text NOT NULL,
            doc jsonb GENERATED ALWAYS AS (replace(body, '\u0000', '\ufffd')::jsonb) STORED,
            folded jsonb NOT NULL,
            revision bigint NOT NULL,
            UNIQUE (collection, id)
        )""",
        "CREATE INDEX records_in_creation_order ON records (collection, seq)",
        # email_key: the email lowered by Python (as MemoryStore folds it).
        """CREATE TABLE users (
            id text COLLATE "C" PRIMARY KEY,
            email text NOT NULL,
            email_key text NOT NULL UNIQUE,
            password_hash text NOT NULL,
            created_at text NOT NULL,
            role text NOT NULL DEFAULT 'authenticated'
        )""",
        """CREATE TABLE sessions (
            token_hash text COLLATE "C" PRIMARY KEY,
            user_id text NOT NULL,
            expires_ms bigint NOT NULL,
            kind text NOT NULL
        )""",
        "CREATE INDEX sessions_by_user ON sessions (user_id, kind)",
        "CREATE TABLE sequences (name text PRIMARY KEY, next bigint NOT NULL)",
        "CREATE TABLE settings (name text PRIMARY KEY, value bytea NOT NULL, revision bigint NOT NULL)",
        # Token-addressed documents (seed 001); seq is the creation order
        # (ListDocuments). An inbox's messages are rows of inbox_messages
        # once it took one (satchel.protocol.inbox.documents.MessageTable):
        # then head and tail hold its content before and after the
        # #messages object and content is empty; head NULL: content is the
        # document as PUT, byte for byte. A message's revision is its "#"
        # as JSON text (NULL: not a number); message ids sort as code points.
        """CREATE TABLE documents (
            seq bigint GENERATED ALWAYS AS IDENTITY,
            read_token text PRIMARY KEY,
            write_key text NOT NULL UNIQUE,
            write_hash text NOT NULL,
            mac_key text NOT NULL,
            revision bigint NOT NULL,
            content bytea NOT NULL,
            head bytea,
            tail bytea
        )""",
        """CREATE TABLE inbox_messages (
            read_token text NOT NULL,
            message_id text COLLATE "C" NOT NULL,
            revision text,
            body bytea NOT NULL,
            PRIMARY KEY (read_token, message_id)
        )""",
        # Entries (seed 004); value NULL is a tombstone keeping the last version.
        """CREATE TABLE entries (
            space text NOT NULL,
            organization text NOT NULL,
            project text NOT NULL,
            id text COLLATE "C" NOT NULL,
            value bytea,
            version bigint NOT NULL,
            user_id text,
            PRIMARY KEY (space, organization, project, id)
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

# Any constant: the key of the advisory lock held while migrating.
_MIGRATION_LOCK = 0x5A7C_4E11

_encoder = msgspec.json.Encoder()
_decode = msgspec.json.Decoder().decode


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Satchel than this one."""


def _dump(record: dict[str, Any]) -> str:
    return _encoder.encode(record).decode()


def _folded(record: dict[str, Any]) -> str:
    return _encoder.encode(folded_record(record)).decode()


# The jsonb of a JSON text parameter, U+0000 replaced as in the doc column.
_JSONB = r"replace(%s, '\u0000', '\ufffd')::jsonb"

#: A write or read handler: sends its statements on the connection (in
#: pipeline mode they are only queued) and returns a function that, once the
#: pipeline was synced, reads their results and returns the operation's.
_Finish = Callable[[], Any]
_Handler = Callable[[psycopg.Connection, Any], _Finish]


def _rows(cursor: psycopg.Cursor) -> Callable[[], list[tuple[Any, ...]]]:
    return cursor.fetchall


def _constant(value: Any) -> _Finish:
    return lambda: value


# -- point reads ------------------------------------------------------------------


def _get_record(db: psycopg.Connection, op: GetRecord) -> _Finish:
    cursor = db.execute("SELECT body, revision FROM records WHERE collection = %s AND id = %s", (op.collection, op.id))

    def finish() -> StoredRecord | StoredJson | None:
        rows = cursor.fetchall()
        if not rows:
            return None
        return StoredJson(rows[0][0].encode(), rows[0][1]) if op.as_json else StoredRecord(_decode(rows[0][0]), rows[0][1])

    return finish


def _get_records(db: psycopg.Connection, ops: list[GetRecord]) -> list[_Finish]:
    # One statement for a batch's record reads: per statement, psycopg and
    # PostgreSQL cost far more than per row.
    cursor = db.execute(
        "SELECT k.n, r.body, r.revision FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS k(collection, id, n)"
        " JOIN records r ON r.collection = k.collection AND r.id = k.id",
        ([op.collection for op in ops], [op.id for op in ops]),
    )
    found: dict[int, tuple[str, int]] = {}

    def read(n: int) -> StoredRecord | StoredJson | None:
        if not found and cursor.rowcount:
            found.update((number, (body, revision)) for number, body, revision in cursor.fetchall())
        row = found.get(n)
        if row is None:
            return None
        # as_json: the stored text as it is (operations.StoredJson).
        return StoredJson(row[0].encode(), row[1]) if ops[n - 1].as_json else StoredRecord(_decode(row[0]), row[1])

    return [lambda n=n: read(n) for n in range(1, len(ops) + 1)]


_USER_COLUMNS = "id, email, password_hash, created_at, role"


def _one(cursor: psycopg.Cursor, make: Callable[..., Any]) -> _Finish:
    def finish() -> Any:
        rows = cursor.fetchall()
        return make(*rows[0]) if rows else None

    return finish


def _get_user(db: psycopg.Connection, op: GetUser) -> _Finish:
    return _one(db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (nul_free(op.id),)), User)


def _get_user_by_email(db: psycopg.Connection, op: GetUserByEmail) -> _Finish:
    return _one(db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE email_key = %s", (nul_free(op.email.lower()),)), User)


_SESSION_COLUMNS = "token_hash, user_id, expires_ms, kind"


def _get_sessions(db: psycopg.Connection, ops: list[GetSession]) -> list[_Finish]:
    cursor = db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE token_hash = ANY(%s)",
                        ([nul_free(op.token_hash) for op in ops],))
    found: dict[str, Session] = {}

    def read(token_hash: str) -> Session | None:
        if not found and cursor.rowcount:
            found.update((row[0], Session(*row)) for row in cursor.fetchall())
        return found.get(token_hash)

    return [lambda key=nul_free(op.token_hash): read(key) for op in ops]


def _get_users(db: psycopg.Connection, ops: list[GetUser]) -> list[_Finish]:
    cursor = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ANY(%s)", ([nul_free(op.id) for op in ops],))
    found: dict[str, User] = {}

    def read(user_id: str) -> User | None:
        if not found and cursor.rowcount:
            found.update((row[0], User(*row)) for row in cursor.fetchall())
        return found.get(user_id)

    return [lambda key=nul_free(op.id): read(key) for op in ops]


def _get_session(db: psycopg.Connection, op: GetSession) -> _Finish:
    return _one(db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE token_hash = %s", (nul_free(op.token_hash),)), Session)


_DOCUMENT_COLUMNS = "read_token, write_key, write_hash, mac_key, revision, content"
# A document and, for an inbox kept as rows, its messages: one statement, so
# one snapshot (the three aggregates in one order, so they line up).
_DOCUMENT_READ = f"""SELECT {_DOCUMENT_COLUMNS}, head, tail,
    CASE WHEN head IS NOT NULL THEN ARRAY(SELECT message_id FROM inbox_messages m WHERE m.read_token = d.read_token ORDER BY message_id) END,
    CASE WHEN head IS NOT NULL THEN ARRAY(SELECT revision FROM inbox_messages m WHERE m.read_token = d.read_token ORDER BY message_id) END,
    CASE WHEN head IS NOT NULL THEN ARRAY(SELECT body FROM inbox_messages m WHERE m.read_token = d.read_token ORDER BY message_id) END
    FROM documents d"""


def _revision_text(revision: Any) -> str | None:
    return None if revision is None else _encoder.encode(revision).decode()


def _revision_value(text: str | None) -> Any:
    return None if text is None else _decode(text)


def _message_rows(ids: list[str], revisions: list[str | None], bodies: list[bytes]) -> list[tuple[str, Any, bytes]]:
    return [(message_id, _revision_value(revision), body) for message_id, revision, body in zip(ids, revisions, bodies)]


def _assembled(row: tuple[Any, ...]) -> Document:
    read_token, write_key, write_hash, mac_key, revision, content, head, tail, ids, revisions, bodies = row
    if head is not None:
        content = MessageTable.from_rows(head, tail, _message_rows(ids, revisions, bodies)).content
    return Document(read_token, write_key, write_hash, mac_key, revision, content)


def _documents(cursor: psycopg.Cursor) -> _Finish:
    def finish() -> Document | None:
        rows = cursor.fetchall()
        return _assembled(rows[0]) if rows else None

    return finish


def _get_document(db: psycopg.Connection, op: GetDocument) -> _Finish:
    return _documents(db.execute(f"{_DOCUMENT_READ} WHERE read_token = %s", (nul_free(op.read_token),)))


def _get_document_by_write_key(db: psycopg.Connection, op: GetDocumentByWriteKey) -> _Finish:
    return _documents(db.execute(f"{_DOCUMENT_READ} WHERE write_key = %s", (nul_free(op.write_key),)))


_KEY_COLUMNS = "read_token, write_key, write_hash, mac_key"


def _get_document_keys(db: psycopg.Connection, op: GetDocumentKeys) -> _Finish:
    wanted = list(dict.fromkeys(nul_free(write_key) for write_key in op.write_keys))
    cursor = db.execute(f"SELECT {_KEY_COLUMNS} FROM documents WHERE write_key = ANY(%s)", (wanted,))

    def finish() -> list[DocumentKeys | None]:
        found = {row[1]: DocumentKeys(*row) for row in cursor.fetchall()}
        return [found.get(nul_free(write_key)) for write_key in op.write_keys]

    return finish


def _get_setting(db: psycopg.Connection, op: GetSetting) -> _Finish:
    return _one(db.execute("SELECT value, revision FROM settings WHERE name = %s", (nul_free(op.name),)), StoredSetting)


_ENTRY_KEY = "space = %s AND organization = %s AND project = %s AND id = %s"


def _entry_key(op: Any) -> tuple[str, str, str, str]:
    return (nul_free(op.space), nul_free(op.organization), nul_free(op.project), nul_free(op.id))


def _get_entry(db: psycopg.Connection, op: GetEntry) -> _Finish:
    return _one(db.execute(f"SELECT id, value, version, user_id FROM entries WHERE {_ENTRY_KEY}", _entry_key(op)), Entry)


# -- scans (run whole in a worker thread; they may read more than once) --------------


def _list_records(db: psycopg.Connection, op: ListRecords) -> list[dict[str, Any]]:
    rows = db.execute("SELECT body FROM records WHERE collection = %s ORDER BY seq", (op.collection,)).fetchall()
    records = [_decode(body) for (body,) in rows]
    if op.query is None:
        return records
    return [record for record in records if matches_query(record, op.query)]


def _list_collections(db: psycopg.Connection, op: ListCollections) -> list[str]:
    # Hop from one collection to the next through the index (PostgreSQL has
    # no skip scan): the cost grows with the collections, not the records.
    rows = db.execute(
        """WITH RECURSIVE names(name) AS (
            SELECT min(collection) FROM records
            UNION ALL
            SELECT (SELECT min(collection) FROM records WHERE collection > name) FROM names WHERE name IS NOT NULL
        )
        SELECT name FROM names WHERE name IS NOT NULL"""
    ).fetchall()
    return [name for (name,) in rows]


def _list_record_range(db: psycopg.Connection, op: ListRecordRange) -> list[dict[str, Any]]:
    order = "DESC" if op.descending else "ASC"
    limit = None if op.limit is None else max(op.limit, 0)  # LIMIT NULL: no limit
    rows = db.execute(
        f"SELECT body FROM records WHERE collection = %s AND id >= %s AND id < %s ORDER BY id {order} LIMIT %s",
        (op.collection, nul_free(op.start), nul_free(op.stop), limit),
    ).fetchall()
    return [_decode(body) for (body,) in rows]


def _search_records(db: psycopg.Connection, op: SearchRecords) -> list[dict[str, Any]]:
    # On the folded column: Python's str.lower() on both sides, as MemoryStore.
    if op.limit <= 0 or not op.fields:
        return []
    text = nul_free(op.text.lower())
    tests = " OR ".join(["(jsonb_typeof(folded -> %s::text) = 'string' AND strpos(folded ->> %s::text, %s) > 0)"] * len(op.fields))
    params: list[Any] = [op.collection]
    for field in op.fields:
        params += [nul_free(field), nul_free(field), text]
    rows = db.execute(
        f"SELECT body FROM records WHERE collection = %s AND ({tests}) ORDER BY seq LIMIT %s", [*params, op.limit]
    ).fetchall()
    return [_decode(body) for (body,) in rows]


def query_sql(op: QueryRecords) -> dict[str, tuple[str, list[Any]]]:
    """The statements of ``QueryRecords``: ``page`` always, ``total_count`` and
    ``filter_count`` when the query's meta asks for them."""
    query = op.query
    scope, scope_params = where_sql(op.permission, op.variables)
    wanted, wanted_params = where_sql(query.filter, op.variables)
    searched, search_params = search_sql(query.search, op.readable)
    scoped = f"FROM records WHERE collection = %s AND {scope}"
    scoped_params = [op.collection, *scope_params]
    selected = f"{scoped} AND {wanted} AND {searched}"
    selected_params = scoped_params + wanted_params + search_params
    order, order_params = order_sql(query.sort)
    statements = {
        "page": (f"SELECT body {selected} ORDER BY {order} LIMIT %s OFFSET %s",
                 [*selected_params, *order_params, query.limit, query.offset])
    }
    if "total_count" in query.meta:
        statements["total_count"] = (f"SELECT count(*) {scoped}", scoped_params)
    if "filter_count" in query.meta:
        statements["filter_count"] = (f"SELECT count(*) {selected}", selected_params)
    return statements


def _query_records(db: psycopg.Connection, op: QueryRecords) -> QueryResult:
    statements = query_sql(op)
    counts: dict[str, int] = {}
    if len(statements) == 1:
        rows = db.execute(*statements["page"]).fetchall()
    else:
        # One snapshot: the counts and the page see the same commits.
        with db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            counts = {name: db.execute(*statements[name]).fetchone()[0] for name in ("total_count", "filter_count") if name in statements}
            rows = db.execute(*statements["page"]).fetchall()
    records = [project(redact(_decode(body), op.readable), op.query.fields) for (body,) in rows]
    return QueryResult(records, counts.get("total_count"), counts.get("filter_count"))


def _list_sessions(db: psycopg.Connection, op: ListSessions) -> list[Session]:
    rows = db.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = %s AND kind = %s ORDER BY token_hash",
        (nul_free(op.user_id), nul_free(op.kind)),
    ).fetchall()
    return [Session(*row) for row in rows]


def _list_users(db: psycopg.Connection, op: ListUsers) -> list[User]:
    # email_key is the email lowered by Python; strpos matches it literally.
    rows = db.execute(
        f"SELECT {_USER_COLUMNS} FROM users WHERE strpos(email_key, %s) > 0 ORDER BY id LIMIT %s OFFSET %s",
        (nul_free(op.search.lower()), max(op.limit, 0), max(op.offset, 0)),
    ).fetchall()
    return [User(*row) for row in rows]


def _list_documents(db: psycopg.Connection, op: ListDocuments) -> list[Document]:
    rows = db.execute(f"{_DOCUMENT_READ} ORDER BY seq LIMIT %s OFFSET %s", (max(op.limit, 0), max(op.offset, 0))).fetchall()
    return [_assembled(row) for row in rows]


def _prefix_end(prefix: str) -> str | None:
    """The least string greater than every string that starts with
    ``prefix`` (``None``: there is none), in code point order."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates never occur in stored (UTF-8) text
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


def _list_entries(db: psycopg.Connection, op: ListEntries) -> list[Entry]:
    prefix, after = nul_free(op.prefix), nul_free(op.after)
    lower = "id > %s" if after >= prefix else "id >= %s"
    clauses = ["space = %s", "organization = %s", "project = %s", lower, "value IS NOT NULL"]
    params: list[Any] = [nul_free(op.space), nul_free(op.organization), nul_free(op.project), max(after, prefix)]
    end = _prefix_end(prefix) if prefix else None
    if end is not None:
        clauses.append("id < %s")
        params.append(end)
    params.append(max(op.limit, 0))
    rows = db.execute(
        f"SELECT id, value, version, user_id FROM entries WHERE {' AND '.join(clauses)} ORDER BY id LIMIT %s", params
    ).fetchall()
    return [Entry(*row) for row in rows]


# -- writes (in the writer's transaction, in order) --------------------------------


def _rowcount_is_one(cursor: psycopg.Cursor) -> _Finish:
    return lambda: cursor.rowcount == 1


def _insert_record(db: psycopg.Connection, op: InsertRecord) -> _Finish:
    record_id = op.record["_id"]
    body, folded = _dump(op.record), _folded(op.record)  # before sending: a bad record fails alone
    cursor = db.execute(
        f"INSERT INTO records (collection, id, body, folded, revision) VALUES (%s, %s, %s, {_JSONB}, 1) ON CONFLICT DO NOTHING",
        (op.collection, record_id, body, folded),
    )

    def finish() -> None:
        if cursor.rowcount != 1:
            raise LocalProtocolError(f"record {op.collection}/{record_id} already exists")

    return finish


def _insert_records(db: psycopg.Connection, ops: list[InsertRecord]) -> list[_Finish]:
    # One statement for a batch's inserts. Of two inserts of one id, the
    # first one listed is the one that happened.
    rows: list[tuple[int, str, str, str, str]] = []
    refused: dict[int, Exception] = {}
    for n, op in enumerate(ops):
        try:
            rows.append((n, op.collection, op.record["_id"], _dump(op.record), _folded(op.record)))
        except Exception as exc:  # a bad record fails alone
            refused[n] = exc
    cursor = db.execute(
        "INSERT INTO records (collection, id, body, folded, revision)"
        f" SELECT k.collection, k.id, k.body, {_JSONB.replace('%s', 'k.folded')}, 1"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS k(collection, id, body, folded, n)"
        " ORDER BY k.n ON CONFLICT DO NOTHING RETURNING collection, id",
        ([row[1] for row in rows], [row[2] for row in rows], [row[3] for row in rows], [row[4] for row in rows]),
    )
    inserted: set[tuple[str, str]] = set()
    claimed: set[tuple[str, str]] = set()
    fetched: list[bool] = []

    def finish(n: int) -> None:
        if n in refused:
            raise refused[n]
        if not fetched:
            inserted.update(cursor.fetchall())
            fetched.append(True)
        key = (ops[n].collection, ops[n].record["_id"])
        if key not in inserted or key in claimed:
            raise LocalProtocolError(f"record {key[0]}/{key[1]} already exists")
        claimed.add(key)

    return [lambda n=n: finish(n) for n in range(len(ops))]


def _replace_record(db: psycopg.Connection, op: ReplaceRecord) -> _Finish:
    body, folded = _dump(op.record), _folded(op.record)
    cursor = db.execute(
        f"UPDATE records SET body = %s, folded = {_JSONB}, revision = revision + 1"
        " WHERE collection = %s AND id = %s AND revision = %s",
        (body, folded, op.collection, op.record["_id"], op.revision),
    )
    return _rowcount_is_one(cursor)


def _delete_record(db: psycopg.Connection, op: DeleteRecord) -> _Finish:
    cursor = db.execute("DELETE FROM records WHERE collection = %s AND id = %s RETURNING body", (op.collection, op.id))

    def finish() -> dict[str, Any] | None:
        rows = cursor.fetchall()
        return _decode(rows[0][0]) if rows else None

    return finish


def _delete_records(db: psycopg.Connection, op: DeleteRecords) -> _Finish:
    rows = db.execute("SELECT body FROM records WHERE collection = %s ORDER BY seq FOR UPDATE", (op.collection,)).fetchall()
    deleted = [record for record in (_decode(body) for (body,) in rows) if matches_query(record, op.query)]
    if deleted:
        db.execute("DELETE FROM records WHERE collection = %s AND id = ANY(%s)", (op.collection, [r["_id"] for r in deleted]))
    return _constant(deleted)


def _insert_user(db: psycopg.Connection, op: InsertUser) -> _Finish:
    user = op.user
    email_key = user.email.lower()
    inserted = db.execute(
        f"INSERT INTO users ({_USER_COLUMNS}, email_key) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (user.id, user.email, user.password_hash, user.created_at, user.role, email_key),
    ).fetchall()
    if inserted:
        return _constant(True)
    # The email comes first (as MemoryStore checks it): a taken email is False.
    if db.execute("SELECT 1 FROM users WHERE email_key = %s", (email_key,)).fetchall():
        return _constant(False)
    raise LocalProtocolError(f"user {user.id} already exists")


def _insert_session(db: psycopg.Connection, op: InsertSession) -> _Finish:
    session = op.session
    cursor = db.execute(
        f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (session.token_hash, session.user_id, session.expires_ms, session.kind),
    )

    def finish() -> None:
        if cursor.rowcount != 1:
            # Overwriting would hand someone else's session to this user.
            raise LocalProtocolError("a session with this token hash already exists")

    return finish


def _delete_session(db: psycopg.Connection, op: DeleteSession) -> _Finish:
    cursor = db.execute("DELETE FROM sessions WHERE token_hash = %s", (nul_free(op.token_hash),))
    return lambda: cursor.rowcount > 0


def _delete_sessions(db: psycopg.Connection, op: DeleteSessions) -> _Finish:
    cursor = db.execute("DELETE FROM sessions WHERE user_id = %s AND kind = %s", (nul_free(op.user_id), nul_free(op.kind)))
    return lambda: cursor.rowcount


def _set_user_role(db: psycopg.Connection, op: SetUserRole) -> _Finish:
    return _rowcount_is_one(db.execute("UPDATE users SET role = %s WHERE id = %s", (op.role, nul_free(op.user_id))))


def _set_user_password(db: psycopg.Connection, op: SetUserPassword) -> _Finish:
    return _rowcount_is_one(db.execute("UPDATE users SET password_hash = %s WHERE id = %s", (op.password_hash, nul_free(op.user_id))))


def _held_roles(db: psycopg.Connection, op: HeldRoles) -> _Finish:
    cursor = db.execute("SELECT DISTINCT role FROM users")
    return lambda: frozenset(role for (role,) in cursor.fetchall())


def _put_setting(db: psycopg.Connection, op: PutSetting) -> _Finish:
    if op.expected_revision == 0:
        cursor = db.execute(
            "INSERT INTO settings (name, value, revision) VALUES (%s, %s, 1) ON CONFLICT DO NOTHING", (op.name, op.value)
        )
    else:
        cursor = db.execute(
            "UPDATE settings SET value = %s, revision = revision + 1 WHERE name = %s AND revision = %s",
            (op.value, op.name, op.expected_revision),
        )
    return _rowcount_is_one(cursor)


_TAKE_NUMBER = (
    "INSERT INTO sequences (name, next) VALUES (%s, 1)"
    " ON CONFLICT (name) DO UPDATE SET next = sequences.next + 1 RETURNING next - 1"
)


def _take_number(db: psycopg.Connection, op: TakeNumber) -> _Finish:
    cursor = db.execute(_TAKE_NUMBER, (op.sequence,))
    return lambda: cursor.fetchall()[0][0]


def _insert_numbered(db: psycopg.Connection, op: InsertNumbered) -> _Finish:
    (number,) = db.execute(_TAKE_NUMBER, (op.sequence,)).fetchall()[0]
    record = {**op.record, op.number_field: number, "_id": f"{op.id_prefix}{number:0{op.id_digits}d}"}
    try:
        body, folded = _dump(record), _folded(record)
    except Exception:
        body = None
    if body is not None and db.execute(
        f"INSERT INTO records (collection, id, body, folded, revision) VALUES (%s, %s, %s, {_JSONB}, 1)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (op.collection, record["_id"], body, folded),
    ).fetchall():
        return _constant(record)
    # Give the number back: this transaction holds the sequence's row lock,
    # so nobody took a later one.
    db.execute("UPDATE sequences SET next = next - 1 WHERE name = %s", (op.sequence,))
    if body is None:
        _dump(record)  # raises the encoding error
    raise LocalProtocolError(f"record {op.collection}/{record['_id']} already exists")


def _put_document(db: psycopg.Connection, op: PutDocument) -> _Finish:
    document = op.document
    if op.expected_revision == 0:
        # Both unique keys decide: an existing read token or write key makes
        # this insert a no-op.
        cursor = db.execute(
            f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (document.read_token, document.write_key, document.write_hash, document.mac_key, document.revision, document.content),
        )
    else:
        # The owner's content replaces the inbox's messages (head NULL:
        # content is the document, byte for byte).
        cursor = db.execute(
            "WITH updated AS (UPDATE documents SET revision = %s, content = %s, head = NULL, tail = NULL"
            " WHERE read_token = %s AND write_key = %s AND revision = %s RETURNING read_token),"
            " gone AS (DELETE FROM inbox_messages WHERE read_token IN (SELECT read_token FROM updated))"
            " SELECT count(*) FROM updated",
            (document.revision, document.content, document.read_token, document.write_key, op.expected_revision),
        )
        return lambda: cursor.fetchall()[0][0] == 1
    return _rowcount_is_one(cursor)


class _Inboxes:
    """The writer's ``MessageTable`` of recently written inboxes, each with
    the revision it is at, so that a merge reads no other message. A table
    is taken out while a batch uses it and put back only once the batch
    committed; before use it is checked against the revision stored now
    (every write makes it grow), so a write made elsewhere - a PUT, another
    node - makes it reload. Bounded: dropping one costs a reload."""

    MAX_TABLES = 1024

    def __init__(self) -> None:
        self.tables: dict[str, tuple[int, MessageTable]] = {}
        self.lock = threading.Lock()

    def take(self, read_token: str) -> tuple[int, MessageTable] | None:
        with self.lock:
            return self.tables.pop(read_token, None)

    def put_back(self, tables: dict[str, tuple[int, MessageTable]]) -> None:
        with self.lock:
            if len(self.tables) + len(tables) > self.MAX_TABLES:
                self.tables.clear()
            self.tables.update(tables)


def _apply_message(db: psycopg.Connection, op: ApplyMessage, inboxes: "_Inboxes") -> _Finish:
    edit = MessageEdit(op.write_key, op.message_id, op.message)
    finish = _apply_messages(db, ApplyMessages((edit,), op.now_ms, op.max_document_bytes), inboxes)
    return lambda: finish()[0]


def _apply_messages(db: psycopg.Connection, op: ApplyMessages, inboxes: "_Inboxes") -> _Finish:
    """In the writer's transaction. The inboxes are read (and locked: FOR
    UPDATE, so another node's merges wait for this commit) once per
    operation; each edit that changes something writes its message's row,
    and each inbox written its new revision, once, at the end."""
    check_messages(op)  # before anything is written: all or nothing
    write_keys = list(dict.fromkeys(nul_free(edit.write_key) for edit in op.edits))
    rows = db.execute(
        f"SELECT {_KEY_COLUMNS}, revision, content, head, tail FROM documents"
        " WHERE write_key = ANY(%s) ORDER BY read_token FOR UPDATE",
        (write_keys,),
    ).fetchall()
    tables: dict[str, tuple[int, MessageTable] | None] = {}
    keys_of: dict[str, DocumentKeys] = {}
    to_rows: list[str] = []  # inboxes still as PUT, moved to rows now
    reload: list[str] = []
    for read_token, write_key, write_hash, mac_key, revision, content, head, tail in rows:
        keys_of[write_key] = DocumentKeys(read_token, write_key, write_hash, mac_key)
        cached = inboxes.take(read_token)
        if head is None:
            try:
                tables[read_token] = (revision, MessageTable.from_content(content))
                to_rows.append(read_token)
            except NotAnInbox:
                tables[read_token] = None
        elif cached is not None and cached[0] == revision:
            tables[read_token] = cached
        else:
            tables[read_token] = (revision, MessageTable(head, tail))
            reload.append(read_token)
    if reload:
        for read_token, ids, revisions, bodies in db.execute(
            "SELECT read_token, array_agg(message_id ORDER BY message_id), array_agg(revision ORDER BY message_id),"
            " array_agg(body ORDER BY message_id) FROM inbox_messages WHERE read_token = ANY(%s) GROUP BY read_token",
            (reload,),
        ).fetchall():
            revision, table = tables[read_token]
            tables[read_token] = (revision, MessageTable.from_rows(table.head, table.tail, _message_rows(ids, revisions, bodies)))
    for read_token in to_rows:
        revision, table = tables[read_token]
        db.execute("UPDATE documents SET content = '', head = %s, tail = %s WHERE read_token = %s", (table.head, table.tail, read_token))
        if table.ids:
            db.execute(
                "INSERT INTO inbox_messages (read_token, message_id, revision, body)"
                " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::bytea[])",
                (read_token, table.ids, [_revision_text(table.revisions[i]) for i in table.ids], [table.bodies[i] for i in table.ids]),
            )
    touched: dict[str, int] = {}
    changed: dict[tuple[str, str], tuple[str | None, bytes] | None] = {}
    writes: list[MessageWrite] = []
    for edit in op.edits:
        keys = keys_of.get(nul_free(edit.write_key))
        if keys is None:
            writes.append(MessageWrite("unknown"))
            continue
        inbox = tables[keys.read_token]
        if inbox is None:
            writes.append(MessageWrite("not-inbox"))
            continue
        revision, table = inbox
        written = apply_to_table(table, revision, edit.message_id, edit.message, op.now_ms, op.max_document_bytes)
        if written.revision is None:
            writes.append(MessageWrite(written.result))
            continue
        tables[keys.read_token] = (written.revision, table)
        touched[keys.read_token] = written.revision
        changed[(keys.read_token, edit.message_id)] = (
            None if written.body is None else (_revision_text(written.message_revision), written.body))
        document = Document(keys.read_token, keys.write_key, keys.write_hash, keys.mac_key, written.revision, table.content)
        writes.append(MessageWrite(written.result, document, written.revision))
    upserts = [(key, row) for key, row in changed.items() if row is not None]
    if upserts:
        db.execute(
            "INSERT INTO inbox_messages (read_token, message_id, revision, body)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[])"
            " ON CONFLICT (read_token, message_id) DO UPDATE SET revision = excluded.revision, body = excluded.body",
            ([key[0] for key, _ in upserts], [key[1] for key, _ in upserts], [row[0] for _, row in upserts], [row[1] for _, row in upserts]),
        )
    removed = [key for key, row in changed.items() if row is None]
    if removed:
        db.execute(
            "DELETE FROM inbox_messages WHERE (read_token, message_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([key[0] for key in removed], [key[1] for key in removed]),
        )
    if touched:
        db.execute(
            "UPDATE documents SET revision = v.revision FROM unnest(%s::text[], %s::bigint[]) AS v(read_token, revision)"
            " WHERE documents.read_token = v.read_token",
            (list(touched), list(touched.values())),
        )

    def finish() -> list[MessageWrite]:
        # Committed: the tables are what is stored now.
        inboxes.put_back({read_token: inbox for read_token, inbox in tables.items() if inbox is not None})
        return writes

    return finish


def _put_entry(db: psycopg.Connection, op: PutEntry) -> _Finish:
    if op.expected_version == 0:
        cursor = db.execute(
            "INSERT INTO entries (space, organization, project, id, value, version, user_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (*_entry_key(op), op.value, op.version, op.user_id),
        )
    else:
        cursor = db.execute(
            f"UPDATE entries SET value = %s, version = %s, user_id = %s WHERE {_ENTRY_KEY} AND version = %s",
            (op.value, op.version, op.user_id, *_entry_key(op), op.expected_version),
        )
    return _rowcount_is_one(cursor)


def _overwrite_entry(db: psycopg.Connection, op: OverwriteEntry) -> _Finish:
    cursor = db.execute(
        "INSERT INTO entries (space, organization, project, id, value, version, user_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (space, organization, project, id) DO UPDATE"
        " SET value = excluded.value, user_id = excluded.user_id,"
        " version = GREATEST(excluded.version, entries.version + 1) RETURNING version",
        (*_entry_key(op), op.value, op.at_least, op.user_id),
    )
    return lambda: cursor.fetchone()[0]  # type: ignore[index]


def _delete_entry(db: psycopg.Connection, op: DeleteEntry) -> _Finish:
    cursor = db.execute(
        f"UPDATE entries SET value = NULL, version = %s, user_id = %s WHERE {_ENTRY_KEY} AND version = %s AND value IS NOT NULL",
        (op.version, op.user_id, *_entry_key(op), op.expected_version),
    )
    return _rowcount_is_one(cursor)


_POINT_READS: dict[type[Operation], _Handler] = {
    GetRecord: _get_record,
    GetUser: _get_user,
    GetUserByEmail: _get_user_by_email,
    GetSession: _get_session,
    GetDocument: _get_document,
    GetDocumentByWriteKey: _get_document_by_write_key,
    GetDocumentKeys: _get_document_keys,
    GetSetting: _get_setting,
    GetEntry: _get_entry,
}
#: Operations a batch holding several of them reads or writes in one statement.
_Grouped = Callable[[psycopg.Connection, list[Any]], list[_Finish]]
_GROUPED_READS: dict[type[Operation], _Grouped] = {GetRecord: _get_records, GetSession: _get_sessions, GetUser: _get_users}
_GROUPED_WRITES: dict[type[Operation], _Grouped] = {InsertRecord: _insert_records}
#: Writes that are one statement: alone in a batch, they are sent in
#: autocommit (one round trip, not BEGIN, the statement and COMMIT).
_ONE_STATEMENT: frozenset[type[Operation]] = frozenset({
    InsertRecord, ReplaceRecord, DeleteRecord, InsertSession, DeleteSession, DeleteSessions, SetUserRole,
    SetUserPassword, PutSetting, TakeNumber, PutDocument, PutEntry, OverwriteEntry, DeleteEntry,
})
_SCANS: dict[type[Operation], Callable[[psycopg.Connection, Any], Any]] = {
    ListRecords: _list_records,
    ListCollections: _list_collections,
    ListRecordRange: _list_record_range,
    SearchRecords: _search_records,
    QueryRecords: _query_records,
    ListSessions: _list_sessions,
    ListEntries: _list_entries,
    ListUsers: _list_users,
    ListDocuments: _list_documents,
}
_WRITES: dict[type[Operation], _Handler] = {
    InsertRecord: _insert_record,
    ReplaceRecord: _replace_record,
    DeleteRecord: _delete_record,
    DeleteRecords: _delete_records,
    InsertUser: _insert_user,
    InsertSession: _insert_session,
    DeleteSession: _delete_session,
    DeleteSessions: _delete_sessions,
    SetUserRole: _set_user_role,
    SetUserPassword: _set_user_password,
    HeldRoles: _held_roles,
    PutSetting: _put_setting,
    TakeNumber: _take_number,
    InsertNumbered: _insert_numbered,
    PutDocument: _put_document,
    PutEntry: _put_entry,
    OverwriteEntry: _overwrite_entry,
    DeleteEntry: _delete_entry,
}


def _check_write(op: Operation) -> None:
    """Refuse, before queueing, a write that breaks its operation's contract."""
    kind = type(op)
    if kind is PutDocument:
        if op.expected_revision < 0 or op.document.revision <= op.expected_revision:
            raise LocalProtocolError("a document's revision must grow with every write")
        if not isinstance(op.document.content, bytes):
            raise LocalProtocolError("a document's content is bytes")
    elif kind is PutSetting and not isinstance(op.value, bytes):
        raise LocalProtocolError("a setting's value is bytes")
    elif kind is PutEntry or kind is OverwriteEntry or kind is DeleteEntry:
        check_entry_write(op)


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


def _run_pipelined(db: psycopg.Connection, batch: list[_Request], handlers: dict[type[Operation], _Handler],
                   transaction: bool, grouped: dict[type[Operation], _Grouped] | None = None) -> list[_Request]:
    """Send every request of ``batch`` (inside one transaction when
    ``transaction``), pipelined when there is more than one statement, and
    set their results. Requests of a kind in ``grouped`` that occur more
    than once are sent as one statement, before the others (the requests of
    a batch are concurrent: any order is one they could have had). An SQL
    error propagates with no result set (and the transaction rolled back).
    Returns the requests in the order they were applied."""
    if transaction and len(batch) == 1 and type(batch[0].operation) in _ONE_STATEMENT:
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
    finishing: list[tuple[_Request, _Finish]] = []
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
        self._inboxes = _Inboxes()
        self._write_handlers: dict[type[Operation], _Handler] = {
            **_WRITES,
            ApplyMessage: lambda db, op: _apply_message(db, op, self._inboxes),
            ApplyMessages: lambda db, op: _apply_messages(db, op, self._inboxes),
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
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
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
                _check_write(operation)  # a bug of the caller: refuse before queueing
                return await self._writer.submit(operation, stamped)
            if kind in _POINT_READS:
                return await self._readers.submit(operation)
            if kind in _SCANS:
                return await trio.to_thread.run_sync(self._scan, _SCANS[kind], operation)
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
                        _run_pipelined(db, batch, _POINT_READS, transaction=False, grouped=_GROUPED_READS)
                    except psycopg.OperationalError:
                        raise
                    except psycopg.Error:
                        for request in batch:  # one at a time: the failing one fails alone
                            try:
                                _run_pipelined(db, [request], _POINT_READS, transaction=False)
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
                return _run_pipelined(db, batch, self._write_handlers, transaction=True, grouped=_GROUPED_WRITES)
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
        return _run_pipelined(db, batch, self._write_handlers, transaction=True, grouped=_GROUPED_WRITES)

    async def aclose(self) -> None:
        """Finish the queued requests, stop the threads and close every
        connection. Call it when no operation is in flight."""
        if self._closing:
            return
        self._closing = True
        await trio.to_thread.run_sync(self._writer.close)
        await trio.to_thread.run_sync(self._readers.close)
        await trio.to_thread.run_sync(self._pool.close)
