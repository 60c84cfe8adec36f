"""HTTP/1.1 requests from bytes, sans-IO, over the llhttp C parser (httptools).

``RequestParser`` takes bytes and queues ``Received`` / ``Rejected`` /
``UpgradeRequested`` items, in the order the requests arrived, after h11's
``receive_data`` / ``next_event``. It wraps the parser uvicorn uses (STACK.md:
a thin trio listener serves ~4x more requests per second on it than on h11).
It reads no socket and no clock; ``connection.py`` is the trio side.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable

import httptools

from satchel.protocol.http import HttpRequest

if TYPE_CHECKING:
    from satchel.transports.interfaces import BodySink, ServerLimits

__all__ = ["RequestParser", "Received", "Rejected", "UpgradeRequested", "header_tokens", "IDLE", "HEAD", "BODY"]


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

    ``request`` is the offending request's head when it was read whole (a
    body too large, say), so that the protocol owning its path can word the
    error; ``None`` when not even the head could be parsed. Always the last
    item: the parser reads nothing after it.
    """

    __slots__ = ("status", "message", "request")

    def __init__(self, status: int, message: str, request: HttpRequest | None = None) -> None:
        self.status = status
        self.message = message
        self.request = request

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
        head = None
        if self._in_message and self._headers_done and self._method:
            url = self._url
            head = HttpRequest(self._method, (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1"), self._headers)
        self.items.append(Rejected(status, message, head))
        self.expect_continue = False
        self._stopped = True
        self.abandon()

    def abandon(self) -> None:
        """Close the sink of a request that will never complete (the peer
        went away mid-body, or the request was refused)."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def close(self) -> None:
        """The connection is done with this parser (it ended, or upgraded):
        close the sink of an unfinished request (``abandon``) and let go of
        llhttp. The C parser holds this object's bound callbacks - a
        reference cycle that would keep the parser, its connection and that
        connection's socket object alive until a full cyclic collection,
        which after a burst of connections can be minutes away (issue 14:
        19,000 upgrades left ~20,000 such objects scattered over ~40 MB of
        otherwise empty memory). Dropped here, reference counting frees them
        at once. ``feed`` reads nothing after this."""
        self.abandon()
        self._stopped = True
        self._parser = None  # type: ignore[assignment]

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
        self._method = ""
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
