"""Shared pieces of the transport tests: a small application, a server
context, and raw-socket HTTP and websocket clients that can send anything.

The application knows a few routes:
- ``/echo`` answers JSON with the method, target, body and headers it got;
- ``/boom`` raises (the server must answer 500 and live on);
- ``/ws`` is a websocket that greets, echoes, closes on ``close-me`` and
  raises on ``boom``; ``/chat`` broadcasts every message to all websockets
  through the hub; ``/refuse`` refuses the upgrade with 403.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import socket
from typing import AsyncIterator

import msgspec
import trio

from satchel.protocol.http import HttpRequest, HttpResponse, json_response
from satchel.transports.hub import Hub
from satchel.transports.interfaces import ServerLimits, WebsocketAccept
from satchel.transports.server import serve
from satchel.transports.websocket import WebsocketConnection, offered_subprotocols

GREETING = b'{"action":"connection","response":"Websocket connection established"}'


class TestApp:
    """The application under the transport tests; records what happened."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, greet: bool = True, send_buffer: int | None = None) -> None:
        self.hub = Hub()
        self.greet = greet
        # Shrinks the server side's kernel send buffer of each websocket, so
        # that slow-consumer tests fill it quickly.
        self.send_buffer = send_buffer
        self.closed: list[WebsocketConnection] = []
        self.closed_event = trio.Event()
        # The most bytes any one outbox held, sampled after each broadcast.
        self.max_buffered = 0

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("boom")
        if request.path == "/echo":
            return json_response(
                200,
                {
                    "method": request.method,
                    "target": request.target,
                    "body": request.body.decode("latin-1"),
                    "headers": request.headers,
                },
            )
        return json_response(404, {"message": "Not found"})

    def is_websocket_path(self, request: HttpRequest) -> bool:
        return request.path in ("/ws", "/chat", "/refuse")

    async def accept_websocket(self, request: HttpRequest, connection: WebsocketConnection):
        if request.path == "/refuse":
            return json_response(403, {"message": "Unauthorized"})
        if self.send_buffer is not None:
            connection._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        if request.path == "/chat":
            connection.app_state = "chat"
        if self.greet:
            connection.send_text(GREETING)
        offered = offered_subprotocols(request)
        return WebsocketAccept(subprotocol=offered[0] if offered else None)

    async def on_websocket_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        if message == "close-me":
            connection.close(4000, "bye")
        elif message == "boom":
            raise RuntimeError("boom")
        elif message == "checkpoint":
            await trio.sleep(0)
            connection.send_text(b"checked")
        elif isinstance(message, bytes):
            connection.send_binary(message)
        elif connection.app_state == "chat":
            self.hub.deliver(message.encode(), self.hub)
            for other in map(self.hub.get, self.hub):
                if other is not None:
                    self.max_buffered = max(self.max_buffered, other.buffered_bytes)
        else:
            connection.send_text(message.encode())

    async def on_websocket_closed(self, connection: WebsocketConnection) -> None:
        assert connection not in self.closed, "on_websocket_closed called twice"
        self.closed.append(connection)
        self.closed_event.set()
        self.closed_event = trio.Event()


@contextlib.asynccontextmanager
async def running(app: TestApp, limits: ServerLimits = ServerLimits()) -> AsyncIterator[int]:
    """Serve ``app`` on a free loopback port for the block; yield the port."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0, limits=limits, hub=app.hub))
        yield port
        nursery.cancel_scope.cancel()


# --- raw HTTP ----------------------------------------------------------------


async def connect(port: int, *, receive_buffer: int | None = None) -> trio.socket.SocketType:
    """A raw client socket to the server."""
    sock = trio.socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", port))
    return sock


class Response(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return msgspec.json.decode(self.body)


class Reader:
    """Reads HTTP responses and websocket frames off a raw socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    async def _more(self) -> bool:
        try:
            data = await self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not await self._more():
                raise EOFError(f"connection closed with {bytes(self.buffer)!r} buffered")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def read_response(self, *, head_only: bool = False) -> Response | None:
        """The next response, or None at a clean end of stream."""
        while b"\r\n\r\n" not in self.buffer:
            if not await self._more():
                if self.buffer:
                    raise EOFError(f"truncated response {bytes(self.buffer)!r}")
                return None
        end = self.buffer.index(b"\r\n\r\n")
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, status, _ = (status_line.split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", status_line
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name and name == name.strip(), line
            headers[name.lower()] = value.strip()
        code = int(status)
        if head_only or code < 200 or code in (204, 304):
            return Response(code, headers, b"")
        body = await self.read_exactly(int(headers["content-length"]))
        return Response(code, headers, body)

    async def read_all(self) -> bytes:
        """Everything until the peer closes."""
        while await self._more():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def read_frame(self) -> tuple[int, bool, bytes]:
        """(opcode, fin, payload) of the next server frame; checks it is unmasked."""
        first, second = await self.read_exactly(2)
        assert not second & 0x80, "server frames must not be masked"
        assert not first & 0x70, "no reserved bits"
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.read_exactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.read_exactly(8), "big")
        return first & 0x0F, bool(first & 0x80), await self.read_exactly(length)

    async def read_close(self) -> int | None:
        """Skip frames up to the server's close frame; its code (None when the
        connection ended without one, 1005 for an empty one)."""
        while True:
            try:
                opcode, _, payload = await self.read_frame()
            except EOFError:
                return None
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big") if payload else 1005


async def request(port: int, data: bytes, *, head_only: bool = False) -> Response | None:
    """Send raw ``data`` on a new connection; the first response."""
    sock = await connect(port)
    with sock:
        await sock.send(data)
        return await Reader(sock).read_response(head_only=head_only)


async def exchange_all(port: int, data: bytes) -> bytes:
    """Send ``data``, end our side, return everything the server sent."""
    sock = await connect(port)
    with sock:
        try:
            await sock.send(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return await Reader(sock).read_all()


async def assert_serving(port: int) -> None:
    """A normal request on a new connection is answered."""
    with trio.fail_after(5):
        response = await request(port, b"GET /echo?alive HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response is not None and response.status == 200
    assert response.json()["target"] == "/echo?alive"


def parse_responses(data: bytes) -> list[int]:
    """The status codes of the complete responses in a byte stream (the
    last one may be cut short by a close)."""
    statuses = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        head = data[:end].decode("latin-1").split("\r\n")
        assert head[0].startswith("HTTP/1.1 "), head[0]
        statuses.append(int(head[0].split(" ")[1]))
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = data[end + 4 + length :]
    return statuses


# --- raw websocket -----------------------------------------------------------


def handshake_request(path: str = "/ws", *, extra: str = "", key: str | None = None) -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True, mask: bytes | None = None
) -> bytes:
    """A client frame, masked unless told otherwise."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, (0x80 if masked else 0) | length))
    elif length < 65536:
        header = bytes((first, (0x80 if masked else 0) | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, (0x80 if masked else 0) | 127)) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = mask if mask is not None else os.urandom(4)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


async def open_raw_websocket(
    port: int, path: str = "/ws", *, receive_buffer: int | None = None, greeting: bool = True
) -> tuple[trio.socket.SocketType, Reader]:
    """A raw socket past the 101 (and past the greeting when expected)."""
    sock = await connect(port, receive_buffer=receive_buffer)
    await sock.send(handshake_request(path))
    reader = Reader(sock)
    response = await reader.read_response()
    assert response is not None and response.status == 101, response
    if greeting:
        assert await reader.read_frame() == (0x1, True, GREETING)
    return sock, reader
