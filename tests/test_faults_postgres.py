"""PostgreSQL restarting under a real ``satchel serve`` (issue 15 part 5).

The node runs on a private PostgreSQL (``postgres_harness.PrivatePostgres``,
its own cluster on a free port), which the tests crash (``pg_ctl -m
immediate``) and start again. While it is away every protocol answers with
its own 503-style error - Backpack REST and websocket, Directus REST and
websocket, Asnity REST and Socket.IO events, the resource websocket and
``/realtime`` REST, the inbox's HTTP API - and ``/ready`` answers 503; once
it is back the same requests succeed without restarting Satchel (the pool
reconnects); writes in flight across the restart are answered 200 or 503,
never anything else, and every one answered 200 is in the database
afterwards.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest

from multinode_harness import wait_for
from postgres_harness import PrivatePostgres
from server_process import Http, ServerProcess
from multinode_clients import PASSWORD, SCOPE, Frames, SocketIo, backpack, bearer, resources, session

#: How long a request waits for a connection while PostgreSQL is away (the store URL's
#: connect_timeout, which the pool's wait follows), and a margin.
CONNECT_TIMEOUT = 2
WAIT = CONNECT_TIMEOUT + 3


class Node:
    """One ``satchel serve`` on the private PostgreSQL."""

    def __init__(self, tmp: Path) -> None:
        PrivatePostgres.skip_unless_available()
        self.pg = PrivatePostgres()
        try:
            self.server = ServerProcess(tmp / "node", extra=["--store", f"{self.pg.url}?connect_timeout={CONNECT_TIMEOUT}"])
        except BaseException:
            self.pg.close()
            raise

    def close(self) -> None:
        self.server.stop()
        self.pg.close()
        print("".join(line for line in self.server.output if "psycopg.pool" not in line and not line.startswith("\t")))  # shown when a test failed


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    made = Node(tmp_path_factory.mktemp("pgfault"))
    try:
        yield made
    finally:
        made.close()


def asnity_api(server: ServerProcess, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    http = Http(server, timeout=WAIT + 5)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, value, _ = http.request(method, path, body, key=None, headers=headers)
    finally:
        http.close()
    return status, value


class AckingSocketIo(SocketIo):
    """The multinode tests' Socket.IO client, with an emit that waits for its ack."""

    def emit_with_ack(self, ack_id: int, event: str, data: Any, timeout: float) -> tuple[Any, list[Any]]:
        """Emit ``event`` asking for ack ``ack_id``; the ack's arguments and the events heard before it."""
        self.ws.send(f"42{self.namespace},{ack_id}" + json.dumps([event, data]))
        heard: list[Any] = []
        ack = None
        deadline = time.monotonic() + timeout
        head = f"42{self.namespace},"
        while (left := deadline - time.monotonic()) > 0:
            try:
                packet = self.ws.recv(timeout=left)
            except TimeoutError:
                break
            if packet == "2":
                self.ws.send("3")
            elif isinstance(packet, str) and packet.startswith(f"43{self.namespace},{ack_id}"):
                ack = json.loads(packet[len(f"43{self.namespace},{ack_id}"):])
                deadline = min(deadline, time.monotonic() + 0.5)  # and what is emitted right after it
                continue
            elif isinstance(packet, str) and packet.startswith(head):
                heard.append(json.loads(packet[len(f"42{self.namespace},"):]))
        if ack is None:
            raise AssertionError(f"no ack {ack_id} in time")
        return ack, heard

    def close(self) -> None:
        self.ws.close()


class Clients:
    """One client of each protocol, signed in while PostgreSQL was up."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.bp = session(server, f"bp{secrets.token_hex(3)}@example.com")
        self.bp.connection.timeout = WAIT + 5
        self.bp_ws = backpack(server, self.bp)
        email = f"dx{secrets.token_hex(3)}@example.com"
        session(server, email).close()
        self.token = bearer(server, email)
        self.dx_ws = Frames(f"ws://127.0.0.1:{server.port}/websocket")
        self.dx_ws.send({"type": "auth", "access_token": self.token})
        assert self.dx_ws.next()["status"] == "ok"
        self.rs_ws = resources(server, self.token)
        email = f"as{secrets.token_hex(3)}@example.com"
        assert asnity_api(server, "POST", "/api/user/auth/signup", {"id": email, "password": PASSWORD, "nickname": "faulty"})[0] in (200, 201)
        self.as_token = asnity_api(server, "POST", "/api/user/auth/signin", {"id": email, "password": PASSWORD})[1]["result"]["accessToken"]
        community = asnity_api(server, "POST", "/api/community", {"name": "faults"}, self.as_token)[1]["result"]["_id"]
        self.channel = asnity_api(server, "POST", "/api/channel", {"communityId": community, "name": "general",
                                                               "isPrivate": False, "type": "Channel"},
                               self.as_token)[1]["result"]["_id"]
        self.sio = AckingSocketIo(server, f"/socket/commu-{community}", self.as_token)
        self.read_token, self.write_token = secrets.token_hex(16), secrets.token_hex(16)
        status, body, _ = Http(server).request("PUT", f"/backend/documents/{self.read_token}", {"#messages": {}},
                                               key=None, headers={"Write-Token": self.write_token,
                                                                  "Derived-From": "0", "Revision": "1"})
        assert status == 200, body
        self.acks = 0

    def probes(self) -> dict[str, Callable[[], tuple[bool, Any]]]:
        """Each protocol's request: ``(answered ok, the answer)``."""
        server, headers = self.server, {"Authorization": f"Bearer {self.token}"}

        def plain(method: str, path: str, body: Any = None, key: str | None = None, **extra: str) -> tuple[int, Any]:
            http = Http(server, timeout=WAIT + 5)
            try:
                status, value, _ = http.request(method, path, body, key=key, headers={**headers, **extra})
            finally:
                http.close()
            return status, value

        def backpack_rest() -> tuple[bool, Any]:
            status, body, _ = self.bp.request("POST", "/faults", {"probe": True})
            return status == 200, (status, body)

        def backpack_ws() -> tuple[bool, Any]:
            self.bp_ws.send({"action": "getAll", "collection": "faults"})
            frame = self.bp_ws.next(lambda f: f.get("action") in ("getAll", "error"), timeout=WAIT + 5)
            return frame["action"] == "getAll", frame

        def directus_rest() -> tuple[bool, Any]:
            status, body = plain("GET", "/users/me")
            return status == 200, (status, body)

        def directus_ws() -> tuple[bool, Any]:
            uid = secrets.token_hex(4)
            self.dx_ws.send({"type": "items", "collection": "faults", "action": "read", "uid": uid})
            frame = self.dx_ws.next(lambda f: f.get("uid") == uid, timeout=WAIT + 5)
            return "data" in frame and frame.get("status") != "error", frame

        def asnity_rest() -> tuple[bool, Any]:
            status, body = asnity_api(server, "GET", "/api/user/auth/me", token=self.as_token)
            return status == 200, (status, body)

        def socketio_event() -> tuple[bool, Any]:
            self.acks += 1
            ack, heard = self.sio.emit_with_ack(self.acks, "chat", {"chatType": "new", "channelId": self.channel,
                                                                    "content": "probe"}, WAIT + 5)
            return ack[0].get("written") is True, (ack, heard)

        def resources_ws() -> tuple[bool, Any]:
            entry = f"probe:{secrets.token_hex(3)}"
            self.rs_ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
            frame = self.rs_ws.next(lambda f: "warning" in f or "data" in f or "error" in f, timeout=WAIT + 5)
            return "error" not in frame, frame

        def resources_rest() -> tuple[bool, Any]:
            status, body = plain("PUT", f"/realtime/kv/probe:{secrets.token_hex(3)}", {"v": 1}, **SCOPE)
            return status == 200, (status, body)

        def inbox_http() -> tuple[bool, Any]:
            http = Http(server, timeout=WAIT + 5)
            try:
                status, body, _ = http.request("GET", f"/backend/documents/{self.read_token}", key=None)
            finally:
                http.close()
            return status == 200, (status, body)

        return {"backpack REST": backpack_rest, "backpack websocket": backpack_ws, "directus REST": directus_rest,
                "directus websocket": directus_ws, "asnity REST": asnity_rest, "socket.io event": socketio_event,
                "resources websocket": resources_ws, "resources REST": resources_rest, "inbox HTTP": inbox_http}

    def close(self) -> None:
        for ws in (self.bp_ws, self.dx_ws, self.rs_ws, self.sio):
            ws.close()


def _ready(server: ServerProcess) -> int:
    http = Http(server, timeout=WAIT + 5)
    try:
        return http.request("GET", "/ready", key=None)[0]
    finally:
        http.close()


def _run_all(probes: dict[str, Callable[[], tuple[bool, Any]]]) -> dict[str, tuple[bool, Any]]:
    """Every probe at once (each may wait out the pool's timeout): name -> result."""
    with ThreadPoolExecutor(len(probes)) as pool:
        futures = {name: pool.submit(probe) for name, probe in probes.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_protocol_answers_its_own_503_while_postgresql_is_down_and_works_once_it_is_back(node: Node) -> None:
    clients = Clients(node.server)
    probes = clients.probes()
    try:
        before = _run_all(probes)
        assert all(ok for ok, _ in before.values()), {name: got for name, (ok, got) in before.items() if not ok}
        node.pg.stop()
        try:
            started = time.monotonic()
            down = _run_all(probes)
            answered = time.monotonic() - started
            started = time.monotonic()
            ready = _ready(node.server)
            ready_after = time.monotonic() - started
        finally:
            node.pg.start()
            back = time.monotonic()
        assert not any(ok for ok, _ in down.values()), down
        # Each in its protocol's own format, saying 503 / unavailable:
        status, body = down["backpack REST"][1]
        assert status == 503 and "unavailable" in body["message"].lower()
        frame = down["backpack websocket"][1]
        assert frame == {"action": "error", "status": 503, "message": "Service unavailable: try again",
                         "failedAction": "getAll"}
        status, body = down["directus REST"][1]
        assert status == 503 and body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        frame = down["directus websocket"][1]
        assert frame["type"] == "items" and frame["status"] == "error"
        assert frame["error"]["code"] == "SERVICE_UNAVAILABLE"
        status, body = down["asnity REST"][1]
        assert status == 503 and body["statusCode"] == 503
        (ack, heard) = down["socket.io event"][1]
        assert ack == [{"written": False}]
        assert ["failed-to-send-message", {"message": "Service unavailable: try again"}] in heard
        frame = down["resources websocket"][1]
        assert frame["code"] == "unavailable" and frame["error"] == "Service unavailable", frame
        status, body = down["resources REST"][1]
        assert status == 503 and body["code"] == "unavailable", body
        status, body = down["inbox HTTP"][1]
        assert status == 503 and "unavailable" in body["message"].lower()
        assert ready == 503
        assert node.server.alive()

        # Back: the same requests succeed, without restarting Satchel.
        deadline = time.monotonic() + 20
        pending = dict(probes)
        while pending:
            assert time.monotonic() < deadline, f"still failing after PostgreSQL came back: {sorted(pending)}"
            for name, result in _run_all(pending).items():
                if result[0]:
                    del pending[name]
        recovered = time.monotonic() - back
        wait_for(lambda: _ready(node.server) == 200, timeout=10, what="/ready 200 again")
        print(f"9 protocols answered 503 within {answered:.2f} s (the pool's wait: {CONNECT_TIMEOUT} s), /ready 503 in"
              f" {ready_after:.2f} s, all 9 answered 200 again {recovered:.2f} s after PostgreSQL was back")
    finally:
        clients.close()


def test_writes_in_flight_across_a_restart_are_answered_200_or_503_and_every_200_is_stored(node: Node) -> None:
    collection = f"inflight{secrets.token_hex(3)}"
    writer = session(node.server, f"w{secrets.token_hex(3)}@example.com")
    cookie = writer.cookie
    acknowledged: list[str] = []
    statuses: list[int] = []
    restarted = threading.Event()
    stop = threading.Event()

    def write(worker: int) -> None:
        http = Http(node.server, timeout=WAIT + 5)
        http.cookie = cookie
        n = 0
        while not stop.is_set():
            try:
                status, body, _ = http.request("POST", f"/{collection}", {"worker": worker, "n": n})
            except OSError:
                http.close()
                http = Http(node.server, timeout=WAIT + 5)
                http.cookie = cookie
                statuses.append(-1)
                continue
            statuses.append(status)
            if status == 200:
                acknowledged.append(body["_id"])
            n += 1
        http.close()

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(acknowledged) >= 30, timeout=10, what="writes before the crash")
        node.pg.stop()  # a crash, with writes in flight
        time.sleep(CONNECT_TIMEOUT + 0.5)  # longer than a write waits for a connection: some are answered 503
        node.pg.start()
        restarted.set()
        count = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= count + 30, timeout=20, what="writes acknowledged after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT + 10)
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert 503 in statuses
    with psycopg.connect(node.pg.url) as db:
        stored = {id_ for (id_,) in db.execute("SELECT id FROM records WHERE collection = %s", (collection,))}
    missing = [id_ for id_ in acknowledged if id_ not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes lost"
    print(f"{len(acknowledged)} acknowledged, {statuses.count(503)} answered 503, 0 lost")
