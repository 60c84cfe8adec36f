"""A Socket.IO v5 server over Engine.IO sessions, pure: namespaces, events, acks.

The transport runs Engine.IO (``engineio_session``) and hands a mount each
session as a connection and each Engine.IO message as a message
(``satchel.protocol.mounts.Mount.claims_engineio``). ``SocketIoServer`` is
what such a mount delegates to: it decodes the Socket.IO packets of a
connection (``packets.PacketDecoder``), admits each namespace CONNECT through
the ``NamespaceHandler`` that serves the namespace (each with its own auth
payload: several namespaces share one Engine.IO connection), hands it the
events of its sockets, encodes what they answer - acks, emits to the sender,
``connect_error`` - once, as ``Deliver``s to the connection, and ends the
connection where the reference server does:

- a packet that does not decode (socket.io's "parse error"): the connection
  is closed (``CloseConnection``), after what was sent before;
- no namespace joined within ``connect_timeout_ms`` of the Engine.IO
  handshake (socket.io's ``connectTimeout``): closed.

What a namespace handler emits as it admits a socket (``Admitted.emits``)
goes out ``emit_after_connect_ms`` after the CONNECT answer, in a write of
its own - or at once before anything else the connection is sent. socket.io
sends them in a later write too (engine.io keeps one websocket write in
flight), and clients that take one message per read of the socket - the
official test suite's, on ws 8.5 - lose a message that arrives in the same
read as the one they were waiting for.

What a packet to a namespace the connection has not joined does, or a second
CONNECT to one it has, follows socket.io's ``Client``: it is ignored. A
DISCONNECT leaves that namespace only; the Engine.IO connection stays.

Rooms and namespace membership are channels of the hub registry, named by
the handler (``namespace_channel``, ``room_channel``): every socket admitted
to a namespace is subscribed to its namespace channel, so "the sockets of
user U in namespace N" is ``Audience(channel=namespace_channel(N),
user_id=U)``. One connection is one registry connection, identified by the
user its first authenticated namespace names (``IdentifyConnection``); a
later namespace that authenticates as another user is refused with
``connect_error`` (a stock client multiplexes the namespaces of one origin
over one connection, with one token).

Bounds (issue 14): the CONNECT that would make a connection the user's past
the switchboard's bound of connections per user (over every protocol;
``channels.UserRoom``) is refused with ``connect_error`` "Too many
connections for this user" - a Socket.IO client's user is known only here,
not at the Engine.IO upgrade. A CONNECT whose namespace channel (and the
handler's own subscriptions) would pass the bound of channels per
connection (``channels.ChannelLimit``) is refused with "Too many channels
for this connection".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..channels import (
    TOO_MANY_CHANNELS,
    TOO_MANY_CONNECTIONS,
    Audience,
    Binary,
    Channel,
    ChannelLimit,
    ChannelRoom,
    CloseConnection,
    Deliver,
    Follow,
    IdentifyConnection,
    Subscribe,
    Unsubscribe,
    UnsubscribeMatching,
    UserRoom,
)
from ..environment import Environment
from ..http import HttpRequest
from ..mounts import Accepted, Event as HubEvent
from ..operations import Action
from .packets import (
    DEFAULT_MAX_ATTACHMENT_BYTES,
    DEFAULT_MAX_ATTACHMENTS,
    Ack,
    Connect,
    Disconnect,
    Event,
    PacketDecoder,
    SocketIoError,
    encode_ack,
    encode_connect,
    encode_connect_error,
    encode_event,
)

__all__ = [
    "SocketIoConfig",
    "NamespaceHandler",
    "NamespaceSocket",
    "SocketIoConnection",
    "Admitted",
    "Refused",
    "Reply",
    "SocketIoServer",
    "deliveries",
    "NO_ACK",
]

#: ``Reply.ack`` when the event asked for no ack, or the handler gives none.
NO_ACK = None
#: What a client is told when the store could not answer its packet.
UNAVAILABLE = "Service unavailable: try again"
#: Emits awaiting a client's ack, per connection; beyond it the oldest is forgotten.
MAX_PENDING_ACKS = 1000


@dataclass(frozen=True, slots=True)
class SocketIoConfig:
    """A Socket.IO server's settings (times in ms).

    ``connect_timeout_ms`` is socket.io's ``connectTimeout``;
    ``max_attachments`` / ``max_attachment_bytes`` bound one binary packet.
    """

    connect_timeout_ms: int = 45_000
    max_attachments: int = DEFAULT_MAX_ATTACHMENTS
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    emit_after_connect_ms: int = 2


@dataclass(slots=True)
class NamespaceSocket:
    """A connection's socket in one namespace: its id (the ``sid`` of the
    CONNECT answer), the user the namespace admitted, the handler's own
    state, and the connection it rides on."""

    nsp: str
    id: str
    connection: str
    user_id: str | None
    state: Any
    handler: NamespaceHandler


@dataclass(slots=True)
class SocketIoConnection:
    """One Engine.IO connection as Socket.IO sees it (a mount's connection state)."""

    connection: str
    handshake: HttpRequest
    opened_ms: int
    decoder: PacketDecoder
    user_id: str | None = None
    sockets: dict[str, NamespaceSocket] = field(default_factory=dict)
    # Whether a namespace was ever joined (connectTimeout stops for good then).
    joined: bool = False
    closing: bool = False
    # What admitting a socket emitted, held until ``deferred_at_ms``.
    deferred: list[Any] | None = None
    deferred_at_ms: int | None = None
    # Emits that asked the client for an ack: ack id -> (namespace, the handler's
    # key); made when first needed (most connections never ask for one).
    pending_acks: dict[int, tuple[str, Any]] | None = None
    next_ack_id: int = 0


@dataclass(frozen=True, slots=True)
class Admitted:
    """A namespace CONNECT granted: the socket's user and the handler's state;
    ``emits`` go to the new socket right after the grant (``(name, args)``),
    ``events`` to the hub."""

    user_id: str | None = None
    state: Any = None
    emits: Sequence[tuple[str, Sequence[Any]]] = ()
    events: Sequence[HubEvent] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """A namespace CONNECT refused: the client's ``connect_error`` with
    ``message`` (and ``data``, when given)."""

    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers an event with: ``ack`` (the ack's arguments,
    sent only if the event asked for one; ``NO_ACK``: none), ``emits`` to the
    sending socket (``(name, args)``, or ``(name, args, key)`` to ask the
    client for an ack, which comes back to ``NamespaceHandler.acked`` with
    ``key``), and ``events`` for the hub (writes, deliveries to rooms, room
    joins)."""

    ack: Sequence[Any] | None = NO_ACK
    emits: Sequence[tuple[str, Sequence[Any]]] = ()
    events: Sequence[HubEvent] = ()


class NamespaceHandler:
    """What a protocol plugs into Socket.IO: the namespaces it serves and what
    their sockets do. Override what the protocol needs; ``connect`` admits
    anyone by default."""

    #: The hub protocol name of the mount this handler serves under.
    protocol: str = ""
    #: The handshake headers ``connect`` reads (``None``: all of them). A
    #: connection keeps only these from its handshake request: a browser's
    #: headers weigh a kilobyte or more, for every idle client.
    handshake_headers: frozenset[str] | None = frozenset()

    def matches(self, nsp: str) -> bool:
        """Whether this handler serves namespace ``nsp``."""
        return False

    def namespace_channel(self, nsp: str) -> Channel:
        """The registry channel of every socket in ``nsp``."""
        return Channel("socketio-namespace", nsp)

    def room_channel(self, nsp: str, room: str) -> Channel:
        """The registry channel of room ``room`` of ``nsp``. Every room of
        ``nsp`` has this type and an id that starts with the id of
        ``room_channel(nsp, "")`` (a socket leaving the namespace leaves them
        all by that prefix)."""
        return Channel("socketio-room", f"{nsp}\x00{room}")

    def connect(self, handshake: HttpRequest, nsp: str, auth: dict[str, Any] | None, socket_id: str,
                connection: str, env: Environment) -> Iterator[Any]:
        """``Action[Admitted | Refused]`` for a CONNECT to ``nsp`` with ``auth``
        (the client's ``auth`` option; ``handshake`` is the Engine.IO
        handshake request, with its headers and query)."""
        return Admitted()
        yield  # an action is a generator

    def event(self, socket: NamespaceSocket, name: str, args: list[Any], wants_ack: bool,
              env: Environment) -> Iterator[Any]:
        """``Action[Reply]`` for event ``name`` with ``args`` from ``socket``."""
        return Reply()
        yield

    def unavailable(self, socket: NamespaceSocket, name: str, wants_ack: bool, message: str) -> Reply:
        """The reply to event ``name`` that could not be answered because the
        store cannot be reached (``message`` says so). Socket.IO itself has no
        error for an event: by default nothing is sent, as for an event the
        server dropped."""
        return Reply()

    def acked(self, socket: NamespaceSocket, key: Any, args: list[Any], env: Environment) -> Iterator[Any]:
        """``Action[Reply]`` for the client's ack of an emit that asked for
        one with ``key``."""
        return Reply()
        yield

    def disconnect(self, socket: NamespaceSocket, reason: str) -> list[HubEvent]:
        """The hub events of ``socket`` leaving (a DISCONNECT, or the
        connection's end, with socket.io's reason)."""
        return []


def deliveries(protocol: str, packet: list[str | bytes], audience: Audience) -> list[Deliver]:
    """An encoded packet (its text, then its attachments) as deliveries to
    ``audience``, in order: one encoding for every recipient."""
    text, *attachments = packet
    delivered = [Deliver(protocol, text.encode("utf-8"), audience)]  # type: ignore[union-attr]
    delivered.extend(Deliver(protocol, Binary(data), audience) for data in attachments)  # type: ignore[arg-type]
    return delivered


class SocketIoServer:
    """The Socket.IO side of a mount: call its methods from the mount's
    ``accept``, ``handle_message``, ``closed``, ``deadline_ms`` and
    ``on_timer`` (``SocketIoMount`` does exactly that)."""

    __slots__ = ("protocol", "handlers", "config", "_kept_headers")

    def __init__(self, protocol: str, handlers: Sequence[NamespaceHandler], config: SocketIoConfig | None = None) -> None:
        self.protocol = protocol
        self.handlers = tuple(handlers)
        self.config = config or SocketIoConfig()
        wanted = [handler.handshake_headers for handler in self.handlers]
        self._kept_headers: frozenset[str] | None = (
            None if any(names is None for names in wanted) else frozenset().union(*wanted)  # type: ignore[arg-type]
        )

    def handler_for(self, nsp: str) -> NamespaceHandler | None:
        """The handler serving ``nsp``, in order."""
        for handler in self.handlers:
            if handler.matches(nsp):
                return handler
        return None

    # -- the connection's life ---------------------------------------------------------

    def accept(self, handshake: HttpRequest, connection: str, env: Environment) -> Accepted:
        """An Engine.IO session opened: every one is accepted (namespaces
        authenticate on their own CONNECT)."""
        kept = self._kept_headers
        if kept is not None:
            headers = [(name, value) for name, value in handshake.headers if name in kept]
            handshake = HttpRequest(handshake.method, handshake.target, headers)
        state = SocketIoConnection(
            connection, handshake, env.now_ms(),
            PacketDecoder(self.config.max_attachments, self.config.max_attachment_bytes),
        )
        return Accepted(state, None)

    def deadline_ms(self, state: SocketIoConnection) -> int | None:
        """The held connect emits' time, or connectTimeout while no namespace
        was ever joined."""
        if state.closing:
            return None
        if state.deferred_at_ms is not None:
            return state.deferred_at_ms
        if state.joined:
            return None
        return state.opened_ms + self.config.connect_timeout_ms

    def on_timer(self, state: SocketIoConnection, env: Environment) -> list[HubEvent]:
        """Send the held connect emits; close a connection that joined no
        namespace within connectTimeout."""
        if state.closing:
            return []
        now = env.now_ms()
        if state.deferred_at_ms is not None:
            return self._release(state) if now >= state.deferred_at_ms else []
        if state.joined or now < state.opened_ms + self.config.connect_timeout_ms:
            return []
        state.closing = True
        return [CloseConnection(self.protocol, state.connection, 1000, "connect timeout")]

    def _release(self, state: SocketIoConnection) -> list[HubEvent]:
        held, state.deferred, state.deferred_at_ms = state.deferred or [], None, None
        return held

    def closed(self, state: SocketIoConnection) -> list[HubEvent]:
        """The connection ended: every namespace socket leaves."""
        events: list[HubEvent] = []
        for socket in list(state.sockets.values()):
            events.extend(socket.handler.disconnect(socket, "transport close"))
        state.sockets.clear()
        return events

    # -- messages ---------------------------------------------------------------------------

    def _to_connection(self, state: SocketIoConnection, packet: list[str | bytes]) -> list[Deliver]:
        return deliveries(self.protocol, packet, Audience(connection=state.connection))

    def _close(self, state: SocketIoConnection, reason: str) -> list[HubEvent]:
        state.closing = True
        return [CloseConnection(self.protocol, state.connection, 1000, reason)]

    def handle_message(self, state: SocketIoConnection, message: str | bytes, env: Environment) -> Action[list[HubEvent]]:
        """One Engine.IO message of the connection."""
        if state.closing:
            return []
        # What admitting a socket emitted goes before anything this message causes.
        held = self._release(state) if state.deferred else []
        events = yield from self._handle(state, message, env)
        return held + events if held else events

    def _handle(self, state: SocketIoConnection, message: str | bytes, env: Environment) -> Action[list[HubEvent]]:
        try:
            packet = state.decoder.receive(message)
        except SocketIoError:
            return self._close(state, "parse error")
        if packet is None:
            return []  # a binary packet waiting for its attachments
        if isinstance(packet, Connect):
            return (yield from self._connect(state, packet, env))
        socket = state.sockets.get(packet.nsp)
        if socket is None:
            return []  # socket.io ignores packets for a namespace not joined
        if isinstance(packet, Disconnect):
            del state.sockets[packet.nsp]
            events = list(socket.handler.disconnect(socket, "client namespace disconnect"))
            # Leaving a namespace leaves its rooms too (room_channel(nsp, "")
            # names the prefix every room of the namespace shares).
            rooms = socket.handler.room_channel(socket.nsp, "")
            events.append(UnsubscribeMatching(self.protocol, state.connection, rooms.type, rooms.id))
            events.append(Unsubscribe(self.protocol, state.connection, socket.handler.namespace_channel(socket.nsp)))
            return events
        if isinstance(packet, Event):
            reply = yield from socket.handler.event(socket, packet.name, list(packet.args), packet.id is not None, env)
            return self._reply(state, socket, reply, packet.id)
        if isinstance(packet, Ack):
            pending = state.pending_acks.pop(packet.id, None) if state.pending_acks else None
            if pending is None or pending[0] != socket.nsp:
                return []  # not an ack we asked for (or asked of another namespace)
            reply = yield from socket.handler.acked(socket, pending[1], list(packet.args), env)
            return self._reply(state, socket, reply, None)
        return self._close(state, "parse error")  # a client never sends CONNECT_ERROR

    def unavailable(self, state: SocketIoConnection, message: str | bytes) -> list[HubEvent]:
        """The answer to ``message`` (text: a packet) whose action failed
        because the store cannot be reached: a CONNECT is refused with
        ``connect_error``, an event gets its handler's ``unavailable`` reply
        (an ack, when one was asked for, and emits). Read with a decoder of
        its own: the connection's has already taken the packet."""
        if not isinstance(message, str) or state.closing:
            return []
        try:
            packet = PacketDecoder().receive(message)
        except SocketIoError:
            return []
        if isinstance(packet, Connect):
            if packet.nsp in state.sockets:
                return []
            return self._to_connection(state, [encode_connect_error(UNAVAILABLE, packet.nsp)])
        socket = state.sockets.get(packet.nsp) if packet is not None else None
        if socket is None or not isinstance(packet, Event):
            return []
        reply = socket.handler.unavailable(socket, packet.name, packet.id is not None, UNAVAILABLE)
        return self._reply(state, socket, reply, packet.id)

    def _reply(self, state: SocketIoConnection, socket: NamespaceSocket, reply: Reply, ack_id: int | None) -> list[HubEvent]:
        events: list[HubEvent] = []
        if ack_id is not None and reply.ack is not NO_ACK:
            events.extend(self._to_connection(state, encode_ack(ack_id, list(reply.ack), socket.nsp)))
        for emit in reply.emits:
            events.extend(self._to_connection(state, self._encode_emit(state, socket.nsp, emit)))
        events.extend(reply.events)
        return events

    def _encode_emit(self, state: SocketIoConnection, nsp: str, emit: tuple[Any, ...]) -> list[str | bytes]:
        if len(emit) == 2:
            name, args = emit
            return encode_event(name, list(args), nsp)
        name, args, key = emit
        ack_id = state.next_ack_id
        state.next_ack_id += 1
        if state.pending_acks is None:
            state.pending_acks = {}
        state.pending_acks[ack_id] = (nsp, key)
        if len(state.pending_acks) > MAX_PENDING_ACKS:
            del state.pending_acks[next(iter(state.pending_acks))]  # a client that never acks
        return encode_event(name, list(args), nsp, ack_id)

    def _connect(self, state: SocketIoConnection, packet: Connect, env: Environment) -> Action[list[HubEvent]]:
        nsp = packet.nsp
        if nsp in state.sockets:
            return []  # already joined: socket.io ignores it
        if any(ord(character) < 0x20 for character in nsp):
            return self._to_connection(state, [encode_connect_error("Invalid namespace", "/")])
        handler = self.handler_for(nsp)
        if handler is None:
            return self._to_connection(state, [encode_connect_error("Invalid namespace", nsp)])
        socket_id = env.new_token()[:20]
        answer = yield from handler.connect(state.handshake, nsp, packet.data, socket_id, state.connection, env)
        if isinstance(answer, Refused):
            return self._to_connection(state, [encode_connect_error(answer.message, nsp, answer.data)])
        if state.user_id is not None and answer.user_id is not None and answer.user_id != state.user_id:
            return self._to_connection(
                state, [encode_connect_error("This connection is signed in as another user", nsp)]
            )
        if answer.user_id is not None and state.user_id is None:
            if not (yield UserRoom(self.protocol, state.connection, answer.user_id)):
                return self._to_connection(state, [encode_connect_error(TOO_MANY_CONNECTIONS, nsp)])
        joining = [handler.namespace_channel(nsp)]
        joining.extend(event.channel for event in answer.events
                       if type(event) is Subscribe and event.connection == state.connection)
        room: ChannelRoom = yield ChannelLimit(self.protocol, state.connection, tuple(joining))
        if room.refused:
            return self._to_connection(state, [encode_connect_error(TOO_MANY_CHANNELS, nsp)])
        # Before the connect is answered: every process's later emits to these rooms reach it.
        yield Follow(self.protocol, state.connection, tuple(joining))
        events: list[HubEvent] = []
        if answer.user_id is not None and state.user_id is None:
            state.user_id = answer.user_id
            events.append(IdentifyConnection(self.protocol, state.connection, answer.user_id))
        socket = NamespaceSocket(nsp, socket_id, state.connection, answer.user_id, answer.state, handler)
        state.sockets[nsp] = socket
        state.joined = True
        events.append(Subscribe(self.protocol, state.connection, handler.namespace_channel(nsp)))
        events.extend(self._to_connection(state, [encode_connect(socket_id, nsp)]))
        events.extend(answer.events)
        if answer.emits:
            if state.deferred is None:
                state.deferred = []
            for emit in answer.emits:
                state.deferred.extend(self._to_connection(state, self._encode_emit(state, nsp, emit)))
            state.deferred_at_ms = env.now_ms() + self.config.emit_after_connect_ms
        return events
