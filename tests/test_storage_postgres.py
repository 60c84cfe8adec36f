"""The PostgreSQL store against the conformance suite, then what only it
promises: its schema is versioned and a newer one is refused, queries run in
PostgreSQL (EXPLAIN, and a count of the rows decoded in Python), a failed
write fails alone inside its batch. Last, the two-node checks
(``conformance_nodes``): two stores on one database at once, for PostgreSQL
and for SQLite (two stores on one file).

Each store lives in a PostgreSQL schema of its own, all of this module's
dropped at its end."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import psycopg
import pytest
import trio
import trio.testing

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import GetRecord, InsertRecord, ListRecords, QueryRecords
from satchel.protocol.query import parse_filter, parse_query
from satchel.storage_backends import postgres as postgres_backend
from satchel.storage_backends import postgres_operations
from satchel.storage_backends.base import StoreUnavailable
from satchel.storage_backends.conformance import CHECKS, MakeStore, check_generated_queries
from satchel.storage_backends.conformance_nodes import NODE_CHECKS, MakeNodes
from satchel.storage_backends.postgres import SCHEMA_VERSION, PostgresStore, SchemaTooNew
from satchel.storage_backends.sqlite import SqliteStore

from postgres_harness import FAST_URL, POSTGRES_URL, drop_schemas, require_postgres, schema_prefix


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    require_postgres()
    prefix = schema_prefix()
    try:
        yield prefix
    finally:
        drop_schemas(prefix)


_numbers = itertools.count()


@pytest.fixture
def make_store(prefix: str) -> MakeStore:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Any]:
        async with await PostgresStore.open(FAST_URL, schema=f"{prefix}{next(_numbers)}") as store:
            yield store

    return make


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_conformance(make_store: MakeStore, check: Any) -> None:
    if check is check_generated_queries:
        # Fewer examples than the suite's default (Hypothesis itself is most
        # of the cost); SATCHEL_POSTGRES_EXAMPLES=500 for a thorough run.
        await check(make_store, max_examples=int(os.environ.get("SATCHEL_POSTGRES_EXAMPLES", 40)))
    else:
        await check(make_store)


def _db(schema: str) -> psycopg.Connection:
    return psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}")


async def test_schema_is_versioned_and_a_newer_one_is_refused(prefix: str) -> None:
    schema = f"{prefix}versions"
    async with await PostgresStore.open(POSTGRES_URL, schema=schema):
        pass
    async with await PostgresStore.open(POSTGRES_URL, schema=schema):  # a second start migrates nothing
        pass
    with _db(schema) as db:
        assert db.execute("SELECT version FROM satchel_migrations ORDER BY version").fetchall() == [
            (n,) for n in range(1, SCHEMA_VERSION + 1)]
        db.execute("INSERT INTO satchel_migrations (version) VALUES (%s)", (SCHEMA_VERSION + 7,))
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 7}; this Satchel knows up to {SCHEMA_VERSION}"):
        await PostgresStore.open(POSTGRES_URL, schema=schema)


async def test_two_nodes_starting_at_once_migrate_once(prefix: str) -> None:
    schema = f"{prefix}racing"
    stores: list[PostgresStore] = []

    async def start() -> None:
        stores.append(await PostgresStore.open(POSTGRES_URL, schema=schema))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(start)
    for store in stores:
        await store.aclose()
    with _db(schema) as db:
        assert db.execute("SELECT count(*) FROM satchel_migrations").fetchone() == (SCHEMA_VERSION,)


def _numbers_table(schema: str, count: int) -> None:
    with _db(schema) as db:
        with db.cursor() as cursor:
            with cursor.copy("COPY records (collection, id, body, folded, revision) FROM STDIN") as copy:
                for n in range(count):
                    body = f'{{"_id": "{n:06d}", "n": {n}, "tags": ["t{n % 7}"], "text": "row {n}"}}'
                    copy.write_row(("numbers", f"{n:06d}", body, f'{{"_id": "{n:06d}", "text": "row {n}"}}', 1))
                    copy.write_row(("other", f"{n:06d}", f'{{"_id": "{n:06d}", "n": {n}}}', "{}", 1))
        db.execute("ANALYZE records")


async def test_a_selective_query_reads_only_its_page_into_python(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = f"{prefix}numbers"
    async with await PostgresStore.open(POSTGRES_URL, schema=schema) as store:
        _numbers_table(schema, 10_000)
        decoded: list[int] = []
        decode = postgres_operations._decode
        monkeypatch.setattr(postgres_operations, "_decode", lambda body: decoded.append(1) or decode(body))
        query = parse_query({"filter": {"_or": [{"n": {"_eq": 9_990}}, {"n": {"_in": [9_995, 9_999, 7]}}]},
                             "limit": 2, "fields": "n", "meta": "filter_count"})
        started = trio.current_time()
        result = await store.execute(QueryRecords("numbers", query))
        pushed_down = trio.current_time() - started
        assert result.records == [{"n": 7}, {"n": 9_990}] and result.filter_count == 4
        assert len(decoded) == 2  # the two rows of the page; PostgreSQL filtered the other 19,998

        decoded.clear()
        started = trio.current_time()
        everything = await store.execute(ListRecords("numbers"))
        in_python = [record for record in everything if record["n"] in (9_990, 9_995, 9_999, 7)][:2]
        read_all = trio.current_time() - started
        assert [{"n": record["n"]} for record in in_python] == result.records
        assert len(decoded) == 10_000
        print(f"QueryRecords {pushed_down * 1000:.1f} ms, ListRecords + filter in Python {read_all * 1000:.1f} ms")

        # The plan: an index scan in creation order (no sort), so LIMIT stops
        # the scan after the third match.
        statement, params = postgres_operations.query_sql(QueryRecords(
            "numbers", parse_query({"filter": {"n": {"_gte": 5}}, "limit": 3}), permission=parse_filter({"tags": {"_contains": "t1"}})))["page"]
        with _db(schema) as db:
            plan = "\n".join(row[0] for row in db.execute("EXPLAIN " + statement, params))
        assert "Index Scan" in plan and "Limit" in plan and "Sort" not in plan and "Seq Scan" not in plan, plan


async def test_a_failed_write_fails_alone_in_its_batch(make_store: MakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A record PostgreSQL refuses (a NUL in a text column) among good writes
    # of the same batch: the batch is rolled back and retried write by write.
    batches: list[int] = []
    run = postgres_backend._run_pipelined
    monkeypatch.setattr(postgres_backend, "_run_pipelined",
                        lambda db, batch, *args, **kwargs: batches.append(len(batch)) or run(db, batch, *args, **kwargs))
    async with make_store() as store:
        results: dict[str, Any] = {}

        async def insert(record_id: str) -> None:
            try:
                results[record_id] = await store.execute(InsertRecord("notes", {"_id": record_id}))
            except Exception as exc:
                results[record_id] = exc

        await store.execute(InsertRecord("notes", {"_id": "taken"}))
        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(insert, f"before-{n}")
            nursery.start_soon(insert, "bad\x00id")
            nursery.start_soon(insert, "taken")
            for n in range(10):
                nursery.start_soon(insert, f"after-{n}")
        assert isinstance(results.pop("bad\x00id"), psycopg.DataError)
        assert isinstance(results.pop("taken"), LocalProtocolError)
        assert set(results.values()) == {None}
        assert len(await store.execute(ListRecords("notes"))) == 21
        assert await store.execute(GetRecord("notes", "before-3")) is not None
        assert max(batches) > 1  # they did share a batch


# -- two nodes on one database ------------------------------------------------------


@pytest.fixture(params=["postgres", "sqlite"])
def make_nodes(request: pytest.FixtureRequest, prefix: str, tmp_path: Path) -> MakeNodes:
    """Two stores on one database: PostgreSQL (one schema), or SQLite (two
    stores, each with its own writer connection, on one file)."""
    files = (tmp_path / f"nodes-{n}.db" for n in itertools.count())

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[tuple[Any, Any]]:
        if request.param == "postgres":
            schema = f"{prefix}nodes{next(_numbers)}"
            opened = [await PostgresStore.open(FAST_URL, schema=schema) for _ in range(2)]
        else:
            path = next(files)
            opened = [await SqliteStore.open(path) for _ in range(2)]
        async with opened[0], opened[1]:
            yield opened[0], opened[1]

    return make


@pytest.mark.parametrize("check", NODE_CHECKS, ids=lambda check: check.__name__)
async def test_two_nodes(make_nodes: MakeNodes, check: Any) -> None:
    await check(make_nodes)


async def test_acknowledged_writes_survive_their_connections_being_killed(prefix: str) -> None:
    # pg_terminate_backend on every connection of the store, twice, under
    # load: writes in flight may fail (not acknowledged), every acknowledged
    # one is stored, and the store goes on by itself on new connections.
    name = f"{prefix}killed"
    url = POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + f"application_name={name}"
    acknowledged: set[str] = set()
    failed: list[Exception] = []
    async with await PostgresStore.open(url, schema=name) as store:

        async def write(worker: int) -> None:
            for n in range(100_000):
                record_id = f"{worker}-{n}"
                try:
                    await store.execute(InsertRecord("acks", {"_id": record_id}))
                except StoreUnavailable as exc:  # its connection was killed: not acknowledged
                    failed.append(exc)
                    continue
                acknowledged.add(record_id)
                if n % 5 == 0:
                    assert await store.execute(GetRecord("acks", record_id)) is not None

        def terminate() -> int:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
                return len(db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                      (name,)).fetchall())

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for worker in range(8):
                    nursery.start_soon(write, worker)
                for round in range(2):
                    target = len(acknowledged) + 200
                    while len(acknowledged) < target:
                        await trio.sleep(0.01)
                    assert await trio.to_thread.run_sync(terminate) >= 1
                target = len(acknowledged) + 200  # and it goes on
                while len(acknowledged) < target:
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        stored = {record["_id"] for record in await store.execute(ListRecords("acks"))}
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged writes lost"
    assert len(failed) < 50, failed[:3]
    print(f"{len(acknowledged)} acknowledged, {len(failed)} failed with their connection")


async def test_cancelling_a_waiter_never_loses_or_doubles_a_write(make_store: MakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer thread is held inside its first batch; a write queued behind
    # it is withdrawn when cancelled, the taken one completes and says so.
    entered, released = threading.Event(), threading.Event()
    batches: list[list[str]] = []
    run = postgres_backend._run_pipelined

    def gated(db: Any, batch: list[Any], *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("transaction"):  # the writer's batches, not the reads
            entered.set()
            released.wait(timeout=30)  # a failing test must not hang the writer for ever
            batches.append([request.operation.record["_id"] for request in batch])
        return run(db, batch, *args, **kwargs)

    monkeypatch.setattr(postgres_backend, "_run_pipelined", gated)
    async with make_store() as store:
        returned: dict[str, Any] = {}

        async def insert(record_id: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                returned[record_id] = await store.execute(InsertRecord("notes", {"_id": record_id}))

        async with trio.open_nursery() as nursery:
            in_progress = await nursery.start(insert, "in-progress")
            await trio.to_thread.run_sync(entered.wait)
            queued = await nursery.start(insert, "queued")
            await trio.testing.wait_all_tasks_blocked()
            in_progress.cancel()
            queued.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert queued.cancelled_caught  # withdrawn at once
            assert not in_progress.cancelled_caught  # taken: still awaited
            released.set()
        assert returned == {"in-progress": None}
        assert [record["_id"] for record in await store.execute(ListRecords("notes"))] == ["in-progress"]
        assert batches == [["in-progress"]]
