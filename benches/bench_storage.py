"""How fast SqliteStore writes and reads under trio, against the obvious
alternative measured in the same run: plain sqlite3 with one
``trio.to_thread`` hop (and one commit) per operation.

Run: python benches/bench_storage.py
"""

from __future__ import annotations

import itertools
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable

import msgspec
import trio

from satchel.protocol.operations import GetRecord, InsertRecord
from satchel.storage_backends.sqlite import SqliteStore

TASK_COUNTS = (1, 16, 256)
INSERTS = 20_000  # per measurement of SqliteStore; the baseline does a tenth
READS = 20_000
READABLE = 1_000  # records that the point reads pick from

_ids = itertools.count()


def _record() -> dict[str, object]:
    n = next(_ids)
    return {"_id": f"{n:024x}", "title": "a record of typical size", "done": False, "tags": ["a", "b"], "n": n}


async def _rate(operations: int, tasks: int, operate: Callable[[int, int], Awaitable[object]]) -> float:
    """Operations per second with ``tasks`` tasks sharing ``operations`` calls of ``operate(task, n)``."""

    async def run(task: int) -> None:
        for n in range(operations // tasks):
            await operate(task, n)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for task in range(tasks):
            nursery.start_soon(run, task)
    return operations // tasks * tasks / (time.perf_counter() - started)


class _ThreadHopPerOperation:
    """The baseline: every operation is its own to_thread hop and transaction."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA synchronous = NORMAL")  # the file is already in WAL mode
        self._lock = threading.Lock()  # one connection, used by many worker threads

    def _insert(self, record: dict[str, object]) -> None:
        body = msgspec.json.encode(record).decode()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO records (collection, id, body, revision) VALUES ('inserts', ?, ?, 1)", (record["_id"], body))
            self._db.execute("COMMIT")

    def _get(self, record_id: str) -> object:
        with self._lock:
            rows = self._db.execute("SELECT body, revision FROM records WHERE collection = 'reads' AND id = ?", (record_id,)).fetchall()
        return msgspec.json.decode(rows[0][0]), rows[0][1]

    async def insert(self, task: int, n: int) -> None:
        await trio.to_thread.run_sync(self._insert, _record())

    async def get(self, task: int, n: int) -> object:
        return await trio.to_thread.run_sync(self._get, f"{n % READABLE:024x}")


async def main() -> None:
    print(f"SqliteStore under trio {trio.__version__}, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, WAL, synchronous=NORMAL")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.db"
        async with await SqliteStore.open(path) as store:
            # The first ids of the run, so that a read can name one: f"{n:024x}".
            for _ in range(READABLE):
                await store.execute(InsertRecord("reads", _record()))
            baseline = _ThreadHopPerOperation(path)

            async def insert(task: int, n: int) -> None:
                await store.execute(InsertRecord("inserts", _record()))

            async def get(task: int, n: int) -> object:
                return await store.execute(GetRecord("reads", f"{n % READABLE:024x}"))

            print(f"{'':<14}{'tasks':>6}{'SqliteStore':>14}{'to_thread each':>16}{'ratio':>8}")
            for tasks in TASK_COUNTS:
                # One task cannot group anything: measure it on fewer inserts.
                ours = await _rate(INSERTS // 4 if tasks == 1 else INSERTS, tasks, insert)
                theirs = await _rate(INSERTS // 10, tasks, baseline.insert)
                print(f"{'inserts/s':<14}{tasks:>6}{ours:>14,.0f}{theirs:>16,.0f}{ours / theirs:>7.1f}x")
            for tasks in TASK_COUNTS[:2]:
                ours = await _rate(READS, tasks, get)
                theirs = await _rate(READS // 10, tasks, baseline.get)
                print(f"{'point reads/s':<14}{tasks:>6}{ours:>14,.0f}{theirs:>16,.0f}{ours / theirs:>7.1f}x")
            baseline._db.close()


if __name__ == "__main__":
    trio.run(main)
