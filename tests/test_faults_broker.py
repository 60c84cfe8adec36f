"""A broker restart under load, and what the subscribers are told (issue 15
part 5): two real ``satchel serve`` nodes on a private Redis or NATS
(started here on a free port), a writer committing through B the whole
time, subscribers of every websocket protocol on A. The broker is killed
and started again. Pub/sub keeps nothing for a node that is not subscribed,
so what B committed while A was away from the broker may never reach A:
it is SIGNALLED - once A follows its topics again, A closes each realtime
connection with 1012 "Service Restart" (an Engine.IO session ends) - and a
client that reconnects reads the current state from the store and hears
every later write. ``test_multinode_broker_restart`` checks that both nodes
reconnect by themselves and fan-out resumes; this one checks the signal,
the resync and that no acknowledged write is lost.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from multinode_harness import Broker, Cluster, private_broker_cluster, wait_for
from server_process import Http
from multinode_clients import PASSWORD, Frames, asnity_api, backpack, bearer, resources, session, warm_up

#: How long a node may take to reconnect (coredis backs off exponentially, from 0.1 s).
RECONNECT = 20


@pytest.fixture(params=["redis", "nats"])
def private(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Broker, Cluster]]:
    with private_broker_cluster(request.param, tmp_path, monkeypatch, "resync") as pair:
        yield pair


def _close_code(ws: ClientConnection, timeout: float) -> int | None:
    """Read until the server closes ``ws``; its close code (None: still open at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = ws.recv(timeout=left)
        except TimeoutError:
            return None
        except ConnectionClosed:
            return ws.close_code
        if message == "2":
            ws.send("3")  # an Engine.IO ping
    return None


def _frames_close_code(frames: Frames, timeout: float) -> int | None:
    """The close code of a ``Frames`` client (its thread reads) once the server closed it."""
    deadline = time.monotonic() + timeout
    while frames.ws.close_code is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return frames.ws.close_code


def test_a_broker_restart_is_signalled_with_1012_and_reconnected_clients_resync_and_hear_later_writes(
        private: tuple[Broker, Cluster]) -> None:
    broker, cluster = private
    a, b = cluster.nodes
    collection = f"resync{secrets.token_hex(3)}"
    reader = session(a, f"r{secrets.token_hex(3)}@example.com")
    writer = session(b, f"w{secrets.token_hex(3)}@example.com")
    email = f"d{secrets.token_hex(3)}@example.com"
    session(a, email).close()
    token = bearer(a, email)
    # A's subscribers, one per protocol.
    bp = backpack(a, reader)
    warm_up(lambda n: writer.request("POST", f"/{collection}", {"warm": n}), bp,
            lambda f: f.get("collection") == collection, "backpack")
    dx = Frames(f"ws://127.0.0.1:{a.port}/websocket")
    dx.send({"type": "auth", "access_token": token})
    assert dx.next()["status"] == "ok"
    dx.send({"type": "subscribe", "collection": collection, "uid": "s"})
    assert dx.next(lambda f: f.get("type") == "subscription")["event"] == "init"
    rs = resources(a, token)
    rs.send({"action": "subscribe", "resource": {"type": "kvStore", "id": f"resync:{collection}"}})
    rs.next(lambda f: "warning" in f or "data" in f)
    sio_email = f"s{secrets.token_hex(3)}@example.com"
    asnity_api(a, "POST", "/api/user/auth/signup", {"id": sio_email, "password": PASSWORD, "nickname": "resync"})
    sio_token = asnity_api(a, "POST", "/api/user/auth/signin", {"id": sio_email, "password": PASSWORD})["accessToken"]
    community = asnity_api(a, "POST", "/api/community", {"name": "resync"}, sio_token)["_id"]
    sio = connect(f"ws://127.0.0.1:{a.port}/socket.io/?EIO=4&transport=websocket", open_timeout=10)
    assert sio.recv(timeout=10).startswith("0")
    sio.send(f"40/socket/commu-{community}," + json.dumps({"token": f"Bearer {sio_token}"}))
    assert sio.recv(timeout=10).startswith("40/")

    # Load: writes through B all along.
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        http = Http(b)
        http.cookie = writer.cookie
        n = 0
        while not stop.is_set():
            status, record, _ = http.request("POST", f"/{collection}", {"n": n})
            assert status == 200  # the store is up: the broker's absence never fails a write
            acknowledged.append(record["_id"])
            n += 1
            time.sleep(0.005)
        http.close()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(acknowledged) >= 10, what="writes before the restart")
        broker.kill()
        time.sleep(0.5)
        broker.restart()
        # The signal: every realtime connection of A (and of B) is closed with 1012.
        codes = {name: _frames_close_code(ws, RECONNECT) for name, ws in
                 (("backpack", bp), ("directus", dx), ("resources", rs))}
        assert codes == {"backpack": 1012, "directus": 1012, "resources": 1012}, (codes, "".join(a.output[-40:]))
        sio_code = _close_code(sio, RECONNECT)  # the Engine.IO session ends (a close packet, then the socket)
        assert sio_code is not None
        # The resync: a reconnected client reads everything committed so far from
        # the store, and hears what B commits afterwards (fan-out resumed).
        again = backpack(a, reader)
        try:
            warm_up(lambda n: writer.request("POST", f"/{collection}", {"late": n}), again,
                    lambda f: f.get("collection") == collection and "late" in f["response"], "after the restart")
            before = list(acknowledged)
            again.send({"action": "getAll", "collection": collection})
            listed = again.next(lambda f: f.get("action") == "getAll")["response"]
            assert set(before) <= {record["_id"] for record in listed}
            count = len(acknowledged)
            wait_for(lambda: len(acknowledged) >= count + 10, what="writes after the resync")
            expected = set(acknowledged[count:count + 10])
            heard: set[str] = set()
            while not expected <= heard:
                frame = again.next(lambda f: f.get("collection") == collection and "n" in f.get("response", {}))
                heard.add(frame["response"]["_id"])
        finally:
            again.close()
    finally:
        stop.set()
        thread.join(10)
        for ws in (bp, dx, rs):
            ws.close()
        sio.close()
    assert any("closed with 1012" in line for line in a.output), "A did not log the resync"
