"""``satchel serve --store postgresql://...``: the real server on the
PostgreSQL store. Every acknowledged write survives kill -9 of the server
(and with it of its connections to PostgreSQL), a restarted server serves
the same data and sessions, and a server refuses a schema newer than it
knows with a clear message.

The server's tables go in a schema of their own (libpq's ``options`` in the
URL set its ``search_path``), dropped at the end of the module."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import psycopg
import pytest
import trio
from psycopg import sql

from satchel.storage_backends.postgres import SCHEMA_VERSION, PostgresStore
from satchel.transports.cli import main

from postgres_harness import POSTGRES_URL, drop_schemas, require_postgres, schema_prefix
from server_process import Http, ServerProcess, wait_until


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    require_postgres()
    prefix = schema_prefix()
    try:
        yield prefix
    finally:
        drop_schemas(prefix)


def _store_url(schema: str) -> str:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options={quote(f'-c search_path={schema}')}"


def test_every_acknowledged_record_survives_kill_9(tmp_path: Path, prefix: str) -> None:
    store = _store_url(f"{prefix}durable")
    server = ServerProcess(tmp_path / "a", extra=["--store", store])
    setup = Http(server)
    setup.login("durable@example.com")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = Http(server, timeout=5)
        client.cookie = setup.cookie
        for n in range(5000):  # bounded; the kill ends it long before
            if stop.is_set():
                return
            try:
                status, record, _ = client.request("POST", "/durable", {"worker": worker, "n": n})
            except OSError:
                return
            if status == 200:
                with lock:
                    acknowledged.append(record["_id"])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acknowledged) >= 300, timeout=60)
    server.kill()  # SIGKILL, mid-load: its PostgreSQL connections drop with it
    stop.set()
    for thread in threads:
        thread.join(10)
    with lock:
        acked = set(acknowledged)

    # Another server (another data dir: nothing local is shared) on the same database.
    restarted = ServerProcess(tmp_path / "b", extra=["--store", store])
    try:
        reader = Http(restarted)
        reader.cookie = setup.cookie  # sessions live in PostgreSQL too
        status, records, _ = reader.request("GET", "/durable")
        assert status == 200
        stored = {record["_id"] for record in records}
        assert acked <= stored, f"{len(acked - stored)} acknowledged records lost"
        assert len(acked) >= 300
    finally:
        restarted.stop()


async def _create(schema: str) -> None:
    async with await PostgresStore.open(POSTGRES_URL, schema=schema):
        pass


def test_a_server_refuses_a_newer_schema(tmp_path: Path, prefix: str) -> None:
    schema = f"{prefix}newer"
    store = _store_url(schema)
    trio.run(_create, schema)
    with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}") as db:
        db.execute("INSERT INTO satchel_migrations (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    refused = subprocess.run(
        [sys.executable, "-m", "satchel.transports", "serve", "--port", "0", "--data-dir", str(tmp_path), "--store", store],
        capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert f"has schema version {SCHEMA_VERSION + 1}; this Satchel knows up to {SCHEMA_VERSION}" in refused.stderr


def test_a_store_that_is_not_a_postgresql_url_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--data-dir", str(tmp_path), "--store", "mysql://x/y"]) == 2
    assert "--store must be a postgresql:// URL" in capsys.readouterr().err
