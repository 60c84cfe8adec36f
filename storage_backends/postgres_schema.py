"""The PostgreSQL store's schema (``satchel.storage_backends.postgres``): its
versioned migrations, which the store applies under an advisory lock when
it opens a database, refusing one migrated by a newer Satchel.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "MIGRATION_LOCK", "SchemaTooNew"]

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
MIGRATION_LOCK = 0x5A7C_4E11

class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Satchel than this one."""
