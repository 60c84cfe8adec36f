"""The clients of the multinode tests (``test_multinode_*``,
``test_faults_*``): a two-node cluster on PostgreSQL and a broker - Redis,
then NATS - as a module fixture, and websocket, resource, Directus,
Backpack, Asnity and Socket.IO clients of one node.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from satchel.protocol.resources import encode_headers

from multinode_harness import Cluster, Node
from postgres_harness import drop_schemas, require_postgres, schema_prefix
from server_process import Http

PASSWORD = "correct horse battery"
SCOPE = {"x-m2-organization": "multiOrg", "x-m2-project": "multiProj"}


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


def version_ms(version: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(version.replace("Z", "+00:00")).timestamp() * 1000)


def asnity_api(node: Node, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
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
    asnity_api(node, "POST", "/api/user/auth/signup", {"id": email, "password": PASSWORD, "nickname": label[:10]})
    token = asnity_api(node, "POST", "/api/user/auth/signin", {"id": email, "password": PASSWORD})["accessToken"]
    community = asnity_api(node, "POST", "/api/community", {"name": label}, token)["_id"]
    channel = asnity_api(node, "POST", "/api/channel", {"communityId": community, "name": "general", "isPrivate": False,
                                                     "type": "Channel"}, token)["_id"]
    return token, community, channel


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
