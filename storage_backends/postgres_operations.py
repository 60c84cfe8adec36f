"""The PostgreSQL store's operations (``satchel.storage_backends.postgres``):
each a function of (connection, operation) that sends its statements (in
pipeline mode only queued) and returns a function reading the operation's
result once the pipeline was synced; and the tables the store dispatches
them by - point reads and grouped reads (the reader threads), scans (worker
threads), writes and grouped writes (the writer's transaction). The
store's module docstring says how they are run; this one what each does.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import msgspec
import psycopg
import psycopg.errors

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

from .memory import check_entry_write, check_messages


__all__ = [
    "POINT_READS",
    "GROUPED_READS",
    "GROUPED_WRITES",
    "ONE_STATEMENT",
    "SCANS",
    "WRITES",
    "Finish",
    "Grouped",
    "Handler",
    "Inboxes",
    "apply_message",
    "apply_messages",
    "check_write",
    "query_sql",
]

_encoder = msgspec.json.Encoder()
_decode = msgspec.json.Decoder().decode




def _dump(record: dict[str, Any]) -> str:
    return _encoder.encode(record).decode()


def _folded(record: dict[str, Any]) -> str:
    return _encoder.encode(folded_record(record)).decode()


# The jsonb of a JSON text parameter, U+0000 replaced as in the doc column.
_JSONB = r"replace(%s, '\u0000', '\ufffd')::jsonb"

#: A write or read handler: sends its statements on the connection (in
#: pipeline mode they are only queued) and returns a function that, once the
#: pipeline was synced, reads their results and returns the operation's.
Finish = Callable[[], Any]
Handler = Callable[[psycopg.Connection, Any], Finish]


def _rows(cursor: psycopg.Cursor) -> Callable[[], list[tuple[Any, ...]]]:
    return cursor.fetchall


def _constant(value: Any) -> Finish:
    return lambda: value


# -- point reads ------------------------------------------------------------------


def _get_record(db: psycopg.Connection, op: GetRecord) -> Finish:
    cursor = db.execute("SELECT body, revision FROM records WHERE collection = %s AND id = %s", (op.collection, op.id))

    def finish() -> StoredRecord | StoredJson | None:
        rows = cursor.fetchall()
        if not rows:
            return None
        return StoredJson(rows[0][0].encode(), rows[0][1]) if op.as_json else StoredRecord(_decode(rows[0][0]), rows[0][1])

    return finish


def _get_records(db: psycopg.Connection, ops: list[GetRecord]) -> list[Finish]:
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


def _one(cursor: psycopg.Cursor, make: Callable[..., Any]) -> Finish:
    def finish() -> Any:
        rows = cursor.fetchall()
        return make(*rows[0]) if rows else None

    return finish


def _get_user(db: psycopg.Connection, op: GetUser) -> Finish:
    return _one(db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (nul_free(op.id),)), User)


def _get_user_by_email(db: psycopg.Connection, op: GetUserByEmail) -> Finish:
    return _one(db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE email_key = %s", (nul_free(op.email.lower()),)), User)


_SESSION_COLUMNS = "token_hash, user_id, expires_ms, kind"


def _get_sessions(db: psycopg.Connection, ops: list[GetSession]) -> list[Finish]:
    cursor = db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE token_hash = ANY(%s)",
                        ([nul_free(op.token_hash) for op in ops],))
    found: dict[str, Session] = {}

    def read(token_hash: str) -> Session | None:
        if not found and cursor.rowcount:
            found.update((row[0], Session(*row)) for row in cursor.fetchall())
        return found.get(token_hash)

    return [lambda key=nul_free(op.token_hash): read(key) for op in ops]


def _get_users(db: psycopg.Connection, ops: list[GetUser]) -> list[Finish]:
    cursor = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ANY(%s)", ([nul_free(op.id) for op in ops],))
    found: dict[str, User] = {}

    def read(user_id: str) -> User | None:
        if not found and cursor.rowcount:
            found.update((row[0], User(*row)) for row in cursor.fetchall())
        return found.get(user_id)

    return [lambda key=nul_free(op.id): read(key) for op in ops]


def _get_session(db: psycopg.Connection, op: GetSession) -> Finish:
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


def _documents(cursor: psycopg.Cursor) -> Finish:
    def finish() -> Document | None:
        rows = cursor.fetchall()
        return _assembled(rows[0]) if rows else None

    return finish


def _get_document(db: psycopg.Connection, op: GetDocument) -> Finish:
    return _documents(db.execute(f"{_DOCUMENT_READ} WHERE read_token = %s", (nul_free(op.read_token),)))


def _get_document_by_write_key(db: psycopg.Connection, op: GetDocumentByWriteKey) -> Finish:
    return _documents(db.execute(f"{_DOCUMENT_READ} WHERE write_key = %s", (nul_free(op.write_key),)))


_KEY_COLUMNS = "read_token, write_key, write_hash, mac_key"


def _get_document_keys(db: psycopg.Connection, op: GetDocumentKeys) -> Finish:
    wanted = list(dict.fromkeys(nul_free(write_key) for write_key in op.write_keys))
    cursor = db.execute(f"SELECT {_KEY_COLUMNS} FROM documents WHERE write_key = ANY(%s)", (wanted,))

    def finish() -> list[DocumentKeys | None]:
        found = {row[1]: DocumentKeys(*row) for row in cursor.fetchall()}
        return [found.get(nul_free(write_key)) for write_key in op.write_keys]

    return finish


def _get_setting(db: psycopg.Connection, op: GetSetting) -> Finish:
    return _one(db.execute("SELECT value, revision FROM settings WHERE name = %s", (nul_free(op.name),)), StoredSetting)


_ENTRY_KEY = "space = %s AND organization = %s AND project = %s AND id = %s"


def _entry_key(op: Any) -> tuple[str, str, str, str]:
    return (nul_free(op.space), nul_free(op.organization), nul_free(op.project), nul_free(op.id))


def _get_entry(db: psycopg.Connection, op: GetEntry) -> Finish:
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


def _rowcount_is_one(cursor: psycopg.Cursor) -> Finish:
    return lambda: cursor.rowcount == 1


def _insert_record(db: psycopg.Connection, op: InsertRecord) -> Finish:
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


def _insert_records(db: psycopg.Connection, ops: list[InsertRecord]) -> list[Finish]:
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


def _replace_record(db: psycopg.Connection, op: ReplaceRecord) -> Finish:
    body, folded = _dump(op.record), _folded(op.record)
    cursor = db.execute(
        f"UPDATE records SET body = %s, folded = {_JSONB}, revision = revision + 1"
        " WHERE collection = %s AND id = %s AND revision = %s",
        (body, folded, op.collection, op.record["_id"], op.revision),
    )
    return _rowcount_is_one(cursor)


def _delete_record(db: psycopg.Connection, op: DeleteRecord) -> Finish:
    cursor = db.execute("DELETE FROM records WHERE collection = %s AND id = %s RETURNING body", (op.collection, op.id))

    def finish() -> dict[str, Any] | None:
        rows = cursor.fetchall()
        return _decode(rows[0][0]) if rows else None

    return finish


def _delete_records(db: psycopg.Connection, op: DeleteRecords) -> Finish:
    rows = db.execute("SELECT body FROM records WHERE collection = %s ORDER BY seq FOR UPDATE", (op.collection,)).fetchall()
    deleted = [record for record in (_decode(body) for (body,) in rows) if matches_query(record, op.query)]
    if deleted:
        db.execute("DELETE FROM records WHERE collection = %s AND id = ANY(%s)", (op.collection, [r["_id"] for r in deleted]))
    return _constant(deleted)


def _insert_user(db: psycopg.Connection, op: InsertUser) -> Finish:
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


def _insert_session(db: psycopg.Connection, op: InsertSession) -> Finish:
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


def _delete_session(db: psycopg.Connection, op: DeleteSession) -> Finish:
    cursor = db.execute("DELETE FROM sessions WHERE token_hash = %s", (nul_free(op.token_hash),))
    return lambda: cursor.rowcount > 0


def _delete_sessions(db: psycopg.Connection, op: DeleteSessions) -> Finish:
    cursor = db.execute("DELETE FROM sessions WHERE user_id = %s AND kind = %s", (nul_free(op.user_id), nul_free(op.kind)))
    return lambda: cursor.rowcount


def _set_user_role(db: psycopg.Connection, op: SetUserRole) -> Finish:
    return _rowcount_is_one(db.execute("UPDATE users SET role = %s WHERE id = %s", (op.role, nul_free(op.user_id))))


def _set_user_password(db: psycopg.Connection, op: SetUserPassword) -> Finish:
    return _rowcount_is_one(db.execute("UPDATE users SET password_hash = %s WHERE id = %s", (op.password_hash, nul_free(op.user_id))))


def _held_roles(db: psycopg.Connection, op: HeldRoles) -> Finish:
    cursor = db.execute("SELECT DISTINCT role FROM users")
    return lambda: frozenset(role for (role,) in cursor.fetchall())


def _put_setting(db: psycopg.Connection, op: PutSetting) -> Finish:
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


def _take_number(db: psycopg.Connection, op: TakeNumber) -> Finish:
    cursor = db.execute(_TAKE_NUMBER, (op.sequence,))
    return lambda: cursor.fetchall()[0][0]


def _insert_numbered(db: psycopg.Connection, op: InsertNumbered) -> Finish:
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


def _put_document(db: psycopg.Connection, op: PutDocument) -> Finish:
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


class Inboxes:
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


def apply_message(db: psycopg.Connection, op: ApplyMessage, inboxes: "Inboxes") -> Finish:
    edit = MessageEdit(op.write_key, op.message_id, op.message)
    finish = apply_messages(db, ApplyMessages((edit,), op.now_ms, op.max_document_bytes), inboxes)
    return lambda: finish()[0]


def apply_messages(db: psycopg.Connection, op: ApplyMessages, inboxes: "Inboxes") -> Finish:
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


def _put_entry(db: psycopg.Connection, op: PutEntry) -> Finish:
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


def _overwrite_entry(db: psycopg.Connection, op: OverwriteEntry) -> Finish:
    cursor = db.execute(
        "INSERT INTO entries (space, organization, project, id, value, version, user_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (space, organization, project, id) DO UPDATE"
        " SET value = excluded.value, user_id = excluded.user_id,"
        " version = GREATEST(excluded.version, entries.version + 1) RETURNING version",
        (*_entry_key(op), op.value, op.at_least, op.user_id),
    )
    return lambda: cursor.fetchone()[0]  # type: ignore[index]


def _delete_entry(db: psycopg.Connection, op: DeleteEntry) -> Finish:
    cursor = db.execute(
        f"UPDATE entries SET value = NULL, version = %s, user_id = %s WHERE {_ENTRY_KEY} AND version = %s AND value IS NOT NULL",
        (op.version, op.user_id, *_entry_key(op), op.expected_version),
    )
    return _rowcount_is_one(cursor)


POINT_READS: dict[type[Operation], Handler] = {
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
Grouped = Callable[[psycopg.Connection, list[Any]], list[Finish]]
GROUPED_READS: dict[type[Operation], Grouped] = {GetRecord: _get_records, GetSession: _get_sessions, GetUser: _get_users}
GROUPED_WRITES: dict[type[Operation], Grouped] = {InsertRecord: _insert_records}
#: Writes that are one statement: alone in a batch, they are sent in
#: autocommit (one round trip, not BEGIN, the statement and COMMIT).
ONE_STATEMENT: frozenset[type[Operation]] = frozenset({
    InsertRecord, ReplaceRecord, DeleteRecord, InsertSession, DeleteSession, DeleteSessions, SetUserRole,
    SetUserPassword, PutSetting, TakeNumber, PutDocument, PutEntry, OverwriteEntry, DeleteEntry,
})
SCANS: dict[type[Operation], Callable[[psycopg.Connection, Any], Any]] = {
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
WRITES: dict[type[Operation], Handler] = {
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


def check_write(op: Operation) -> None:
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
