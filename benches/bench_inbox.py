"""How many inbox messages per second the core merges from UDP datagrams,
in process: each datagram is decoded, authenticated, replay-checked and
merged by ``handle_datagram``, run by the reference server's ``Runner``
against a durable SqliteStore (and MemoryStore, the core's own cost, for
comparison). No sockets: this measures the core and the store, not the
network.

The load is a fleet of sensors, each updating its own message in an inbox
with an ever higher revision, so every datagram is a real write and the
documents keep their size from one measurement to the next. Two layouts:
many small inboxes, and one inbox that all the senders share - the case
that made the store apply messages itself (``ApplyMessage``) instead of
the core writing with a compare-and-swap, under which concurrent senders
to one inbox retried and, at 256 tasks, starved.

Run: python benches/bench_inbox.py
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import trio

from satchel.protocol import inbox
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest
from satchel.protocol.inbox.datagrams import decode_answer, encode_request
from satchel.storage_backends.base import Store
from satchel.storage_backends.memory import MemoryStore
from satchel.storage_backends.sqlite import SqliteStore
from satchel.transports.runner import Runner

TASK_COUNTS = (1, 16, 256)
#: (inboxes, senders per inbox)
LAYOUTS = ((64, 8), (1, 512))
MESSAGES = 8_000  # per measurement; a single task sends a quarter

_revisions = itertools.count(1)


def _environment() -> Environment:
    ids = itertools.count()
    return Environment(now_ms=lambda: time.time_ns() // 1_000_000, new_id=lambda: f"{next(ids):024x}", new_token=lambda: "unused")


def _tokens(layout: int, n: int) -> tuple[str, str]:
    """The read and write token of inbox ``n`` of a layout."""
    return f"{layout:08x}{n:024x}", f"{layout + 1000:08x}{n:024x}"


async def _create_inboxes(runner: Runner, layout: int, inboxes: int) -> None:
    env, config = _environment(), inbox.InboxConfig()
    for n in range(inboxes):
        read, write = _tokens(layout, n)
        headers = [("write-token", write), ("derived-from", "0"), ("revision", "1")]
        request = HttpRequest("PUT", f"/backend/documents/{read}", headers, b'{"title": "a sensor inbox", "#messages": {}}')
        outcome = await runner.run(inbox.handle_request(request, config, env))
        assert outcome.response.status == 200, outcome.response


def _datagrams(layout: int, inboxes: int, senders: int, count: int) -> list[tuple[str, bytes]]:
    now = time.time_ns() // 1_000_000
    datagrams = []
    for n in range(count):
        sensor = n % (inboxes * senders)
        _, write = _tokens(layout, sensor % inboxes)
        message = {"#": next(_revisions), "type": "temperature", "value": 21.1, "sensor": sensor}
        datagram = encode_request(write, f"{sensor:016x}", message, timestamp_ms=now, nonce=os.urandom(8))
        datagrams.append((write, datagram))
    return datagrams


async def _rate(runner: Runner, datagrams: list[tuple[str, bytes]], tasks: int) -> tuple[float, int]:
    """(merges/s, datagrams not answered "M") for ``datagrams`` shared by ``tasks`` tasks."""
    env, config = _environment(), inbox.InboxConfig()
    guard = inbox.new_replay_guard(config, env.now_ms() - 1000)
    failed = 0

    async def run(task: int) -> None:
        nonlocal failed
        for write, datagram in datagrams[task::tasks]:
            outcome = await runner.run(inbox.handle_datagram(datagram, guard, config, env))
            if outcome.answer is None or decode_answer(outcome.answer, write, datagram) != "M":
                failed += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for task in range(tasks):
            nursery.start_soon(run, task)
    return len(datagrams) / (time.perf_counter() - started), failed


async def main() -> None:
    print(
        f"inbox merges from UDP datagrams, in process: trio {trio.__version__}, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)"
    )
    print(f"{'store':<13}{'inboxes x senders':>19}{'tasks':>7}{'merges/s':>11}{'failed':>8}")
    with tempfile.TemporaryDirectory() as directory:
        opens: list[tuple[str, Callable[[], Awaitable[Store]]]] = [
            ("MemoryStore", _memory_store),
            ("SqliteStore", lambda: SqliteStore.open(Path(directory) / "bench.db")),
        ]
        for name, open_store in opens:
            async with await open_store() as store:
                runner = Runner(store)
                for layout, (inboxes, senders) in enumerate(LAYOUTS):
                    await _create_inboxes(runner, layout, inboxes)
                    for tasks in TASK_COUNTS:
                        count = MESSAGES // 4 if tasks == 1 else MESSAGES
                        datagrams = _datagrams(layout, inboxes, senders, count)
                        rate, failed = await _rate(runner, datagrams, tasks)
                        shape = f"{inboxes} x {senders}"
                        print(f"{name:<13}{shape:>19}{tasks:>7}{rate:>11,.0f}{failed:>8}")


async def _memory_store() -> Store:
    return MemoryStore()


if __name__ == "__main__":
    trio.run(main)
