"""The reference server's listener: HTTP/1.1 and websockets on one port.

A stdlib listening socket is accepted with ``trio.lowlevel.wait_readable``,
and every connection runs on its stdlib non-blocking socket in one task of
its own: HTTP requests first (``http.py``), then, after an upgrade on a
websocket path, the websocket (``websocket.py``). Raw sockets rather than
trio's SocketStream make the hub's immediate, non-awaited ``send`` possible.

Every task the server starts - a connection, or a websocket's writer - runs
under ``_guarded``: whatever escapes it is logged in one line and goes no
further. One bad connection must never take the listener down (STACK.md:
the hypercorn hazard, and ExceptionGroups leaving nurseries).

What one peer may cost (issue 14; ``ServerLimits``, README "Limits"):
- Connections per address: the one past ``max_connections_per_address``
  gets its first request answered 429 (with ``Retry-After``, in the format of
  the protocol owning the path) and is closed; at most ``_MAX_REFUSING`` such
  answers are in flight, the rest are closed unanswered.
- HTTP requests per address: a token bucket (``http_request_rate``); the
  request past it is answered 429 with ``Retry-After``.
- Descriptors: ``serve`` raises the process's RLIMIT_NOFILE to its hard limit
  and keeps ``descriptor_reserve`` free: near the limit, the oldest
  connections that have not sent a whole request yet, of the address holding
  the most, are closed, so an idle flood from one address cannot starve the
  others.
- Websocket senders are held back by ``Pressure`` and their own throttle
  (``websocket/connection.py``).
- After a mass disconnect the freed memory is handed back to the system
  once the disconnect's cleanup is done (``memory.py``: what holds it, and
  what can be returned).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
from typing import Any, Awaitable, Callable

import trio

from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.limits import BucketsByKey, is_loopback, retry_after_seconds
from satchel.transports.access_log import enabled as access_logged, log_event, request_id
from satchel.transports.http.connection import Deadlines, HttpConnection, application_error
from satchel.transports.http.parser import RequestParser
from satchel.transports.http.responses import format_response
from satchel.transports.hub import Hub
from satchel.transports.interfaces import Application, BodySink, FileResponse, ServerLimits
from satchel.transports.memory import MemoryReturn
from satchel.transports.sockets import close_gracefully, receive_some, send_all
from satchel.transports.websocket.connection import WebsocketConnection, open_websocket, run_websocket
from satchel.transports.websocket.pacing import ClosePacer, Pressure

__all__ = ["Server", "serve", "raise_descriptor_limit", "DatagramGate"]

logger = logging.getLogger(__name__)

# Errors of accept() that say "the process or the kernel is out of
# something": pause briefly instead of spinning on them.
_RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_LISTEN_BACKLOG = 4096
# Refusals (429 to a connection over its address's bound) answered at once;
# past this, over-limit connections are closed unanswered.
_MAX_REFUSING = 256
# How long a refused connection may take to send the request it is refused.
_REFUSAL_TIMEOUT = 2.0
TOO_MANY_CONNECTIONS = "Too many connections from your address"
TOO_MANY_REQUESTS = "Too many requests from your address"


def raise_descriptor_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit (a
    server's connections each hold one); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 32


class DatagramGate:
    """Datagrams per source address (``ServerLimits.datagram_rate``, burst
    twice that): ``admit(peer)`` is False for one past the rate - dropped
    unanswered, counted in ``dropped``. Loopback sources pass unless
    ``limit_loopback``. For ``udp.serve_udp_batches(admit=...)``."""

    __slots__ = ("_buckets", "_loopback", "dropped")

    def __init__(self, limits: ServerLimits) -> None:
        rate = limits.datagram_rate
        self._buckets = BucketsByKey(rate, 2 * rate) if rate else None
        self._loopback = limits.limit_loopback
        self.dropped = 0

    def admit(self, peer: Any) -> bool:
        buckets = self._buckets
        if buckets is None:
            return True
        address = peer[0] if isinstance(peer, tuple) else str(peer)
        if not self._loopback and is_loopback(address):
            return True
        if buckets.delay(address, trio.current_time()):
            self.dropped += 1
            return False
        return True


class _Peer:
    """One address's open connections: how many, and those that have not
    sent a whole request yet (oldest first)."""

    __slots__ = ("count", "fresh")

    def __init__(self) -> None:
        self.count = 0
        self.fresh: dict[socket.socket, None] = {}


class _PeerApp:
    """The application as one HTTP connection sees it: its first request
    makes it no longer fresh, and each request takes a token of its
    address's request rate (429 past it)."""

    __slots__ = ("_server", "_app", "_sock", "_peer", "_address", "_limited", "_over", "body_sink", "error_response")

    def __init__(self, server: Server, sock: socket.socket, peer: _Peer, address: str, limited: bool) -> None:
        app = server.app
        self._server = server
        self._app = app
        self._sock = sock
        self._peer = peer
        self._address = address
        self._limited = limited
        self._over = 0.0
        # Optional methods, present exactly when the application has them.
        for name in ("body_sink", "error_response"):
            method = getattr(app, name, None)
            if method is not None:
                setattr(self, name, method)

    def __getattr__(self, name: str) -> Any:
        if name in ("body_sink", "error_response"):
            raise AttributeError(name)
        return getattr(self._app, name)

    def _requested(self) -> float:
        """This connection sent a request: seconds to wait before the next
        one is allowed (0: answer it)."""
        if self._sock in self._peer.fresh:
            del self._peer.fresh[self._sock]
        if not self._limited:
            return 0.0
        rate = self._server._request_rate
        return rate.delay(self._address, trio.current_time()) if rate is not None else 0.0

    def _too_many(self, request: HttpRequest, wait: float) -> HttpResponse:
        response = application_error(self._app, request, 429, TOO_MANY_REQUESTS)
        response.headers.append(("retry-after", retry_after_seconds(wait)))
        return response

    def is_websocket_path(self, request: HttpRequest) -> bool:
        wait = self._requested()
        if wait:
            self._over = wait  # answered as an HTTP request: 429
            return False
        return self._app.is_websocket_path(request)

    async def handle_http(self, request: HttpRequest) -> HttpResponse | FileResponse:
        wait, self._over = (self._over, 0.0) if self._over else (self._requested(), 0.0)
        if wait:
            return self._too_many(request, wait)
        return await self._app.handle_http(request)

    async def handle_http_streamed(self, request: HttpRequest, sink: BodySink) -> HttpResponse | FileResponse:
        wait = self._requested()
        if wait:
            return self._too_many(request, wait)
        return await self._app.handle_http_streamed(request, sink)  # type: ignore[attr-defined]


class Server:
    """One application served on one port.

    ``hub`` holds the open websockets (pass your own to deliver through it
    from the application); ``port`` is the bound port once ``serve`` has
    started; ``connection_count`` the connections open now.
    """

    def __init__(self, app: Application, *, limits: ServerLimits = ServerLimits(), hub: Hub | None = None) -> None:
        self.app = app
        self.limits = limits
        self.hub = hub if hub is not None else Hub()
        self.port: int | None = None
        self.connection_count = 0
        self._nursery: trio.Nursery | None = None
        self._deadlines = Deadlines.for_limits(limits)
        self._vacancies = trio.Semaphore(limits.max_connections) if limits.max_connections else None
        #: Readers behind on their outbox, holding senders back.
        self.pressure = Pressure()
        #: Paces the cleanup of a mass disconnect.
        self.pacer = ClosePacer()
        self._peers: dict[str, _Peer] = {}
        self._request_rate = (
            BucketsByKey(limits.http_request_rate, 2 * limits.http_request_rate) if limits.http_request_rate else None
        )
        self._refusing = 0
        # Connections this server may hold (set by serve: the descriptor
        # limit, less the reserve and what the process had open already).
        self._budget: int | None = None
        #: Returns freed memory to the system after a mass disconnect.
        self.memory = MemoryReturn()
        #: Connections refused (over their address's bound) and shed (closed
        #: to keep the descriptor reserve), for operators and benches.
        self.refused = 0
        self.shed = 0

    async def serve(self, host: str | None, port: int, *, reuse_port: bool = False,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Bind ``host``:``port`` (port 0 picks a free one), report the bound
        port through ``task_status.started``, and serve until cancelled.
        ``reuse_port``: bind with ``SO_REUSEPORT``, beside the other workers
        of ``satchel serve --workers N`` (``workers.py``)."""
        limit = raise_descriptor_limit()
        listener = _bind(host, port, reuse_port=reuse_port)
        try:
            self.port = listener.getsockname()[1]
            self._budget = max(16, limit - self.limits.descriptor_reserve - _open_descriptors())
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._deadlines.run)
                nursery.start_soon(self._guarded, self.memory.run, lambda: self.connection_count,
                                   lambda: self.pacer.idle)
                nursery.start_soon(self._guarded, self.pacer.run)
                # The hub's flusher: each tick's deliveries, one write per
                # recipient (hub.py).
                nursery.start_soon(self._guarded, self.hub.run)
                task_status.started(self.port)
                await self._accept_loop(listener, nursery)
        finally:
            if listener.fileno() != -1:
                trio.lowlevel.notify_closing(listener)
                listener.close()

    async def _accept_loop(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        accepted = 0
        while True:
            if self._vacancies is not None:
                await self._vacancies.acquire()
            try:
                sock = await self._accept(listener)
            except BaseException:
                if self._vacancies is not None:
                    self._vacancies.release()
                raise
            if self._refused_at_once(sock):
                sock.close()
                if self._vacancies is not None:
                    self._vacancies.release()
            else:
                nursery.start_soon(self._connection, sock)
            accepted += 1
            if accepted % 64 == 0:
                # A flood of connections must not keep the accepted ones,
                # and everyone else, from running.
                await trio.lowlevel.checkpoint()

    def _refused_at_once(self, sock: socket.socket) -> bool:
        """An address over its bound while refusals are at their cap: closed
        here, without a task (an idle flood must not fill the accept queue)."""
        bound = self.limits.max_connections_per_address
        if bound is None or self._refusing < _MAX_REFUSING:
            return False
        try:
            address = _address_of(sock)
        except OSError:
            return True
        peer = self._peers.get(address)
        if peer is None or peer.count < bound or (not self.limits.limit_loopback and is_loopback(address)):
            return False
        self.refused += 1
        return True

    async def _accept(self, listener: socket.socket) -> socket.socket:
        while True:
            try:
                sock, _ = listener.accept()
                if self._budget is not None and self.connection_count >= self._budget:
                    self._shed()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(listener)
                continue
            except OSError as error:
                if error.errno in _RESOURCE_ERRORS:
                    # Out of descriptors although under budget (the process
                    # holds more than connections): make room the same way.
                    if error.errno in (errno.EMFILE, errno.ENFILE) and self._shed():
                        continue
                    logger.error("accept failed, pausing: %s", error)
                    await trio.sleep(0.1)
                # Otherwise the peer gave up before we accepted (ECONNABORTED
                # and the like): try the next one.
                continue
            sock.setblocking(False)
            # Responses and frames go out whole, in one send: Nagle would
            # only delay them.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

    def _shed(self) -> bool:
        """Near the descriptor limit: close the oldest connection that has not
        sent a whole request yet, of the address holding the most; whether
        there was one."""
        busiest = max(self._peers.values(), key=lambda peer: len(peer.fresh), default=None)
        if busiest is None or not busiest.fresh:
            return False
        victim = next(iter(busiest.fresh))
        del busiest.fresh[victim]
        self.shed += 1
        if victim.fileno() != -1:
            trio.lowlevel.notify_closing(victim)
            victim.close()
        return True

    async def _connection(self, sock: socket.socket) -> None:
        """One connection's task; guarded itself (as ``_guarded`` guards the
        others) so that an idle websocket waits one frame shallower."""
        self.connection_count += 1
        self.memory.opened(self.connection_count)
        try:
            address = _address_of(sock)
        except OSError:
            address = ""
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _Peer()
        peer.count += 1
        peer.fresh[sock] = None
        limits = self.limits
        limited = limits.limit_loopback or not is_loopback(address)
        try:
            bound = limits.max_connections_per_address
            if limited and bound is not None and peer.count > bound:
                del peer.fresh[sock]
                self.refused += 1
                await self._refuse(sock, 429, TOO_MANY_CONNECTIONS)
                return
            websocket, opened = await self._start(sock, _PeerApp(self, sock, peer, address, limited), address)
            peer.fresh.pop(sock, None)
            if websocket is not None:
                try:
                    await run_websocket(websocket, self.app, self.hub)
                finally:
                    if opened is not None:
                        rid, route, since = opened
                        log_event("websocket close", rid, route, address, trio.current_time() - since,
                                  websocket.close_code)
        except Exception as error:
            logger.error("unexpected error in a connection: %r", error, exc_info=error)
        except BaseExceptionGroup as group:
            errors, others = group.split(Exception)
            if errors is not None:
                logger.error("unexpected error in a connection: %r", errors, exc_info=errors)
            if others is not None:
                raise others from None
        finally:
            self.connection_count -= 1
            peer.fresh.pop(sock, None)
            peer.count -= 1
            if not peer.count:
                del self._peers[address]
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
                sock.close()
            if self._vacancies is not None:
                self._vacancies.release()

    async def _start(
        self, sock: socket.socket, app: _PeerApp, address: str
    ) -> tuple[WebsocketConnection | None, tuple[str, str, float] | None]:
        """HTTP until the connection ends or upgrades, then the opening
        handshake. A function of its own so that the handshake request is
        freed before the websocket's long life begins. Returns the open
        websocket, if any, and - while the access log is on - its request
        id, route and opening time, for the line of its close."""
        upgrade = await HttpConnection(sock, app, self.limits, self._deadlines, address).run()  # type: ignore[arg-type]
        if upgrade is None:
            return None, None
        if not access_logged():
            websocket = await open_websocket(sock, upgrade, self.app, self.hub, self.limits, self._spawn,
                                             self.pressure, self.pacer)
            return websocket, None
        request = upgrade.request
        rid = request_id(request, address)  # before the application sees it: it may log it too
        websocket = await open_websocket(sock, upgrade, self.app, self.hub, self.limits, self._spawn, self.pressure,
                                         self.pacer)
        route_of = getattr(self.app, "route_of", None)
        route = route_of(request) if route_of is not None else "none"
        log_event("websocket open" if websocket is not None else "websocket refused", rid, route, address)
        return websocket, (rid, route, trio.current_time())

    async def _refuse(self, sock: socket.socket, status: int, message: str) -> None:
        """Answer the connection's first request ``status`` in its protocol's
        format, with ``Retry-After``, and close; unanswered when too many
        refusals are under way or no request comes soon."""
        if self._refusing >= _MAX_REFUSING:
            return
        self._refusing += 1
        parser: RequestParser | None = None
        try:
            parser = RequestParser(self.limits, lambda request: False, None)
            request: HttpRequest | None = None
            with trio.move_on_after(_REFUSAL_TIMEOUT):
                while not parser.items:
                    data = await receive_some(sock)
                    if not data:
                        return
                    parser.feed(data)
                request = getattr(parser.items[0], "request", None)
            if request is None:
                return
            response = application_error(self.app, request, status, message)
            response.headers.append(("retry-after", "1"))
            await send_all(sock, format_response(response, head_only=False, connection="close"), _REFUSAL_TIMEOUT)
            await close_gracefully(sock, _REFUSAL_TIMEOUT)
        except (OSError, trio.TooSlowError):
            pass
        finally:
            if parser is not None:
                parser.close()  # llhttp's cycle back to it (RequestParser.close)
            self._refusing -= 1

    def _spawn(self, async_fn: Callable[[], Awaitable[None]]) -> None:
        """Start a guarded task beside the connections (a websocket writer)."""
        assert self._nursery is not None
        self._nursery.start_soon(self._guarded, async_fn)

    async def _guarded(self, async_fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a task so that no exception leaves it, except cancellation and
        the ones that should stop the process (KeyboardInterrupt, SystemExit)."""
        try:
            await async_fn(*args)
        except Exception as error:
            logger.error("unexpected error in %s: %r", _name(async_fn), error, exc_info=error)
        except BaseExceptionGroup as group:
            errors, others = group.split(Exception)
            if errors is not None:
                logger.error("unexpected error in %s: %r", _name(async_fn), errors, exc_info=errors)
            if others is not None:
                raise others from None


def _address_of(sock: socket.socket) -> str:
    peer = sock.getpeername()
    return peer[0] if isinstance(peer, tuple) else str(peer)


def _name(async_fn: Callable[..., Any]) -> str:
    return getattr(async_fn, "__qualname__", repr(async_fn))


def _bind(host: str | None, port: int, *, reuse_port: bool = False) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Each worker has its own listener and accept queue; the kernel
            # spreads new connections over them (workers.py says why).
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(address)
        listener.listen(_LISTEN_BACKLOG)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


async def serve(
    app: Application,
    host: str | None,
    port: int,
    *,
    limits: ServerLimits = ServerLimits(),
    hub: Hub | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host``:``port`` until cancelled.

    Use as ``port = await nursery.start(serve, app, host, 0)``: the bound port
    is reported once the server accepts connections.
    """
    await Server(app, limits=limits, hub=hub).serve(host, port, task_status=task_status)
