"""HTTP/1.1 server connections over httptools, on raw non-blocking sockets.

Three layers, after h11: ``parser`` (sans-IO: bytes in, requests out, over
the llhttp C parser uvicorn uses), ``responses`` (sans-IO: a response to
bytes) and ``connection`` (trio: one client connection, its timeouts, its
keep-alive and pipelining, the hand-over of a websocket upgrade).
"""

from .connection import Deadlines, HttpConnection
from .parser import BODY, HEAD, IDLE, Received, Rejected, RequestParser, UpgradeRequested, header_tokens
from .responses import CONTINUE, INTERNAL_ERROR, error_response, format_header_lines, format_response

__all__ = [
    "RequestParser",
    "Received",
    "Rejected",
    "UpgradeRequested",
    "header_tokens",
    "IDLE",
    "HEAD",
    "BODY",
    "format_response",
    "format_header_lines",
    "error_response",
    "INTERNAL_ERROR",
    "CONTINUE",
    "HttpConnection",
    "Deadlines",
]
