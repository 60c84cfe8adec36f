"""Satchel's protocols on asyncio.

A complete server for every HTTP and websocket protocol of Satchel's mount
table (Backpack's REST API and websocket, inbox documents over HTTP): asyncio
streams for the sockets, h11 for HTTP/1.1 and wsproto for the websocket
(both sans-IO, python-hyper; wsproto is a Satchel dependency and brings
h11), and Satchel's pure core deciding everything. Data lives in a
``MemoryStore``. Run it::

    python examples/asyncio_server.py --port 8000 --api-key K

Embedding the core in an event loop takes three pieces, all below:

- ``Core.run`` drives an action: it awaits each operation the action yields
  and sends the result back in. Storage operations go to the store (the
  memory store never blocks, so no lock is needed on one event loop);
  password hashing goes to a thread, because argon2 takes ~0.1 s on purpose.
- ``Core.publish`` applies the events an action returned, in order: the
  ``Switchboard`` (built from ``standard_mounts``) says who receives each
  payload, and the frame is encoded once and written, the same bytes, to
  every recipient's transport without awaiting - the way the ``websockets``
  library's ``broadcast()`` does. A recipient whose write buffer is over its
  limit is a slow consumer and is closed with 1008.
- Each connection turns what arrived into the core's input (``HttpRequest``,
  a message's ``str``/``bytes``), hands it to the switchboard - which picks
  the protocol - and answers with what the core returned.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import struct
from typing import Any

import h11
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request as WsRequest,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from satchel.protocol import (
    Accepted,
    Binary,
    HashPassword,
    HttpRequest,
    HttpResponse,
    Switchboard,
    VerifyPassword,
    backpack,
    run_sync,
    standard_mounts,
)
from satchel import protocol
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.system_environment import system_environment

MAX_BODY_BYTES = 1024 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024
SLOW_CONSUMER_BYTES = 4 * 1024 * 1024


def text_frame(payload: bytes, opcode: int = 0x81) -> bytes:
    """One unmasked text frame; the same bytes go to every recipient."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", opcode, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", opcode, 126, n) + payload
    return struct.pack("!BBQ", opcode, 127, n) + payload


def binary_frame(payload: bytes) -> bytes:
    """One unmasked binary frame."""
    return text_frame(payload, 0x82)


class Core:
    """The core, the store, and the live websockets of this process."""

    def __init__(self, config: backpack.BackpackConfig) -> None:
        self.env = system_environment()
        self.board = Switchboard(standard_mounts(config), self.env)
        self.store = MemoryStore()
        self.hasher = PasswordHasher()
        self.hashing = asyncio.Semaphore(2)
        self.dummy_hash = self.hasher.hash("dummy password, never matches")
        self.transports: dict[str, asyncio.WriteTransport] = {}
        self.ids = itertools.count(1)
        # The permission rules the store holds are in force from the start
        # (reading them needs no password hashing, so no event loop yet).
        run_sync(self.board.load_rules(), self.store.execute_sync)

    async def run(self, action: Any) -> Any:
        try:
            operation = next(action)
            while True:
                operation = action.send(await self.execute(operation))
        except StopIteration as done:
            return done.value

    async def execute(self, operation: Any) -> Any:
        if isinstance(operation, HashPassword):
            async with self.hashing:
                return await asyncio.to_thread(self.hasher.hash, operation.password)
        if isinstance(operation, VerifyPassword):
            async with self.hashing:
                return await asyncio.to_thread(self._verify, operation)
        return self.store.execute_sync(operation)

    def _verify(self, operation: VerifyPassword) -> bool:
        try:
            # No such account: verify a dummy anyway, so both failures take as long.
            self.hasher.verify(operation.password_hash or self.dummy_hash, operation.password)
            return bool(operation.password_hash)
        except (VerificationError, InvalidHashError):
            return False

    def publish(self, events: Any) -> None:
        for payload, recipients in self.board.deliveries(events):
            if isinstance(payload, protocol.CloseConnection):  # the protocol ends these connections
                for connection in recipients:
                    transport = self.transports.get(connection)
                    if transport is not None and not transport.is_closing():
                        transport.write(struct.pack("!BBH", 0x88, 2, payload.code))
                        transport.close()
                continue
            # once, for everyone
            frame = binary_frame(payload.data) if isinstance(payload, Binary) else text_frame(payload)
            for connection in recipients:
                transport = self.transports.get(connection)
                if transport is None or transport.is_closing():
                    continue
                if transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
                    transport.write(struct.pack("!BBH", 0x88, 2, 1008))
                    transport.close()
                    continue
                transport.write(frame)


def _response(status: int, body: bytes) -> HttpResponse:
    return HttpResponse(status, [("content-type", "application/json")], body)


class HttpSession:
    """One TCP connection: HTTP/1.1 requests until it closes or upgrades."""

    def __init__(self, core: Core, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.core = core
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.reader.read(65536))

    def send(self, response: HttpResponse, method: bytes = b"GET") -> None:
        headers = [*response.headers, ("content-length", str(len(response.body)))]
        data = self.h11.send(h11.Response(status_code=response.status, headers=headers))
        if method != b"HEAD":
            data += self.h11.send(h11.Data(data=response.body))
        data += self.h11.send(h11.EndOfMessage())
        self.writer.write(data)

    async def serve(self) -> None:
        try:
            while True:
                event = await self.next_event()
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request)
                headers = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in event.headers]
                request = HttpRequest(event.method.decode(), event.target.decode("latin-1"), headers)
                upgrade = (request.header("upgrade") or "").lower() == "websocket"
                if event.method == b"GET" and upgrade and self.core.board.wants_upgrade(request):
                    await self.websocket(event, request)
                    return
                body = bytearray()
                while not isinstance(event := await self.next_event(), h11.EndOfMessage):
                    body += event.data
                    if len(body) > MAX_BODY_BYTES:
                        self.send(_response(413, b'{"message":"Body too large"}'))
                        return
                request = HttpRequest(request.method, request.target, request.headers, bytes(body))
                try:
                    outcome = await self.core.run(self.core.board.handle_request(request))
                except Exception:
                    self.send(_response(500, b'{"message":"Internal server error"}'))
                    return
                self.core.publish(outcome.changes)
                self.send(outcome.response, request.method.encode())
                await self.writer.drain()
                if self.h11.our_state is h11.MUST_CLOSE:
                    return
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError as error:
            if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                self.send(_response(error.error_status_hint, b'{"message":"Bad request"}'))
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self.writer.close()

    async def websocket(self, event: h11.Request, request: HttpRequest) -> None:
        # The rest of the request (its end, then h11 pauses for the switch)
        # and whatever the client sent after it.
        while await self.next_event() is not h11.PAUSED:
            pass
        trailing = self.h11.trailing_data[0]
        handshake = H11Handshake(ConnectionType.SERVER)
        try:
            handshake.initiate_upgrade_connection(event.headers, event.target)
            assert isinstance(next(handshake.events()), WsRequest)
        except (WsRemoteProtocolError, StopIteration, AssertionError):
            self.writer.write(_raw_response(400, b'{"message":"Bad websocket handshake"}'))
            return
        connection = f"a{next(self.core.ids)}"
        accepted = await self.core.run(self.core.board.accept(request, connection))
        if isinstance(accepted, HttpResponse):  # refused (Backpack: no session)
            headers = [(name.encode(), value.encode()) for name, value in accepted.headers]
            headers.append((b"content-length", str(len(accepted.body)).encode()))
            self.writer.write(handshake.send(RejectConnection(status_code=accepted.status, headers=headers, has_body=True)))
            self.writer.write(handshake.send(RejectData(data=accepted.body)))
            await self.writer.drain()
            return
        extra = [(name.encode(), value.encode()) for name, value in accepted.headers]
        self.writer.write(handshake.send(AcceptConnection(subprotocol=accepted.subprotocol, extra_headers=extra)))
        ws = handshake.connection
        assert ws is not None
        await WebsocketSession(self.core, connection, accepted, ws, self.reader, self.writer).run(trailing)


def _raw_response(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} \r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


class WebsocketSession:
    """One accepted websocket: messages in, the core's events out."""

    def __init__(
        self,
        core: Core,
        connection: str,
        accepted: Accepted,
        ws: WsConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.core = core
        self.connection = connection
        self.accepted = accepted
        self.ws = ws
        self.reader = reader
        self.writer = writer

    async def run(self, trailing: bytes) -> None:
        core = self.core
        # The switchboard registered the connection when it accepted it.
        core.transports[self.connection] = self.writer.transport  # type: ignore[assignment]
        core.publish(self.accepted.events)
        close_code = None
        try:
            close_code = await self.receive(trailing)
        except (ConnectionError, WsRemoteProtocolError):
            pass
        finally:
            core.transports.pop(self.connection, None)
            core.publish(core.board.closed(self.connection))
        if close_code is not None:
            await self.close(close_code)
        self.writer.close()

    async def receive(self, data: bytes) -> int | None:
        """Handle messages until the peer closes; returns the close code the
        server must still send, if any."""
        parts: list[Any] = []
        size = 0
        while True:
            if data:
                self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(event.data)
                    size += len(event.data)
                    if size > MAX_MESSAGE_BYTES:
                        return 1009
                    if event.message_finished:
                        message = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                        parts, size = [], 0
                        await self.handle(message)
                elif isinstance(event, Ping):
                    self.writer.write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.writer.write(self.ws.send(event.response()))
                    return None
            data = await self.reader.read(65536)
            if not data:  # the peer went away without a close frame
                return None

    async def handle(self, message: str | bytes) -> None:
        try:
            events = await self.core.run(self.core.board.handle_message(self.connection, message))
        except Exception:
            payload = self.core.board.internal_error(self.connection)  # in the protocol's own format
            if payload is not None:
                self.writer.write(text_frame(payload))
            return
        self.core.publish(events)

    async def close(self, code: int) -> None:
        """Close with ``code``, then read until the peer answers (or 2 s pass),
        so that closing does not reset a connection it is still writing to."""
        self.writer.write(self.ws.send(CloseConnection(code=code)))
        try:
            self.writer.write_eof()
            async with asyncio.timeout(2):
                while await self.reader.read(65536):
                    pass
        except (TimeoutError, OSError):
            pass


async def main(host: str, port: int, api_key: str) -> None:
    core = Core(backpack.BackpackConfig(api_key=api_key))

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await HttpSession(core, reader, writer).serve()
        except Exception:  # one connection's failure never reaches the others
            writer.close()

    server = await asyncio.start_server(on_connection, host, port)
    bound = server.sockets[0].getsockname()
    print(f"Satchel (asyncio) is ready at http://{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Satchel's Backpack API on asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port, args.api_key))
    except KeyboardInterrupt:
        pass
