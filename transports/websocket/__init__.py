"""Websockets (RFC 6455): the upgrade, frames in, pre-encoded frames out.

Three layers, the wsproto way: ``frames`` (sans-IO frame codec: masked
client frames in, unmasked server frames out), ``handshake`` (sans-IO: is
this a valid upgrade, and the 101 that accepts it) and ``connection`` (trio:
one connection's outbox, reader and close).
"""

from .connection import SLOW_CONSUMER_REASON, Spawn, WebsocketConnection, open_websocket, run_websocket
from .frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    FAILED,
    PING,
    PONG,
    TEXT,
    FrameParser,
    ProtocolError,
    encode_binary_frame,
    encode_close_frame,
    encode_frame,
    encode_text_frame,
    valid_close_code,
)
from .handshake import accept_token, handshake_problem, offered_subprotocols, switching_protocols

__all__ = [
    "WebsocketConnection",
    "open_websocket",
    "run_websocket",
    "Spawn",
    "SLOW_CONSUMER_REASON",
    "FrameParser",
    "ProtocolError",
    "encode_frame",
    "encode_text_frame",
    "encode_binary_frame",
    "encode_close_frame",
    "valid_close_code",
    "accept_token",
    "handshake_problem",
    "offered_subprotocols",
    "switching_protocols",
    "CONTINUATION",
    "TEXT",
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "FAILED",
]
