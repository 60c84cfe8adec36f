"""Every storage backend against the conformance suite, then what only
SQLite promises: data on disk survives a reopen and a kill -9, a failed write
fails alone inside its group commit, cancelling a waiter never loses or
doubles a write, and queries run inside SQLite (EXPLAIN QUERY PLAN, and a
count of the rows decoded in Python)."""

from __future__ import annotations

import contextlib
import itertools
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import pytest
import trio
import trio.testing

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import (
    DeleteSessions,
    GetRecord,
    GetSession,
    GetSetting,
    GetUser,
    GetUserByEmail,
    InsertRecord,
    InsertSession,
    InsertUser,
    ListCollections,
    ListRecords,
    PutSetting,
    QueryRecords,
    ReplaceRecord,
    Session,
    SetUserRole,
    StoredRecord,
    StoredSetting,
    TakeNumber,
    User,
    run_sync,
)
from satchel.protocol.query import parse_filter, parse_query
from satchel.storage_backends import sqlite as sqlite_backend
from satchel.storage_backends import sqlite_schema
from satchel.storage_backends import sqlite_operations
from satchel.storage_backends.conformance import CHECKS, MakeStore
from satchel.storage_backends.memory import MemoryStore
from satchel.storage_backends.sqlite import SCHEMA_VERSION, SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    paths = (tmp_path / f"store-{n}.db" for n in itertools.count())

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Any]:
        store = MemoryStore() if request.param == "memory" else await SqliteStore.open(next(paths))
        async with store:
            yield store

    return make


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_conformance(make_store: MakeStore, check: Any) -> None:
    await check(make_store)


def test_memory_store_runs_actions_synchronously() -> None:
    def action():  # the shape of a core action: yield operations, return an outcome
        yield InsertRecord("notes", {"_id": "n1", "text": "hi"})
        stored = yield GetRecord("notes", "n1")
        return stored.record["text"]

    assert run_sync(action(), MemoryStore().execute_sync) == "hi"


# -- SQLite ------------------------------------------------------------------------


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    alice = User("u1", "alice@example.com", "$argon2id$alice", "2020-01-01T00:00:00.000Z")
    session = Session("a" * 64, "u1", 123)
    async with await SqliteStore.open(path) as store:
        await store.execute(InsertRecord("notes", {"_id": "n1", "text": "first"}))
        await store.execute(ReplaceRecord("notes", {"_id": "n1", "text": "second"}, 1))
        await store.execute(InsertRecord("notes", {"_id": "n2", "text": "other"}))
        await store.execute(InsertUser(alice))
        await store.execute(InsertSession(session))
    with pytest.raises(trio.ClosedResourceError):
        await store.execute(GetRecord("notes", "n1"))

    async with await SqliteStore.open(path, synchronous="FULL") as store:
        assert await store.execute(GetRecord("notes", "n1")) == StoredRecord({"_id": "n1", "text": "second"}, 2)
        assert [record["_id"] for record in await store.execute(ListRecords("notes"))] == ["n1", "n2"]
        assert await store.execute(ListCollections()) == ["notes"]
        assert await store.execute(GetUserByEmail("ALICE@example.com")) == alice
        assert await store.execute(GetSession(session.token_hash)) == session
        # New records still come after the old ones.
        await store.execute(InsertRecord("notes", {"_id": "n0"}))
        assert [record["_id"] for record in await store.execute(ListRecords("notes"))] == ["n1", "n2", "n0"]


async def test_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path):
        pass
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        await SqliteStore.open(path)
    with pytest.raises(ValueError):
        await SqliteStore.open(tmp_path / "other.db", synchronous="OFF")


# The child acknowledges a write by printing its id, only after execute() returned.
_ACKNOWLEDGING_WRITER = """
import sys, trio
from satchel.protocol.operations import InsertRecord
from satchel.storage_backends.sqlite import SqliteStore

async def main(path):
    async with await SqliteStore.open(path) as store:
        async def insert_forever(writer):
            for n in range(10**9):
                record_id = f"{writer}-{n}"
                await store.execute(InsertRecord("acks", {"_id": record_id}))
                print(record_id, flush=True)
        async with trio.open_nursery() as nursery:
            for writer in range(8):
                nursery.start_soon(insert_forever, writer)

trio.run(main, sys.argv[1])
"""


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    lines = []
    with subprocess.Popen([sys.executable, "-c", _ACKNOWLEDGING_WRITER, str(path)], stdout=subprocess.PIPE, text=True) as child:
        try:
            for line in child.stdout:
                lines.append(line)
                if len(lines) >= 500:
                    break
        finally:
            child.send_signal(signal.SIGKILL)
            lines += child.stdout.readlines()  # acknowledged before the kill, still in the pipe
    # A line cut short by the kill was never fully acknowledged.
    acknowledged = {line.strip() for line in lines if line.endswith("\n")}
    assert len(acknowledged) >= 500

    async def stored_ids() -> set[str]:
        async with await SqliteStore.open(path) as store:
            return {record["_id"] for record in await store.execute(ListRecords("acks"))}

    assert acknowledged - trio.run(stored_ids) == set()


class _GatedWriter:
    """Holds the writer thread at the start of its next batch until released,
    so a test can line up writes behind it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[Any]] = []
        self._entered = threading.Event()
        self._released = threading.Event()
        apply_batch = sqlite_backend._apply_batch

        def gated_apply_batch(db: sqlite3.Connection, batch: list[Any]) -> None:
            self._entered.set()
            self._released.wait(timeout=30)  # a failing test must not hang the writer for ever
            self.batches.append([write.operation for write in batch])
            apply_batch(db, batch)

        monkeypatch.setattr(sqlite_backend, "_apply_batch", gated_apply_batch)

    async def wait_until_held(self) -> None:
        await trio.to_thread.run_sync(self._entered.wait)

    def release(self) -> None:
        self._released.set()


async def test_a_failed_write_fails_alone_in_its_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        await store.execute(InsertRecord("notes", {"_id": "taken", "text": "original"}))
        gate = _GatedWriter(monkeypatch)
        results: dict[str, Any] = {}

        async def insert(record_id: str) -> None:
            try:
                results[record_id] = await store.execute(InsertRecord("notes", {"_id": record_id, "text": "new"}))
            except LocalProtocolError as exc:
                results[record_id] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(insert, "first")
            await gate.wait_until_held()
            for n in range(10):
                nursery.start_soon(insert, f"before-{n}")
            nursery.start_soon(insert, "taken")
            for n in range(10):
                nursery.start_soon(insert, f"after-{n}")
            await trio.testing.wait_all_tasks_blocked()
            gate.release()

        assert [len(batch) for batch in gate.batches] == [1, 21]
        assert isinstance(results.pop("taken"), LocalProtocolError)
        assert set(results.values()) == {None}
        listed = await store.execute(ListRecords("notes"))
        assert listed[0] == {"_id": "taken", "text": "original"}
        assert len(listed) == 1 + len(results)


async def test_cancelling_a_waiter_never_loses_or_doubles_a_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await SqliteStore.open(tmp_path / "store.db") as store:
        gate = _GatedWriter(monkeypatch)
        returned: dict[str, Any] = {}

        async def insert(record_id: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                returned[record_id] = await store.execute(InsertRecord("notes", {"_id": record_id}))

        async with trio.open_nursery() as nursery:
            in_progress = await nursery.start(insert, "in-progress")
            await gate.wait_until_held()
            queued = await nursery.start(insert, "queued")
            await trio.testing.wait_all_tasks_blocked()
            in_progress.cancel()
            queued.cancel()
            await trio.testing.wait_all_tasks_blocked()
            # The queued write was withdrawn at once; the taken one is still awaited.
            assert queued.cancelled_caught
            assert not in_progress.cancelled_caught
            gate.release()

        # The taken write completed and its task was told so.
        assert returned == {"in-progress": None}
        assert [record["_id"] for record in await store.execute(ListRecords("notes"))] == ["in-progress"]
        assert [len(batch) for batch in gate.batches] == [1]


async def test_sequences_and_token_kinds_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    refresh = Session("r" * 64, "u1", 123, "refresh")
    async with await SqliteStore.open(path) as store:
        assert [await store.execute(TakeNumber("chats:c1")) for _ in range(3)] == [0, 1, 2]
        await store.execute(InsertSession(refresh))
    async with await SqliteStore.open(path) as store:
        assert await store.execute(TakeNumber("chats:c1")) == 3
        assert await store.execute(GetSession(refresh.token_hash)) == refresh
        assert await store.execute(DeleteSessions("u1", "refresh")) == 1


async def test_a_version_2_database_is_migrated_and_its_sessions_stay_cookie_sessions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statements in sqlite_schema.MIGRATIONS[:2]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.execute("INSERT INTO sessions (token_hash, user_id, expires_ms) VALUES (?, ?, ?)", ("o" * 64, "u1", 99))
    db.commit()
    db.close()
    async with await SqliteStore.open(path) as store:
        assert await store.execute(GetSession("o" * 64)) == Session("o" * 64, "u1", 99, "session")
        assert await store.execute(TakeNumber("fresh")) == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


# -- queries pushed down into SQLite (issue 11 part 4) -----------------------------------


def _explain(path: Path, sql: str, params: list[Any]) -> list[str]:
    db = sqlite3.connect(path)
    db.create_function("satchel_lower", 1, str.lower)
    try:
        return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        db.close()


async def _store_with_numbers(path: Path, count: int) -> None:
    # Written straight into the file: a store's schema, many rows, quickly.
    async with await SqliteStore.open(path):
        pass
    db = sqlite3.connect(path)
    rows = [("numbers", f"{n:06d}", f'{{"_id": "{n:06d}", "n": {n}, "tags": ["t{n % 7}"], "text": "row {n}"}}', 1) for n in range(count)]
    rows += [("other", f"{n:06d}", f'{{"_id": "{n:06d}", "n": {n}}}', 1) for n in range(count)]
    db.executemany("INSERT INTO records (collection, id, body, revision) VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()


async def test_query_records_runs_in_sqlite_through_the_collection_index(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await _store_with_numbers(path, 10)
    selective = QueryRecords("numbers", parse_query({"filter": {"n": {"_gte": 5}}, "limit": 3, "meta": "*"}),
                             permission=parse_filter({"tags": {"_contains": "t1"}}))
    statements = sqlite_operations._query_sql(selective)
    page = _explain(path, *statements["page"])
    # Only this collection's rows, in creation order straight from the index: no
    # sort, so LIMIT stops the scan after the third match.
    assert page == ["SEARCH records USING INDEX records_in_creation_order (collection=?)", "CORRELATED SCALAR SUBQUERY 1", "SCAN e VIRTUAL TABLE INDEX 3:"]
    assert _explain(path, *statements["total_count"])[0].startswith("SEARCH records USING INDEX records_in_creation_order")
    sorted_page = _explain(path, *sqlite_operations._query_sql(QueryRecords("numbers", parse_query({"sort": "-n", "search": "row"})))["page"])
    assert sorted_page[0] == "SEARCH records USING INDEX records_in_creation_order (collection=?)"
    assert "USE TEMP B-TREE FOR ORDER BY" in sorted_page  # a sort is done by SQLite, not in Python
    assert not any(step.startswith("SCAN records") for step in page + sorted_page)


async def test_a_selective_query_reads_only_its_page_into_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.db"
    await _store_with_numbers(path, 20_000)
    decoded: list[int] = []
    decode = sqlite_operations._decode
    monkeypatch.setattr(sqlite_operations, "_decode", lambda body: decoded.append(1) or decode(body))
    async with await SqliteStore.open(path) as store:
        query = parse_query({"filter": {"_or": [{"n": {"_eq": 19_990}}, {"n": {"_in": [19_995, 19_999, 7]}}]}, "limit": 2, "fields": "n", "meta": "filter_count"})
        started = trio.current_time()
        result = await store.execute(QueryRecords("numbers", query))
        pushed_down = trio.current_time() - started
        assert result.records == [{"n": 7}, {"n": 19_990}] and result.filter_count == 4
        assert len(decoded) == 2  # the two rows of the page; SQLite filtered the other 39,998

        decoded.clear()
        started = trio.current_time()
        everything = await store.execute(ListRecords("numbers"))
        in_python = [record for record in everything if record["n"] in (19_990, 19_995, 19_999, 7)][:2]
        read_all = trio.current_time() - started
        assert [{"n": record["n"]} for record in in_python] == result.records
        assert len(decoded) == 20_000
        print(f"QueryRecords {pushed_down * 1000:.1f} ms, ListRecords + filter in Python {read_all * 1000:.1f} ms")


async def test_settings_and_roles_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    alice = User("u1", "alice@example.com", "$argon2id$alice", "2020-01-01T00:00:00.000Z")
    async with await SqliteStore.open(path) as store:
        await store.execute(InsertUser(alice))
        assert await store.execute(SetUserRole("u1", "editor")) is True
        assert await store.execute(PutSetting("permissions", b'{"roles": {}}', 0)) is True
    async with await SqliteStore.open(path) as store:
        assert await store.execute(GetUser("u1")) == msgspec.structs.replace(alice, role="editor")
        assert await store.execute(GetSetting("permissions")) == StoredSetting(b'{"roles": {}}', 1)


async def test_a_version_3_database_is_migrated_and_its_users_keep_what_they_could_do(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statements in sqlite_schema.MIGRATIONS[:3]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO users (id, email, email_key, password_hash, created_at) VALUES ('u1', 'a@b.c', 'a@b.c', 'h', 't')")
    db.commit()
    db.close()
    async with await SqliteStore.open(path) as store:
        assert await store.execute(GetUser("u1")) == User("u1", "a@b.c", "h", "t", "authenticated")
        assert await store.execute(GetSetting("permissions")) is None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) and SCHEMA_VERSION >= 5  # 5: entries (seed 004)
    db.close()
