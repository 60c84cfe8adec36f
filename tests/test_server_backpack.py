"""Backpack end to end: the real server process, real HTTP and websocket
clients over loopback, two logged-in users seeing each other's changes."""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from server_process import Http, ServerProcess

_emails = itertools.count()


def fresh_email(name: str) -> str:
    return f"{name}{next(_emails)}@example.com"


class Client:
    """One browser-like user: an HTTP session and its websockets."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self.http = Http(server)
        self.server = server
        self.user_id = self.http.login(fresh_email(name))

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any, dict]:
        return await trio.to_thread.run_sync(lambda: self.http.request(method, path, body, **kw))

    def websocket(self):
        return open_websocket_url(self.server.ws_url, extra_headers=[(b"cookie", self.http.cookie.encode())])


async def receive(ws, timeout: float = 5) -> dict:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


async def nothing_more(ws, wait: float = 0.2) -> None:
    with trio.move_on_after(wait):
        message = await ws.get_message()
        raise AssertionError(f"unexpected message {message}")


async def greeted(ws) -> None:
    assert await receive(ws) == {"action": "connection", "response": "Websocket connection established"}


async def test_two_users_see_each_others_changes_live(server: ServerProcess) -> None:
    sally, george = Client(server, "sally"), Client(server, "george")
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


async def test_channels_across_real_connections(server: ServerProcess) -> None:
    sally, george, outsider = Client(server, "sally"), Client(server, "george"), Client(server, "olive")
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


async def test_closing_a_socket_is_announced(server: ServerProcess) -> None:
    sally, george = Client(server, "sally"), Client(server, "george")
    async with george.websocket() as g:
        await greeted(g)
        async with sally.websocket() as s:
            await greeted(s)
        assert await receive(g) == {"action": "close", "userId": sally.user_id}


async def test_a_websocket_without_a_session_is_refused(server: ServerProcess) -> None:
    with pytest.raises(ConnectionRejected) as refused:
        async with open_websocket_url(server.ws_url):
            pass
    assert refused.value.status_code == 401
    with pytest.raises(ConnectionRejected):
        async with open_websocket_url(server.ws_url, extra_headers=[(b"cookie", b"_redis=forged")]):
            pass


async def test_bad_frames_get_errors_and_hurt_nobody(server: ServerProcess) -> None:
    sally, george = Client(server, "sally"), Client(server, "george")
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


async def test_an_oversized_frame_closes_only_its_connection(server: ServerProcess) -> None:
    sally, george = Client(server, "sally"), Client(server, "george")
    async with george.websocket() as g:
        await greeted(g)
        async with sally.websocket() as s:
            await greeted(s)
            await s.send_message("x" * (2 * 1024 * 1024))
            with pytest.raises(ConnectionClosed) as closed:
                with trio.fail_after(5):
                    while True:
                        await s.get_message()
            assert closed.value.reason.code == 1009
        assert (await receive(g))["action"] == "close"
        await g.send_message(json.dumps({"action": "open"}))
        assert (await receive(g))["action"] == "open"


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


HOSTILE = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
    # STACK.md's hypercorn hazard: an upgrade request with trailing bytes.
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\ntrailing-bytes",
    b"GET /collections HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\xff garbage",
    b"POST /register HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n{}}extra",
]


@pytest.mark.parametrize("payload", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_http_gets_an_error_or_a_closed_connection(server: ServerProcess, payload: bytes) -> None:
    answer = await trio.to_thread.run_sync(raw_exchange, server.port, payload)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5") and b"501" in answer[:13]
    assert server.alive()
    status, _, _ = await trio.to_thread.run_sync(lambda: Http(server).request("GET", "/collections"))
    assert status == 200
