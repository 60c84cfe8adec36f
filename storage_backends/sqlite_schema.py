"""The SQLite store's schema (``satchel.storage_backends.sqlite``): its
versioned migrations, applied by the store when it opens a database.

Migration N takes a database from schema version N to N + 1; the version is
kept in ``PRAGMA user_version``. A store refuses a database whose version is
newer than ``SCHEMA_VERSION``.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

# Migration N takes a database from schema version N to N + 1; the version is
# kept in PRAGMA user_version. Add migrations, never edit a released one.
MIGRATIONS: list[list[str]] = [
    [
        # seq is the rowid: a new row gets max(seq) + 1, after every existing
        # record, which is all creation order needs. AUTOINCREMENT would also
        # stop the reuse of a deleted maximum, at the price of an extra write
        # to sqlite_sequence per insert.
        """CREATE TABLE records (
            seq INTEGER PRIMARY KEY,
            collection TEXT NOT NULL,
            id TEXT NOT NULL,
            body TEXT NOT NULL,
            revision INTEGER NOT NULL,
            UNIQUE (collection, id)
        )""",
        # Index entries are ordered by (collection, seq): a collection lists
        # in creation order without a sort, and ListCollections can skip from
        # one collection to the next.
        "CREATE INDEX records_in_creation_order ON records (collection, seq)",
        # email_key is the email lowercased by Python, not SQLite's ASCII-only
        # NOCASE, so that it folds exactly as MemoryStore does.
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            expires_ms INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ],
    [
        # Token-addressed documents (seed 001). A rowid table, not WITHOUT
        # ROWID, because contents run to a megabyte: large rows belong in a
        # rowid table's overflow pages. write_key is the indexed lookup key
        # derived from the write token (which is never stored). content is
        # a BLOB so that the exact bytes come back (CAST it AS TEXT for
        # SQLite's JSON functions).
        """CREATE TABLE documents (
            read_token TEXT NOT NULL UNIQUE,
            write_key TEXT NOT NULL UNIQUE,
            write_hash TEXT NOT NULL,
            mac_key TEXT NOT NULL,
            revision INTEGER NOT NULL,
            content BLOB NOT NULL
        )""",
    ],
    [
        # Sessions get a kind (Backpack's cookie sessions, Bearer access and
        # refresh tokens); the rows already there are Backpack sessions.
        "ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'session'",
        # DeleteSessions revokes one user's tokens of a kind without a scan.
        "CREATE INDEX sessions_by_user ON sessions (user_id, kind)",
        # TakeNumber's sequences: the next number each one hands out.
        """CREATE TABLE sequences (
            name TEXT PRIMARY KEY,
            next INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ],
    [
        # Users get a role (satchel.protocol.permissions); existing users
        # keep what every signed-in user could do before.
        "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'authenticated'",
        # Named settings (the permission rules), apart from collections.
        """CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value BLOB NOT NULL,
            revision INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ],
    [
        # Entries (seed 004): the key-value store and live configuration,
        # per space and scope. A rowid table (values run to hundreds of
        # kilobytes); the UNIQUE index orders a scope's ids by BINARY
        # collation (UTF-8 bytes: code point order) for ListEntries. value
        # is NULL for a tombstone, which keeps the last version.
        """CREATE TABLE entries (
            space TEXT NOT NULL,
            organization TEXT NOT NULL,
            project TEXT NOT NULL,
            id TEXT NOT NULL,
            value BLOB,
            version INTEGER NOT NULL,
            user_id TEXT,
            UNIQUE (space, organization, project, id)
        )""",
    ],
    [
        # Inbox messages as rows of their own (issue 13): a merge writes one
        # message and the document's revision, not the whole document. An
        # inbox that took a message since its owner's last PUT has head and
        # tail (its content before and after the #messages object; content
        # is then empty) and its messages here; otherwise head is NULL and
        # content is the document as PUT, byte for byte - which is what
        # every document of an older database is, so it opens unchanged and
        # each inbox moves to rows with its first merge. revision is the
        # message's "#": an INTEGER or REAL, TEXT for an integer beyond 64
        # bits, NULL when it is not a number. message_id is TEXT in BINARY
        # collation (UTF-8 bytes: code point order, as the ids are sorted).
        "ALTER TABLE documents ADD COLUMN head BLOB",
        "ALTER TABLE documents ADD COLUMN tail BLOB",
        """CREATE TABLE inbox_messages (
            read_token TEXT NOT NULL,
            message_id TEXT NOT NULL,
            revision,
            body BLOB NOT NULL,
            PRIMARY KEY (read_token, message_id)
        ) WITHOUT ROWID""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
