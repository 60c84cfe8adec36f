"""Backpack end-to-end scenarios, written once, run against every server.

Each scenario is an async function (trio) taking an ``Endpoint`` - where a
server listens and its API key - and speaking to it with real clients over
loopback: ``http.client`` in a thread and trio-websocket. They are the
scenarios the reference server passes in ``test_server_backpack.py`` (two
users live, channels, close announce, refusal without a session, bad frames,
an oversized frame), plus hostile HTTP followed by a normal request. The
reference server, the ASGI app on hypercorn and both examples run them
(``test_asgi.py``, ``test_examples.py``).

``Launched`` starts any server command that prints ``ready at http://H:P``.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import socket
import sys
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from server_process import Http, Launched as Process

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Endpoint:
    """A server under test: where it listens and its API key."""

    port: int
    api_key: str
    host: str = "127.0.0.1"
    alive: Callable[[], bool] = lambda: True

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"


class Launched(Process):
    """An embedded server (an example, the ASGI app) and its ``Endpoint``."""

    def __init__(self, command: list[str], api_key: str, *, timeout: float = 30) -> None:
        super().__init__(command, cwd=ROOT, timeout=timeout)
        self.endpoint = Endpoint(self.port, api_key, alive=self.alive)


def example(name: str, api_key: str) -> Launched:
    """Start ``examples/<name>.py`` on a free port."""
    return Launched([sys.executable, str(ROOT / "examples" / f"{name}.py"), "--port", "0", "--api-key", api_key], api_key)


# -- clients ----------------------------------------------------------------------

_emails = itertools.count()


def fresh_email(name: str) -> str:
    return f"{name}{next(_emails)}-{os.getpid()}@example.com"


class Client:
    """One browser-like user: an HTTP session and its websockets."""

    def __init__(self, endpoint: Endpoint, name: str) -> None:
        self.endpoint = endpoint
        self.http = Http(endpoint)  # type: ignore[arg-type]  # needs .port and .api_key
        self.user_id = self.http.login(fresh_email(name))

    @classmethod
    async def create(cls, endpoint: Endpoint, name: str) -> "Client":
        return await trio.to_thread.run_sync(cls, endpoint, name)

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any, dict]:
        return await trio.to_thread.run_sync(lambda: self.http.request(method, path, body, **kw))

    def websocket(self) -> Any:
        assert self.http.cookie is not None
        return open_websocket_url(self.endpoint.ws_url, extra_headers=[(b"cookie", self.http.cookie.encode())])


async def receive(ws: Any, timeout: float = 5) -> dict:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


async def nothing_more(ws: Any, wait: float = 0.2) -> None:
    with trio.move_on_after(wait):
        message = await ws.get_message()
        raise AssertionError(f"unexpected message {message}")


async def greeted(ws: Any) -> None:
    assert await receive(ws) == {"action": "connection", "response": "Websocket connection established"}


# -- the scenarios ------------------------------------------------------------------


async def two_users_see_each_others_changes_live(endpoint: Endpoint) -> None:
    sally, george = await Client.create(endpoint, "sally"), await Client.create(endpoint, "george")
    async with sally.websocket() as s, george.websocket() as g:
        await greeted(s)
        await greeted(g)

        await s.send_message(json.dumps({"action": "create", "collection": "e2e_messages", "data": {"text": "hello"}}))
        mine, theirs = await receive(s), await receive(g)
        assert mine == theirs and mine["action"] == "create" and mine["response"]["text"] == "hello"
        assert mine["response"]["userId"] == sally.user_id

        status, record, _ = await george.call("POST", "/e2e_messages", {"text": "over http"})
        assert status == 200
        for ws in (s, g):
            got = await receive(ws)
            assert got == {"action": "create", "collection": "e2e_messages", "httpRequest": True, "response": record}

        status, patched, _ = await sally.call("PATCH", f"/e2e_messages/{record['_id']}", {"text": "edited"})
        assert status == 200 and (await receive(g))["response"] == patched
        await receive(s)


async def channels_across_real_connections(endpoint: Endpoint) -> None:
    sally, george, outsider = [await Client.create(endpoint, name) for name in ("sally", "george", "olive")]
    async with sally.websocket() as s, george.websocket() as g, outsider.websocket() as o:
        for ws in (s, g, o):
            await greeted(ws)
        await s.send_message(json.dumps({"action": "createChannel", "usersInformationCollection": "e2e_meta",
                                         "channelType": "e2e_rooms", "name": "bikers"}))
        created = await receive(s)
        channel_id = created["response"]["_id"]
        assert created["usersCurrentChannel"] == {"channelType": "e2e_rooms", "channelId": channel_id}
        assert (await receive(g))["action"] == "createChannel"
        assert (await receive(o))["action"] == "createChannel"

        await g.send_message(json.dumps({"action": "joinChannel", "usersInformationCollection": "e2e_meta",
                                         "channelType": "e2e_rooms", "channelId": channel_id}))
        assert (await receive(g))["response"]["currentChannel"]["channelId"] == channel_id
        assert (await receive(s)) == {"action": "joinChannel", "userId": george.user_id,
                                      "channelType": "e2e_rooms", "channelId": channel_id}

        await s.send_message(json.dumps({"action": "broadcast", "text": "ride at 9",
                                         "channelType": "e2e_rooms", "channelId": channel_id}))
        assert (await receive(g))["text"] == "ride at 9"
        assert (await receive(s))["userId"] == sally.user_id
        await nothing_more(o)

        await s.send_message(json.dumps({"action": "deleteChannel", "usersInformationCollection": "e2e_meta",
                                         "channelMessagesCollection": "e2e_chat",
                                         "channelType": "e2e_rooms", "channelId": channel_id}))
        told = await receive(g)
        assert told["action"] == "deleteChannel" and told["response"]["channels"] == []
        assert (await receive(s))["action"] == "deleteChannel"


async def closing_a_socket_is_announced(endpoint: Endpoint) -> None:
    sally, george = await Client.create(endpoint, "sally"), await Client.create(endpoint, "george")
    async with george.websocket() as g:
        await greeted(g)
        async with sally.websocket() as s:
            await greeted(s)
        assert await receive(g) == {"action": "close", "userId": sally.user_id}


async def a_websocket_without_a_session_is_refused(endpoint: Endpoint) -> None:
    for headers in ([], [(b"cookie", b"_redis=forged")]):
        try:
            async with open_websocket_url(endpoint.ws_url, extra_headers=headers):
                pass
        except ConnectionRejected as refused:
            assert refused.status_code == 401, refused
        else:
            raise AssertionError("a websocket without a session was accepted")


async def bad_frames_get_errors_and_hurt_nobody(endpoint: Endpoint) -> None:
    sally, george = await Client.create(endpoint, "sally"), await Client.create(endpoint, "george")
    async with sally.websocket() as s, george.websocket() as g:
        await greeted(s)
        await greeted(g)
        for frame in ["{nope", "[]", '{"action":"explode"}', '{"action":"create","collection":"users","data":{}}',
                      '{"action":"getOne","collection":"x","id":{"$gt":""}}']:
            await s.send_message(frame)
            assert (await receive(s))["action"] == "error"
        await s.send_message(b"\x00\x01binary garbage")
        assert (await receive(s))["action"] == "error"
        await nothing_more(g)
        await s.send_message(json.dumps({"action": "open"}))
        assert (await receive(g)) == {"action": "open", "userId": sally.user_id}


async def an_oversized_frame_closes_only_its_connection(endpoint: Endpoint) -> None:
    sally, george = await Client.create(endpoint, "sally"), await Client.create(endpoint, "george")
    async with george.websocket() as g:
        await greeted(g)
        async with sally.websocket() as s:
            await greeted(s)
            await s.send_message("x" * (2 * 1024 * 1024))
            try:
                with trio.fail_after(5):
                    while True:
                        await s.get_message()
            except ConnectionClosed as closed:
                assert closed.reason.code == 1009, closed.reason
        assert (await receive(g))["action"] == "close"
        await g.send_message(json.dumps({"action": "open"}))
        assert (await receive(g))["action"] == "open"


def raw_exchange(port: int, data: bytes, *, then: bytes = b"", pause: float = 0.0, timeout: float = 5) -> bytes:
    """Send ``data`` (and ``then``, ``pause`` seconds later); return all that came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        if then:
            threading.Event().wait(pause)
            try:
                conn.sendall(then)
            except OSError:
                pass
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


_UPGRADE = (b"GET /collections HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bKdPyn3u98cTfZJSh4TNeQ==\r\n")

#: Requests that have taken servers down; the last four are STACK.md's
#: hypercorn hazard #225 (an upgrade request with bytes after its head).
HOSTILE = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\ntrailing-bytes",
    _UPGRADE + b"\r\nx",
    _UPGRADE + b"Cookie: _redis=forged\r\n\r\n\x81\xff garbage",
    b"POST /register HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n{}}extra",
]


async def hostile_requests_leave_the_server_serving(endpoint: Endpoint) -> None:
    """Hostile bytes, with a websocket open meanwhile: the server still serves
    HTTP afterwards and the open websocket still works."""
    sally = await Client.create(endpoint, "sally")
    async with sally.websocket() as s:
        await greeted(s)
        # All at once; a server may keep waiting for more of a request, so
        # give up on each after a second.
        async with trio.open_nursery() as nursery:
            for payload in HOSTILE:
                nursery.start_soon(partial(trio.to_thread.run_sync, partial(raw_exchange, endpoint.port, payload, timeout=1)))
            # The same hazard with the trailing bytes in a later packet.
            late = partial(raw_exchange, endpoint.port, _UPGRADE + b"\r\n", then=b"late", pause=0.05, timeout=1)
            nursery.start_soon(partial(trio.to_thread.run_sync, late))
        assert endpoint.alive()
        status, _, _ = await sally.call("GET", "/collections")
        assert status == 200
        await s.send_message(json.dumps({"action": "open"}))
        assert (await receive(s))["action"] == "open"


async def inbox_documents_are_served_beside_backpack(endpoint: Endpoint) -> None:
    """The second protocol of the mount table, through the same server: an
    inbox document is created, read, merged into and read again - no API key."""
    sally = await Client.create(endpoint, "sally")
    read, write = secrets.token_hex(16), secrets.token_hex(16)
    headers = {"Write-Token": write, "Derived-From": "0", "Revision": "1"}
    status, body, _ = await sally.call("PUT", f"/backend/documents/{read}", {"#messages": {}}, key=None, headers=headers)
    assert (status, body) == (200, {"revision": 1})
    message_id = secrets.token_hex(8)
    path = f"/backend/documents/{write}/messages/{message_id}"
    status, _, _ = await sally.call("POST", path, {"#": 3, "v": 21.5}, key=None)
    assert status == 200
    status, body, headers = await sally.call("GET", f"/backend/documents/{read}", key=None)
    assert status == 200 and body == {"#messages": {message_id: {"#": 3, "v": 21.5}}}
    assert int(headers["revision"]) > 1
    # Backpack, beside it, is unchanged: its catch-all still wants the key.
    status, _, _ = await sally.call("GET", "/collections", key="wrong")
    assert status == 401


Scenario = Callable[[Endpoint], Awaitable[None]]

#: Every scenario, by name.
SCENARIOS: dict[str, Scenario] = {
    scenario.__name__: scenario
    for scenario in (
        two_users_see_each_others_changes_live,
        channels_across_real_connections,
        closing_a_socket_is_announced,
        a_websocket_without_a_session_is_refused,
        bad_frames_get_errors_and_hurt_nobody,
        an_oversized_frame_closes_only_its_connection,
        hostile_requests_leave_the_server_serving,
        inbox_documents_are_served_beside_backpack,
    )
}
