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

import time
from pathlib import Path
from typing import Iterator

import pytest

from multinode_harness import Broker, Cluster, private_broker_cluster, wait_for
from multinode_clients import backpack, session


@pytest.fixture(params=["redis", "nats"])
def private(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Broker, Cluster]]:
    with private_broker_cluster(request.param, tmp_path, monkeypatch, "restart") as pair:
        yield pair


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
        wait_for(lambda: ws.ws.close_code is not None, timeout=20, what="A's 1012")
        assert ws.ws.close_code == 1012
        ws = backpack(a, reader)
        crosses("after")
        assert a.alive() and b.alive()
        assert any("broker" in line.lower() and ("lost" in line or "retry" in line) for line in a.output + b.output)
    finally:
        ws.close()
