"""HTTP/1.1 responses to bytes, sans-IO: status line, headers, length, body.

Responses always carry Content-Length: the core hands over whole bodies, so
nothing is ever chunked. ``error_response`` is the transport's own, neutral
error format (``{"message": ...}``) for requests no protocol has claimed -
a malformed request line, say; a mount formats the errors of its own paths
(``satchel.protocol.mounts.Mount.error_response``).
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from satchel.protocol.http import HttpResponse, json_response

__all__ = ["format_response", "format_header_lines", "error_response", "INTERNAL_ERROR", "CONTINUE"]


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


def format_response(response: HttpResponse, *, head_only: bool, connection: str = "", extra: str = "") -> bytes:
    """The bytes of ``response``: status line, headers, Content-Length, body.

    ``connection`` is the Connection header value to send ("" for none);
    ``extra`` header lines the transport adds (``x-request-id: ...\\r\\n``),
    without touching ``response`` (answers may be shared, cached objects).
    Headers the transport owns (Content-Length, Transfer-Encoding,
    Connection, Date) are dropped from ``response.headers``. ``head_only``
    answers a HEAD request: the length of the body, not the body.
    """
    status = response.status
    # The kept headers' lines in one pass (format_header_lines' check, without
    # first copying the kept headers into a list of their own).
    lines = [f"{name}: {value}\r\n" for name, value in response.headers if name.lower() not in _TRANSPORT_HEADERS]
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("a response header contains a line break")
    body = response.body
    head = (_STATUS_LINES.get(status) or f"HTTP/1.1 {status} {_reason(status)}\r\n") + _date_line() + text + extra
    if connection:
        head = f"{head}connection: {connection}\r\n"
    if status < 200 or status in _NO_CONTENT:
        return f"{head}\r\n".encode("latin-1")
    head = f"{head}content-length: {len(body)}\r\n\r\n".encode("latin-1")
    if head_only or not body:
        return head
    return head + body


def error_response(status: int, message: str) -> HttpResponse:
    """A ``{"message": ...}`` error answer: the transport's neutral format."""
    return json_response(status, {"message": message})


#: What a request that crashed its handler is answered.
INTERNAL_ERROR = error_response(500, "Internal server error")
#: The interim answer inviting a body that waits on ``Expect: 100-continue``.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

