"""Socket.IO v5 packets and their encoding (socket.io-protocol README,
"Exchange protocol" and "Packet encoding"; the checks follow the reference
parser, socket.io-parser's ``Decoder``).

Each Socket.IO packet travels as the data of one Engine.IO message packet:

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]

    0 CONNECT  1 DISCONNECT  2 EVENT  3 ACK  4 CONNECT_ERROR  5 BINARY_EVENT  6 BINARY_ACK

The namespace is left out when it is the main one, ``/``. A binary event or
ack replaces each bytes value in its payload by
``{"_placeholder":true,"num":N}`` and is followed by N more Engine.IO
messages, the attachments, in order (binary websocket frames, or ``b`` +
base64 in a polling body).

Here binary and plain events and acks are the same classes: ``Event`` and
``Ack`` hold bytes where the attachments go, ``encode_packet`` picks the
binary form when there are any, and ``PacketDecoder`` puts them back.
``PacketDecoder.receive`` returns packets or raises ``SocketIoError``, and
nothing else, whatever it is fed.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from ..errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "SocketIoError",
    "SocketPacketType",
    "Connect",
    "Disconnect",
    "Event",
    "Ack",
    "ConnectError",
    "SocketPacket",
    "RESERVED_EVENTS",
    "MAX_ACK_ID",
    "DEFAULT_MAX_ATTACHMENTS",
    "DEFAULT_MAX_ATTACHMENT_BYTES",
    "PacketDecoder",
    "encode_packet",
    "encode_connect",
    "encode_connect_error",
    "encode_disconnect",
    "encode_event",
    "encode_ack",
]

# Event names with a meaning of their own on either side; the reference
# parser refuses them in an incoming EVENT and its server refuses to emit them.
RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"})
# The largest integer a JavaScript peer holds exactly (Number.MAX_SAFE_INTEGER).
MAX_ACK_ID = 2**53 - 1
# socket.io-parser's default maxAttachments.
DEFAULT_MAX_ATTACHMENTS = 10
# All attachments of one packet together; Engine.IO's default maxPayload.
DEFAULT_MAX_ATTACHMENT_BYTES = 1_000_000


class SocketIoError(RemoteProtocolError):
    """The peer sent something that is not a valid Socket.IO v5 packet.

    The reference server closes the connection on it ("parse error")."""


class SocketPacketType(enum.IntEnum):
    """The seven packet types; the value is the digit on the wire."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


def _check_nsp(nsp: Any) -> None:
    # A comma would end the namespace early on the wire.
    if not isinstance(nsp, str) or not nsp.startswith("/") or "," in nsp:
        raise LocalProtocolError("a namespace is a str starting with '/', without ','")


def _check_id(id: Any) -> None:
    if isinstance(id, bool) or not isinstance(id, int) or not 0 <= id <= MAX_ACK_ID:
        raise LocalProtocolError(f"an ack id is an integer in [0, {MAX_ACK_ID}]")


class Connect(msgspec.Struct, frozen=True):
    """CONNECT: from a client, a request to join ``nsp`` with an optional auth
    object as ``data``; from the server, the grant, with ``{"sid": ...}``."""

    nsp: str = "/"
    data: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_nsp(self.nsp)
        if self.data is not None and not isinstance(self.data, dict):
            raise LocalProtocolError("a CONNECT payload is an object")


class Disconnect(msgspec.Struct, frozen=True):
    """DISCONNECT: either side leaves ``nsp``; no payload, no answer."""

    nsp: str = "/"

    def __post_init__(self) -> None:
        _check_nsp(self.nsp)


class Event(msgspec.Struct, frozen=True):
    """EVENT (or BINARY_EVENT): ``name`` with its ``args`` in ``nsp``; ``id``
    asks the receiver for an ACK with that id. Bytes in ``args`` are binary
    attachments."""

    name: str
    args: list[Any] = []
    nsp: str = "/"
    id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name in RESERVED_EVENTS:
            raise LocalProtocolError(f"{self.name!r} is not an event name one may send")
        if not isinstance(self.args, (list, tuple)):
            raise LocalProtocolError("event args are a list")
        _check_nsp(self.nsp)
        if self.id is not None:
            _check_id(self.id)


class Ack(msgspec.Struct, frozen=True):
    """ACK (or BINARY_ACK): the answer to the event with ``id``, its ``args``
    possibly empty. Bytes in ``args`` are binary attachments."""

    id: int
    args: list[Any] = []
    nsp: str = "/"

    def __post_init__(self) -> None:
        _check_id(self.id)
        if not isinstance(self.args, (list, tuple)):
            raise LocalProtocolError("ack args are a list")
        _check_nsp(self.nsp)


class ConnectError(msgspec.Struct, frozen=True):
    """CONNECT_ERROR: the server refuses to let the client join ``nsp``.
    v5 sends an object ``{"message": ..., "data"?: ...}``; a str is v4's form."""

    data: dict[str, Any] | str
    nsp: str = "/"

    def __post_init__(self) -> None:
        if not isinstance(self.data, (dict, str)):
            raise LocalProtocolError("a CONNECT_ERROR payload is an object")
        _check_nsp(self.nsp)


SocketPacket = Connect | Disconnect | Event | Ack | ConnectError

# -- encoding ---------------------------------------------------------------------------------

_json_encode = msgspec.json.Encoder().encode
_BINARY = (bytes, bytearray, memoryview)


def _json(value: Any) -> str:
    try:
        return _json_encode(value).decode("utf-8")
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as error:
        raise LocalProtocolError(f"payload is not JSON-encodable: {error}") from None


def _has_binary(value: Any) -> bool:
    """Whether ``value`` holds bytes anywhere (walked without recursion)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, _BINARY):
            return True
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return False


def _deconstruct(value: Any, buffers: list[bytes]) -> Any:
    """A copy of ``value`` with each bytes value replaced by its placeholder,
    the bytes appended to ``buffers`` in order (socket.io-parser's numbering)."""
    if isinstance(value, _BINARY):
        buffers.append(bytes(value))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(value, (list, tuple)):
        return [_deconstruct(item, buffers) for item in value]
    if isinstance(value, dict):
        return {key: _deconstruct(item, buffers) for key, item in value.items()}
    return value


def _prefix(nsp: str) -> str:
    return "" if nsp == "/" else nsp + ","


def encode_packet(packet: SocketPacket) -> list[str | bytes]:
    """The Engine.IO message data of ``packet``: the packet's text first, then
    its binary attachments, if any, one message each. (A stock client's
    parser takes at most ``DEFAULT_MAX_ATTACHMENTS`` per packet.)"""
    if isinstance(packet, (Event, Ack)):
        if isinstance(packet, Event):
            payload: list[Any] = [packet.name, *packet.args]
            id = packet.id
            plain, binary = "2", "5"
        else:
            payload = list(packet.args)
            id = packet.id
            plain, binary = "3", "6"
        head = _prefix(packet.nsp) + ("" if id is None else str(id))
        if not _has_binary(payload):
            return [plain + head + _json(payload)]
        buffers: list[bytes] = []
        try:
            payload = _deconstruct(payload, buffers)
        except RecursionError:
            raise LocalProtocolError("payload nested too deeply") from None
        return [f"{binary}{len(buffers)}-{head}{_json(payload)}", *buffers]
    if isinstance(packet, Connect):
        text = "0" + _prefix(packet.nsp)
        if packet.data is not None:
            text += _json_plain(packet.data)
        return [text]
    if isinstance(packet, Disconnect):
        return ["1" + _prefix(packet.nsp)]
    if isinstance(packet, ConnectError):
        return ["4" + _prefix(packet.nsp) + _json_plain(packet.data)]
    raise LocalProtocolError(f"not a Socket.IO packet: {packet!r}")


def _json_plain(value: Any) -> str:
    # Only events and acks carry attachments; msgspec would quietly turn bytes
    # elsewhere into base64 text, so refuse them.
    if _has_binary(value):
        raise LocalProtocolError("only events and acks can carry binary data")
    return _json(value)


def encode_connect(sid: str, nsp: str = "/") -> str:
    """The server's grant of a CONNECT: ``0/nsp,{"sid":"..."}``."""
    return encode_packet(Connect(nsp, {"sid": sid}))[0]


def encode_connect_error(message: str, nsp: str = "/", data: Any = None) -> str:
    """The server's refusal of a CONNECT: ``4/nsp,{"message":"..."}`` (with
    ``"data"`` when given, as socket.io sends an error's ``data``); the client
    surfaces it as ``connect_error``."""
    payload: dict[str, Any] = {"message": message}
    if data is not None:
        payload["data"] = data
    return encode_packet(ConnectError(payload, nsp))[0]


def encode_disconnect(nsp: str = "/") -> str:
    """DISCONNECT from ``nsp``: ``1`` or ``1/nsp,``."""
    return encode_packet(Disconnect(nsp))[0]


def encode_event(name: str, args: list[Any] | tuple[Any, ...] = (), nsp: str = "/",
                 id: int | None = None) -> list[str | bytes]:
    """An EVENT (a BINARY_EVENT and its attachments if ``args`` hold bytes)."""
    return encode_packet(Event(name, list(args), nsp, id))


def encode_ack(id: int, args: list[Any] | tuple[Any, ...] = (), nsp: str = "/") -> list[str | bytes]:
    """An ACK for the event with ``id`` (a BINARY_ACK if ``args`` hold bytes)."""
    return encode_packet(Ack(id, list(args), nsp))


# -- decoding ---------------------------------------------------------------------------------

_json_decode = msgspec.json.Decoder().decode
_MAX_ID_DIGITS = len(str(MAX_ACK_ID))
_ABSENT = object()
_TYPE_BY_CHAR = {str(int(t)): t for t in SocketPacketType}


class _Header(msgspec.Struct):
    """A decoded packet text, before any attachments are put back."""

    type: SocketPacketType
    attachments: int
    nsp: str
    id: int | None
    data: Any


def _is_digits(text: str) -> bool:
    # str.isdigit alone would take other scripts' digits too.
    return text.isascii() and text.isdigit()


def _parse(text: str, max_attachments: int) -> _Header:
    """The fields of one packet text, validated per the README and
    socket.io-parser's ``isPayloadValid``."""
    if not text:
        raise SocketIoError("empty packet")
    kind = _TYPE_BY_CHAR.get(text[0])
    if kind is None:
        raise SocketIoError("unknown packet type")
    i = 1
    attachments = 0
    if kind is SocketPacketType.BINARY_EVENT or kind is SocketPacketType.BINARY_ACK:
        dash = text.find("-", 1, 12)
        if dash < 0 or not _is_digits(text[1:dash]):
            raise SocketIoError("illegal attachments")
        attachments = int(text[1:dash])
        if attachments > max_attachments:
            raise SocketIoError("too many attachments")
        i = dash + 1
    nsp = "/"
    if text.startswith("/", i):
        comma = text.find(",", i)
        end = len(text) if comma < 0 else comma
        nsp = text[i:end]
        i = end + 1
    start = i
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    id = None
    if i > start:
        if i - start > _MAX_ID_DIGITS or int(text[start:i]) > MAX_ACK_ID:
            raise SocketIoError("invalid ack id")
        id = int(text[start:i])
    data: Any = _ABSENT
    if i < len(text):
        try:
            data = _json_decode(text[i:])
        except (msgspec.DecodeError, ValueError, RecursionError):
            raise SocketIoError("invalid payload") from None
    _validate(kind, id, data)
    return _Header(kind, attachments, nsp, id, data)


def _validate(kind: SocketPacketType, id: int | None, data: Any) -> None:
    if kind is SocketPacketType.EVENT or kind is SocketPacketType.BINARY_EVENT:
        if not (type(data) is list and data and type(data[0]) is str and data[0] not in RESERVED_EVENTS):
            raise SocketIoError("an event's payload is an array that starts with its name")
        return
    if kind is SocketPacketType.ACK or kind is SocketPacketType.BINARY_ACK:
        if type(data) is not list or id is None:
            raise SocketIoError("an ack has an id and an array payload")
        return
    # Only events and acks carry an id.
    if id is not None:
        raise SocketIoError("invalid ack id")
    if kind is SocketPacketType.CONNECT:
        if data is not _ABSENT and type(data) is not dict:
            raise SocketIoError("a CONNECT payload is an object")
    elif kind is SocketPacketType.DISCONNECT:
        if data is not _ABSENT:
            raise SocketIoError("a DISCONNECT has no payload")
    elif type(data) is not dict and type(data) is not str:  # CONNECT_ERROR
        raise SocketIoError("a CONNECT_ERROR payload is an object")


def _fill(data: list[Any], buffers: list[bytes]) -> None:
    """Put the attachments in place of their placeholders, in place and
    without recursion (the JSON may be as deep as msgspec allows)."""
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        items = list(enumerate(node)) if type(node) is list else list(node.items())
        for key, value in items:
            if type(value) is dict:
                if value.get("_placeholder") is True:
                    num = value.get("num")
                    if type(num) is not int or not 0 <= num < len(buffers):
                        raise SocketIoError("illegal attachments")
                    node[key] = buffers[num]
                else:
                    stack.append(value)
            elif type(value) is list:
                stack.append(value)


def _build(header: _Header, buffers: list[bytes]) -> SocketPacket:
    kind, data = header.type, header.data
    if kind is SocketPacketType.EVENT or kind is SocketPacketType.BINARY_EVENT:
        if kind is SocketPacketType.BINARY_EVENT:
            _fill(data, buffers)
        return Event(data[0], data[1:], header.nsp, header.id)
    if kind is SocketPacketType.ACK or kind is SocketPacketType.BINARY_ACK:
        if kind is SocketPacketType.BINARY_ACK:
            _fill(data, buffers)
        assert header.id is not None
        return Ack(header.id, data, header.nsp)
    if kind is SocketPacketType.CONNECT:
        return Connect(header.nsp, None if data is _ABSENT else data)
    if kind is SocketPacketType.DISCONNECT:
        return Disconnect(header.nsp)
    return ConnectError(data, header.nsp)


class PacketDecoder:
    """Turns the Engine.IO messages of one connection back into packets.

    ``receive`` takes each message's data in order: text returns its packet,
    or None when a binary packet's attachments are to follow; each binary
    message is one attachment, and the last returns the whole packet.
    Limits: at most ``max_attachments`` attachments per packet and
    ``max_attachment_bytes`` in all. Text while attachments are awaited,
    bytes when none are, or any invalid packet raise ``SocketIoError``
    (after which the decoder starts afresh; the connection should be closed).
    """

    __slots__ = ("max_attachments", "max_attachment_bytes", "_header", "_buffers", "_size")

    def __init__(self, max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
                 max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> None:
        if max_attachments < 0 or max_attachment_bytes < 0:
            raise ValueError("the attachment limits cannot be negative")
        self.max_attachments = max_attachments
        self.max_attachment_bytes = max_attachment_bytes
        self._header: _Header | None = None
        self._buffers: list[bytes] = []
        self._size = 0

    @property
    def awaiting(self) -> int:
        """How many attachments the packet being reassembled still needs."""
        return 0 if self._header is None else self._header.attachments - len(self._buffers)

    def _reset(self) -> None:
        self._header = None
        self._buffers = []
        self._size = 0

    def receive(self, data: str | bytes) -> SocketPacket | None:
        """One Engine.IO message's data; the packet it completes, or None."""
        if isinstance(data, str):
            if self._header is not None:
                self._reset()
                raise SocketIoError("text packet while binary attachments were expected")
            header = _parse(data, self.max_attachments)
            if header.attachments:
                self._header = header
                return None
            return _build(header, [])
        if not isinstance(data, _BINARY):
            self._reset()
            raise SocketIoError("a message is text or binary")
        header = self._header
        if header is None:
            raise SocketIoError("binary data without a binary packet before it")
        self._size += len(data)
        if self._size > self.max_attachment_bytes:
            self._reset()
            raise SocketIoError("attachments too large")
        self._buffers.append(bytes(data))
        if len(self._buffers) < header.attachments:
            return None
        buffers = self._buffers
        self._reset()
        return _build(header, buffers)
