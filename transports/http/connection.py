"""One HTTP/1.1 client connection under trio, from accept to close or upgrade.

``HttpConnection`` reads a stdlib socket with ``trio.lowlevel.wait_readable``,
feeds ``RequestParser`` (``parser.py``), answers queued requests in order
(keep-alive and pipelining) through the ``Application``, enforces the
timeouts of ``ServerLimits`` with the coarse ``Deadlines`` clock, and hands a
websocket upgrade back to the server.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from time import perf_counter

import trio

from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.transports.access_log import enabled as access_logged, log_request, request_id
from satchel.transports.interfaces import Application, BodySink, FileResponse, ServerLimits
from satchel.transports.sockets import close_gracefully, receive_awaited, receive_some, send_all

from .parser import BODY, HEAD, IDLE, Received, Rejected, RequestParser, UpgradeRequested, header_tokens
from .responses import CONTINUE, error_response, format_response

__all__ = ["HttpConnection", "Deadlines", "application_error"]

logger = logging.getLogger(__name__)


def application_error(app: Application, request: HttpRequest | None, status: int, message: str) -> HttpResponse:
    """An error the transport answers on its own (malformed, too large, a bad
    handshake) in the format of the protocol that owns ``request``'s path -
    ``Application.error_response``, when the application has one - else in
    the neutral ``{"message": ...}``."""
    word = getattr(app, "error_response", None)
    if word is not None:
        try:
            return word(request, status, message)
        except Exception:
            logger.exception("error_response failed for %s", request.loggable if request else "a malformed request")
    return error_response(status, message)


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

    While the access log is on (``access_log.py``) every answered or
    rejected request gets a line, and its answer an ``x-request-id``
    header; ``peer`` is the address the line names, the route the
    application's ``route_of(request)`` when it has one.
    """

    __slots__ = ("deadline", "_sock", "_app", "_limits", "_deadlines", "_scope", "_peer")

    def __init__(self, sock: socket.socket, app: Application, limits: ServerLimits, deadlines: Deadlines,
                 peer: str = "") -> None:
        self.deadline = math.inf
        self._sock = sock
        self._app = app
        self._limits = limits
        self._deadlines = deadlines
        self._scope: trio.CancelScope | None = None
        self._peer = peer

    def _route(self, request: HttpRequest | None) -> str:
        route_of = getattr(self._app, "route_of", None)
        if request is None or route_of is None:
            return "none"
        try:
            return route_of(request)
        except Exception:
            return "none"

    def expire(self) -> None:
        """The read deadline passed: end the connection."""
        if self._scope is not None:
            self._scope.cancel()

    def _error(self, request: HttpRequest | None, status: int, message: str) -> HttpResponse:
        """The transport's error for ``request``: worded by the application
        (the protocol that owns the path) when it can, else neutral."""
        return application_error(self._app, request, status, message)

    def _body_sink(self, request: HttpRequest) -> BodySink | None:
        try:
            return self._app.body_sink(request)
        except Exception:
            logger.exception("body_sink failed for %s %s", request.method, request.loggable)
            return None

    def _wants_websocket(self, request: HttpRequest) -> bool:
        if "websocket" not in header_tokens(request, "upgrade"):
            return False
        try:
            return bool(self._app.is_websocket_path(request))
        except Exception:
            logger.exception("is_websocket_path failed for %s %s", request.method, request.loggable)
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
            # answered, must let go of what its sink staged; and llhttp's
            # cycle back to the parser is broken (RequestParser.close).
            parser.close()
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
            # Whether this pass answered requests: then the next read waits
            # for bytes first (receive_awaited), as the client is only now
            # reading the answer.
            answered = bool(items)
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
                        rejected = item.request
                        extra = ""
                        if rejected is not None and access_logged():
                            extra = f"x-request-id: {request_id(rejected, self._peer)}\r\n"
                            log_request(rejected, self._route(rejected), item.status, 0.0, self._peer)
                        data = format_response(
                            self._error(rejected, item.status, item.message), head_only=False, connection="close",
                            extra=extra,
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
                await send_all(sock, CONTINUE, limits.write_timeout)
            data = await (receive_awaited(sock) if answered else receive_some(sock))
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
        logged = access_logged()
        if logged:
            start = perf_counter()
            extra = f"x-request-id: {request_id(request, self._peer)}\r\n"
        else:
            extra = ""
        status = 500
        try:
            if sink is None:
                response = await self._app.handle_http(request)
            else:
                try:
                    response = await self._app.handle_http_streamed(request, sink)
                finally:
                    sink.close()
            status = response.status
            if type(response) is FileResponse:
                await self._send_file(response, head_only, connection, extra)
                if logged:
                    log_request(request, self._route(request), status, perf_counter() - start, self._peer)
                return keep_alive
            data = format_response(response, head_only=head_only, connection=connection, extra=extra)
        except Exception:
            logger.exception("Unhandled error answering %s %s", request.method, request.loggable)
            status = 500
            data = format_response(self._error(request, 500, "Internal server error"), head_only=head_only,
                                   connection=connection, extra=extra)
        try:
            await send_all(self._sock, data, self._limits.write_timeout)
        finally:
            if logged:
                log_request(request, self._route(request), status, perf_counter() - start, self._peer)
        return keep_alive

    async def _send_file(self, response: FileResponse, head_only: bool, connection: str, extra: str = "") -> None:
        """The head, then the file straight from the page cache (sendfile)."""
        head = format_response(HttpResponse(response.status, response.headers), head_only=True, connection=connection,
                               extra=extra)
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
