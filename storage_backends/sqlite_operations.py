"""The SQLite store's operations (``satchel.storage_backends.sqlite``): each
a function of (connection, operation), and the tables the store dispatches
them by - point reads (inline on the trio thread), scans (in worker threads)
and writes (in the writer thread's group commit). The store's module
docstring says how they are run; this one holds what each one does.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

import msgspec

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.inbox.documents import MessageTable, NotAnInbox, apply_to_table
from satchel.protocol.operations import (
    ApplyMessage,
    ApplyMessages,
    DocumentKeys,
    GetDocumentKeys,
    MessageEdit,
    DeleteRecord,
    DeleteRecords,
    DeleteSession,
    DeleteSessions,
    DeleteEntry,
    Document,
    Entry,
    GetEntry,
    ListEntries,
    PutEntry,
    OverwriteEntry,
    GetDocument,
    GetDocumentByWriteKey,
    GetRecord,
    GetSession,
    GetSetting,
    GetUser,
    GetUserByEmail,
    InsertRecord,
    InsertSession,
    InsertUser,
    ListCollections,
    ListRecordRange,
    ListRecords,
    ListSessions,
    MessageWrite,
    Operation,
    PutDocument,
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
    HeldRoles,
    StoredJson,
    StoredRecord,
    StoredSetting,
    InsertNumbered,
    TakeNumber,
    User,
)
from satchel.protocol.query import project, redact
from satchel.protocol.query.sql import order_sql, search_sql, where_sql
from satchel.protocol.records import matches_query

from .memory import check_messages

__all__ = [
    "POINT_READS", "SCANS", "WRITES", "Handler", "StoreConnection", "InboxState", "check_put_document", "lower_text",
]

_encoder = msgspec.json.Encoder()
_decode = msgspec.json.Decoder().decode


def _dump(record: dict[str, Any]) -> str:
    # Bodies are TEXT rather than BLOB so that SQLite's JSON functions and the
    # sqlite3 shell can read them.
    return _encoder.encode(record).decode()


def lower_text(text: Any) -> Any:
    # The case folding of the query language's i-operators (str.lower, as MemoryStore).
    return text.lower() if isinstance(text, str) else text


# -- the operations, each a function of (connection, operation) ---------------


def _get_record(db: sqlite3.Connection, op: GetRecord) -> StoredRecord | StoredJson | None:
    # fetchall() steps every statement to its end, so no statement is left
    # open holding an old snapshot of the database.
    if op.as_json:
        # The body is the record's JSON as msgspec wrote it (``_dump``): the
        # bytes a response would encode, without decoding them first - read
        # as a BLOB, the UTF-8 bytes SQLite holds, not decoded to a str to be
        # encoded back.
        rows = db.execute("SELECT CAST(body AS BLOB), revision FROM records WHERE collection = ? AND id = ?",
                          (op.collection, op.id)).fetchall()
        if not rows:
            return None
        body, revision = rows[0]
        return StoredJson(body, revision)
    rows = db.execute("SELECT body, revision FROM records WHERE collection = ? AND id = ?", (op.collection, op.id)).fetchall()
    if not rows:
        return None
    body, revision = rows[0]
    return StoredRecord(_decode(body), revision)


def _list_records(db: sqlite3.Connection, op: ListRecords) -> list[dict[str, Any]]:
    rows = db.execute("SELECT body FROM records WHERE collection = ? ORDER BY seq", (op.collection,)).fetchall()
    records = [_decode(body) for (body,) in rows]
    if op.query is None:
        return records
    return [record for record in records if matches_query(record, op.query)]


def _list_collections(db: sqlite3.Connection, op: ListCollections) -> list[str]:
    # Hop from each collection to the next through the index: the cost grows
    # with the number of collections, not of records. Text compares as UTF-8
    # bytes, which is code point order, the order of Python's sorted().
    rows = db.execute(
        """WITH RECURSIVE names(name) AS (
            SELECT min(collection) FROM records
            UNION ALL
            SELECT (SELECT min(collection) FROM records WHERE collection > name) FROM names WHERE name IS NOT NULL
        )
        SELECT name FROM names WHERE name IS NOT NULL"""
    ).fetchall()
    return [name for (name,) in rows]


def _list_record_range(db: sqlite3.Connection, op: ListRecordRange) -> list[dict[str, Any]]:
    # The UNIQUE (collection, id) index orders ids by BINARY collation: the
    # bytes of UTF-8, which is code point order, the order Python compares in.
    order = "DESC" if op.descending else "ASC"
    limit = -1 if op.limit is None else max(op.limit, 0)  # LIMIT -1: no limit
    rows = db.execute(
        f"SELECT body FROM records WHERE collection = ? AND id >= ? AND id < ? ORDER BY id {order} LIMIT ?",
        (op.collection, op.start, op.stop, limit),
    ).fetchall()
    return [_decode(body) for (body,) in rows]


def _search_records(db: sqlite3.Connection, op: SearchRecords) -> list[dict[str, Any]]:
    # Matched in Python, not with SQLite's lower() and LIKE: those fold ASCII
    # only and give LIKE's % and _ a meaning, where the search is literal and
    # must fold exactly as MemoryStore does.
    text = op.text.lower()
    found: list[dict[str, Any]] = []
    if op.limit <= 0:
        return found
    cursor = db.execute("SELECT body FROM records WHERE collection = ? ORDER BY seq", (op.collection,))
    try:
        for (body,) in cursor:
            record = _decode(body)
            if any(isinstance(record.get(field), str) and text in record[field].lower() for field in op.fields):
                found.append(record)
                if len(found) >= op.limit:
                    break
    finally:
        # Stopping early leaves the statement open, and an open statement
        # holds its snapshot of the database: close it.
        cursor.close()
    return found


def _query_sql(op: QueryRecords) -> dict[str, tuple[str, list[Any]]]:
    """The statements of ``QueryRecords``: ``page`` always, ``total_count`` and
    ``filter_count`` when the query's meta asks for them."""
    query = op.query
    scope, scope_params = where_sql(op.permission, op.variables)
    wanted, wanted_params = where_sql(query.filter, op.variables)
    searched, search_params = search_sql(query.search, op.readable)
    scoped = f"FROM records WHERE collection = ? AND {scope}"
    scoped_params = [op.collection, *scope_params]
    selected = f"{scoped} AND {wanted} AND {searched}"
    selected_params = scoped_params + wanted_params + search_params
    order, order_params = order_sql(query.sort)
    limit = -1 if query.limit is None else query.limit  # LIMIT -1: no limit
    statements = {
        "page": (f"SELECT body {selected} ORDER BY {order} LIMIT ? OFFSET ?", [*selected_params, *order_params, limit, query.offset])
    }
    if "total_count" in query.meta:
        statements["total_count"] = (f"SELECT count(*) {scoped}", scoped_params)
    if "filter_count" in query.meta:
        statements["filter_count"] = (f"SELECT count(*) {selected}", selected_params)
    return statements


def _query_records(db: sqlite3.Connection, op: QueryRecords) -> QueryResult:
    statements = _query_sql(op)
    if len(statements) == 1:
        rows = db.execute(*statements["page"]).fetchall()
        counts: dict[str, int] = {}
    else:
        # One read transaction: the counts and the page see the same commits.
        db.execute("BEGIN")
        try:
            counts = {name: db.execute(*statements[name]).fetchone()[0] for name in ("total_count", "filter_count") if name in statements}
            rows = db.execute(*statements["page"]).fetchall()
        finally:
            db.execute("COMMIT")
    records = [project(redact(_decode(body), op.readable), op.query.fields) for (body,) in rows]
    return QueryResult(records, counts.get("total_count"), counts.get("filter_count"))


def _take_number(db: sqlite3.Connection, op: TakeNumber) -> int:
    rows = db.execute(
        "INSERT INTO sequences (name, next) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET next = next + 1 RETURNING next - 1",
        (op.sequence,),
    ).fetchall()
    return rows[0][0]


def _insert_numbered(db: sqlite3.Connection, op: InsertNumbered) -> dict[str, Any]:
    # Inside the batch's savepoint for this operation: a failed insert
    # takes the number back with it.
    number = _take_number(db, TakeNumber(op.sequence))
    record = {**op.record, op.number_field: number, "_id": f"{op.id_prefix}{number:0{op.id_digits}d}"}
    _insert_record(db, InsertRecord(op.collection, record))
    return record


def _insert_record(db: sqlite3.Connection, op: InsertRecord) -> None:
    record_id = op.record["_id"]
    try:
        db.execute(
            "INSERT INTO records (collection, id, body, revision) VALUES (?, ?, ?, 1)",
            (op.collection, record_id, _dump(op.record)),
        )
    except sqlite3.IntegrityError as exc:
        raise LocalProtocolError(f"record {op.collection}/{record_id} already exists") from exc


def _replace_record(db: sqlite3.Connection, op: ReplaceRecord) -> bool:
    cursor = db.execute(
        "UPDATE records SET body = ?, revision = revision + 1 WHERE collection = ? AND id = ? AND revision = ?",
        (_dump(op.record), op.collection, op.record["_id"], op.revision),
    )
    return cursor.rowcount == 1


def _delete_record(db: sqlite3.Connection, op: DeleteRecord) -> dict[str, Any] | None:
    rows = db.execute("DELETE FROM records WHERE collection = ? AND id = ? RETURNING body", (op.collection, op.id)).fetchall()
    return _decode(rows[0][0]) if rows else None


def _delete_records(db: sqlite3.Connection, op: DeleteRecords) -> list[dict[str, Any]]:
    deleted = _list_records(db, ListRecords(op.collection, op.query))
    db.executemany(
        "DELETE FROM records WHERE collection = ? AND id = ?",
        [(op.collection, record["_id"]) for record in deleted],
    )
    return deleted


_USER_COLUMNS = "id, email, password_hash, created_at, role"


def _get_user_by_email(db: sqlite3.Connection, op: GetUserByEmail) -> User | None:
    rows = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE email_key = ?", (op.email.lower(),)).fetchall()
    return User(*rows[0]) if rows else None


def _get_user(db: sqlite3.Connection, op: GetUser) -> User | None:
    rows = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (op.id,)).fetchall()
    return User(*rows[0]) if rows else None


def _insert_user(db: sqlite3.Connection, op: InsertUser) -> bool:
    user = op.user
    try:
        cursor = db.execute(
            f"INSERT INTO users ({_USER_COLUMNS}, email_key) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING",
            (user.id, user.email, user.password_hash, user.created_at, user.role, user.email.lower()),
        )
    except sqlite3.IntegrityError as exc:
        raise LocalProtocolError(f"user {user.id} already exists") from exc
    return cursor.rowcount == 1


def _insert_session(db: sqlite3.Connection, op: InsertSession) -> None:
    session = op.session
    try:
        db.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_ms, kind) VALUES (?, ?, ?, ?)",
            (session.token_hash, session.user_id, session.expires_ms, session.kind),
        )
    except sqlite3.IntegrityError as exc:
        # Overwriting would hand someone else's session to this user.
        raise LocalProtocolError("a session with this token hash already exists") from exc


def _get_session(db: sqlite3.Connection, op: GetSession) -> Session | None:
    rows = db.execute(
        "SELECT token_hash, user_id, expires_ms, kind FROM sessions WHERE token_hash = ?", (op.token_hash,)
    ).fetchall()
    return Session(*rows[0]) if rows else None


def _delete_session(db: sqlite3.Connection, op: DeleteSession) -> bool:
    return db.execute("DELETE FROM sessions WHERE token_hash = ?", (op.token_hash,)).rowcount > 0


def _delete_sessions(db: sqlite3.Connection, op: DeleteSessions) -> int:
    return db.execute("DELETE FROM sessions WHERE user_id = ? AND kind = ?", (op.user_id, op.kind)).rowcount


def _list_sessions(db: sqlite3.Connection, op: ListSessions) -> list[Session]:
    # sessions_by_user (user_id, kind) finds them without a scan.
    rows = db.execute(
        "SELECT token_hash, user_id, expires_ms, kind FROM sessions WHERE user_id = ? AND kind = ? ORDER BY token_hash",
        (op.user_id, op.kind),
    ).fetchall()
    return [Session(*row) for row in rows]


def _set_user_role(db: sqlite3.Connection, op: SetUserRole) -> bool:
    return db.execute("UPDATE users SET role = ? WHERE id = ?", (op.role, op.user_id)).rowcount == 1


def _set_user_password(db: sqlite3.Connection, op: SetUserPassword) -> bool:
    return db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (op.password_hash, op.user_id)).rowcount == 1


def _list_users(db: sqlite3.Connection, op: ListUsers) -> list[User]:
    # email_key is the email lowercased by Python (as MemoryStore folds it);
    # instr() matches it literally, with no LIKE wildcards to escape.
    rows = db.execute(
        f"SELECT {_USER_COLUMNS} FROM users WHERE instr(email_key, ?) > 0 ORDER BY id LIMIT ? OFFSET ?",
        (op.search.lower(), op.limit, op.offset),
    ).fetchall()
    return [User(*row) for row in rows]


def _held_roles(db: sqlite3.Connection, op: HeldRoles) -> frozenset[str]:
    # A scan of the users, for the rare replacing of the rules.
    return frozenset(row[0] for row in db.execute("SELECT DISTINCT role FROM users"))


def _get_setting(db: sqlite3.Connection, op: GetSetting) -> StoredSetting | None:
    rows = db.execute("SELECT value, revision FROM settings WHERE name = ?", (op.name,)).fetchall()
    return StoredSetting(*rows[0]) if rows else None


def _put_setting(db: sqlite3.Connection, op: PutSetting) -> bool:
    if op.expected_revision == 0:
        cursor = db.execute(
            "INSERT INTO settings (name, value, revision) VALUES (?, ?, 1) ON CONFLICT DO NOTHING", (op.name, op.value)
        )
    else:
        cursor = db.execute(
            "UPDATE settings SET value = ?, revision = revision + 1 WHERE name = ? AND revision = ?",
            (op.value, op.name, op.expected_revision),
        )
    return cursor.rowcount == 1


_DOCUMENT_COLUMNS = "read_token, write_key, write_hash, mac_key, revision, content"


_DOCUMENT_READ = f"{_DOCUMENT_COLUMNS}, head, tail"


class StoreConnection(sqlite3.Connection):
    """A connection that carries its store's inbox state (``inbox``)."""

    inbox: "InboxState"


class InboxState:
    """What a store remembers of its inboxes between operations.

    ``keys``: write key -> ``DocumentKeys``, which never change once a
    document exists. ``tables``: the writer's ``MessageTable`` of each
    recently written inbox with the revision it is at, so that a merge
    needs no read of the other messages; it is checked against the stored
    revision first (every write makes it grow), so a write it did not see -
    a PUT, another process - makes it reload. ``contents``: read token ->
    (revision, content) of the latest message writes, immutable pairs that
    readers serve when the revision they read matches instead of
    assembling the rows. All three are bounded caches: dropping an entry
    costs a reload, never an answer.
    """

    MAX_KEYS = 100_000
    MAX_TABLES = 1024
    MAX_CONTENTS = 4096

    def __init__(self) -> None:
        self.keys: dict[str, DocumentKeys] = {}
        self.tables: dict[str, tuple[int, MessageTable]] = {}
        self.contents: dict[str, tuple[int, bytes]] = {}


def _revision_column(revision: Any) -> Any:
    if type(revision) is int and not -(2**63) <= revision < 2**63:
        return str(revision)
    return revision


def _revision_value(column: Any) -> Any:
    return int(column) if type(column) is str else column


def _messages_of(db: sqlite3.Connection, read_token: str) -> list[tuple[str, Any, bytes]]:
    rows = db.execute("SELECT message_id, revision, body FROM inbox_messages WHERE read_token = ?", (read_token,)).fetchall()
    return [(message_id, _revision_value(revision), body) for message_id, revision, body in rows]


def _assembled(db: sqlite3.Connection, row: tuple[Any, ...]) -> Document:
    """The document of a ``_DOCUMENT_READ`` row; an inbox kept as rows is
    assembled (or served from the writer's latest content at its revision).
    Call inside one read transaction, so the rows match the document."""
    read_token, write_key, write_hash, mac_key, revision, content, head, tail = row
    if head is not None:
        latest = db.inbox.contents.get(read_token)  # type: ignore[attr-defined]
        if latest is not None and latest[0] == revision:
            content = latest[1]
        else:
            content = MessageTable.from_rows(head, tail, _messages_of(db, read_token)).content
    return Document(read_token, write_key, write_hash, mac_key, revision, content)


def _read_documents(db: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[Document]:
    # One transaction: the message rows read belong to the document row read.
    nested = db.in_transaction
    if not nested:
        db.execute("BEGIN")
    try:
        rows = db.execute(f"SELECT {_DOCUMENT_READ} FROM documents {where}", params).fetchall()
        return [_assembled(db, row) for row in rows]
    finally:
        if not nested:
            db.execute("COMMIT")


def _get_document(db: sqlite3.Connection, op: GetDocument) -> Document | None:
    documents = _read_documents(db, "WHERE read_token = ?", (op.read_token,))
    return documents[0] if documents else None


def _list_documents(db: sqlite3.Connection, op: ListDocuments) -> list[Document]:
    # The rowid grows with every new document: creation order.
    return _read_documents(db, "ORDER BY rowid LIMIT ? OFFSET ?", (op.limit, op.offset))


def _get_document_by_write_key(db: sqlite3.Connection, op: GetDocumentByWriteKey) -> Document | None:
    documents = _read_documents(db, "WHERE write_key = ?", (op.write_key,))
    return documents[0] if documents else None


def _get_document_keys(db: sqlite3.Connection, op: GetDocumentKeys) -> list[DocumentKeys | None]:
    known = db.inbox.keys  # type: ignore[attr-defined]
    answer: list[DocumentKeys | None] = []
    for write_key in op.write_keys:
        keys = known.get(write_key)
        if keys is None:
            rows = db.execute(
                "SELECT read_token, write_key, write_hash, mac_key FROM documents WHERE write_key = ?", (write_key,)
            ).fetchall()
            if rows:
                if len(known) >= InboxState.MAX_KEYS:
                    known.clear()
                keys = known[write_key] = DocumentKeys(*rows[0])
        answer.append(keys)
    return answer


def _put_document(db: sqlite3.Connection, op: PutDocument) -> bool:
    document = op.document
    if op.expected_revision == 0:
        # Both UNIQUE constraints decide: an existing read token or write key
        # makes this insert a no-op.
        cursor = db.execute(
            f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (document.read_token, document.write_key, document.write_hash, document.mac_key, document.revision, document.content),
        )
    else:
        # The owner's content replaces the inbox's messages (head NULL:
        # content is the document, byte for byte).
        cursor = db.execute(
            "UPDATE documents SET revision = ?, content = ?, head = NULL, tail = NULL"
            " WHERE read_token = ? AND write_key = ? AND revision = ?",
            (document.revision, document.content, document.read_token, document.write_key, op.expected_revision),
        )
        if cursor.rowcount == 1:
            db.execute("DELETE FROM inbox_messages WHERE read_token = ?", (document.read_token,))
    return cursor.rowcount == 1


def _apply_message(db: sqlite3.Connection, op: ApplyMessage) -> MessageWrite:
    edit = MessageEdit(op.write_key, op.message_id, op.message)
    return _apply_messages(db, ApplyMessages((edit,), op.now_ms, op.max_document_bytes))[0]


def _inbox_table(db: sqlite3.Connection, keys: DocumentKeys) -> tuple[int, MessageTable] | None:
    """(revision, table) of the inbox with ``keys`` as stored now, moving it
    to rows if it is still as PUT; ``None``: it is not an inbox."""
    state: InboxState = db.inbox  # type: ignore[attr-defined]
    (revision, content, head, tail), = db.execute(
        "SELECT revision, content, head, tail FROM documents WHERE read_token = ?", (keys.read_token,)
    ).fetchall()
    cached = state.tables.get(keys.read_token)
    if cached is not None and cached[0] == revision and head is not None:
        return cached
    if head is not None:
        table = MessageTable.from_rows(head, tail, _messages_of(db, keys.read_token))
    else:
        try:
            table = MessageTable.from_content(content)
        except NotAnInbox:
            return None
        db.execute("UPDATE documents SET content = ?, head = ?, tail = ? WHERE read_token = ?",
                   (b"", table.head, table.tail, keys.read_token))
        db.executemany(
            "INSERT OR REPLACE INTO inbox_messages (read_token, message_id, revision, body) VALUES (?, ?, ?, ?)",
            [(keys.read_token, message_id, _revision_column(table.revisions[message_id]), table.bodies[message_id])
             for message_id in table.ids],
        )
    if len(state.tables) >= InboxState.MAX_TABLES:
        state.tables.clear()
    return revision, table


def _apply_messages(db: sqlite3.Connection, op: ApplyMessages) -> list[MessageWrite]:
    """Runs in the writer's transaction. Each inbox is read once per batch;
    each edit that changes something writes its message's row, and each
    inbox written its new revision, once, at the end."""
    incoming = check_messages(op)  # before anything is written: all or nothing
    state: InboxState = db.inbox  # type: ignore[attr-defined]
    keys_of = _get_document_keys(db, GetDocumentKeys(tuple({edit.write_key: None for edit in op.edits})))
    keys_by_write_key = dict(zip({edit.write_key: None for edit in op.edits}, keys_of))
    inboxes: dict[str, tuple[int, MessageTable] | None] = {}
    touched: dict[str, int] = {}
    rows: dict[tuple[str, str], tuple[Any, bytes] | None] = {}
    writes: list[MessageWrite] = []
    try:
        for edit, message_revision in zip(op.edits, incoming):
            keys = keys_by_write_key[edit.write_key]
            if keys is None:
                writes.append(MessageWrite("unknown"))
                continue
            read_token = keys.read_token
            if read_token not in inboxes:
                inboxes[read_token] = _inbox_table(db, keys)
            inbox = inboxes[read_token]
            if inbox is None:
                writes.append(MessageWrite("not-inbox"))
                continue
            revision, table = inbox
            written = apply_to_table(table, revision, edit.message_id, edit.message, op.now_ms, op.max_document_bytes,
                                     message_revision)
            if written.revision is None:
                writes.append(MessageWrite(written.result))
                continue
            inboxes[read_token] = (written.revision, table)
            touched[read_token] = written.revision
            rows[(read_token, edit.message_id)] = (
                None if written.body is None else (_revision_column(written.message_revision), written.body)
            )
            document = Document(read_token, keys.write_key, keys.write_hash, keys.mac_key, written.revision, table.content)
            writes.append(MessageWrite(written.result, document, written.revision))
        db.executemany(
            "INSERT OR REPLACE INTO inbox_messages (read_token, message_id, revision, body) VALUES (?, ?, ?, ?)",
            [(read_token, message_id, row[0], row[1]) for (read_token, message_id), row in rows.items() if row is not None],
        )
        db.executemany(
            "DELETE FROM inbox_messages WHERE read_token = ? AND message_id = ?",
            [key for key, row in rows.items() if row is None],
        )
        db.executemany("UPDATE documents SET revision = ? WHERE read_token = ?",
                       [(revision, read_token) for read_token, revision in touched.items()])
    except BaseException:
        for read_token in inboxes:
            state.tables.pop(read_token, None)  # ahead of what is stored now
        raise
    for read_token, inbox in inboxes.items():
        if inbox is not None:
            state.tables[read_token] = inbox
    if len(state.contents) + len(touched) > InboxState.MAX_CONTENTS:
        state.contents.clear()
    for write in writes:
        if write.document is not None:
            state.contents[write.document.read_token] = (write.document.revision, write.document.content)
    return writes


def _get_entry(db: sqlite3.Connection, op: GetEntry) -> Entry | None:
    rows = db.execute(
        "SELECT id, value, version, user_id FROM entries WHERE space = ? AND organization = ? AND project = ? AND id = ?",
        (op.space, op.organization, op.project, op.id),
    ).fetchall()
    return Entry(*rows[0]) if rows else None


def _put_entry(db: sqlite3.Connection, op: PutEntry) -> bool:
    if op.expected_version == 0:
        cursor = db.execute(
            "INSERT INTO entries (space, organization, project, id, value, version, user_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (op.space, op.organization, op.project, op.id, op.value, op.version, op.user_id),
        )
    else:
        cursor = db.execute(
            "UPDATE entries SET value = ?, version = ?, user_id = ?"
            " WHERE space = ? AND organization = ? AND project = ? AND id = ? AND version = ?",
            (op.value, op.version, op.user_id, op.space, op.organization, op.project, op.id, op.expected_version),
        )
    return cursor.rowcount == 1


def _overwrite_entry(db: sqlite3.Connection, op: OverwriteEntry) -> int:
    (version,) = db.execute(
        "INSERT INTO entries (space, organization, project, id, value, version, user_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET value = excluded.value, user_id = excluded.user_id,"
        " version = MAX(excluded.version, entries.version + 1) RETURNING version",
        (op.space, op.organization, op.project, op.id, op.value, op.at_least, op.user_id),
    ).fetchone()
    return version


def _delete_entry(db: sqlite3.Connection, op: DeleteEntry) -> bool:
    cursor = db.execute(
        "UPDATE entries SET value = NULL, version = ?, user_id = ?"
        " WHERE space = ? AND organization = ? AND project = ? AND id = ? AND version = ? AND value IS NOT NULL",
        (op.version, op.user_id, op.space, op.organization, op.project, op.id, op.expected_version),
    )
    return cursor.rowcount == 1


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


def _list_entries(db: sqlite3.Connection, op: ListEntries) -> list[Entry]:
    # A range of the UNIQUE index: from max(prefix, after) to the prefix's end
    # (one lower bound, so that SQLite seeks to it).
    lower = "id > ?" if op.after >= op.prefix else "id >= ?"
    clauses = ["space = ?", "organization = ?", "project = ?", lower, "value IS NOT NULL"]
    params: list[Any] = [op.space, op.organization, op.project, max(op.after, op.prefix)]
    end = _prefix_end(op.prefix) if op.prefix else None
    if end is not None:
        clauses.append("id < ?")
        params.append(end)
    params.append(max(op.limit, 0))
    rows = db.execute(
        f"SELECT id, value, version, user_id FROM entries WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?", params
    ).fetchall()
    return [Entry(*row) for row in rows]


Handler = Callable[[sqlite3.Connection, Any], Any]
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
SCANS: dict[type[Operation], Handler] = {
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
    ApplyMessage: _apply_message,
    ApplyMessages: _apply_messages,
    PutEntry: _put_entry,
    OverwriteEntry: _overwrite_entry,
    DeleteEntry: _delete_entry,
}


def check_put_document(op: PutDocument) -> None:
    if op.expected_revision < 0 or op.document.revision <= op.expected_revision:
        raise LocalProtocolError("a document's revision must grow with every write")
    if not isinstance(op.document.content, bytes):
        raise LocalProtocolError("a document's content is bytes")
