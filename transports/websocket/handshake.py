"""The websocket opening handshake (RFC 6455 section 4), sans-IO.

Checks an upgrade request (``handshake_problem``), computes the accept token
and builds the 101 response (``switching_protocols``). No I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Callable

from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.transports.http.parser import header_tokens
from satchel.transports.http.responses import error_response, format_header_lines

__all__ = ["accept_token", "offered_subprotocols", "handshake_problem", "switching_protocols"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_token(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def offered_subprotocols(request: HttpRequest) -> list[str]:
    """The subprotocols the client offered, in its order of preference."""
    offered = []
    for name, value in request.headers:
        if name == "sec-websocket-protocol":
            offered.extend(token.strip() for token in value.split(",") if token.strip())
    return offered


def handshake_problem(
    request: HttpRequest, http_version: str = "1.1", error: Callable[[int, str], HttpResponse] = error_response
) -> HttpResponse | None:
    """Why ``request`` is not a valid opening handshake (RFC 6455 section
    4.2.1) as the response to send - 400, or 426 for an unsupported version,
    worded by ``error(status, message)`` - or None when it is valid."""
    if request.method != "GET":
        return error(400, "A websocket handshake must be a GET request")
    if http_version != "1.1":
        return error(400, "A websocket handshake needs HTTP/1.1")
    if request.header("host") is None:
        return error(400, "A websocket handshake needs a Host header")
    if "websocket" not in header_tokens(request, "upgrade"):
        return error(400, "Missing 'Upgrade: websocket'")
    if "upgrade" not in header_tokens(request, "connection"):
        return error(400, "Missing 'Connection: upgrade'")
    if header_tokens(request, "sec-websocket-version") != ["13"]:
        response = error(426, "Unsupported websocket version; this server speaks 13")
        response.headers.append(("sec-websocket-version", "13"))
        return response
    key = request.header("sec-websocket-key")
    try:
        valid_key = key is not None and len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return error(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return None


def switching_protocols(
    request: HttpRequest, subprotocol: str | None = None, extra_headers: list[tuple[str, str]] | None = None
) -> bytes:
    """The 101 response head accepting ``request``; ``subprotocol`` must be one
    the client offered (ValueError otherwise)."""
    headers = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", accept_token(request.header("sec-websocket-key", "").strip())),  # type: ignore[union-attr]
    ]
    if subprotocol is not None:
        if subprotocol not in offered_subprotocols(request):
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        headers.append(("sec-websocket-protocol", subprotocol))
    headers.extend(extra_headers or ())
    return ("HTTP/1.1 101 Switching Protocols\r\n" + format_header_lines(headers) + "\r\n").encode("latin-1")
