"""Entries in SQLite beyond the conformance suite (which both stores run,
``storage_backends/conformance_entries.py``): a version 4 database is
migrated to entries without losing anything, entries survive a reopen, and
ListEntries reads a range of the scope's index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from satchel.protocol.operations import DeleteEntry, Entry, GetEntry, GetRecord, InsertRecord, ListEntries, PutEntry
from satchel.storage_backends import sqlite_schema
from satchel.storage_backends import sqlite_operations
from satchel.storage_backends.sqlite import SCHEMA_VERSION, SqliteStore


async def test_a_version_4_database_is_migrated_to_entries(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statements in sqlite_schema.MIGRATIONS[:4]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 4")
    db.execute("INSERT INTO records (collection, id, body, revision) VALUES ('notes', 'n1', '{\"_id\":\"n1\"}', 1)")
    db.commit()
    db.close()
    async with await SqliteStore.open(path) as store:
        assert (await store.execute(GetRecord("notes", "n1"))).record == {"_id": "n1"}  # type: ignore[union-attr]
        assert await store.execute(PutEntry("kvStore", "o", "p", "k", b"1", 10, 0))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)  # every later migration ran too
    db.close()


async def test_entries_and_tombstones_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path) as store:
        assert await store.execute(PutEntry("kvStore", "o", "p", "a", b'{"v":1}', 10, 0, "u1"))
        assert await store.execute(PutEntry("liveConfig", "", "", "game", b'"x"', 11, 0))
        assert await store.execute(PutEntry("kvStore", "o", "p", "gone", b"1", 12, 0))
        assert await store.execute(DeleteEntry("kvStore", "o", "p", "gone", 13, 12, "u2"))
        await store.execute(InsertRecord("kvStore", {"_id": "r"}))  # a record collection is another table
    async with await SqliteStore.open(path, synchronous="FULL") as store:
        assert await store.execute(GetEntry("kvStore", "o", "p", "a")) == Entry("a", b'{"v":1}', 10, "u1")
        assert await store.execute(GetEntry("liveConfig", "", "", "game")) == Entry("game", b'"x"', 11)
        assert await store.execute(GetEntry("kvStore", "o", "p", "gone")) == Entry("gone", None, 13, "u2")
        assert [e.id for e in await store.execute(ListEntries("kvStore", "o", "p"))] == ["a"]


class _Recording:
    """A connection that remembers the statements it ran."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.statements: list[tuple[str, list[object]]] = []

    def execute(self, sql: str, params: list[object]) -> sqlite3.Cursor:
        self.statements.append((sql, params))
        return self.db.execute(sql, params)


def test_listing_seeks_a_range_of_the_index(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "plan.db")
    for statements in sqlite_schema.MIGRATIONS:
        for statement in statements:
            db.execute(statement)
    for prefix, after in [("a", ""), ("a", "a:5"), ("", "m"), ("", "")]:
        recording = _Recording(db)
        sqlite_operations._list_entries(recording, ListEntries("kvStore", "", "", prefix, after, 10))  # type: ignore[arg-type]
        [(sql, params)] = recording.statements
        plan = " ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
        if prefix or after:
            assert "id>?" in plan.replace(" ", ""), plan


def test_prefix_ends() -> None:
    end = sqlite_operations._prefix_end
    assert end("a:") == "a;"
    assert end("a\U0010ffff") == "b"
    assert end("\U0010ffff") is None
    assert end("\ud7ff") == "\ue000"
