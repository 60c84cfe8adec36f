"""HTTP/1.1 server connections over httptools, on raw non-blocking sockets.

Two layers, after h11: ``RequestParser`` is sans-IO - bytes in, a queue of
``Received`` / ``Rejected`` / ``UpgradeRequested`` items out - wrapping the
llhttp C parser that uvicorn uses (STACK.md: a thin trio listener serves ~4x
more requests per second on it than on h11). ``HttpConnection`` is the trio
side: it reads a stdlib socket with ``trio.lowlevel.wait_readable``, answers
queued requests in order (keep-alive and pipelining), enforces the timeouts
of ``ServerLimits`` and hands a websocket upgrade back to the server.

Responses always carry Content-Length: the core hands over whole bodies, so
nothing is ever chunked. Error answers use Backpack's error format,
``{"message": "..."}``.

The socket helpers at the bottom (``receive_some``, ``send_all``,
``close_gracefully``) are shared with ``websocket.py``: one place decides how
a read yields to the scheduler and how a connection is let go.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Callable

import httptools
import trio

from satchel.protocol.http import HttpRequest, HttpResponse, json_response
from satchel.transports.interfaces import Application, BodySink, FileResponse, ServerLimits

__all__ = [
    "RequestParser",
    "Received",
    "Rejected",
    "UpgradeRequested",
    "HttpConnection",
    "Deadlines",
    "format_response",
    "format_header_lines",
    "error_response",
    "header_tokens",
    "receive_some",
    "send_all",
    "close_gracefully",
]

logger = logging.getLogger(__name__)

# What one read asks the kernel for. ``recv`` returns a bytes object of the
# size actually read, so no connection keeps a buffer of this size around.
RECEIVE_SIZE = 65536


# --- sans-IO: bytes in, requests out ---------------------------------------


class Received:
    """A complete request, to be answered in turn. ``sink`` holds its body
    when the application streamed it (``Application.body_sink``)."""

    __slots__ = ("request", "keep_alive", "http10", "sink")

    def __init__(self, request: HttpRequest, keep_alive: bool, http10: bool, sink: BodySink | None = None) -> None:
        self.request = request
        self.keep_alive = keep_alive
        self.http10 = http10
        self.sink = sink


class Rejected:
    """The peer broke the protocol or a limit: answer ``status`` and close.

    Always the last item: the parser reads nothing after it.
    """

    __slots__ = ("status", "message")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"Rejected({self.status}, {self.message!r})"


class UpgradeRequested:
    """A request to switch to the websocket protocol on a websocket path.

    ``data`` holds the bytes that followed the request head (the start of the
    websocket stream). Always the last item.
    """

    __slots__ = ("request", "data", "http_version")

    def __init__(self, request: HttpRequest, data: bytes, http_version: str) -> None:
        self.request = request
        self.data = data
        self.http_version = http_version


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing with an HTTP error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


# Near the header limit, reads are parsed in slices of this many bytes.
_HEAD_SLICE = 1024

# Where a request stands, for the connection's timeouts.
IDLE, HEAD, BODY = "idle", "head", "body"


class RequestParser:
    """Feed bytes with ``feed``; take ``Received``, ``Rejected`` and
    ``UpgradeRequested`` items from ``items`` in order.

    ``wants_websocket(request)`` is asked about each request that llhttp
    flags as an upgrade (``Upgrade`` plus ``Connection: upgrade``, or
    CONNECT). When it answers False the Upgrade is ignored: llhttp has
    skipped such a request's body, so a fresh parser re-reads it with the
    request's own framing (a synthetic head carrying only that framing) and
    parsing goes on - a POST with ``Upgrade: h2c`` keeps its body and the
    requests pipelined behind it.

    ``expect_continue`` is True while the request in progress waits for a
    ``100 Continue``; the connection clears it when it sends one.
    """

    __slots__ = (
        "items",
        "expect_continue",
        "_max_header_bytes",
        "_max_body_bytes",
        "_wants_websocket",
        "_body_sink",
        "_sink",
        "_parser",
        "_in_message",
        "_headers_done",
        "_raw_head_bytes",
        "_head_bytes",
        "_head_progress",
        "_method",
        "_url",
        "_headers",
        "_body",
        "_body_size",
        "_framing",
        "_keep_alive",
        "_version",
        "_upgrade",
        "_replay",
        "_stopped",
    )

    def __init__(
        self,
        limits: ServerLimits,
        wants_websocket: Callable[[HttpRequest], bool],
        body_sink: Callable[[HttpRequest], BodySink | None] | None = None,
    ) -> None:
        self.items: deque[Received | Rejected | UpgradeRequested] = deque()
        self.expect_continue = False
        self._max_header_bytes = limits.max_header_bytes
        self._max_body_bytes = limits.max_body_bytes
        self._wants_websocket = wants_websocket
        self._body_sink = body_sink
        # The sink taking the current request's body, if one does.
        self._sink: BodySink | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._in_message = False
        self._headers_done = False
        self._raw_head_bytes = 0
        self._head_bytes = 0
        self._head_progress = False
        self._method = ""
        self._url: list[bytes] = []
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        # (content-length or None, chunked) of the current request.
        self._framing: tuple[int | None, bool] = (None, False)
        self._keep_alive = True
        self._version = "1.1"
        # (request, keep_alive) of a request llhttp flagged as an upgrade.
        self._upgrade: tuple[HttpRequest, bool] | None = None
        # (method, target, headers, keep_alive) of an upgrade request whose
        # body a fresh parser is re-reading behind a synthetic head.
        self._replay: tuple[str, list[bytes], list[tuple[str, str]], bool] | None = None
        self._stopped = False

    @property
    def phase(self) -> str:
        """IDLE between requests, HEAD while a head arrives, BODY after it."""
        if not self._in_message:
            return IDLE
        return BODY if self._headers_done else HEAD

    def feed(self, data: bytes) -> None:
        """Parse ``data``; complete requests and errors land in ``items``."""
        while data and not self._stopped:
            data = self._feed_once(data)

    def _feed_once(self, data: bytes) -> bytes:
        """Feed ``data``; return bytes still to be fed (after an ignored
        upgrade, or after slicing reached a body), else b""."""
        if (self._in_message and self._headers_done) or (
            self._head_bytes + self._raw_head_bytes + len(data) <= self._max_header_bytes
        ):
            return self._feed_piece(data, b"")
        # This read could take a head past the limit. httptools gathers a
        # header line split across reads out of our sight, so feed it in
        # slices: the limit then holds to within one slice, whatever the
        # size of the reads.
        view = memoryview(data)
        for start in range(0, len(data), _HEAD_SLICE):
            end = start + _HEAD_SLICE
            rest = self._feed_piece(view[start:end], view[end:])
            if rest or self._stopped:
                return rest
            if self._in_message and self._headers_done:
                return bytes(view[end:])
        return b""

    def _feed_piece(self, piece: bytes | memoryview, following: bytes | memoryview) -> bytes:
        self._head_progress = False
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserUpgrade as upgrade:
            return self._after_upgrade(bytes(piece[upgrade.args[0] :]) + bytes(following))
        except httptools.HttpParserCallbackError as error:
            reject = error.__context__
            if not isinstance(reject, _Reject):
                raise
            self._stop(reject.status, reject.message)
        except httptools.HttpParserError as error:
            self._stop(400, f"Malformed request: {error}")
        else:
            if not (self._in_message and self._headers_done):
                # Bytes no callback has accounted for yet: the header line
                # httptools is still gathering (or leading empty lines).
                self._raw_head_bytes = 0 if self._head_progress else self._raw_head_bytes + len(piece)
                if self._head_bytes + self._raw_head_bytes > self._max_header_bytes:
                    self._stop(431, "Request header fields too large")
        return b""

    def _stop(self, status: int, message: str) -> None:
        self.items.append(Rejected(status, message))
        self.expect_continue = False
        self._stopped = True
        self.abandon()

    def abandon(self) -> None:
        """Close the sink of a request that will never complete (the peer
        went away mid-body, or the request was refused)."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def _after_upgrade(self, rest: bytes) -> bytes:
        request, keep_alive = self._upgrade  # type: ignore[misc]
        self._upgrade = None
        if self._wants_websocket(request):
            self.items.append(UpgradeRequested(request, rest, self._version))
            self._stopped = True
            return b""
        # Not ours to upgrade (RFC 9110 section 7.8: ignore the header). The
        # paused parser cannot resume as HTTP, so a fresh one re-reads the
        # body behind a head that carries only the request's framing.
        length, chunked = self._framing
        head = [f"POST / HTTP/{self._version}\r\n"]
        if length is not None:
            head.append(f"content-length: {length}\r\n")
        if chunked:
            head.append("transfer-encoding: chunked\r\n")
        if not keep_alive:
            head.append("connection: close\r\n")
        elif self._version == "1.0":
            head.append("connection: keep-alive\r\n")
        head.append("\r\n")
        self._replay = (request.method, [request.target.encode("latin-1")], request.headers, keep_alive)
        self._parser = httptools.HttpRequestParser(self)
        return "".join(head).encode("ascii") + rest

    # httptools callbacks. An exception here other than _Reject is a bug.

    def on_message_begin(self) -> None:
        self._in_message = True
        self._headers_done = False
        self._raw_head_bytes = 0
        self._head_bytes = 0
        self._head_progress = True
        self._url = []
        self._headers = []
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._head_progress = True
        self._url.append(url)
        self._head_bytes += len(url)
        if self._head_bytes > self._max_header_bytes:
            raise _Reject(431, "Request header fields too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_progress = True
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_header_bytes:
            raise _Reject(431, "Request header fields too large")
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._replay is not None:
            # The synthetic head of a re-read body: the real head was checked.
            self._method, self._url, self._headers, self._keep_alive = self._replay
            return
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Reject(505, "HTTP version not supported")
        length = None
        transfer_codings: list[str] = []
        expect = False
        for name, value in self._headers:
            if name == "content-length":
                # llhttp has checked the digits and refused duplicates.
                length = int(value)
            elif name == "transfer-encoding":
                transfer_codings.extend(coding.strip().lower() for coding in value.split(","))
            elif name == "expect":
                expect = value.strip().lower() == "100-continue"
        chunked = bool(transfer_codings)
        if chunked and transfer_codings != ["chunked"]:
            raise _Reject(501, "Transfer-Encoding other than chunked is not supported")
        self._framing = (length, chunked)
        self._version = version
        self._keep_alive = parser.should_keep_alive()
        self._method = parser.get_method().decode("ascii")
        limit = self._max_body_bytes
        if self._body_sink is not None and (length or chunked) and not parser.should_upgrade():
            url = self._url
            head = HttpRequest(self._method, (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1"), self._headers)
            self._sink = self._body_sink(head)
            if self._sink is not None:
                limit = self._sink.limit
        if length is not None and length > limit:
            raise _Reject(413, "Request body too large")
        self.expect_continue = expect and version == "1.1" and (chunked or bool(length))

    def on_body(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        sink = self._sink
        if sink is None:
            if self._body_size > self._max_body_bytes:
                raise _Reject(413, "Request body too large")
            self._body.append(chunk)
            return
        if self._body_size > sink.limit:
            raise _Reject(413, "Request body too large")
        try:
            sink.write(chunk)
        except ValueError as error:
            raise _Reject(400, f"Malformed request body: {error}") from None

    def on_message_complete(self) -> None:
        # The bytes of this piece belonged to a message: none of them may be
        # counted against the next request's head.
        self._head_progress = True
        body = self._body
        url = self._url
        request = HttpRequest(
            self._method,
            (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1"),
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
        )
        self._in_message = False
        self._raw_head_bytes = 0
        self._head_bytes = 0
        if self._replay is not None:
            self._replay = None
        elif self._parser.should_upgrade():
            # llhttp skipped the body; a body still owed may still want its
            # 100 Continue, so expect_continue stays as it is.
            self._upgrade = (request, self._keep_alive)
            return
        self.expect_continue = False
        sink, self._sink = self._sink, None
        self.items.append(Received(request, self._keep_alive, self._version == "1.0", sink))


def header_tokens(request: HttpRequest, name: str) -> list[str]:
    """The lower-cased comma-separated tokens of every ``name`` header."""
    tokens = []
    for key, value in request.headers:
        if key == name:
            tokens.extend(token.strip().lower() for token in value.split(","))
    return tokens


# --- responses ---------------------------------------------------------------


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n" for status in HTTPStatus}

# Headers the transport owns: framing and connection management.
_TRANSPORT_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "date"))

# RFC 9110 section 6.4.1: these never carry content (nor Content-Length, for 1xx/204).
_NO_CONTENT = frozenset((204, 304))

_date_cache: list = [0, ""]


def _date_line() -> str:
    """The Date header line, formatted at most once per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = f"date: {formatdate(now, usegmt=True)}\r\n"
    return _date_cache[1]


def format_header_lines(headers: list[tuple[str, str]]) -> str:
    """``name: value`` lines for ``headers``; refuses a CR or LF inside one
    (response splitting) with ValueError."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        raise ValueError("a response header contains a line break")
    return text


def format_response(response: HttpResponse, *, head_only: bool, connection: str = "") -> bytes:
    """The bytes of ``response``: status line, headers, Content-Length, body.

    ``connection`` is the Connection header value to send ("" for none).
    Headers the transport owns (Content-Length, Transfer-Encoding,
    Connection, Date) are dropped from ``response.headers``. ``head_only``
    answers a HEAD request: the length of the body, not the body.
    """
    status = response.status
    headers = [(name, value) for name, value in response.headers if name.lower() not in _TRANSPORT_HEADERS]
    body = response.body
    head = (
        (_STATUS_LINES.get(status) or f"HTTP/1.1 {status} {_reason(status)}\r\n")
        + _date_line()
        + format_header_lines(headers)
    )
    if connection:
        head = f"{head}connection: {connection}\r\n"
    if status < 200 or status in _NO_CONTENT:
        return f"{head}\r\n".encode("latin-1")
    head = f"{head}content-length: {len(body)}\r\n\r\n".encode("latin-1")
    if head_only or not body:
        return head
    return head + body


def error_response(status: int, message: str) -> HttpResponse:
    """A ``{"message": ...}`` error answer, Backpack's error format."""
    return json_response(status, {"message": message})


_INTERNAL_ERROR = error_response(500, "Internal server error")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


# --- the trio side -----------------------------------------------------------


class Deadlines:
    """A coarse clock for the read timeouts of many connections.

    Moving a trio cancel scope's deadline is not free (the run loop keeps
    deadlines in a heap), and an HTTP connection would move its deadline
    twice per request: off while the application works, then on again for
    the keep-alive wait. Measured here that was a fifth of the server's time
    per request. So each connection writes its deadline into a plain
    attribute, and ``run`` - one task per server - wakes every ``tick``
    seconds and cancels the connections whose deadline has passed. A timeout
    therefore fires up to one tick late.
    """

    __slots__ = ("tick", "_connections")

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._connections: set[HttpConnection] = set()

    @classmethod
    def for_limits(cls, limits: ServerLimits) -> Deadlines:
        """A clock ticking at a tenth of the shortest read timeout, at most once a second."""
        shortest = min(limits.header_timeout, limits.body_timeout, limits.keepalive_timeout)
        return cls(min(1.0, shortest / 10))

    def watch(self, connection: HttpConnection) -> None:
        """Enforce ``connection.deadline`` from now on."""
        self._connections.add(connection)

    def forget(self, connection: HttpConnection) -> None:
        """Stop watching ``connection``."""
        self._connections.discard(connection)

    async def run(self) -> None:
        """Expire overdue connections until cancelled."""
        while True:
            await trio.sleep(self.tick)
            now = trio.current_time()
            for connection in [c for c in self._connections if c.deadline <= now]:
                connection.expire()


class HttpConnection:
    """One client connection, from accept until it closes or upgrades.

    ``run`` answers requests until the connection should close (it returns
    None; the caller closes the socket) or a websocket upgrade was asked for
    on a websocket path (it returns the ``UpgradeRequested``, every earlier
    pipelined request answered).

    ``deadline`` is when the current read times out (``math.inf`` while the
    application works or a response is written); ``deadlines`` enforces it.
    """

    __slots__ = ("deadline", "_sock", "_app", "_limits", "_deadlines", "_scope")

    def __init__(self, sock: socket.socket, app: Application, limits: ServerLimits, deadlines: Deadlines) -> None:
        self.deadline = math.inf
        self._sock = sock
        self._app = app
        self._limits = limits
        self._deadlines = deadlines
        self._scope: trio.CancelScope | None = None

    def expire(self) -> None:
        """The read deadline passed: end the connection."""
        if self._scope is not None:
            self._scope.cancel()

    def _body_sink(self, request: HttpRequest) -> BodySink | None:
        try:
            return self._app.body_sink(request)
        except Exception:
            logger.exception("body_sink failed for %s %s", request.method, request.target)
            return None

    def _wants_websocket(self, request: HttpRequest) -> bool:
        if "websocket" not in header_tokens(request, "upgrade"):
            return False
        try:
            return bool(self._app.is_websocket_path(request))
        except Exception:
            logger.exception("is_websocket_path failed for %s %s", request.method, request.target)
            return False

    async def run(self) -> UpgradeRequested | None:
        """Serve requests; see the class docstring."""
        self._deadlines.watch(self)
        try:
            with trio.CancelScope() as self._scope:
                return await self._serve()
            # expire() cancelled the scope: slowloris, a stalled body or an
            # idle peer. Nothing to answer.
            return None
        except (OSError, trio.TooSlowError):
            # The peer went away or stopped reading: nothing to answer.
            return None
        finally:
            self._deadlines.forget(self)

    async def _serve(self) -> UpgradeRequested | None:
        limits = self._limits
        # body_sink is optional: an application without it has every body buffered.
        streams = hasattr(self._app, "body_sink")
        parser = RequestParser(limits, self._wants_websocket, self._body_sink if streams else None)
        try:
            return await self._serve_with(parser)
        finally:
            # A body the peer never finished, and every request parsed but not
            # answered, must let go of what its sink staged.
            parser.abandon()
            for item in parser.items:
                if type(item) is Received and item.sink is not None:
                    item.sink.close()

    async def _serve_with(self, parser: RequestParser) -> UpgradeRequested | None:
        sock = self._sock
        limits = self._limits
        items = parser.items
        # A new connection must send a whole head within header_timeout.
        head_deadline = self.deadline = trio.current_time() + limits.header_timeout
        while True:
            if items:
                # The application and the writes run under no read deadline.
                self.deadline = math.inf
                while items:
                    item = items.popleft()
                    if type(item) is Received:
                        if not await self._answer(item):
                            await close_gracefully(sock, limits.close_timeout)
                            return None
                    elif type(item) is Rejected:
                        data = format_response(
                            error_response(item.status, item.message), head_only=False, connection="close"
                        )
                        await send_all(sock, data, limits.write_timeout)
                        await close_gracefully(sock, limits.close_timeout)
                        return None
                    else:
                        return item
                phase = parser.phase
                if phase == IDLE:
                    self.deadline = trio.current_time() + limits.keepalive_timeout
                elif phase == HEAD:
                    self.deadline = head_deadline
                else:
                    self.deadline = trio.current_time() + limits.body_timeout
            if parser.expect_continue:
                # Everything before this request is answered: invite its body.
                parser.expect_continue = False
                await send_all(sock, _CONTINUE, limits.write_timeout)
            data = await receive_some(sock)
            if not data:
                return None
            before = parser.phase
            parser.feed(data)
            phase = parser.phase
            if phase == HEAD:
                # A head must arrive whole within header_timeout of its first byte.
                if before != HEAD:
                    head_deadline = self.deadline = trio.current_time() + limits.header_timeout
            elif phase == BODY:
                self.deadline = trio.current_time() + limits.body_timeout

    async def _answer(self, item: Received) -> bool:
        """Answer one request; whether the connection stays open."""
        request = item.request
        keep_alive = item.keep_alive
        if keep_alive:
            connection = "keep-alive" if item.http10 else ""
        else:
            connection = "close"
        head_only = request.method == "HEAD"
        sink = item.sink
        try:
            if sink is None:
                response = await self._app.handle_http(request)
            else:
                try:
                    response = await self._app.handle_http_streamed(request, sink)
                finally:
                    sink.close()
            if type(response) is FileResponse:
                await self._send_file(response, head_only, connection)
                return keep_alive
            data = format_response(response, head_only=head_only, connection=connection)
        except Exception:
            logger.exception("Unhandled error answering %s %s", request.method, request.target)
            data = format_response(_INTERNAL_ERROR, head_only=head_only, connection=connection)
        await send_all(self._sock, data, self._limits.write_timeout)
        return keep_alive

    async def _send_file(self, response: FileResponse, head_only: bool, connection: str) -> None:
        """The head, then the file straight from the page cache (sendfile)."""
        head = format_response(HttpResponse(response.status, response.headers), head_only=True, connection=connection)
        head = head.replace(b"content-length: 0\r\n", f"content-length: {response.size}\r\n".encode(), 1)
        await send_all(self._sock, head, self._limits.write_timeout)
        if head_only:
            return
        with open(response.path, "rb") as file:
            offset = 0
            while offset < response.size:
                try:
                    sent = os.sendfile(self._sock.fileno(), file.fileno(), offset, response.size - offset)
                except BlockingIOError:
                    sent = None
                if sent == 0:
                    raise OSError("the file ended before its announced size")
                if sent is None:
                    with trio.fail_after(self._limits.write_timeout):
                        await trio.lowlevel.wait_writable(self._sock)
                    continue
                offset += sent


# --- socket helpers shared with websocket.py --------------------------------


async def receive_some(sock: socket.socket) -> bytes:
    """Read what has arrived, waiting if nothing has; b"" at end of stream,
    on a reset, or when another task closed the socket.

    When data was already there no wait happened, so this yields once to keep
    a busy peer from starving the others (and to notice cancellation).
    """
    try:
        data = sock.recv(RECEIVE_SIZE)
    except BlockingIOError:
        pass
    except OSError:
        return b""
    else:
        await trio.lowlevel.checkpoint()
        return data
    while True:
        try:
            await trio.lowlevel.wait_readable(sock)
        except trio.ClosedResourceError:
            return b""
        try:
            return sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            continue
        except OSError:
            return b""


async def send_all(sock: socket.socket, data: bytes, timeout: float) -> None:
    """Write all of ``data``. Raises OSError when the peer is gone and
    trio.TooSlowError when no progress was made for ``timeout`` seconds."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    while view:
        with trio.fail_after(timeout):
            await trio.lowlevel.wait_writable(sock)
        try:
            sent = sock.send(view)
        except BlockingIOError:
            continue
        view = view[sent:]


async def close_gracefully(sock: socket.socket, timeout: float) -> None:
    """End a connection the server chose to end, without losing its last answer.

    Closing a socket with unread input makes the kernel send a reset, which
    can destroy the answer still in flight (a 413 sent before the body was
    read). So: send FIN, then read and drop whatever the peer still sends
    until it closes too or ``timeout`` passes. The caller closes the socket.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    with trio.move_on_after(timeout):
        while await receive_some(sock):
            pass
