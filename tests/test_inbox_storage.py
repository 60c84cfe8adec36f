"""What the inbox needs of SQLite beyond the conformance suite: an existing
database migrates to the schema with documents and keeps its data, and the
merge rule runs in the writer's transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from satchel.protocol.operations import ApplyMessage, Document, GetDocument, GetRecord, InsertRecord, PutDocument
from satchel.storage_backends import sqlite_schema
from satchel.storage_backends.sqlite import SCHEMA_VERSION, SqliteStore


async def test_a_version_1_database_migrates_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for statement in sqlite_schema.MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.close()

    async with await SqliteStore.open(path) as store:
        await store.execute(InsertRecord("notes", {"_id": "a" * 24, "text": "kept"}))
    async with await SqliteStore.open(path) as store:
        assert (await store.execute(GetRecord("notes", "a" * 24))).record == {"_id": "a" * 24, "text": "kept"}
        document = Document("1" * 32, "2" * 32, "3" * 64, "4" * 64, 1, b'{"#messages": {}}')
        assert await store.execute(PutDocument(document, 0)) is True
        written = await store.execute(ApplyMessage(document.write_key, "5" * 16, b'{"#": 1}', 10, 1000))
        assert written.result == "done"
    assert SCHEMA_VERSION >= 2
    db = sqlite3.connect(path)
    # Migrated through every later version too.
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    # The write token's lookup key is indexed (UNIQUE), and so is the read token.
    plan = db.execute("EXPLAIN QUERY PLAN SELECT * FROM documents WHERE write_key = ?", ("2" * 32,)).fetchall()
    assert "USING INDEX" in repr(plan)
    # The message is a row of its own; the document keeps what surrounds it.
    assert db.execute("SELECT head, tail FROM documents").fetchone() == (b'{"#messages":', b"}")
    assert db.execute("SELECT message_id, revision, body FROM inbox_messages").fetchall() == [("5" * 16, 1, b'{"#": 1}')]
    db.close()


async def test_a_version_5_database_keeps_its_inboxes_and_moves_them_to_rows_on_their_first_merge(tmp_path: Path) -> None:
    """Issue 13: inbox documents written before messages had rows of their
    own open unchanged, byte for byte; the first merge moves one to rows."""
    path = tmp_path / "v5.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for statements in sqlite_schema.MIGRATIONS[:5]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 5")
    old = b' {"title": "t", "#messages": {"00000000000000ff": {"#": 3, "v": 1}, "0000000000000001": {"#": 1}}} '
    db.execute("INSERT INTO documents (read_token, write_key, write_hash, mac_key, revision, content) VALUES (?, ?, ?, ?, ?, ?)",
               ("1" * 32, "2" * 32, "3" * 64, "4" * 64, 7, old))
    db.close()
    async with await SqliteStore.open(path) as store:
        document = Document("1" * 32, "2" * 32, "3" * 64, "4" * 64, 7, old)
        assert await store.execute(GetDocument("1" * 32)) == document
        written = await store.execute(ApplyMessage("2" * 32, "0000000000000001", b'{"#": 2}', 1, 10_000))
        expected = b'{"title":"t","#messages":{"0000000000000001":{"#": 2},"00000000000000ff":{"#": 3, "v": 1}}}'
        assert written.document == msgspec.structs.replace(document, revision=8, content=expected)
    async with await SqliteStore.open(path) as store:
        assert await store.execute(GetDocument("1" * 32)) == written.document
    db = sqlite3.connect(path)
    assert db.execute("SELECT message_id, revision FROM inbox_messages ORDER BY message_id").fetchall() == [
        ("0000000000000001", 2), ("00000000000000ff", 3)
    ]
    db.close()


async def test_a_revision_beyond_64_bits_is_kept_exactly(tmp_path: Path) -> None:
    document = Document("1" * 32, "2" * 32, "3" * 64, "4" * 64, 1, b'{"#messages": {}}')
    big = 12345678901234567890123
    async with await SqliteStore.open(tmp_path / "s.db") as store:
        await store.execute(PutDocument(document, 0))
        await store.execute(ApplyMessage(document.write_key, "0" * 16, b'{"#": %d}' % big, 0, 10_000))
    async with await SqliteStore.open(tmp_path / "s.db") as store:
        # Reloaded from its rows: one more than the stored revision replaces it, the same does not.
        same = await store.execute(ApplyMessage(document.write_key, "0" * 16, b'{"#": %d, "x": 1}' % big, 0, 10_000))
        assert same.document is None
        newer = await store.execute(ApplyMessage(document.write_key, "0" * 16, b'{"#": %d}' % (big + 1), 0, 10_000))
        assert newer.document.content == b'{"#messages":{"0000000000000000":{"#": %d}}}' % (big + 1)


async def test_documents_survive_a_reopen_byte_for_byte(tmp_path: Path) -> None:
    content = ' {"ü": [1, 2.50]} '.encode()
    document = Document("1" * 32, "2" * 32, "3" * 64, "4" * 64, 7, content)
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        await store.execute(PutDocument(document, 0))
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        assert await store.execute(GetDocument(document.read_token)) == document
