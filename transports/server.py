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
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any, Awaitable, Callable

import trio

from satchel.transports.http.connection import Deadlines, HttpConnection
from satchel.transports.hub import Hub
from satchel.transports.interfaces import Application, ServerLimits
from satchel.transports.websocket.connection import WebsocketConnection, open_websocket, run_websocket

__all__ = ["Server", "serve"]

logger = logging.getLogger(__name__)

# Errors of accept() that say "the process or the kernel is out of
# something": pause briefly instead of spinning on them.
_RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_LISTEN_BACKLOG = 4096


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

    async def serve(self, host: str | None, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Bind ``host``:``port`` (port 0 picks a free one), report the bound
        port through ``task_status.started``, and serve until cancelled."""
        listener = _bind(host, port)
        try:
            self.port = listener.getsockname()[1]
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._deadlines.run)
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
        while True:
            if self._vacancies is not None:
                await self._vacancies.acquire()
            try:
                sock = await self._accept(listener)
            except BaseException:
                if self._vacancies is not None:
                    self._vacancies.release()
                raise
            nursery.start_soon(self._connection, sock)

    async def _accept(self, listener: socket.socket) -> socket.socket:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(listener)
                continue
            except OSError as error:
                if error.errno in _RESOURCE_ERRORS:
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

    async def _connection(self, sock: socket.socket) -> None:
        """One connection's task; guarded itself (as ``_guarded`` guards the
        others) so that an idle websocket waits one frame shallower."""
        self.connection_count += 1
        try:
            websocket = await self._start(sock)
            if websocket is not None:
                await run_websocket(websocket, self.app, self.hub)
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
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
                sock.close()
            if self._vacancies is not None:
                self._vacancies.release()

    async def _start(self, sock: socket.socket) -> WebsocketConnection | None:
        """HTTP until the connection ends or upgrades, then the opening
        handshake. A function of its own so that the handshake request is
        freed before the websocket's long life begins."""
        upgrade = await HttpConnection(sock, self.app, self.limits, self._deadlines).run()
        if upgrade is None:
            return None
        return await open_websocket(sock, upgrade, self.app, self.hub, self.limits, self._spawn)

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


def _name(async_fn: Callable[..., Any]) -> str:
    return getattr(async_fn, "__qualname__", repr(async_fn))


def _bind(host: str | None, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
