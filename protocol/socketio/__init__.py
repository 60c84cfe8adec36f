"""Engine.IO v4 and Socket.IO v5, the wire protocols of seed 002 (Asnity's
socket server, stock socket.io 4): a pure, sans-IO layer for a server.

Two layers, each usable alone:

- Engine.IO (engine.io-protocol README) carries messages over HTTP
  long-polling or a websocket, upgrades the one to the other, and keeps the
  connection alive with ping/pong:
  ``engineio_packets`` (the packet codec), ``engineio_requests`` (which
  request is which, and the errors engine.io answers), ``engineio_state``
  (the session's states and its one transition table), ``engineio_session``
  (``EngineIoSession``, the sans-IO machine a transport drives).
- Socket.IO (socket.io-protocol README) rides on Engine.IO messages:
  namespaces, events, acks, binary attachments: ``packets``.

A transport drives a session like this (``engineio_session`` has the whole
table of calls)::

    found = check_request(method, query, websocket=is_upgrade, sessions=sessions)
    if isinstance(found, HttpResponse):              # 400 {"code":N,"message":...}
        respond(found)
    elif found.kind is RequestKind.HANDSHAKE:
        session = sessions[sid] = EngineIoSession(sid, now_ms, config)
        respond(session.poll(now_ms))               # the open packet
    elif found.kind is RequestKind.POLL:
        response = found.session.poll(now_ms)       # None: hold the GET until
        ...                                         # poll_ready, then take_poll_response()
    # after every call into a session:
    for event in session.take_events():             # Message / Upgraded / Closed
        if isinstance(event, Message):
            packet = decoder.receive(event.data)    # a Socket.IO packet, or None
"""

from . import (
    engineio_packets,
    engineio_requests,
    engineio_session,
    engineio_state,
    packets,
)
from .engineio_packets import (
    DEFAULT_MAX_PAYLOAD,
    EngineIoError,
    EnginePacket,
    EnginePacketType,
    OpenPayload,
    decode_frame,
    decode_open,
    decode_payload,
    encode_frame,
    encode_open,
    encode_payload,
)
from .engineio_requests import (
    EngineIoRequest,
    RequestKind,
    check_request,
    error_response,
    parse_query,
)
from .engineio_session import (
    Closed,
    EngineIoConfig,
    EngineIoEvent,
    EngineIoSession,
    Message,
    Upgraded,
)
from .engineio_state import TRANSITIONS, Input, State, diagram
from .packets import (
    Ack,
    Connect,
    ConnectError,
    Disconnect,
    Event,
    PacketDecoder,
    SocketIoError,
    SocketPacket,
    SocketPacketType,
    encode_ack,
    encode_connect,
    encode_connect_error,
    encode_disconnect,
    encode_event,
    encode_packet,
)

__all__ = [
    # modules
    "engineio_packets",
    "engineio_requests",
    "engineio_session",
    "engineio_state",
    "packets",
    # Engine.IO packets
    "EngineIoError",
    "EnginePacket",
    "EnginePacketType",
    "OpenPayload",
    "DEFAULT_MAX_PAYLOAD",
    "encode_frame",
    "decode_frame",
    "encode_payload",
    "decode_payload",
    "encode_open",
    "decode_open",
    # Engine.IO requests and sessions
    "check_request",
    "parse_query",
    "error_response",
    "RequestKind",
    "EngineIoRequest",
    "EngineIoConfig",
    "EngineIoSession",
    "EngineIoEvent",
    "Message",
    "Upgraded",
    "Closed",
    "State",
    "Input",
    "TRANSITIONS",
    "diagram",
    # Socket.IO packets
    "SocketIoError",
    "SocketPacketType",
    "SocketPacket",
    "Connect",
    "Disconnect",
    "Event",
    "Ack",
    "ConnectError",
    "PacketDecoder",
    "encode_packet",
    "encode_connect",
    "encode_connect_error",
    "encode_disconnect",
    "encode_event",
    "encode_ack",
]
