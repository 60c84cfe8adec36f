"""Losing the broker does not take a node down: two real ``satchel serve``
processes on a private Redis or NATS server (started here on a free port),
the broker killed with SIGKILL and started again - both nodes stay up,
reconnect and subscribe again by themselves, and fan-out across them
resumes (issue 15 part 5, as far as the bus goes: what is published while
the broker is away is kept and sent once it is back when the publishing
node is up, but pub/sub keeps nothing for a node not yet reconnected, so
each node closes its clients with 1012 once it follows its topics again:
``test_faults_broker``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import multinode_harness
from multinode_harness import Cluster
from postgres_harness import drop_schemas, require_postgres, schema_prefix
from test_multinode_fanout import backpack, session


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A private broker process on ``port``."""

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


@pytest.fixture(params=["redis", "nats"])
def private(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Broker, Cluster]]:
    kind = request.param
    binary = "redis-server" if kind == "redis" else "nats-server"
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        pytest.skip(f"no {binary} on this machine")
    require_postgres()
    broker = Broker(kind, _free_port())
    monkeypatch.setitem(multinode_harness.BROKERS, kind, f"{kind}://127.0.0.1:{broker.port}")
    prefix = schema_prefix()
    cluster = None
    try:
        cluster = Cluster(tmp_path, kind, f"{prefix}restart")
        yield broker, cluster
    finally:
        if cluster is not None:
            cluster.stop()
        broker.kill()
        drop_schemas(prefix)


def test_a_broker_restart_leaves_both_nodes_up_and_fanout_resumes(private: tuple[Broker, Cluster]) -> None:
    broker, cluster = private
    a, b = cluster.nodes
    reader = session(a, "restart-r@example.com")
    ws = backpack(a, reader)
    writer = session(b, "restart-w@example.com")

    def crosses(tag: str) -> int:
        """Write through B until A's client hears one; how many writes that took."""
        for attempt in range(150):
            assert writer.request("POST", "/restarts", {"tag": tag, "attempt": attempt})[0] == 200
            try:
                ws.next(lambda f: f.get("collection") == "restarts" and f["response"]["tag"] == tag, timeout=0.2)
                return attempt
            except AssertionError:
                continue
        raise AssertionError(f"{tag}: nothing crossed")

    try:
        crosses("before")
        broker.kill()
        # Writes go on while the broker is away: B answers them from the store.
        assert writer.request("POST", "/restarts", {"tag": "away"})[0] == 200
        time.sleep(0.5)
        broker.restart()
        # Once A follows its topics again it closes its clients with 1012 (what
        # B committed meanwhile may not have reached A: test_faults_broker);
        # the client reconnects, as told.
        multinode_harness.wait_for(lambda: ws.ws.close_code is not None, timeout=20, what="A's 1012")
        assert ws.ws.close_code == 1012
        ws = backpack(a, reader)
        crosses("after")
        assert a.alive() and b.alive()
        assert any("broker" in line.lower() and ("lost" in line or "retry" in line) for line in a.output + b.output)
    finally:
        ws.close()
