"""What the inbox needs of SQLite beyond the conformance suite: an existing
database migrates to the schema with documents and keeps its data, and the
merge rule runs in the writer's transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from satchel.protocol.operations import ApplyMessage, Document, GetDocument, GetRecord, InsertRecord, PutDocument
from satchel.storage_backends import sqlite as sqlite_backend
from satchel.storage_backends.sqlite import SCHEMA_VERSION, SqliteStore


async def test_a_version_1_database_migrates_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for statement in sqlite_backend._MIGRATIONS[0]:
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
    row = db.execute("SELECT content FROM documents").fetchone()
    assert msgspec.json.decode(row[0]) == {"#messages": {"5" * 16: {"#": 1}}}
    db.close()


async def test_documents_survive_a_reopen_byte_for_byte(tmp_path: Path) -> None:
    content = ' {"ü": [1, 2.50]} '.encode()
    document = Document("1" * 32, "2" * 32, "3" * 64, "4" * 64, 7, content)
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        await store.execute(PutDocument(document, 0))
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        assert await store.execute(GetDocument(document.read_token)) == document
