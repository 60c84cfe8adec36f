"""Backpack (seed 000): REST accounts, collections and records, and the
websocket with channels, as pure actions over the shared data model."""

from . import render
from .config import BackpackConfig
from .render import PROTOCOL, render_change
from .mount import BackpackMount
from .rest import cors_headers, handle_request
from .websocket import GREETING, Socket, accept, greeting, handle_message, socket_closed

__all__ = [
    "render",
    "BackpackConfig",
    "PROTOCOL",
    "render_change",
    "BackpackMount",
    "cors_headers",
    "handle_request",
    "GREETING",
    "accept",
    "Socket",
    "greeting",
    "handle_message",
    "socket_closed",
]
