"""Two real ``satchel serve`` processes on one PostgreSQL database and one
broker - Redis, then NATS (issue 15 parts 2 and 3; README, "Running several
processes").

A client of node A sees what is written or broadcast through node B - over
Backpack (REST writes, websocket broadcasts), resource subscriptions (kv
entries) and Socket.IO (Asnity chats posted over REST, in the channel's
room) - in order, once; two nodes writing one entry or one record at once
never make a subscriber see an older version after a newer one, and each node's writes
reach the other's subscribers in its commit order; a node with no interested
connection is sent nothing of a topic (the traffic each node logs); a logout
on A refuses the cookie and the Bearer token on B at once; an inbox datagram
replayed to B after A admitted it is dropped; a Socket.IO long-polling
session of A is unknown to B (its own 400, "Session ID unknown"); and kill -9
of B leaves A serving.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from satchel.protocol.inbox.datagrams import decode_answer, encode_request
from satchel.protocol.resources import encode_headers
from satchel.transports.brokers.topics import Topics

from multinode_harness import Cluster, Node, wait_for
from postgres_harness import drop_schemas, require_postgres, schema_prefix
from server_process import Http

PASSWORD = "correct horse battery"
SCOPE = {"x-m2-organization": "multiOrg", "x-m2-project": "multiProj"}
#: writes per node in the race
WRITES = 10


@pytest.fixture(scope="module", params=["redis", "nats"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_postgres()
    prefix = schema_prefix()
    nodes = None
    try:
        nodes = Cluster(tmp_path_factory.mktemp(request.param), request.param, f"{prefix}{request.param}")
        yield nodes
    finally:
        if nodes is not None:
            nodes.stop()
        drop_schemas(prefix)


class Frames:
    """A websocket client whose received JSON frames a thread collects."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.ws: ClientConnection = connect(url, open_timeout=10, **kwargs)
        self.frames: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.ws:
                self.frames.put(json.loads(message))
        except Exception:
            pass

    def send(self, message: Any) -> None:
        self.ws.send(json.dumps(message))

    def next(self, match: Callable[[Any], bool] = lambda frame: True, timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching frame in time")
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if match(frame):
                return frame

    def drain(self, seconds: float) -> list[Any]:
        """Every frame that arrives within ``seconds``."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.frames.get(timeout=left))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self.ws.close()


def backpack(node: Node, http: Http) -> Frames:
    socket_ = Frames(node.ws_url, additional_headers={"Cookie": http.cookie or ""})
    assert socket_.next()["action"] == "connection"
    return socket_


def session(node: Node, email: str) -> Http:
    http = Http(node)
    http.login(email, PASSWORD)
    return http


def directus_login(node: Node, email: str) -> dict[str, Any]:
    """A Directus login: ``access_token`` (a Bearer) and ``refresh_token``."""
    http = Http(node)
    status, body, _ = http.request("POST", "/auth/login", {"email": email, "password": PASSWORD}, key=None)
    http.close()
    assert status == 200, body
    return body["data"]


def bearer(node: Node, email: str) -> str:
    return directus_login(node, email)["access_token"]


def resources(node: Node, token: str) -> Frames:
    offered = encode_headers({**SCOPE, "authorization": f"Bearer {token}"})
    return Frames(f"ws://127.0.0.1:{node.port}/realtime", subprotocols=[offered])


def put_entry(node: Node, token: str, entry: str, value: Any) -> dict[str, Any]:
    http = Http(node)
    try:
        status, body, _ = http.request("PUT", f"/realtime/kv/{entry}", value, key=None,
                                       headers={**SCOPE, "Authorization": f"Bearer {token}"})
    finally:
        http.close()
    assert status == 200, body
    return body


def warm_up(write: Callable[[int], None], ws: Frames, match: Callable[[Any], bool], what: str) -> None:
    """Write until ``ws`` receives a frame that ``match``es: its node follows
    the topic now (a subscribe waits for its broker, ``Follow``, but a
    node follows every collection for Backpack a few ms after its first
    Backpack connection opens)."""
    deadline = time.monotonic() + 15
    n = 0
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the subscriber's node never followed the topic")
        write(n)
        n += 1
        try:
            ws.next(match, timeout=0.3)
            return
        except AssertionError:
            continue


# -- fan-out across nodes ---------------------------------------------------------------------


def test_backpack_rest_writes_through_b_reach_a_websocket_in_order_once(cluster: Cluster) -> None:
    a, b = cluster.nodes
    reader = session(a, "reader-bp@example.com")
    writer = session(b, "writer-bp@example.com")
    ws = backpack(a, reader)
    collection = f"multi{secrets.token_hex(3)}"
    try:
        warm_up(lambda n: writer.request("POST", f"/{collection}", {"warm": n}), ws,
                lambda f: f.get("collection") == collection, "backpack")
        ws.drain(0.2)  # later warm-up frames
        sent = []
        for n in range(12):
            status, record, _ = writer.request("POST", f"/{collection}", {"n": n})
            assert status == 200
            sent.append(record["_id"])
        got = []
        while len(got) < len(sent):
            frame = ws.next(lambda f: f.get("collection") == collection and "n" in f["response"])
            assert frame["action"] == "create" and frame["httpRequest"] is True
            got.append(frame["response"]["_id"])
        assert got == sent
        late = [f for f in ws.drain(0.3) if f.get("collection") == collection and "n" in f.get("response", {})]
        assert late == []  # once
    finally:
        ws.close()


def test_a_backpack_broadcast_on_b_reaches_a_and_a_channel_stays_in_its_channel(cluster: Cluster) -> None:
    a, b = cluster.nodes
    listener = backpack(a, session(a, "listen-bc@example.com"))
    sender = backpack(b, session(b, "send-bc@example.com"))
    try:
        warm_up(lambda n: sender.send({"action": "broadcast", "warm": n + 1}), listener,
                lambda f: f.get("action") == "broadcast" and f.get("warm"), "broadcast")
        for n in range(10):
            sender.send({"action": "broadcast", "message": f"hello {n}"})
        got = [listener.next(lambda f: f.get("action") == "broadcast" and "message" in f)["message"] for _ in range(10)]
        assert got == [f"hello {n}" for n in range(10)]
    finally:
        listener.close()
        sender.close()


def test_resource_subscriber_on_a_hears_kv_writes_made_through_b(cluster: Cluster) -> None:
    a, b = cluster.nodes
    session(a, "kv-multi@example.com").close()
    token = bearer(a, "kv-multi@example.com")
    entry = f"multi:{secrets.token_hex(3)}"
    ws = resources(a, token)
    try:
        ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
        ws.next(lambda f: "warning" in f or "data" in f)

        warm_up(lambda n: put_entry(b, token, entry, {"warm": n}), ws,
                lambda f: "warm" in (f.get("data") or {}), "kv")
        versions = [put_entry(b, token, entry, {"n": n})["version"] for n in range(20)]
        got = [ws.next(lambda f: "n" in (f.get("data") or {})) for _ in range(20)]
        assert [f["data"]["n"] for f in got] == list(range(20))
        assert [f["version"] for f in got] == versions
    finally:
        ws.close()


def test_two_nodes_writing_at_once_keep_versions_and_each_nodes_commit_order(cluster: Cluster) -> None:
    """One kv entry written through both nodes at once: every subscriber, on
    either node, sees versions only grow (guarantee 3) and the last write.
    Records written through both nodes at once: each subscriber sees each
    node's records in the order that node committed them (guarantee 2)."""
    a, b = cluster.nodes
    session(a, "race@example.com").close()
    token = bearer(a, "race@example.com")
    entry = f"race:{secrets.token_hex(3)}"
    collection = f"race{secrets.token_hex(3)}"
    subscribers = [resources(a, token), resources(b, token)]
    readers = [backpack(a, session(a, "race-a@example.com")), backpack(b, session(b, "race-b@example.com"))]
    try:
        for ws in subscribers:
            ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
            ws.next(lambda f: "warning" in f or "data" in f)
        for ws, other in zip(subscribers, (b, a)):
            warm_up(lambda n, other=other: put_entry(other, token, entry, {"warm": n}), ws,
                    lambda f: "warm" in (f.get("data") or {}), "race kv")
        writers = {node: session(node, f"race-w{i}@example.com") for i, node in enumerate((a, b))}
        for reader, other in zip(readers, (b, a)):
            warm_up(lambda n, other=other: writers[other].request("POST", f"/{collection}", {"warm": n}), reader,
                    lambda f: f.get("collection") == collection, "race bp")
        committed: dict[str, list[str]] = {"a": [], "b": []}
        last: dict[str, int] = {}

        def write(name: str, node: Node) -> None:
            for n in range(WRITES):
                version = put_entry(node, token, entry, {"by": name, "n": n})["version"]
                last[name] = version
                status, record, _ = writers[node].request("POST", f"/{collection}", {"by": name, "n": n})
                assert status == 200
                committed[name].append(record["_id"])

        threads = [threading.Thread(target=write, args=(name, node)) for name, node in (("a", a), ("b", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        newest = max(last.values())  # ISO 8601 of one width: text order is time order
        for ws in subscribers:
            frames: list[Any] = []
            while not frames or frames[-1]["version"] != newest:
                frames.append(ws.next(lambda f: "by" in (f.get("data") or {})))
            versions = [version_ms(f["version"]) for f in frames]
            assert versions == sorted(set(versions)), "a subscriber saw an older version after a newer one"
        for reader in readers:
            seen: dict[str, list[str]] = {"a": [], "b": []}
            while len(seen["a"]) < WRITES or len(seen["b"]) < WRITES:
                frame = reader.next(lambda f: f.get("collection") == collection and "by" in f["response"])
                seen[frame["response"]["by"]].append(frame["response"]["_id"])
            assert seen == committed
    finally:
        for ws in subscribers + readers:
            ws.close()


def test_one_record_written_through_both_nodes_at_once_never_goes_back_for_any_subscriber(cluster: Cluster) -> None:
    """Guarantee 3 for records: one record patched through both nodes at
    once (every patch a compare-and-swap on the shared store's revision).
    The subscribers on both nodes may each miss a write that lost the race
    on the broker, but never see two writes in opposite orders, and each
    ends on the record as stored."""
    a, b = cluster.nodes
    collection = f"one{secrets.token_hex(3)}"
    writers = {"a": session(a, "one-a@example.com"), "b": session(b, "one-b@example.com")}
    status, record, _ = writers["a"].request("POST", f"/{collection}", {"by": "start", "n": -1})
    assert status == 200, record
    path = f"/{collection}/{record['_id']}"
    readers = {"a": backpack(a, session(a, "one-ra@example.com")), "b": backpack(b, session(b, "one-rb@example.com"))}
    try:
        for name, other in (("a", "b"), ("b", "a")):  # each reader's node follows the other's writes
            warm_up(lambda n, other=other: writers[other].request("PATCH", path, {"by": "warm", "n": n}),
                    readers[name], lambda f: f.get("collection") == collection and f["response"].get("by") == "warm",
                    "one record")

        def write(name: str) -> None:
            for n in range(WRITES * 3):
                status, body, _ = writers[name].request("PATCH", path, {"by": name, "n": n})
                assert status == 200, body

        threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        status, stored, _ = writers["a"].request("GET", path)
        assert status == 200
        final = (stored["by"], stored["n"])
        seen: dict[str, list[tuple[str, int]]] = {}
        for name, reader in readers.items():
            writes: list[tuple[str, int]] = []
            frame_of_ours = lambda f: f.get("collection") == collection and f["response"].get("by") in ("a", "b")
            try:
                while final not in writes:
                    frame = reader.next(frame_of_ours)
                    writes.append((frame["response"]["by"], frame["response"]["n"]))
            except AssertionError:
                raise AssertionError(f"reader {name} never saw the stored record: {writes[-5:]} vs {final}") from None
            writes.extend((f["response"]["by"], f["response"]["n"]) for f in reader.drain(0.5) if frame_of_ours(f))
            assert writes[-1] == final, f"reader {name} does not end on the stored record"
            seen[name] = writes
        # One order for both: every pair both saw, they saw in the same order.
        place = {write: i for i, write in enumerate(seen["a"])}
        common = [place[write] for write in seen["b"] if write in place]
        assert common == sorted(common), "the two nodes' subscribers saw writes of one record in opposite orders"
        for name in ("a", "b"):  # each writer's own writes are in its order at every subscriber
            for reader in seen.values():
                mine = [n for by, n in reader if by == name]
                assert mine == sorted(mine)
    finally:
        for reader in readers.values():
            reader.close()


def test_a_write_made_elsewhere_right_after_a_subscribe_is_answered_reaches_it(cluster: Cluster) -> None:
    """``Follow``: a subscribe is answered only once this node's broker
    follows what it subscribed to, so a write made through the other node
    the moment the answer arrives is not missed. Before, the node followed
    the topic a few milliseconds after the subscription was in its registry,
    and such a write was lost silently. Fresh entries each time: nothing
    else on A follows them."""
    a, b = cluster.nodes
    session(a, "follow@example.com").close()
    token = bearer(a, "follow@example.com")
    subscriber = resources(a, token)
    writer = Http(b)
    missed = []
    try:
        for n in range(12):
            entry = f"follow:{secrets.token_hex(4)}"
            subscriber.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
            assert subscriber.next(lambda f: f.get("warning") == "resource_not_found")
            status, body, _ = writer.request("PUT", f"/realtime/kv/{entry}", {"n": n}, key=None,
                                             headers={**SCOPE, "Authorization": f"Bearer {token}"})
            assert status == 200, body
            try:
                subscriber.next(lambda f: (f.get("data") or {}).get("n") == n, timeout=3)
            except AssertionError:
                missed.append(n)
        assert not missed, f"writes made through B right after A answered the subscribe were missed: {missed}"
    finally:
        writer.close()
        subscriber.close()


def version_ms(version: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(version.replace("Z", "+00:00")).timestamp() * 1000)


# -- what each node is sent ---------------------------------------------------------------------


def test_a_node_with_no_interested_connection_is_sent_nothing_of_that_topic(cluster: Cluster) -> None:
    """B follows entry X only; A writes X and Y: B's broker traffic counts X's
    writes and none of Y's (and on Redis, nobody subscribes Y's channel)."""
    a, b = cluster.nodes
    session(a, "traffic@example.com").close()
    token = bearer(a, "traffic@example.com")
    followed, ignored = f"x:{secrets.token_hex(3)}", f"y:{secrets.token_hex(3)}"
    ws = resources(b, token)
    try:
        ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": followed}})
        ws.next(lambda f: "warning" in f or "data" in f)
        warm_up(lambda n: put_entry(a, token, followed, {"warm": n}), ws,
                lambda f: "warm" in (f.get("data") or {}), "traffic")
        time.sleep(1.2)  # the next traffic line
        before = wait_for(b.traffic, what="a traffic line").get("received", {}).get("ent", 0)
        for n in range(10):
            put_entry(a, token, ignored, {"n": n})
        for n in range(5):
            put_entry(a, token, followed, {"n": n})
        for _ in range(5):
            ws.next(lambda f: "n" in (f.get("data") or {}))

        def settled() -> Any:
            traffic = b.traffic()
            return traffic if traffic.get("received", {}).get("ent", 0) >= before + 5 else None

        after = wait_for(settled, timeout=5, what="B's traffic line")
        # A published Y's writes before X's, on one connection: had any reached
        # B, they would be counted by now.
        assert after["received"]["ent"] == before + 5  # X's five writes, none of Y's ten
        if cluster.kind == "redis":
            import redis_numsub

            topics = Topics(cluster.prefix)
            counts = redis_numsub.numsub([topics.entry("kvStore", *SCOPE.values(), followed),
                                          topics.entry("kvStore", *SCOPE.values(), ignored)])
            assert counts == [1, 0]
        assert after["following"] >= 2
    finally:
        ws.close()


# -- shared state ------------------------------------------------------------------------------


def test_a_logout_on_a_refuses_the_cookie_and_the_bearer_token_on_b_at_once(cluster: Cluster) -> None:
    a, b = cluster.nodes
    email = f"logout{secrets.token_hex(3)}@example.com"
    on_a = session(a, email)
    on_b = Http(b)
    on_b.cookie = on_a.cookie
    assert on_b.request("GET", "/logoutprobe")[0] == 200  # B has read (and cached) the session
    tokens = directus_login(a, email)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert on_b.request("GET", "/users/me", key=None, headers=headers)[0] == 200
    assert on_a.request("POST", "/logout")[0] == 200
    answered = time.monotonic()
    # B drops the cached session when the broker brings the revocation: the
    # next request after that is refused (within the broker's propagation).
    wait_for(lambda: on_b.request("GET", "/logoutprobe")[0] == 403, timeout=0.5, what="the logout reaching B",
             every=0.001)
    print(f"logout reached B within {1000 * (time.monotonic() - answered):.1f} ms")
    status, body, _ = Http(a).request("POST", "/auth/logout", {"refresh_token": tokens["refresh_token"]}, key=None,
                                      headers=headers)
    assert status in (200, 204), body
    assert on_b.request("GET", "/users/me", key=None, headers=headers)[0] == 401
    status, _, _ = Http(b).request("POST", "/auth/refresh", {"refresh_token": tokens["refresh_token"]}, key=None)
    assert status == 401


def _datagram(write_token: str, message_id: str) -> bytes:
    return encode_request(write_token, message_id, {"#": 1, "t": 1}, timestamp_ms=time.time_ns() // 1_000_000,
                          nonce=os.urandom(8))


def _exchange(port: int, datagram: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(datagram, ("127.0.0.1", port))
        try:
            return sock.recv(64)
        except socket.timeout:
            return None


def test_an_inbox_datagram_replayed_to_the_other_node_is_refused(cluster: Cluster) -> None:
    a, b = cluster.nodes
    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    status, body, _ = Http(a).request("PUT", f"/backend/documents/{read_token}", {"#messages": {}}, key=None,
                                      headers={"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
    assert status == 200, body
    fresh = _datagram(write_token, "00000000000000a1")
    assert decode_answer(_exchange(b.port, fresh) or b"", write_token, fresh) == "M"  # B admits a fresh one
    datagram = _datagram(write_token, "00000000000000a2")
    answer = _exchange(a.port, datagram)
    assert answer is not None and decode_answer(answer, write_token, datagram) == "M"
    time.sleep(0.05)
    assert _exchange(b.port, datagram) is None  # the replay, to the other node: dropped
    assert _exchange(a.port, datagram) is None  # and to the same one


def test_a_socketio_polling_session_of_a_is_unknown_to_b(cluster: Cluster) -> None:
    """Engine.IO sessions live in their node: a long-polling client needs
    sticky sessions (or websocket only); B answers with Engine.IO's own error."""
    a, b = cluster.nodes
    status, body, _ = Http(a).request("GET", "/socket.io/?EIO=4&transport=polling", key=None)
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else json.dumps(body)
    sid = json.loads(text[text.index("{"):])["sid"]
    status, body, _ = Http(b).request("GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}", key=None)
    assert status == 400 and body == {"code": 1, "message": "Session ID unknown"}


# -- Socket.IO rooms across nodes -----------------------------------------------------------------


def _asnity(node: Node, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    http = Http(node)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, value, _ = http.request(method, path, body, key=None, headers=headers)
    finally:
        http.close()
    assert status in (200, 201), (status, value)
    return value["result"]


def chat_channel(node: Node, label: str) -> tuple[str, str, str]:
    """A new Asnity user with a community and a public channel in it:
    (its token, the community's id, the channel's id)."""
    email = f"{label}{secrets.token_hex(3)}@example.com"
    _asnity(node, "POST", "/api/user/auth/signup", {"id": email, "password": PASSWORD, "nickname": label[:10]})
    token = _asnity(node, "POST", "/api/user/auth/signin", {"id": email, "password": PASSWORD})["accessToken"]
    community = _asnity(node, "POST", "/api/community", {"name": label}, token)["_id"]
    channel = _asnity(node, "POST", "/api/channel", {"communityId": community, "name": "general", "isPrivate": False,
                                                     "type": "Channel"}, token)["_id"]
    return token, community, channel


def test_chats_written_through_b_reach_a_socketio_room_in_order_once(cluster: Cluster) -> None:
    """A Socket.IO client (websocket transport) in a channel's room on A; chats
    posted through B's REST API reach it as ``new-chat``, in order, once."""
    a, b = cluster.nodes
    token, community, channel = chat_channel(a, "chat")
    namespace = f"/socket/commu-{community}"
    ws = connect(f"ws://127.0.0.1:{a.port}/socket.io/?EIO=4&transport=websocket", open_timeout=10)
    try:
        assert ws.recv(timeout=10).startswith("0")  # the Engine.IO open packet
        ws.send(f"40{namespace}," + json.dumps({"token": f"Bearer {token}"}))
        assert ws.recv(timeout=10).startswith(f"40{namespace},")
        ws.send(f"42{namespace}," + json.dumps(["join", {"channels": [channel]}]))
        prefix = f'42{namespace},["new-chat",'

        def chats(timeout: float) -> list[Any]:
            got, deadline = [], time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    packet = ws.recv(timeout=left)
                except TimeoutError:
                    break
                if packet == "2":
                    ws.send("3")  # Engine.IO ping
                elif isinstance(packet, str) and packet.startswith(prefix):
                    got.append(json.loads(packet[len(f"42{namespace},"):])[1])
                    if timeout > 1:
                        return got
            return got

        deadline = time.monotonic() + 15
        while not chats(0.3):  # until A follows the room's chats on the broker
            assert time.monotonic() < deadline, "A never followed the room"
            _asnity(b, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": "warm"}, token)
        chats(0.3)
        for n in range(10):
            _asnity(b, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": f"chat {n}"}, token)
        got: list[Any] = []
        while len(got) < 10:
            more = chats(10)
            assert more, "a chat did not arrive"
            got += [chat for chat in more if chat["content"] != "warm"]
        assert [chat["content"] for chat in got] == [f"chat {n}" for n in range(10)]
        assert [chat for chat in chats(0.3) if chat["content"] != "warm"] == []  # once
    finally:
        ws.close()


class SocketIo:
    """A Socket.IO client over the websocket transport, in one namespace."""

    def __init__(self, node: Node, namespace: str, token: str) -> None:
        self.namespace = namespace
        self.ws = connect(f"ws://127.0.0.1:{node.port}/socket.io/?EIO=4&transport=websocket", open_timeout=10)
        assert self.ws.recv(timeout=10).startswith("0")  # the Engine.IO open packet
        self.ws.send(f"40{namespace}," + json.dumps({"token": f"Bearer {token}"}))
        assert self.ws.recv(timeout=10).startswith(f"40{namespace},")

    def emit(self, event: str, data: Any) -> None:
        self.ws.send(f"42{self.namespace}," + json.dumps([event, data]))

    def events(self, timeout: float, first: bool = False) -> list[tuple[str, Any]]:
        """The events that arrive within ``timeout`` (with ``first``: until one does)."""
        got: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout
        head = f"42{self.namespace},"
        while (left := deadline - time.monotonic()) > 0:
            try:
                packet = self.ws.recv(timeout=left)
            except TimeoutError:
                break
            if packet == "2":
                self.ws.send("3")  # Engine.IO ping
            elif isinstance(packet, str) and packet.startswith(head):
                name, *args = json.loads(packet[len(head):])
                got.append((name, args[0] if args else None))
                if first:
                    break
        return got

    def close(self) -> None:
        self.ws.close()


def test_chats_of_one_channel_posted_through_both_nodes_at_once_reach_both_rooms_in_id_order(cluster: Cluster) -> None:
    """Guarantee 4: a channel's chat ids are its commit order; two nodes
    posting to one channel at once, the room's sockets on both nodes get
    every chat once, in id order (a chat that arrives before its
    predecessor waits for it)."""
    a, b = cluster.nodes
    token, community, channel = chat_channel(a, "order")
    sockets = {name: SocketIo(node, f"/socket/commu-{community}", token) for name, node in (("a", a), ("b", b))}
    try:
        for name, socket_ in sockets.items():
            socket_.emit("join", {"channels": [channel]})
        for name, other in (("a", b), ("b", a)):  # each room hears the other node's chats
            deadline = time.monotonic() + 15
            while not [e for e in sockets[name].events(0.3) if e[0] == "new-chat"]:
                assert time.monotonic() < deadline, f"{name} never heard the other node's chats"
                _asnity(other, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": "warm"}, token)
        for socket_ in sockets.values():
            socket_.events(0.3)  # the warm-up's last chats
        posted: dict[str, list[int]] = {"a": [], "b": []}

        def post(name: str, node: Node) -> None:
            for n in range(20):
                chat = _asnity(node, "POST", f"/api/channels/{channel}/chat",
                               {"type": "TEXT", "content": f"{name} {n}"}, token)
                posted[name].append(chat["id"])

        threads = [threading.Thread(target=post, args=(name, node)) for name, node in (("a", a), ("b", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        every = sorted(posted["a"] + posted["b"])
        assert len(every) == 40
        for name, socket_ in sockets.items():
            ids: list[int] = []
            deadline = time.monotonic() + 10
            while len(ids) < 40 and time.monotonic() < deadline:
                ids += [chat["id"] for event, chat in socket_.events(0.5)
                        if event == "new-chat" and chat["content"] != "warm"]
            assert sorted(ids) == every, f"the room on {name} did not get every chat once"
            assert ids == every, f"the room on {name} got a channel's chats out of id order: {ids}"
    finally:
        for socket_ in sockets.values():
            socket_.close()


def test_an_invitation_made_through_a_reaches_the_invitees_socket_on_b_which_then_hears_the_room(
        cluster: Cluster) -> None:
    """Presence across nodes: the invitee's socket is on B; the owner invites
    it through A's REST API; B's socket gets ``invited-to-channel``, is in the
    room from then on, and hears the next chat posted through A."""
    a, b = cluster.nodes
    owner_email, guest_email = (f"{who}{secrets.token_hex(3)}@example.com" for who in ("owner", "guest"))
    tokens = {}
    for email in (owner_email, guest_email):
        _asnity(a, "POST", "/api/user/auth/signup", {"id": email, "password": PASSWORD, "nickname": email[:6]})
        tokens[email] = _asnity(a, "POST", "/api/user/auth/signin", {"id": email, "password": PASSWORD})["accessToken"]
    guest_id = _asnity(a, "GET", "/api/user/auth/me", token=tokens[guest_email])["_id"]
    owner = tokens[owner_email]
    community = _asnity(a, "POST", "/api/community", {"name": "invites"}, owner)["_id"]
    _asnity(a, "POST", f"/api/communities/{community}/users", {"users": [guest_id]}, owner)
    channel = _asnity(a, "POST", "/api/channel", {"communityId": community, "name": "later", "isPrivate": False,
                                                  "type": "Channel"}, owner)["_id"]
    guest = SocketIo(b, f"/socket/commu-{community}", tokens[guest_email])
    try:
        time.sleep(0.5)  # B follows the namespace on the broker a few ms after the socket is in it
        _asnity(a, "POST", f"/api/channels/{channel}/users", {"community_id": community, "users": [guest_id]}, owner)
        invited = [data for name, data in guest.events(10, first=True) if name == "invited-to-channel"]
        assert invited and invited[0]["_id"] == channel
        time.sleep(0.5)  # and the room's chats once the socket joined the room
        _asnity(a, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": "welcome"}, owner)
        heard = [data for name, data in guest.events(10, first=True) if name == "new-chat"]
        assert heard and heard[0]["content"] == "welcome"
    finally:
        guest.close()


def test_rules_changed_through_a_are_in_force_on_b_at_once(cluster: Cluster) -> None:
    """The admin API on A replaces the rules; B, which loaded them at its
    start, takes the new ones from the broker (``RulesChanged``)."""
    import subprocess
    import sys

    a, b = cluster.nodes
    admin = f"root{secrets.token_hex(3)}@example.com"
    created = subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", admin, "--store",
                              cluster.store, "--password-file", "-", "--data-dir", str(cluster.tmp / "admin")],
                             input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    http = Http(a)
    access = directus_login(a, admin)["access_token"]
    collection = f"ruled{secrets.token_hex(3)}"
    reader = session(b, "ruled@example.com")
    assert reader.request("POST", f"/{collection}", {"x": 1})[0] == 200
    assert reader.request("GET", f"/{collection}")[0] == 200
    headers = {"Authorization": f"Bearer {access}"}
    status, current, _ = http.request("GET", "/_/api/rules", key=None, headers=headers)
    assert status == 200, current
    rules = {"version": 1, "roles": {"authenticated": {"rules": [
        {"collection": "*", "action": "*"}, {"collection": collection, "action": "*", "allowed": False}]}}}
    status, body, _ = http.request("PUT", "/_/api/rules", {"revision": current["data"]["revision"], "rules": rules},
                                   key=None, headers=headers)
    assert status == 200, body
    answered = time.monotonic()
    wait_for(lambda: reader.request("GET", f"/{collection}")[0] == 403, timeout=0.5, every=0.001,
             what="the new rules on B")
    print(f"rules in force on B within {1000 * (time.monotonic() - answered):.1f} ms")


# -- faults --------------------------------------------------------------------------------------


def test_kill_9_of_b_leaves_a_serving(cluster: Cluster) -> None:
    a, b = cluster.nodes
    http = session(a, "survivor@example.com")
    ws = backpack(a, http)
    try:
        b.kill()
        collection = f"after{secrets.token_hex(3)}"
        status, record, _ = http.request("POST", f"/{collection}", {"still": "here"})
        assert status == 200
        frame = ws.next(lambda f: f.get("collection") == collection)
        assert frame["response"]["_id"] == record["_id"]
        assert http.request("GET", f"/{collection}/{record['_id']}")[0] == 200
        assert a.alive()
    finally:
        ws.close()
