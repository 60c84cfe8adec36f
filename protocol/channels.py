"""The channel registry: which live connection hears what.

A connection belongs to one user and may be subscribed to any number of
channels. An ``Audience`` names a set of connections by intersecting filters
(a channel, a user, one connection, minus one connection); ``resolve`` turns
it into connection ids against the registry. The registry is plain data kept
by whoever runs the connections (the transport's hub); the rules for who is
in an audience live here, so they can be tested without sockets.

The hub receives ``HubEvent``s - deliveries and subscription changes - in the
order the core produced them. They are data (msgspec structs), so a broker
can carry them between server processes; each process applies them to its
own registry with ``apply``.

The registry's bounds are asked by actions before they emit a ``Subscribe``
or make a connection a user's, so that a refusal is answered in the
protocol's own error format (the registry's silent refusal is only the last
guard): ``yield ChannelLimit(protocol, connection, channels)`` is answered a
``ChannelRoom``, ``yield UserRoom(protocol, connection, user_id)`` whether the
connection may be that user's. The ``Switchboard`` answers both (as it
answers ``CurrentRules``); the bounds are set by whoever runs it.

``yield Follow(protocol, connection, channels)`` comes after the bound and
before a subscribe reads the state it answers with: with several server
processes it waits until this process hears what the channels carry from
all of them (its broker follows their topics), so a write another process
commits after that read reaches the new subscription - without it, a write
between the read and the broker's subscription would be missed silently.
In one process it is answered at once, by the switchboard.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Union

import msgspec

from .operations import Operation

__all__ = [
    "Channel",
    "Audience",
    "EVERYONE",
    "Deliver",
    "Subscribe",
    "Unsubscribe",
    "SubscribeAudience",
    "UnsubscribeAudience",
    "UnsubscribeMatching",
    "CloseChannel",
    "IdentifyConnection",
    "CloseConnection",
    "Binary",
    "ChannelRegistry",
    "ChannelLimit",
    "ChannelRoom",
    "UserRoom",
    "Follow",
    "TOO_MANY_CHANNELS",
    "TOO_MANY_CONNECTIONS",
]

#: What every protocol says, in its own format, when a connection is at its
#: bound of channels, or a user at its bound of connections.
TOO_MANY_CHANNELS = "Too many channels for this connection"
TOO_MANY_CONNECTIONS = "Too many connections for this user"


class Channel(msgspec.Struct, frozen=True):
    """A channel, named as in seed 000: ``{channelType, channelId}``."""

    type: str
    id: str


class Audience(msgspec.Struct, frozen=True):
    """Who receives a message: the connections matching every filter given,
    plus ``include`` (the author of a write hears about it even when the
    filters leave it out), minus ``exclude``.

    No filters means every connection of the protocol. ``connections``
    names the connections outright (those still open receive it): the
    members of a ``permissions.DeliveryGroup``, who see one rendering of a
    change that others see differently or not at all.

    ``if_user_left`` makes it a departure notice: nobody receives it while
    that user still has a connection of this protocol, so a user who drops
    many connections at once is announced once, when the last one goes,
    not once per connection to everyone (issue 14: O(N) churn, not O(N^2)).
    """

    channel: Channel | None = None
    user_id: str | None = None
    connection: str | None = None
    exclude: str | None = None
    include: str | None = None
    connections: tuple[str, ...] | None = None
    if_user_left: str | None = None


EVERYONE = Audience()


class Binary(msgspec.Struct, frozen=True):
    """A binary message, as a ``Deliver``'s payload (a Socket.IO attachment):
    a websocket sends it as a binary frame, Engine.IO polling as base64."""

    data: bytes


class Deliver(msgspec.Struct, frozen=True, tag=True):
    """Send ``payload`` (one encoded message of ``protocol``: UTF-8 text, or
    ``Binary``) to ``audience``.

    The payload is encoded once, by the core; the transport frames it once
    per kind of connection (a websocket text frame, a long-polling packet)
    and writes the same bytes to every recipient of that kind. Consecutive
    deliveries to one audience arrive in order and together.
    """

    protocol: str
    payload: bytes | Binary
    audience: Audience


class Subscribe(msgspec.Struct, frozen=True, tag=True):
    """Subscribe ``connection`` to ``channel``."""

    protocol: str
    connection: str
    channel: Channel


class Unsubscribe(msgspec.Struct, frozen=True, tag=True):
    """Unsubscribe ``connection`` from ``channel``."""

    protocol: str
    connection: str
    channel: Channel


class SubscribeAudience(msgspec.Struct, frozen=True, tag=True):
    """Subscribe every connection in ``audience`` to ``channel`` (a user's
    sockets in a namespace joining a room they were invited to)."""

    protocol: str
    audience: Audience
    channel: Channel


class UnsubscribeAudience(msgspec.Struct, frozen=True, tag=True):
    """Unsubscribe every connection in ``audience`` from ``channel`` (a user
    who left a channel over REST: all their sockets leave its room)."""

    protocol: str
    audience: Audience
    channel: Channel


class UnsubscribeMatching(msgspec.Struct, frozen=True, tag=True):
    """Unsubscribe ``connection`` from every channel of ``channel_type`` whose
    id starts with ``id_prefix`` (a socket leaving a Socket.IO namespace
    leaves all of that namespace's rooms)."""

    protocol: str
    connection: str
    channel_type: str
    id_prefix: str


class CloseChannel(msgspec.Struct, frozen=True, tag=True):
    """Unsubscribe every connection from ``channel`` (the channel was deleted)."""

    protocol: str
    channel: Channel


class IdentifyConnection(msgspec.Struct, frozen=True, tag=True):
    """``connection`` now belongs to ``user_id`` (a Socket.IO connection whose
    first namespace authenticated after the connection opened)."""

    protocol: str
    connection: str
    user_id: str | None


class CloseConnection(msgspec.Struct, frozen=True, tag=True):
    """End ``connection``, after what was delivered to it before (a peer
    that broke the protocol, a Socket.IO client that never joined a
    namespace). ``code`` and ``reason`` are a websocket's close code and
    reason; a transport without them ignores them."""

    protocol: str
    connection: str
    code: int = 1000
    reason: str = ""


class ChannelRoom(msgspec.Struct, frozen=True):
    """The answer to ``ChannelLimit``: ``bound``, the most channels one
    connection may hold (``None``: no bound); ``held``, how many it holds;
    ``refused``, those of the channels asked about that it may not join
    (past the bound, in the order asked; one it holds already always fits)."""

    bound: int | None = None
    held: int = 0
    refused: tuple[Channel, ...] = ()

    def full(self) -> bool:
        """Whether one more channel, not held yet, would pass the bound."""
        return self.bound is not None and self.held >= self.bound


class ChannelLimit(Operation, frozen=True):
    """-> ``ChannelRoom``: may ``connection`` (of ``protocol``) join ``channels``?
    Asked before an action emits their ``Subscribe``s; a connection the
    switchboard does not know gets ``ChannelRoom()`` (no bound: it is closing)."""

    protocol: str
    connection: str
    channels: tuple[Channel, ...] = ()


class UserRoom(Operation, frozen=True):
    """-> ``bool``: whether ``connection`` (of ``protocol``) may be
    ``user_id``'s within the bound of connections per user, over every
    protocol (itself counted once if it is that user's already). Asked by a
    protocol that learns a connection's user after the upgrade (a Socket.IO
    namespace CONNECT)."""

    protocol: str
    connection: str
    user_id: str


class Follow(Operation, frozen=True):
    """-> ``None``, once this process hears from every process what
    ``channels`` (which ``connection`` of ``protocol`` is about to join)
    carry (module docstring). Answered at once in one process; a
    broker-backed server waits for its broker (a bounded wait: past it the
    subscribe goes on, and a broker away is signalled by its own close)."""

    protocol: str
    connection: str
    channels: tuple[Channel, ...]


HubEvent = Union[
    Deliver, Subscribe, Unsubscribe, SubscribeAudience, UnsubscribeAudience, UnsubscribeMatching, CloseChannel,
    IdentifyConnection, CloseConnection,
]


class ChannelRegistry:
    """Connections of one protocol, their users and their channel subscriptions.

    ``version`` changes whenever a connection is added or removed, changes
    user, or joins or leaves a channel: what a renderer derived from the
    registry (who is in which channel) is still true while it is the same.
    """

    __slots__ = ("_user_of", "_connections_of_user", "_members", "_channels_of", "_canonical", "_everyone", "max_channels", "refused", "version")

    def __init__(self) -> None:
        self._user_of: dict[str, str | None] = {}
        self._connections_of_user: dict[str, set[str]] = {}
        self._members: dict[Channel, set[str]] = {}
        self._channels_of: dict[str, set[Channel]] = {}
        # One Channel object per channel in use, shared by all its members'
        # sets: thousands of connections in one room keep one copy of its name.
        self._canonical: dict[Channel, Channel] = {}
        # Every connection, as one list shared by every delivery to everyone
        # until a connection comes or goes: a burst of announcements to
        # everyone costs one list, and the hub sees one audience (one
        # coalesced write per connection), not one copy per announcement.
        self._everyone: list[str] | None = None
        #: The most channels one connection may be subscribed to (None: no
        #: bound); a subscription past it is ignored and counted in ``refused``.
        self.max_channels: int | None = None
        self.refused = 0
        self.version = 0

    def __len__(self) -> int:
        return len(self._user_of)

    def __contains__(self, connection: object) -> bool:
        return connection in self._user_of

    def add_connection(self, connection: str, user_id: str | None) -> None:
        """Register a new live connection of ``user_id`` (``None``: of nobody in
        particular; an audience by user never includes it)."""
        self._everyone = None
        self.version += 1
        self._user_of[connection] = user_id
        if user_id is not None:
            self._connections_of_user.setdefault(user_id, set()).add(connection)

    def remove_connection(self, connection: str) -> None:
        """Forget a closed connection and all its subscriptions."""
        if connection not in self._user_of:
            return
        self._everyone = None
        self.version += 1
        user_id = self._user_of.pop(connection)
        peers = self._connections_of_user.get(user_id) if user_id is not None else None
        if peers is not None:
            peers.discard(connection)
            if not peers:
                del self._connections_of_user[user_id]
        for channel in self._channels_of.pop(connection, ()):
            self._leave(connection, channel)

    def set_user(self, connection: str, user_id: str | None) -> None:
        """Make a registered connection ``user_id``'s (idempotent)."""
        if connection not in self._user_of:
            return
        previous = self._user_of[connection]
        if previous == user_id:
            return
        self.version += 1
        if previous is not None:
            peers = self._connections_of_user.get(previous)
            if peers is not None:
                peers.discard(connection)
                if not peers:
                    del self._connections_of_user[previous]
        self._user_of[connection] = user_id
        if user_id is not None:
            self._connections_of_user.setdefault(user_id, set()).add(connection)

    def members(self, channel: Channel) -> frozenset[str]:
        """The connections subscribed to ``channel``."""
        return frozenset(self._members.get(channel, ()))

    def subscribe(self, connection: str, channel: Channel) -> None:
        """Subscribe a registered connection to ``channel`` (idempotent)."""
        if connection not in self._user_of:
            return
        bound = self.max_channels
        if bound is not None:
            held = self._channels_of.get(connection)
            if held is not None and len(held) >= bound and channel not in held:
                self.refused += 1
                return
        self.version += 1
        channel = self._canonical.setdefault(channel, channel)
        self._members.setdefault(channel, set()).add(connection)
        self._channels_of.setdefault(connection, set()).add(channel)

    def unsubscribe(self, connection: str, channel: Channel) -> None:
        """Unsubscribe ``connection`` from ``channel`` (idempotent)."""
        self.version += 1
        channels = self._channels_of.get(connection)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._channels_of[connection]
        self._leave(connection, channel)

    def close_channel(self, channel: Channel) -> None:
        """Unsubscribe every member of ``channel``."""
        for connection in list(self._members.get(channel, ())):
            self.unsubscribe(connection, channel)

    def _leave(self, connection: str, channel: Channel) -> None:
        members = self._members.get(channel)
        if members is not None:
            members.discard(connection)
            if not members:
                del self._members[channel]
                self._canonical.pop(channel, None)

    def connection_count(self, user_id: str) -> int:
        """How many connections ``user_id`` has open here."""
        return len(self._connections_of_user.get(user_id, ()))

    def channel_count(self, connection: str) -> int:
        """How many channels ``connection`` is subscribed to."""
        return len(self._channels_of.get(connection, ()))

    def user_of(self, connection: str) -> str | None:
        """The user ``connection`` belongs to (``None``: nobody, or not registered)."""
        return self._user_of.get(connection)

    def room(self, connection: str, channels: Iterable[Channel] = ()) -> ChannelRoom:
        """What ``ChannelLimit`` is answered: ``connection``'s room for ``channels``."""
        held = self._channels_of.get(connection, ())
        count = len(held)
        bound = self.max_channels
        if bound is None:
            return ChannelRoom(None, count)
        refused: list[Channel] = []
        taking = count
        for channel in dict.fromkeys(channels):
            if channel in held:
                continue
            if taking >= bound:
                refused.append(channel)
            else:
                taking += 1
        return ChannelRoom(bound, count, tuple(refused))

    def resolve(self, audience: Audience) -> list[str]:
        """The connection ids in ``audience``, each once. The list may be
        shared with other callers: do not change it."""
        gone = audience.if_user_left
        if gone is not None and gone in self._connections_of_user:
            return []
        if (
            audience.channel is None and audience.user_id is None and audience.connection is None
            and audience.exclude is None and audience.include is None and audience.connections is None
        ):
            everyone = self._everyone
            if everyone is None:
                everyone = self._everyone = list(self._user_of)
            return everyone
        if audience.connections is not None:
            registered = self._user_of
            if (audience.connection is None and audience.include is None and audience.exclude is None
                    and audience.user_id is None and audience.channel is None):
                # The connections a renderer named (a fan-out's groups), nothing
                # else to check: usually all registered and distinct, tested in C.
                named_set = set(audience.connections)
                if registered.keys() >= named_set:
                    if len(named_set) == len(audience.connections):
                        return list(audience.connections)
                    return list(dict.fromkeys(audience.connections))
                return [c for c in dict.fromkeys(audience.connections) if c in registered]
            named = [c for c in dict.fromkeys(audience.connections) if c in registered]
            if audience.connection is not None:
                named = [c for c in named if c == audience.connection]
            recipients = list(self._filter(named, audience))
            extra = audience.include
            if extra is not None and extra != audience.exclude and extra in registered and extra not in recipients:
                recipients.append(extra)
            return recipients
        if audience.connection is not None:
            candidates: Iterable[str] = (audience.connection,) if audience.connection in self._user_of else ()
        elif audience.channel is not None:
            candidates = self._members.get(audience.channel, ())
        elif audience.user_id is not None:
            candidates = self._connections_of_user.get(audience.user_id, ())
        else:
            candidates = self._user_of
        extra = audience.include
        if (
            audience.exclude is None
            and audience.connection is None
            and (audience.channel is None or audience.user_id is None)
        ):
            # The common case (everyone, one channel, one user): no filtering,
            # and a copy so that callers may change the registry while sending.
            recipients = list(candidates)
            # candidates is a dict or set here: a constant-time membership test.
            if extra is not None and extra in self._user_of and extra not in candidates:  # type: ignore[operator]
                recipients.append(extra)
            return recipients
        exclude = audience.exclude
        if exclude is not None and audience.connection is None and (audience.channel is None or audience.user_id is None):
            # A room, everyone or one user, minus one connection (a chat's
            # author): the candidates need no other check.
            recipients = [connection for connection in candidates if connection != exclude]
        else:
            recipients = list(self._filter(candidates, audience))
        if extra is not None and extra != audience.exclude and extra in self._user_of and extra not in recipients:
            recipients.append(extra)
        return recipients

    def _filter(self, candidates: Iterable[str], audience: Audience) -> Iterator[str]:
        for connection in candidates:
            if connection == audience.exclude:
                continue
            if audience.user_id is not None and self._user_of.get(connection) != audience.user_id:
                continue
            if audience.channel is not None and connection not in self._members.get(audience.channel, ()):
                continue
            yield connection

    def apply(self, event: HubEvent) -> list[str]:
        """Apply one hub event; for a ``Deliver``, return its recipients (for
        a ``CloseConnection``, the connection if it is registered here)."""
        if isinstance(event, Deliver):
            return self.resolve(event.audience)
        if isinstance(event, CloseConnection):
            return [event.connection] if event.connection in self._user_of else []
        if isinstance(event, Subscribe):
            self.subscribe(event.connection, event.channel)
        elif isinstance(event, Unsubscribe):
            self.unsubscribe(event.connection, event.channel)
        elif isinstance(event, SubscribeAudience):
            for connection in self.resolve(event.audience):
                self.subscribe(connection, event.channel)
        elif isinstance(event, UnsubscribeAudience):
            for connection in self.resolve(event.audience):
                self.unsubscribe(connection, event.channel)
        elif isinstance(event, UnsubscribeMatching):
            for channel in list(self._channels_of.get(event.connection, ())):
                if channel.type == event.channel_type and channel.id.startswith(event.id_prefix):
                    self.unsubscribe(event.connection, channel)
        elif isinstance(event, CloseChannel):
            self.close_channel(event.channel)
        elif isinstance(event, IdentifyConnection):
            self.set_user(event.connection, event.user_id)
        return []
