"""Three real ``satchel serve`` nodes on loopback, one PostgreSQL schema and
one Redis (issue 15 part 5): a client of any node sees what is written or
broadcast through another, in every protocol - Backpack (REST writes and
websocket broadcasts), Socket.IO (Asnity chats emitted on a socket), the
Directus websocket (items created over Directus REST) and resource
subscriptions (kv entries) - and kill -9 of one node under load: writers
on all three, the others' clients go on, every acknowledged write is in the
store afterwards, and the dead node's clients reconnect to a live node,
where their next request works (the session is in the shared store).

One module-scoped cluster (three processes start in about two seconds); the
kill is the last test.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Iterator

import psycopg
import pytest

from multinode_harness import Cluster, Node, wait_for
from postgres_harness import drop_schemas, require_postgres, schema_prefix
from server_process import Http
from multinode_clients import (Frames, SocketIo, backpack, chat_channel, bearer, put_entry, resources,
                                   session, warm_up)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_postgres()
    prefix = schema_prefix()
    nodes = None
    try:
        nodes = Cluster(tmp_path_factory.mktemp("three"), "redis", f"{prefix}three", count=3)
        yield nodes
    finally:
        if nodes is not None:
            nodes.stop()
        drop_schemas(prefix)


def test_backpack_writes_through_each_node_reach_the_websockets_of_all_three(cluster: Cluster) -> None:
    nodes = cluster.nodes
    collection = f"three{secrets.token_hex(3)}"
    writers = [session(node, f"w{n}-{secrets.token_hex(2)}@example.com") for n, node in enumerate(nodes)]
    readers = [backpack(node, session(node, f"r{n}-{secrets.token_hex(2)}@example.com")) for n, node in enumerate(nodes)]
    try:
        for n, reader in enumerate(readers):
            # Until the reader's node follows the collection on the broker
            # (every node publishes whatever it commits: one other writer shows it).
            writer = writers[(n + 1) % 3]
            warm_up(lambda k, writer=writer: writer.request("POST", f"/{collection}", {"warm": k}), reader,
                    lambda f: f.get("collection") == collection, "backpack")
        sent: dict[int, list[str]] = {n: [] for n in range(3)}
        for round_ in range(4):
            for n, writer in enumerate(writers):
                status, record, _ = writer.request("POST", f"/{collection}", {"by": n, "round": round_})
                assert status == 200
                sent[n].append(record["_id"])
        for reader in readers:
            seen: dict[int, list[str]] = {n: [] for n in range(3)}
            while any(len(seen[n]) < 4 for n in range(3)):
                frame = reader.next(lambda f: f.get("collection") == collection and "by" in f["response"])
                seen[frame["response"]["by"]].append(frame["response"]["_id"])
            assert seen == sent  # each node's writes, in its commit order, once
    finally:
        for reader in readers:
            reader.close()


def test_a_backpack_broadcast_on_one_node_reaches_the_two_others(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    listeners = [backpack(node, session(node, f"l{secrets.token_hex(3)}@example.com")) for node in (a, c)]
    sender = backpack(b, session(b, f"s{secrets.token_hex(3)}@example.com"))
    try:
        for listener in listeners:
            warm_up(lambda n: sender.send({"action": "broadcast", "warm": n + 1}), listener,
                    lambda f: f.get("action") == "broadcast" and f.get("warm"), "broadcast")
        for n in range(5):
            sender.send({"action": "broadcast", "message": f"three {n}"})
        for listener in listeners:
            got = [listener.next(lambda f: f.get("action") == "broadcast" and "message" in f)["message"]
                   for _ in range(5)]
            assert got == [f"three {n}" for n in range(5)]
    finally:
        for ws in listeners + [sender]:
            ws.close()


def test_a_socketio_chat_emitted_on_one_node_reaches_the_room_on_the_two_others(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    token, community, channel = chat_channel(a, "three")
    namespace = f"/socket/commu-{community}"
    listeners = [SocketIo(node, namespace, token) for node in (a, c)]
    speaker = SocketIo(b, namespace, token)
    try:
        for socket in listeners + [speaker]:
            socket.emit("join", {"channels": [channel]})

        def chats(socket: SocketIo, timeout: float) -> list[str]:
            return [data["content"] for name, data in socket.events(timeout) if name == "new-chat"]

        deadline = time.monotonic() + 15
        for listener in listeners:  # until both nodes follow the room on the broker
            while True:
                assert time.monotonic() < deadline, "a node never followed the room"
                speaker.emit("chat", {"chatType": "new", "channelId": channel, "content": "warm"})
                if chats(listener, 0.3):
                    break
        for listener in listeners:
            chats(listener, 0.3)
        for n in range(5):
            speaker.emit("chat", {"chatType": "new", "channelId": channel, "content": f"chat {n}"})
        orders = []
        for listener in listeners:
            got: list[str] = []
            end = time.monotonic() + 10
            while len(got) < 5 and time.monotonic() < end:
                got += [content for content in chats(listener, 0.5) if content != "warm"]
            assert sorted(got) == [f"chat {n}" for n in range(5)]  # each once
            orders.append(got)
        # One socket's events are handled concurrently (EngineIoEndpoint), so
        # they commit in any order - but both nodes deliver B's commit order.
        assert orders[0] == orders[1]
    finally:
        for socket in listeners + [speaker]:
            socket.close()


def test_items_created_over_directus_rest_on_one_node_reach_directus_websockets_on_the_two_others(
        cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    email = f"dx{secrets.token_hex(3)}@example.com"
    session(a, email).close()
    token = bearer(a, email)
    collection = f"dx{secrets.token_hex(3)}"
    subscribers = []
    for node in (a, c):
        ws = Frames(f"ws://127.0.0.1:{node.port}/websocket")
        ws.send({"type": "auth", "access_token": token})
        assert ws.next()["status"] == "ok"
        ws.send({"type": "subscribe", "collection": collection, "uid": "s"})
        assert ws.next(lambda f: f.get("type") == "subscription")["event"] == "init"
        subscribers.append(ws)
    http = Http(b)

    def create(body: dict[str, Any]) -> None:
        status, answer, _ = http.request("POST", f"/items/{collection}", body, key=None,
                                         headers={"Authorization": f"Bearer {token}"})
        assert status == 200, answer

    try:
        for ws in subscribers:
            warm_up(lambda n: create({"warm": n}), ws,
                    lambda f: f.get("event") == "create", "directus")
        for n in range(5):
            create({"n": n})
        for ws in subscribers:
            got = []
            while len(got) < 5:
                frame = ws.next(lambda f: f.get("event") == "create" and "n" in f["data"][0])
                got.append(frame["data"][0]["n"])
            assert got == list(range(5))
    finally:
        http.close()
        for ws in subscribers:
            ws.close()


def test_kv_writes_through_one_node_reach_resource_subscribers_on_the_two_others(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    email = f"kv{secrets.token_hex(3)}@example.com"
    session(a, email).close()
    token = bearer(a, email)
    entry = f"three:{secrets.token_hex(3)}"
    subscribers = [resources(node, token) for node in (a, c)]
    try:
        for ws in subscribers:
            ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
            ws.next(lambda f: "warning" in f or "data" in f)
        for ws in subscribers:
            warm_up(lambda n: put_entry(b, token, entry, {"warm": n}), ws,
                    lambda f: "warm" in (f.get("data") or {}), "kv")
        versions = [put_entry(b, token, entry, {"n": n})["version"] for n in range(8)]
        for ws in subscribers:
            got = [ws.next(lambda f: "n" in (f.get("data") or {})) for _ in range(8)]
            assert [f["version"] for f in got] == versions
    finally:
        for ws in subscribers:
            ws.close()


# -- kill -9 of one node under load (last: it leaves two nodes) --------------------------------------


class Writer:
    """Backpack REST writes in a loop through one node; on a lost connection,
    it reconnects to the next live node with the same session cookie."""

    def __init__(self, name: str, nodes: list[Node], home: int, collection: str) -> None:
        self.name, self.nodes, self.home, self.collection = name, nodes, home, collection
        self.http = session(nodes[home], f"{name}{secrets.token_hex(3)}@example.com")
        self.acknowledged: list[tuple[str, int]] = []  # (id, the node that answered)
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                status, record, _ = self.http.request("POST", f"/{self.collection}", {"by": self.name, "n": n})
            except OSError as error:  # the node died under this request: not acknowledged
                self.failures.append(repr(error))
                self._move()
                continue
            if status == 200:
                self.acknowledged.append((record["_id"], self.home))
            else:
                self.failures.append(f"status {status}")
            n += 1

    def _move(self) -> None:
        cookie = self.http.cookie
        self.http.close()
        for step in range(1, len(self.nodes)):
            candidate = (self.home + step) % len(self.nodes)
            if self.nodes[candidate].alive():
                self.home = candidate
                break
        self.http = Http(self.nodes[self.home])
        self.http.cookie = cookie

    def answered_by(self, node: int) -> int:
        return sum(1 for _, home in self.acknowledged if home == node)


def test_kill_9_of_one_node_under_load_loses_no_acknowledged_write_and_its_clients_move_on(
        cluster: Cluster) -> None:
    nodes = cluster.nodes
    victim = 2
    collection = f"load{secrets.token_hex(3)}"
    writers = [Writer(f"w{n}-", nodes, n, collection) for n in range(3)]
    # A Backpack websocket client of the victim, and one of a survivor that hears every write.
    doomed = backpack(nodes[victim], writers[victim].http)
    watcher = backpack(nodes[0], session(nodes[0], f"watch{secrets.token_hex(3)}@example.com"))
    warm_up(lambda n: writers[1].http.request("POST", f"/{collection}", {"warm": n}), watcher,
            lambda f: f.get("collection") == collection, "watcher")
    for writer in writers:
        writer.thread.start()
    try:
        wait_for(lambda: all(len(w.acknowledged) >= 20 for w in writers), timeout=15, what="load on every node")
        nodes[victim].kill()
        at_kill = [len(w.acknowledged) for w in writers]
        # The survivors' writers go on, and the victim's writer moved to a live node.
        wait_for(lambda: all(len(w.acknowledged) >= at + 30 for w, at in zip(writers, at_kill)), timeout=20,
                 what="writes acknowledged after the kill")
        assert writers[victim].home != victim
        # The victim's websocket client sees its connection end and reconnects to a live node,
        # where its next request works, with the session it had.
        wait_for(lambda: _closed(doomed), timeout=10, what="the victim's websocket to end")
        moved = backpack(nodes[0], writers[victim].http)
        try:
            moved.send({"action": "getAll", "collection": collection})
            frame = moved.next(lambda f: f.get("action") in ("getAll", "error"))
            assert frame["action"] == "getAll" and len(frame["response"]) > 0
        finally:
            moved.close()
        # The survivors' subscribers go on hearing writes.
        watcher.drain(0.2)
        watcher.next(lambda f: f.get("collection") == collection and f["response"].get("by") == "w1-")
    finally:
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.thread.join(15)
        doomed.close()
        watcher.close()
    assert all(failure.startswith(("ConnectionResetError", "RemoteDisconnected", "BrokenPipe", "ConnectionRefused",
                                   "ConnectionAbortedError"))
               for writer in writers for failure in writer.failures), [w.failures for w in writers]
    acknowledged = [id_ for writer in writers for id_, _ in writer.acknowledged]
    with psycopg.connect(cluster.store) as db:
        stored = {id_ for (id_,) in db.execute("SELECT id FROM records WHERE collection = %s", (collection,))}
    missing = [id_ for id_ in acknowledged if id_ not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes lost"
    print(f"{len(acknowledged)} acknowledged ({[len(w.acknowledged) for w in writers]} per writer), "
          f"{sum(len(w.failures) for w in writers)} unanswered at the kill, 0 lost")


def _closed(frames: Frames) -> bool:
    """Whether the client's connection has ended (a ping gets no pong)."""
    try:
        return not frames.ws.ping().wait(0.2)
    except Exception:
        return True

