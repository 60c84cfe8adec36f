"""PostgresStore against SqliteStore in one run, in process, under trio, and
against the obvious way to use psycopg under trio: one ``trio.to_thread``
hop per operation on a pooled connection (STACK.md: ~4k queries/s).

Each figure: record inserts and get-by-id reads per second with 1, 16 and
256 tasks at once, and the median latency of one operation alone.
PostgreSQL commits with its defaults (``synchronous_commit=on``: a WAL
flush per commit, so an acknowledged write survives PostgreSQL's own crash);
SQLite with ``synchronous=NORMAL`` (survives the process, not power loss).

Run: python benches/bench_postgres.py [postgresql://127.0.0.1/test]
(tables in a schema of their own, dropped afterwards)
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import psycopg
import trio
from psycopg import sql
from psycopg_pool import ConnectionPool

from satchel.protocol.operations import GetRecord, InsertRecord
from satchel.storage_backends.postgres import PostgresStore
from satchel.storage_backends.sqlite import SqliteStore

TASK_COUNTS = (1, 16, 256)
OPERATIONS = 3_000
_ids = itertools.count()


def _record() -> dict[str, object]:
    n = next(_ids)
    return {"_id": f"{n:024x}", "title": "a record of typical size", "done": False, "tags": ["a", "b"], "n": n}


async def _rate(operations: int, tasks: int, operate: Callable[[int], Awaitable[object]]) -> float:
    counter = itertools.count()

    async def worker() -> None:
        for n in counter:
            if n >= operations:
                return
            await operate(n)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(worker)
    return operations / (time.perf_counter() - started)


async def _latency(operate: Callable[[int], Awaitable[object]], count: int = 200) -> float:
    times = []
    for n in range(count):
        started = time.perf_counter()
        await operate(n)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


class _ThreadPerOperation:
    """The baseline: psycopg_pool, one to_thread hop and one autocommit statement per operation."""

    def __init__(self, url: str, schema: str) -> None:
        self.pool = ConnectionPool(url, kwargs={"autocommit": True, "options": f"-c search_path={schema}"},
                                   min_size=4, max_size=8, open=True)
        with self.pool.connection() as db:
            db.execute("CREATE TABLE records (collection text, id text, body text, PRIMARY KEY (collection, id))")

    def _run(self, statement: str, params: tuple[Any, ...]) -> Any:
        with self.pool.connection() as db:
            return db.execute(statement, params).fetchall() if statement.startswith("SELECT") else db.execute(statement, params)

    async def execute(self, op: Any) -> Any:
        if isinstance(op, InsertRecord):
            return await trio.to_thread.run_sync(self._run, "INSERT INTO records VALUES (%s, %s, %s)",
                                                 (op.collection, op.record["_id"], str(op.record)))
        return await trio.to_thread.run_sync(self._run, "SELECT body FROM records WHERE collection = %s AND id = %s",
                                             (op.collection, op.id))

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.pool.close)


async def _measure(name: str, store: Any) -> dict[str, Any]:
    inserted: list[str] = []

    async def insert(n: int) -> None:
        record = _record()
        await store.execute(InsertRecord("bench", record))
        inserted.append(record["_id"])

    async def get(n: int) -> None:
        await store.execute(GetRecord("bench", inserted[n % len(inserted)]))

    figures: dict[str, Any] = {"store": name}
    figures["insert latency us"] = await _latency(insert)
    figures["get latency us"] = await _latency(get)
    for tasks in TASK_COUNTS:
        figures[f"inserts/s x{tasks}"] = await _rate(OPERATIONS, tasks, insert)
    for tasks in TASK_COUNTS:
        figures[f"gets/s x{tasks}"] = await _rate(OPERATIONS * 3, tasks, get)
    return figures


async def main(url: str) -> None:
    schema = "satchel_bench_postgres"
    with psycopg.connect(url, autocommit=True) as db:
        for name in (schema, f"{schema}_baseline"):
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    results = []
    try:
        with tempfile.TemporaryDirectory() as directory:
            async with await SqliteStore.open(Path(directory) / "bench.db") as sqlite_store:
                results.append(await _measure("SqliteStore", sqlite_store))
        async with await PostgresStore.open(url, schema=schema) as postgres_store:
            results.append(await _measure("PostgresStore", postgres_store))
        # The store's own cost, without the WAL flush per commit (acknowledged
        # writes then survive Satchel's kill -9, not PostgreSQL's crash).
        no_flush = url + ("&" if "?" in url else "?") + "options=-c%20synchronous_commit%3Doff"
        async with await PostgresStore.open(no_flush, schema=schema) as postgres_store:
            results.append(await _measure("PostgresStore, synchronous_commit=off", postgres_store))
        baseline = await trio.to_thread.run_sync(_ThreadPerOperation, url, f"{schema}_baseline")
        try:
            results.append(await _measure("psycopg, to_thread per op", baseline))
        finally:
            await baseline.aclose()
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            for name in (schema, f"{schema}_baseline"):
                db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in results:
        print("| " + " | ".join(row[key] if isinstance(row[key], str) else f"{row[key]:,.0f}" for key in keys) + " |")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "postgresql://127.0.0.1/test")
