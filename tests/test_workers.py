"""``satchel serve --workers N`` as an operator runs it (issue 15 part 4;
``transports/workers.py``; README, "Running several processes").

Two workers on one port, on a PostgreSQL schema of their own and Redis:
fresh connections are answered by both (``/health`` says which pid
answered); a REST write through one worker reaches a websocket held by the
other; both workers hold the datagram port and every inbox datagram from
many sources is answered and stored; kill -9 of a worker leaves the port serving, and the supervisor
starts a new one; SIGTERM to the supervisor stops every worker. On the
embedded SQLite store (or without a broker) the command refuses, naming
what it needs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Iterator

import pytest
from websockets.sync.client import connect

from satchel.protocol.inbox.datagrams import decode_answer, encode_request

from multinode_harness import require_broker, store_url, wait_for
from postgres_harness import drop_schemas, require_postgres, schema_prefix
from server_process import Http, ServerProcess

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    require_postgres()
    broker = require_broker("redis")
    prefix = schema_prefix()
    server = None
    try:
        store = store_url(f"{prefix}workers")
        server = ServerProcess(tmp_path_factory.mktemp("workers"), extra=[
            "--workers", "2", "--store", store, "--broker", f"{broker}?prefix=t{os.urandom(6).hex()}"])
        yield server
    finally:
        if server is not None:
            server.stop()
        drop_schemas(prefix)


def health_pid(port: int) -> int:
    """The pid that answers ``/health`` on a fresh connection."""
    connection = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)["pid"]
    finally:
        connection.close()


def children(pid: int) -> set[int]:
    """The live (not zombie) children of ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def holder(server_port: int, client_port: int, pids: set[int]) -> int:
    """Which of ``pids`` holds the server side of the loopback connection
    from ``client_port`` (/proc/net/tcp's inode, then each pid's fds)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inode = fields[9]
    assert inode is not None, "the connection is not in /proc/net/tcp"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def test_without_postgresql_and_a_broker_the_command_refuses_and_says_what_it_needs(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "satchel.transports", "serve", "--data-dir", str(tmp_path), "--port", "0"]
    cases = [
        (["--workers", "2"], {}),
        ([], {"SATCHEL_WORKERS": "3"}),
        (["--workers", "2", "--store", "postgresql://127.0.0.1/x"], {}),
    ]
    for extra, env in cases:
        done = subprocess.run([*command, *extra], env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=20)
        assert done.returncode == 2, done
        assert "--store postgresql://" in done.stderr and "--broker redis://" in done.stderr, done.stderr
        assert "SQLite" in done.stderr
    done = subprocess.run([*command, "--workers", "0"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "at least 1" in done.stderr


def test_a_port_another_process_holds_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "satchel.transports", "serve", "--data-dir", str(tmp_path), "--port", str(port),
             "--workers", "2", "--store", "postgresql://127.0.0.1/none", "--broker", "redis://127.0.0.1:6379"],
            capture_output=True, text=True, timeout=20)
    assert done.returncode == 2, done
    assert f"cannot bind 127.0.0.1:{port}" in done.stderr and "Worker" not in done.stderr


def test_fresh_connections_are_answered_by_both_workers(workers: ServerProcess) -> None:
    pids = {health_pid(workers.port) for _ in range(40)}
    assert len(pids) == 2, pids
    assert pids == children(workers.process.pid)
    assert workers.process.pid not in pids


def test_a_write_through_one_worker_reaches_a_websocket_on_the_other(workers: ServerProcess) -> None:
    reader = Http(workers)
    reader.login("reader@example.com", PASSWORD)
    pids = children(workers.process.pid)
    with connect(workers.ws_url, open_timeout=10, additional_headers={"Cookie": reader.cookie or ""}) as ws:
        assert '"connection"' in ws.recv(timeout=10)
        on = holder(workers.port, ws.socket.getsockname()[1], pids)
        writer = Http(workers)
        writer.login("writer@example.com", PASSWORD)
        # A keep-alive connection stays on the worker that accepted it: find one on the other.
        for _ in range(40):
            status, body, _ = writer.request("GET", "/health", key=None)
            if body["pid"] != on:
                break
            cookie = writer.cookie
            writer.close()
            writer = Http(workers)
            writer.cookie = cookie
        assert body["pid"] != on
        collection = f"workers{os.urandom(3).hex()}"
        deadline = time.monotonic() + 10
        while True:  # the reader's worker follows the collections on the broker a few ms after it connects
            status, record, _ = writer.request("POST", f"/{collection}", {"n": 1})
            assert status == 200, record
            try:
                while True:
                    frame = json.loads(ws.recv(timeout=0.3))
                    if frame.get("collection") == collection:
                        break
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the write never reached the other worker's websocket"
        assert frame["action"] == "create" and frame["response"]["_id"] == record["_id"]
        assert writer.request("GET", "/health", key=None)[1]["pid"] == body["pid"] != on
        writer.close()
    reader.close()


def _sockets_on(port: int, table: str) -> set[str]:
    """The inodes of the sockets bound to ``port`` in /proc/net/``table``."""
    inodes = set()
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def _owners(inodes: set[str], pids: set[int]) -> set[int]:
    owners = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes:
                    owners.add(pid)
            except OSError:
                continue
    return owners


def test_every_worker_answers_inbox_datagrams_on_the_port(workers: ServerProcess) -> None:
    """Each worker binds the datagram port with SO_REUSEPORT; datagrams from
    many sources are all answered, and every message is stored once."""
    pids = children(workers.process.pid)
    assert _owners(_sockets_on(workers.port, "udp"), pids) == pids
    read_token, write_token = os.urandom(16).hex(), os.urandom(16).hex()
    status, body, _ = Http(workers).request("PUT", f"/backend/documents/{read_token}", {"#messages": {}}, key=None,
                                            headers={"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
    assert status == 200, body
    ids = [f"{n:016x}" for n in range(1, 21)]
    for message_id in ids:  # one socket each: 20 source ports, spread over the workers by the kernel
        datagram = encode_request(write_token, message_id, {"#": 1, "t": 1}, timestamp_ms=time.time_ns() // 1_000_000,
                                  nonce=os.urandom(8))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(datagram, ("127.0.0.1", workers.port))
            assert decode_answer(sock.recv(64), write_token, datagram) == "M"
    status, document, _ = Http(workers).request("GET", f"/backend/documents/{read_token}", key=None)
    assert status == 200, document
    assert sorted(document["#messages"]) == ids, document


def test_kill_9_of_a_worker_leaves_the_port_serving_and_it_is_restarted(workers: ServerProcess) -> None:
    before = children(workers.process.pid)
    assert len(before) == 2
    victim, survivor = sorted(before)
    os.kill(victim, signal.SIGKILL)
    # Reaped: every thread of it gone, its listener closed. (Until then the kernel
    # may still queue a connection on it, which is reset: README, "One machine, N workers".)
    wait_for(lambda: any("exited with signal 9" in line for line in workers.output), 5, "the worker's death")
    # Every fresh connection from now on is answered, by the survivor until the new worker is up.
    answered = [health_pid(workers.port) for _ in range(20)]
    assert set(answered) <= {survivor} | children(workers.process.pid)
    wait_for(lambda: any("restarted" in line for line in workers.output), 10, "the restart")
    now = wait_for(lambda: (lambda c: c if len(c) == 2 and victim not in c else None)(children(workers.process.pid)),
                   10, "a new worker")
    newcomer = (now - {survivor}).pop()
    wait_for(lambda: newcomer in {health_pid(workers.port) for _ in range(20)}, 15, "the new worker answering")
    assert any("exited with signal 9" in line and "restarting in 0.1 s" in line for line in workers.output)
    # Dead again within 10 s of its start: the next restart waits twice as long.
    os.kill(newcomer, signal.SIGKILL)
    wait_for(lambda: any("restarting in 0.2 s" in line for line in workers.output), 5, "the doubled delay")


def test_sigterm_to_the_supervisor_stops_every_worker(workers: ServerProcess) -> None:
    wait_for(lambda: len(children(workers.process.pid)) == 2, 10, "two workers")
    pids = children(workers.process.pid)
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(15) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
