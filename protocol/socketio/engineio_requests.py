"""Which Engine.IO request is which, and the errors engine.io answers
(engine.io-protocol README "Query parameters"; the codes and their order
follow engine.io's ``Server.verify`` and ``Server.handshake``).

Every HTTP request and websocket upgrade under the Engine.IO path carries
``EIO=4``, ``transport=polling|websocket`` and, once a session exists, its
``sid``. ``check_request`` sorts a request into a ``RequestKind`` or returns
the HTTP answer that refuses it: 400 (403 for Forbidden) with
``{"code":N,"message":"..."}``:

    0 Transport unknown   1 Session ID unknown   2 Bad handshake method
    3 Bad request         4 Forbidden            5 Unsupported protocol version

For a refused websocket upgrade the same answer goes out instead of the 101.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from ..http import HttpResponse, json_response

if TYPE_CHECKING:
    from .engineio_session import EngineIoSession

__all__ = [
    "POLLING",
    "WEBSOCKET",
    "UNKNOWN_TRANSPORT",
    "UNKNOWN_SID",
    "BAD_HANDSHAKE_METHOD",
    "BAD_REQUEST",
    "FORBIDDEN",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "ERROR_MESSAGES",
    "error_response",
    "RequestKind",
    "EngineIoRequest",
    "parse_query",
    "check_request",
]

POLLING = "polling"
WEBSOCKET = "websocket"

UNKNOWN_TRANSPORT = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
FORBIDDEN = 4
UNSUPPORTED_PROTOCOL_VERSION = 5

ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


def error_response(code: int, message: str | None = None) -> HttpResponse:
    """engine.io's refusal: 403 for Forbidden, else 400, with
    ``{"code":code,"message":...}`` (``message`` defaults to the code's)."""
    status = 403 if code == FORBIDDEN else 400
    return json_response(status, {"code": code, "message": message or ERROR_MESSAGES[code]})


class RequestKind(enum.Enum):
    """What a valid request under the Engine.IO path asks for."""

    HANDSHAKE = "handshake"  # GET without sid: open a polling session, answer it as a poll
    WEBSOCKET_HANDSHAKE = "websocket handshake"  # websocket without sid: a websocket session
    POLL = "poll"  # GET with sid: EngineIoSession.poll
    POST = "post"  # POST with sid: EngineIoSession.receive_post
    UPGRADE = "upgrade"  # websocket with sid: EngineIoSession.attach_websocket


@dataclass(frozen=True, slots=True)
class EngineIoRequest:
    """A request ``check_request`` accepted: its kind, and for the kinds with a
    sid, the session it names."""

    kind: RequestKind
    sid: str | None = None
    session: EngineIoSession | None = None


def parse_query(query: str) -> dict[str, str]:
    """The parameters of a raw query string; of a repeated name the last
    value counts, as in engine.io (``Object.fromEntries``)."""
    return dict(parse_qsl(query, keep_blank_values=True))


def check_request(
    method: str,
    query: Mapping[str, str] | str,
    *,
    websocket: bool = False,
    sessions: Mapping[str, EngineIoSession] | None = None,
) -> EngineIoRequest | HttpResponse:
    """Sort one request into an ``EngineIoRequest``, or refuse it.

    ``method`` is the HTTP method (a websocket upgrade is a GET), ``query``
    the parsed or raw query string, ``websocket`` whether the request asks
    for a websocket upgrade, ``sessions`` the open sessions by sid. A CLOSED
    session counts as unknown, except to the one GET its client's close
    left room for (``EngineIoSession.late_poll_open``, which ``poll`` checks). The checks run in engine.io's order:
    transport, sid, transport mismatch, method, then the protocol version.
    """
    if isinstance(query, str):
        query = parse_query(query)
    transport = query.get("transport")
    if transport != POLLING and transport != WEBSOCKET:
        return error_response(UNKNOWN_TRANSPORT)
    sid = query.get("sid")
    session = None
    if sid:
        session = (sessions or {}).get(sid)
        if session is None or (session.closed and (websocket or method != "GET" or not session.has_late_poll)):
            return error_response(UNKNOWN_SID)
        if websocket:
            # polling cannot take an upgraded request (engine.io closes it)
            if transport != WEBSOCKET:
                return error_response(BAD_REQUEST)
            kind = RequestKind.UPGRADE
        elif transport != session.transport:
            # e.g. a poll after the upgrade: refused, the session lives on
            return error_response(BAD_REQUEST)
        elif method == "GET":
            kind = RequestKind.POLL
        elif method == "POST":
            kind = RequestKind.POST
        else:
            return error_response(BAD_REQUEST)
    else:
        if method != "GET":
            return error_response(BAD_HANDSHAKE_METHOD)
        if (transport == WEBSOCKET) != websocket:
            return error_response(BAD_REQUEST)
        kind = RequestKind.WEBSOCKET_HANDSHAKE if websocket else RequestKind.HANDSHAKE
    if query.get("EIO") != "4":
        return error_response(UNSUPPORTED_PROTOCOL_VERSION)
    return EngineIoRequest(kind, sid or None, session)
