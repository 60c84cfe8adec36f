"""Engine.IO v4 packets and their two wire encodings (engine.io-protocol README,
"Protocol" and "Packet encoding").

An Engine.IO packet is a type digit and an optional payload:

    0 open   1 close   2 ping   3 pong   4 message   5 upgrade   6 noop

- On a websocket every packet is its own frame: a text frame ``<type><data>``,
  or, for a binary message, a binary frame holding the bytes as they are.
- In an HTTP long-polling body the packets are joined with the record
  separator ``"\\x1e"``; a binary message travels as ``"b"`` + base64.

``decode_frame`` and ``decode_payload`` take whatever a peer sent and return
packets or raise ``EngineIoError``; no other exception leaves them (any other
is a bug). Both enforce ``max_payload``, the cap the server announces in its
open packet: a polling body and a single packet may not be longer.

``EnginePacket`` is immutable and caches its text form, so one packet built
for a broadcast is encoded once however many sessions it is queued on.
"""

from __future__ import annotations

import binascii
import enum
from typing import Any

import msgspec

from ..errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "EngineIoError",
    "EnginePacketType",
    "EnginePacket",
    "OpenPayload",
    "RECORD_SEPARATOR",
    "DEFAULT_MAX_PAYLOAD",
    "encode_frame",
    "decode_frame",
    "encode_payload",
    "decode_payload",
    "encode_open",
    "decode_open",
]

RECORD_SEPARATOR = "\x1e"
# engine.io's maxHttpBufferSize default; the protocol test suite expects it too.
DEFAULT_MAX_PAYLOAD = 1_000_000


class EngineIoError(RemoteProtocolError):
    """The peer sent something that is not Engine.IO v4.

    ``status`` is the HTTP status a polling request that carried it is
    answered with (400, or 413 for a body over ``max_payload``).
    """


class EnginePacketType(enum.IntEnum):
    """The seven packet types; the value is the digit on the wire."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


_TYPE_BY_CHAR = {str(int(t)): t for t in EnginePacketType}


class EnginePacket:
    """One Engine.IO packet: a ``type`` and its ``data``.

    ``data`` is a str for every type; only a MESSAGE may carry bytes (a binary
    message). ``text`` is the packet as text (what a polling body joins, and
    the websocket frame of a text packet); ``frame`` is its websocket frame.
    Both are computed once and kept.
    """

    __slots__ = ("type", "data", "_text")

    type: EnginePacketType
    data: str | bytes

    def __init__(self, type: EnginePacketType, data: str | bytes = "") -> None:
        # Exact-class checks first: this runs for every packet in and out.
        if type.__class__ is not EnginePacketType:
            try:
                type = EnginePacketType(type)
            except ValueError:
                raise LocalProtocolError(f"no Engine.IO packet type {type!r}") from None
        if data.__class__ is not str:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            if not isinstance(data, (str, bytes)):
                raise LocalProtocolError(f"Engine.IO packet data must be str or bytes, not {data.__class__.__name__}")
            if isinstance(data, bytes) and type is not EnginePacketType.MESSAGE:
                raise LocalProtocolError("only a message packet can carry binary data")
        _set(self, "type", type)
        _set(self, "data", data)
        _set(self, "_text", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("EnginePacket is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnginePacket):
            return NotImplemented
        return self.type is other.type and type(self.data) is type(other.data) and self.data == other.data

    def __hash__(self) -> int:
        return hash((self.type, self.data))

    def __repr__(self) -> str:
        return f"EnginePacket({self.type.name}, {self.data!r})"

    @property
    def is_binary(self) -> bool:
        """Whether this is a binary message."""
        return isinstance(self.data, bytes)

    @property
    def text(self) -> str:
        """``<type><data>``, or ``b<base64>`` for a binary message."""
        text = self._text
        if text is None:
            if isinstance(self.data, bytes):
                text = "b" + binascii.b2a_base64(self.data, newline=False).decode("ascii")
            else:
                text = _DIGITS[self.type] + self.data
            object.__setattr__(self, "_text", text)
        return text

    @property
    def frame(self) -> str | bytes:
        """The websocket frame: the bytes of a binary message, else ``text``."""
        return self.data if isinstance(self.data, bytes) else self.text


_DIGITS = {t: str(int(t)) for t in EnginePacketType}
_set = object.__setattr__


def encode_frame(packet: EnginePacket) -> str | bytes:
    """The websocket frame of ``packet`` (a text frame if str, else binary)."""
    return packet.frame


def decode_frame(frame: str | bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> EnginePacket:
    """The packet in one websocket frame; a binary frame is a binary message.

    Raises ``EngineIoError`` for an empty frame, an unknown type, bad base64
    after a ``b`` prefix, or a frame longer than ``max_payload``.
    """
    if isinstance(frame, (bytes, bytearray, memoryview)):
        if len(frame) > max_payload:
            raise EngineIoError("packet larger than maxPayload", 413)
        return EnginePacket(EnginePacketType.MESSAGE, bytes(frame))
    if not isinstance(frame, str):
        raise EngineIoError("a frame is text or binary")
    if len(frame) > max_payload:
        raise EngineIoError("packet larger than maxPayload", 413)
    return _decode_text(frame)


def _decode_text(text: str) -> EnginePacket:
    """One packet in text form (a websocket text frame or one polling segment)."""
    if not text:
        raise EngineIoError("empty packet")
    head = text[0]
    if head == "b":
        # engine.io decodes a "b" prefix as a base64 binary message on either
        # transport (its decodePacket is shared); so do we.
        return EnginePacket(EnginePacketType.MESSAGE, _b64decode(text[1:]))
    kind = _TYPE_BY_CHAR.get(head)
    if kind is None:
        raise EngineIoError("unknown Engine.IO packet type")
    return EnginePacket(kind, text[1:])


def _b64decode(text: str) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise EngineIoError("invalid base64 in a binary packet") from None
    # Standard alphabet only; missing padding is tolerated (Node's decoder is
    # lenient about it), anything else is refused.
    raw += b"=" * (-len(raw) % 4)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        raise EngineIoError("invalid base64 in a binary packet") from None


def encode_payload(packets: list[EnginePacket] | tuple[EnginePacket, ...]) -> str:
    """A polling body: the packets' text joined with the record separator.

    Raises ``LocalProtocolError`` for an empty list or a text packet whose
    data contains the separator (it would split on the way in; the protocol
    "assumes the record separator is not used in the data").
    """
    if not packets:
        raise LocalProtocolError("a polling payload holds at least one packet")
    texts = [packet.text for packet in packets]
    for packet, text in zip(packets, texts):
        if not packet.is_binary and RECORD_SEPARATOR in text:
            raise LocalProtocolError("a text packet in a polling payload cannot contain \\x1e")
    return RECORD_SEPARATOR.join(texts)


def decode_payload(body: str | bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> list[EnginePacket]:
    """The packets of a polling body (bytes are decoded as UTF-8).

    All or nothing: one bad packet makes the whole body an ``EngineIoError``
    (status 413 when the body is longer than ``max_payload`` bytes).
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        if len(body) > max_payload:
            raise EngineIoError("payload larger than maxPayload", 413)
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise EngineIoError("payload is not UTF-8") from None
    elif isinstance(body, str):
        text = body
        # A str counts in characters; its UTF-8 form is never shorter.
        if len(text) > max_payload:
            raise EngineIoError("payload larger than maxPayload", 413)
    else:
        raise EngineIoError("a payload is text")
    return [_decode_text(segment) for segment in text.split(RECORD_SEPARATOR)]


class OpenPayload(msgspec.Struct, frozen=True, rename="camel"):
    """The JSON of the open packet (README "Handshake"), keys in the order
    engine.io writes them."""

    sid: str
    upgrades: list[str]
    ping_interval: int
    ping_timeout: int
    max_payload: int


_encode_json = msgspec.json.Encoder().encode
_open_decoder = msgspec.json.Decoder(OpenPayload)


def encode_open(payload: OpenPayload) -> EnginePacket:
    """The open packet ``0{"sid",...}`` the server sends first."""
    return EnginePacket(EnginePacketType.OPEN, _encode_json(payload).decode("utf-8"))


def decode_open(packet: EnginePacket) -> OpenPayload:
    """The handshake in an open packet (what a client reads); ``EngineIoError``
    if it is not an open packet with that JSON."""
    if packet.type is not EnginePacketType.OPEN or not isinstance(packet.data, str):
        raise EngineIoError("not an open packet")
    try:
        return _open_decoder.decode(packet.data)
    except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
        raise EngineIoError("invalid open packet") from None
