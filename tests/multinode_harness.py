"""Several real ``satchel serve`` processes on one PostgreSQL database and one
broker, as an operator runs them (README, "Running several processes").

``Cluster`` starts the nodes in subprocesses, each with its own data dir and
port, on one PostgreSQL schema made for it and one broker URL whose topic
prefix is its own (so modules and runs sharing the broker never hear each
other). Redis at ``SATCHEL_TEST_REDIS`` (default ``redis://127.0.0.1:6379``)
and NATS at ``SATCHEL_TEST_NATS`` (default ``nats://127.0.0.1:4222``); without
them the tests skip, except on CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from psycopg import sql

from postgres_harness import POSTGRES_URL, drop_schemas, require_postgres, schema_prefix
from server_process import ServerProcess

BROKERS = {
    "redis": os.environ.get("SATCHEL_TEST_REDIS", "redis://127.0.0.1:6379"),
    "nats": os.environ.get("SATCHEL_TEST_NATS", "nats://127.0.0.1:4222"),
}
TRAFFIC = re.compile(r"broker traffic (\{.*\})")


def require_broker(kind: str) -> str:
    """The URL of the ``kind`` broker; skip (fail on CI) when it does not answer."""
    url = BROKERS[kind]
    split = urlsplit(url)
    try:
        socket.create_connection((split.hostname or "127.0.0.1", split.port or {"redis": 6379, "nats": 4222}[kind]),
                                 timeout=3).close()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no {kind} at {url}: {exc}")
    return url


def store_url(schema: str) -> str:
    """A fresh PostgreSQL schema and the ``--store`` URL that keeps its tables
    there. Commits do not wait for the WAL flush: these tests never kill
    PostgreSQL, and an fsync per commit on a disk shared by test runs is what
    would make them slow (as ``postgres_harness.FAST_URL`` says)."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options={quote(f'-c search_path={schema} -c synchronous_commit=off')}"


class Node(ServerProcess):
    """One ``satchel serve`` of a cluster."""

    def traffic(self) -> dict[str, Any]:
        """The latest broker traffic it logged (once a second while it changes)."""
        for line in reversed(self.output):
            match = TRAFFIC.search(line)
            if match:
                return json.loads(match.group(1))
        return {}


class Cluster:
    """``count`` nodes on the schema ``schema`` and the ``kind`` broker."""

    def __init__(self, tmp: Path, kind: str, schema: str, count: int = 2) -> None:
        self.kind = kind
        self.tmp = tmp
        self.prefix = f"t{secrets.token_hex(6)}"
        self.broker = f"{require_broker(kind)}?prefix={self.prefix}"
        self.store = store_url(schema)
        started: list[Node | BaseException | None] = [None] * count

        def start(n: int) -> None:
            try:
                started[n] = Node(tmp / f"node{n}", extra=["--store", self.store, "--broker", self.broker])
            except BaseException as exc:
                started[n] = exc

        # Started together: each waits for PostgreSQL and the broker.
        threads = [threading.Thread(target=start, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.nodes: list[Node] = [node for node in started if isinstance(node, Node)]
        failed = [node for node in started if not isinstance(node, Node)]
        if failed:
            self.stop()
            raise RuntimeError(f"a node did not start: {failed[0]!r}")

    def stop(self) -> None:
        """SIGINT to every node at once, then wait (SIGKILL past 10 s)."""
        threads = [threading.Thread(target=node.stop) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition", every: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A private broker process (redis-server or nats-server) on ``port``,
    to kill and start again."""

    def __init__(self, kind: str, port: int) -> None:
        self.kind, self.port = kind, port
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        if self.kind == "redis":
            command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        else:
            command = ["nats-server", "-a", "127.0.0.1", "-p", str(self.port)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return process
            except OSError:
                if time.monotonic() > deadline:
                    process.kill()
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def restart(self) -> None:
        self.process = self._start()


@contextlib.contextmanager
def private_broker_cluster(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           label: str) -> Iterator[tuple[Broker, "Cluster"]]:
    """Two nodes on a fresh PostgreSQL schema and a private ``kind`` broker
    of their own (skipped where the broker's binary is absent), to restart
    under them; everything stopped and dropped afterwards."""
    binary = "redis-server" if kind == "redis" else "nats-server"
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        pytest.skip(f"no {binary} on this machine")
    require_postgres()
    broker = Broker(kind, free_port())
    monkeypatch.setitem(BROKERS, kind, f"{kind}://127.0.0.1:{broker.port}")
    prefix = schema_prefix()
    cluster = None
    try:
        cluster = Cluster(tmp_path, kind, f"{prefix}{label}")
        yield broker, cluster
    finally:
        if cluster is not None:
            cluster.stop()
        broker.kill()
        drop_schemas(prefix)
