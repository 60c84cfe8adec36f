"""The seam between Satchel's transport and whatever application it serves.

The transport moves bytes; it knows HTTP/1.1 and websocket framing and
nothing about Backpack, inboxes or channels. Everything it needs from the
application is the ``Application`` protocol below: answer a request, say
which paths take a websocket upgrade, accept or refuse one, hear the
messages and the end of each accepted connection, and word the errors it
finds itself. ``app.SatchelApp`` implements it over a switchboard of mounts. ``ServerLimits`` holds
every bound the transport enforces on a peer, in one place, so a test can
shrink them and a deployment can read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from satchel.protocol.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from satchel.transports.websocket.connection import WebsocketConnection

__all__ = ["Application", "BodySink", "FileResponse", "WebsocketAccept", "ServerLimits"]


class BodySink(Protocol):
    """Takes a request body as it arrives, instead of the transport buffering
    it (uploads go to disk this way, never whole into memory).

    ``limit`` is the most bytes the body may have: beyond it the request is
    answered 413. ``write`` is called from the parser, synchronously, once
    per chunk; a ``ValueError`` from it answers 400. ``close`` is called
    exactly once, whether the request was handled, refused or the peer went
    away, so the sink can discard what it staged.
    """

    limit: int

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class FileResponse:
    """A response whose body the transport streams from ``path`` (``size``
    bytes, read as it is sent: a download is never whole in memory)."""

    status: int
    headers: list[tuple[str, str]]
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class WebsocketAccept:
    """Accept a websocket upgrade.

    ``subprotocol`` is echoed in ``Sec-WebSocket-Protocol`` and must be one
    the client offered; ``headers`` are added to the 101 response (for
    example a ``set-cookie``).
    """

    subprotocol: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class Application(Protocol):
    """What the transport calls. All methods are called from the connection's
    own task; a connection's calls never overlap, different connections' do.

    An exception escaping any method is logged with its traceback and never
    reaches the server: an HTTP request is answered 500, a websocket is closed
    with 1011.
    """

    async def handle_http(self, request: HttpRequest) -> HttpResponse | FileResponse:
        """Answer one complete HTTP request (body already read, within limits)."""
        ...

    def body_sink(self, request: HttpRequest) -> BodySink | None:
        """Optional. Called with each request's head (an empty body): a
        ``BodySink`` to stream this body into, or ``None`` to have it buffered
        as usual. Synchronous: it runs inside the parser. An application
        without this method (and ``handle_http_streamed``) never streams."""
        ...

    async def handle_http_streamed(self, request: HttpRequest, sink: BodySink) -> HttpResponse | FileResponse:
        """Answer a request whose body went to ``sink`` (``request.body`` is
        empty). The transport closes the sink afterwards."""
        ...

    def error_response(self, request: HttpRequest | None, status: int, message: str) -> HttpResponse:
        """Optional. The answer to an error the transport found itself (a
        malformed or oversized request, a bad websocket handshake) in the
        format of the protocol that owns ``request``'s path; ``request`` is
        ``None`` when not even its head could be read. Without this method
        the transport answers ``{"message": ...}``."""
        ...

    def is_websocket_path(self, request: HttpRequest) -> bool:
        """Whether this request's path accepts ``Upgrade: websocket``.

        Only consulted for requests that carry the upgrade headers. When it
        answers False the request is an ordinary HTTP request for
        ``handle_http``, its Upgrade header ignored (RFC 9110 section 7.8).
        """
        ...

    async def accept_websocket(
        self, request: HttpRequest, connection: WebsocketConnection
    ) -> WebsocketAccept | HttpResponse:
        """Accept (``WebsocketAccept``) or refuse (any ``HttpResponse``) a valid
        websocket handshake.

        The handshake has been checked against RFC 6455 before this is called.
        ``connection`` is already registered in the hub under ``connection.id``
        and may be given frames right away - a greeting, or a delivery that
        races the acceptance: they wait in its outbox and are written right
        after the 101 response, in order. If the upgrade is refused they are
        dropped. Messages are read only after this returns.
        """
        ...

    async def on_websocket_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        """One complete message: ``str`` for a text message, ``bytes`` for binary."""
        ...

    async def on_websocket_closed(self, connection: WebsocketConnection) -> None:
        """An accepted connection has ended, for whatever reason.

        Called exactly once per accepted connection, after the last
        ``on_websocket_message`` and after it left the hub. It runs shielded
        from cancellation for at most a few seconds, so that cleanup happens
        even while the server shuts down.
        """
        ...


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every bound the transport puts on a peer. Sizes in bytes, times in seconds."""

    # The request line plus all header lines; beyond it: 431.
    max_header_bytes: int = 16 * 1024
    # A request body, declared or chunked; beyond it: 413 and close, unread.
    max_body_bytes: int = 1024 * 1024
    # One websocket message, all fragments together; beyond it: close 1009.
    max_websocket_message_bytes: int = 1024 * 1024
    # A request head must arrive whole within this time of its first byte (and
    # a new connection must send a whole head within it): slowloris.
    header_timeout: float = 10.0
    # The longest pause allowed between two reads of a request body.
    body_timeout: float = 30.0
    # How long a kept-alive connection may sit idle between requests.
    keepalive_timeout: float = 30.0
    # The longest a response, or a websocket outbox, may make no progress
    # towards a peer that does not read.
    write_timeout: float = 30.0
    # How long to wait for the peer's half of a websocket close handshake, and
    # for a peer to go away after the server ended an HTTP connection.
    close_timeout: float = 5.0
    # A websocket's queued, unwritten frames; beyond either bound the
    # connection is a slow consumer and is closed with 1008.
    websocket_outbox_bytes: int = 4 * 1024 * 1024
    websocket_outbox_messages: int = 10_000
    # Open connections; at the bound the server stops accepting until one ends.
    max_connections: int | None = None
    # What one peer may cost (issue 14; the README's "Limits" lists each flag).
    # Open connections from one address; the next is answered 429 in the
    # protocol's error format and closed. None: no bound.
    max_connections_per_address: int | None = 1024
    # Open websockets of one user, over every protocol; the next upgrade is
    # refused with 429. None: no bound.
    max_connections_per_user: int | None = 1000
    # Channels, rooms or subscriptions one connection may hold; beyond it a
    # subscription is refused. None: no bound.
    max_channels_per_connection: int | None = 1000
    # Messages one websocket may send per second, with a burst of saved-up
    # ones; beyond the rate its reader waits (the sender feels TCP
    # backpressure), and a sender held back for websocket_abuse_seconds
    # at every message is closed with 1008. None: no bound.
    websocket_message_rate: float | None = 100.0
    websocket_message_burst: int = 1000
    websocket_abuse_seconds: float = 10.0
    # HTTP requests per second from one address (burst: twice the rate);
    # beyond it: 429 with Retry-After. None: no bound.
    http_request_rate: float | None = 200.0
    # UDP datagrams per second from one source address (burst: twice the
    # rate); beyond it they are dropped unanswered and counted. None: no bound.
    datagram_rate: float | None = 200.0
    # Whether the per-address bounds above apply to loopback peers. Off by
    # default: behind a reverse proxy on the same host every client is
    # 127.0.0.1, and the proxy is the place to limit them.
    limit_loopback: bool = False
    # Descriptors kept free: when open connections come this close to the
    # process's descriptor limit, the oldest connections that have not sent
    # a request yet, of the address holding the most, are closed.
    descriptor_reserve: int = 128

    def __post_init__(self) -> None:
        for name in (
            "max_header_bytes",
            "max_body_bytes",
            "max_websocket_message_bytes",
            "header_timeout",
            "body_timeout",
            "keepalive_timeout",
            "write_timeout",
            "close_timeout",
            "websocket_outbox_bytes",
            "websocket_outbox_messages",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServerLimits.{name} must be positive")
        for name in ("max_connections", "max_connections_per_address", "max_connections_per_user",
                     "max_channels_per_connection"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"ServerLimits.{name} must be positive or None")
        for name in ("http_request_rate", "datagram_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"ServerLimits.{name} must be positive or None")
        if not ((self.websocket_message_rate is None or self.websocket_message_rate > 0)
                and self.websocket_message_burst >= 1
                and self.websocket_abuse_seconds > 0 and self.descriptor_reserve >= 0):
            raise ValueError("ServerLimits: websocket message rate, burst and abuse time must be positive")
