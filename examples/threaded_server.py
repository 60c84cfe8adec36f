"""Satchel's protocols on plain threads and sockets.

A complete server for every HTTP and websocket protocol of Satchel's mount
table (Backpack's REST API and websocket, inbox documents over HTTP) with
nothing but the standard library around Satchel's pure core: ``http.server`` parses HTTP (a
thread per connection), the websocket handshake and frames are done by hand
(RFC 6455 is small for a server), and the core runs synchronously with
``run_sync``. Data lives in a ``MemoryStore``, behind a lock. Run it::

    python examples/threaded_server.py --port 8000 --api-key K

How the core is embedded, in four moves (the same in every server):

1. Turn what arrived into the core's input: an ``HttpRequest`` for a request
   or a websocket upgrade, a ``str``/``bytes`` for a websocket message, and
   hand it to the ``Switchboard``, which picks the protocol.
2. Run the action it hands back: ``run_sync(action, execute)``, where
   ``execute`` passes storage operations to the store and the two password
   operations to argon2 (slow on purpose, so outside the store's lock).
3. Answer the request with the returned ``HttpResponse``.
4. Publish the events it returned: ``Switchboard.deliveries`` says who
   receives each payload, and the frame is encoded once and queued, the same
   bytes, to every recipient.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import queue
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from satchel.protocol import (
    Binary,
    CloseConnection,
    HashPassword,
    HttpRequest,
    HttpResponse,
    Operation,
    Switchboard,
    VerifyPassword,
    backpack,
    run_sync,
    standard_mounts,
)
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.system_environment import system_environment

MAX_BODY_BYTES = 1024 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024
OUTBOX_FRAMES = 10_000
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- the core, a store, and who is connected ----------------------------------


class Core:
    """Everything the connection threads share."""

    def __init__(self, config: backpack.BackpackConfig) -> None:
        self.env = system_environment()
        self.store = MemoryStore()
        self.store_lock = threading.Lock()
        self.hasher = PasswordHasher()
        self.hashing = threading.Semaphore(2)
        self.dummy_hash = self.hasher.hash("dummy password, never matches")
        # The switchboard's bookkeeping and the sockets change together, under
        # one lock, and one action's events are published in order under it.
        self.hub_lock = threading.Lock()
        self.board = Switchboard(standard_mounts(config), self.env)
        self.sockets: dict[str, WebSocket] = {}
        self._ids = iter(range(1, 1 << 62))
        # The permission rules the store holds are in force from the start.
        self.run(self.board.load_rules())

    def new_connection_id(self) -> str:
        with self.hub_lock:
            return f"t{next(self._ids)}"

    def execute(self, operation: Operation) -> Any:
        if isinstance(operation, HashPassword):
            with self.hashing:
                return self.hasher.hash(operation.password)
        if isinstance(operation, VerifyPassword):
            with self.hashing:
                try:
                    # No such account: verify a dummy anyway, so both failures take as long.
                    self.hasher.verify(operation.password_hash or self.dummy_hash, operation.password)
                    return bool(operation.password_hash)
                except (VerificationError, InvalidHashError):
                    return False
        with self.store_lock:
            return self.store.execute_sync(operation)

    def run(self, action: Any) -> Any:
        return run_sync(action, self.execute)

    def publish(self, events: Any) -> None:
        with self.hub_lock:
            for payload, recipients in self.board.deliveries(events):
                if isinstance(payload, CloseConnection):  # the protocol ends these connections
                    frame = encode_frame(0x8, payload.code.to_bytes(2, "big"))
                else:  # once, for everyone
                    frame = encode_frame(0x2, payload.data) if isinstance(payload, Binary) else encode_frame(0x1, payload)
                for connection in recipients:
                    sock = self.sockets.get(connection)
                    if sock is not None:
                        sock.queue(frame)


# -- RFC 6455, server side --------------------------------------------------------


class Closed(Exception):
    """The websocket ended; ``code`` is the close code to send (None: send none)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked frame (server frames are never masked)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class WebSocket:
    """One accepted websocket: a reader (the handler's thread) and a writer thread.

    Every write goes through the bounded outbox, so frames never interleave;
    a peer that lets its outbox fill is a slow consumer and is dropped.
    """

    def __init__(self, sock: socket.socket, rfile: Any) -> None:
        self.sock = sock
        self.rfile = rfile
        self.outbox: queue.Queue[bytes | None] = queue.Queue(OUTBOX_FRAMES)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.writer.start()

    def queue(self, frame: bytes) -> None:
        try:
            self.outbox.put_nowait(frame)
        except queue.Full:
            self._abort()

    def _abort(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self) -> None:
        while (frame := self.outbox.get()) is not None:
            try:
                self.sock.sendall(frame)
            except OSError:
                return

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise Closed(None)
        return data

    def messages(self) -> Iterator[str | bytes]:
        """Complete messages until the peer closes; raises ``Closed``."""
        parts: list[bytes] = []
        kind: int | None = None
        size = 0
        while True:
            first, second = self._read(2)
            fin, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
            if first & 0x70 or not second & 0x80:
                raise Closed(1002)  # reserved bits, or an unmasked client frame
            if length == 126:
                (length,) = struct.unpack("!H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read(8))
            if opcode >= 0x8 and (length > 125 or not fin):
                raise Closed(1002)
            if opcode < 0x8 and size + length > MAX_MESSAGE_BYTES:
                raise Closed(1009)
            mask = self._read(4)
            payload = _unmask(self._read(length), mask)
            if opcode == 0x8:  # close: answer it and stop
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code if code is not None else 1000)
            if opcode == 0x9:
                self.queue(encode_frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                if kind is not None:
                    raise Closed(1002)
                kind = opcode
            elif opcode != 0x0 or kind is None:
                raise Closed(1002)
            parts.append(payload)
            size += length
            if fin:
                data = b"".join(parts)
                parts, size, message_kind, kind = [], 0, kind, None
                if message_kind == 0x2:
                    yield data
                else:
                    try:
                        yield data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise Closed(1007) from None

    def finish(self, code: int | None) -> None:
        """Send a close frame (if any), flush, and end the TCP connection politely."""
        if code is not None:
            self.queue(encode_frame(0x8, struct.pack("!H", code)))
        try:
            self.outbox.put(None, timeout=5)
        except queue.Full:
            pass
        self.writer.join(5)
        try:
            # Read what the peer still sends (a large frame, its close), so
            # that closing does not reset the connection before it reads ours.
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(2)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass


# -- HTTP -------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A response is written in two pieces (head, body): without this, Nagle's
    # algorithm and the peer's delayed ACK hold the body back ~40 ms.
    disable_nagle_algorithm = True
    server: "Server"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def handle_any(self) -> None:
        core = self.server.core
        headers = [(name.lower(), value) for name, value in self.headers.items()]
        upgrade = (self.headers.get("upgrade") or "").lower()
        if self.command == "GET" and upgrade == "websocket" and core.board.wants_upgrade(HttpRequest("GET", self.path, headers)):
            self.websocket(HttpRequest("GET", self.path, headers))
            return
        if self.headers.get("transfer-encoding"):
            self.reply(HttpResponse(501, [("content-type", "application/json")], b'{"message":"Send a Content-Length"}'))
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.reply(HttpResponse(413, [("content-type", "application/json")], b'{"message":"Body too large"}'))
            self.close_connection = True
            return
        request = HttpRequest(self.command, self.path, headers, self.rfile.read(length))
        try:
            outcome = core.run(core.board.handle_request(request))
        except Exception:
            self.reply(HttpResponse(500, [("content-type", "application/json")], b'{"message":"Internal server error"}'))
            return
        core.publish(outcome.changes)
        self.reply(outcome.response)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any

    def reply(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    def websocket(self, request: HttpRequest) -> None:
        core = self.server.core
        key = request.header("sec-websocket-key")
        if key is None or request.header("sec-websocket-version") != "13":
            self.reply(HttpResponse(400, [("content-type", "application/json")], b'{"message":"Bad websocket handshake"}'))
            self.close_connection = True
            return
        connection = core.new_connection_id()
        with core.hub_lock:  # the switchboard registers the connection if it accepts
            accepted = core.run(core.board.accept(request, connection))
        if isinstance(accepted, HttpResponse):  # refused (Backpack: no session)
            self.reply(accepted)
            return
        self.close_connection = True
        token = base64.b64encode(hashlib.sha1(key.strip().encode() + _WEBSOCKET_GUID).digest()).decode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", token)
        if accepted.subprotocol is not None:
            self.send_header("sec-websocket-protocol", accepted.subprotocol)
        for name, value in accepted.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        ws = WebSocket(self.connection, self.rfile)
        with core.hub_lock:
            core.sockets[connection] = ws
        code: int | None = 1000
        try:
            core.publish(accepted.events)
            for message in ws.messages():
                try:
                    events = core.run(core.board.handle_message(connection, message))
                except Exception:
                    payload = core.board.internal_error(connection)  # in the protocol's own format
                    if payload is not None:
                        ws.queue(encode_frame(0x1, payload))
                    continue
                core.publish(events)
        except Closed as closed:
            code = closed.code
        except OSError:
            code = None
        finally:
            with core.hub_lock:
                core.sockets.pop(connection, None)
                events = core.board.closed(connection)
            core.publish(events)
            ws.finish(code)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the listen backlog; socketserver's default is 5

    def __init__(self, address: tuple[str, int], core: Core) -> None:
        self.core = core
        super().__init__(address, Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description="Satchel's Backpack API on threads and sockets")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    server = Server((args.host, args.port), Core(backpack.BackpackConfig(api_key=args.api_key)))
    host, port = server.server_address[:2]
    print(f"Satchel (threads) is ready at http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
