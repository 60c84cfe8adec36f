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

Two more measurements (issue 13):

- batches: the same datagrams handed to ``handle_datagrams`` in batches of
  1, 16 and 256, as the UDP endpoint reads them - one ``ApplyMessages``
  (one group commit) per batch - with the CPU time per merge (all threads
  of the process: the SQLite writer's too), which a shared machine's load
  distorts less than the wall clock;
- merge cost as an inbox grows: one inbox holding 10, 1,000 and 10,000
  messages, each merge replacing one of them with a higher revision, by
  the store (ApplyMessage one at a time, and ApplyMessages in batches of
  256), beside what the whole-document merge that messages-as-rows replaced
  costs on the same document (``apply_message``, the definition).

Run: python benches/bench_inbox.py             (everything, ~1 min)
     python benches/bench_inbox.py --only growth
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
    guard = inbox.new_replay_guard(config, env.now_ms() - 30_000)  # the datagrams were signed before it
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


def _cpu() -> float:
    return time.process_time()


async def _batches(runner: Runner, name: str) -> None:
    env, config = _environment(), inbox.InboxConfig()
    layout = 7
    await _create_inboxes(runner, layout, 64)
    for size in (1, 16, 256):
        datagrams = [d for _, d in _datagrams(layout, 64, 8, 2_000 if size == 1 else 12_000)]
        guard = inbox.new_replay_guard(config, env.now_ms() - 30_000)  # the datagrams were signed before it
        started, cpu = time.perf_counter(), _cpu()
        for start in range(0, len(datagrams), size):
            outcomes = await runner.run(inbox.handle_datagrams(datagrams[start : start + size], guard, config, env))
            assert all(outcome.answer is not None for outcome in outcomes)
        wall, cpu = time.perf_counter() - started, _cpu() - cpu
        print(f"{name:<13}{size:>7}{len(datagrams) / wall:>11,.0f}{cpu / len(datagrams) * 1e6:>13.1f}")


GROWTH = (10, 1_000, 10_000)


async def _growth(runner: Runner, name: str, layout: int) -> None:
    from satchel.protocol.inbox.documents import apply_message
    from satchel.protocol.operations import ApplyMessage, ApplyMessages, GetDocument, MessageEdit

    env, config = _environment(), inbox.InboxConfig(max_document_bytes=64 * 1024 * 1024)
    for n, size in enumerate(GROWTH):
        read, write = _tokens(layout, n)
        headers = [("write-token", write), ("derived-from", "0"), ("revision", "1")]
        request = HttpRequest("PUT", f"/backend/documents/{read}", headers, b'{"title": "one inbox", "#messages": {}}')
        assert (await runner.run(inbox.handle_request(request, config, env))).response.status == 200
        write_key = inbox.tokens.document_id(bytes.fromhex(write)).hex()
        ids = [f"{i:016x}" for i in range(size)]

        def edit(i: int) -> MessageEdit:
            return MessageEdit(write_key, ids[i % size], b'{"#": %d, "type": "temperature", "value": 21.1}' % next(_revisions))

        for start in range(0, size, 1000):
            await runner.store.execute(ApplyMessages(tuple(edit(i) for i in range(start, min(size, start + 1000))), 0, config.max_document_bytes))
        document = await runner.store.execute(GetDocument(read))
        count = 2_000
        started, cpu = time.perf_counter(), _cpu()
        for i in range(count):
            e = edit(i * 7919)
            written = await runner.store.execute(ApplyMessage(write_key, e.message_id, e.message, 0, config.max_document_bytes))
            assert written.document is not None
        one = (time.perf_counter() - started) / count * 1e6, (_cpu() - cpu) / count * 1e6
        started, cpu = time.perf_counter(), _cpu()
        for start in range(0, 10 * 256, 256):
            await runner.store.execute(ApplyMessages(tuple(edit(i * 7919) for i in range(start, start + 256)), 0, config.max_document_bytes))
        batched = (time.perf_counter() - started) / 2560 * 1e6, (_cpu() - cpu) / 2560 * 1e6
        rounds = max(3, 3000 // size)
        started = _cpu()
        for i in range(rounds):
            e = edit(i * 7919)
            assert apply_message(document, e.message_id, e.message, 0, config.max_document_bytes).document is not None
        whole = (_cpu() - started) / rounds * 1e6
        print(f"{name:<13}{size:>9,}{len(document.content) / 1024:>9,.0f} KB"
              f"{one[0]:>9.1f}{one[1]:>9.1f}{batched[0]:>9.1f}{batched[1]:>9.1f}{whole:>11.1f}")


async def main() -> None:
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else ["rates", "batches", "growth"]
    if "batches" in only or "growth" in only:
        await _more(only)
    if "rates" not in only:
        return
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


async def _more(only: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        opens: list[tuple[str, Callable[[], Awaitable[Store]]]] = [
            ("MemoryStore", _memory_store),
            ("SqliteStore", lambda: SqliteStore.open(Path(directory) / "more.db")),
        ]
        if "batches" in only:
            print("UDP datagrams handed to handle_datagrams in batches (64 inboxes x 8 senders), in process")
            print(f"{'store':<13}{'batch':>7}{'merges/s':>11}{'cpu us/merge':>13}")
            for name, open_store in opens:
                async with await open_store() as store:
                    await _batches(Runner(store), name)
        if "growth" in only:
            print("one inbox of N messages, one message replaced per merge: us per merge (wall, cpu),")
            print("by the store one at a time and in batches of 256, and the whole-document merge it replaced (cpu)")
            print(f"{'store':<13}{'messages':>9}{'document':>12}{'one':>9}{'cpu':>9}{'batch':>9}{'cpu':>9}{'whole doc':>11}")
            for layout, (name, open_store) in enumerate(opens):
                async with await open_store() as store:
                    await _growth(Runner(store), name, 20 + layout)


if __name__ == "__main__":
    trio.run(main)
