"""What crosses between server processes, on which broker topic, and which
topics a process needs: the broker's routing, as pure functions.

Theory of operation. Every process renders changes and applies hub
instructions for its own connections (``Switchboard.deliveries``); the
broker only carries the events an action returned, so that the other
processes do the same for theirs. What crosses (``exported``):

- writes (``Change``, ``DocumentChange``, ``EntryChange``): every process
  renders them for its own subscribers, with its own rules;
- deliveries and subscription changes aimed at a channel, a user or every
  connection of a protocol (a Backpack ``broadcast``, a Socket.IO room
  message, an invitation that makes a user's sockets join a room, a deleted
  channel) - rewritten without the connection ids of the process that made
  them (``exclude``, ``include``, ``Change.connection``), which name nothing
  elsewhere;
- rule and role changes, session revocations and the inbox's admitted
  datagrams (``ctl``: every process takes them).

What stays: instructions about one connection (``Subscribe``,
``Unsubscribe``, ``IdentifyConnection``, ``CloseConnection``, replies
addressed to ``Audience.connection`` or ``connections``) - a connection lives
in one process.

Topics. ``<prefix>.<kind>.<token>``, the token a 16-hex-digit hash of what
the topic is about (NATS subjects and Redis channels both take it; names
of channels and collections may hold any character):

========  ============================================  ==========================
kind      carries                                       a process subscribes when
========  ============================================  ==========================
``rec``   writes of one collection                      a connection may be shown them
``ent``   writes of one kv / live config entry          a resource subscriber follows it
``doc``   writes of one token-addressed document        a resource subscriber follows it
``ch``    deliveries to one channel / room of a protocol a connection there is in it
``usr``   deliveries to one user's connections          that user has a connection there
``all``   deliveries to every connection of a protocol  that protocol has a connection
``ctl``   rules, roles, revocations, datagrams          always
========  ============================================  ==========================

Which writes a protocol may show a connection is the protocol's rule
(``CHANGE_INTEREST``): Backpack shows every collection's writes to every
connection (``rec.*``, one pattern), Directus and resource subscribers the
collections, entries and documents they follow, Asnity's rooms the chats
collection, the admin console's live view everything. A mount not in the
table is given everything once it has a connection: correct, at the cost
of traffic. A pattern covers the topics it matches, which are then not
subscribed one by one (a broker would deliver a message once per matching
subscription).
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Callable, Iterable, Iterator, Union

import msgspec

from satchel.protocol.changes import Change, DocumentChange, EntryChange
from satchel.protocol.channels import (
    Audience,
    Channel,
    ChannelRegistry,
    CloseChannel,
    Deliver,
    SubscribeAudience,
    UnsubscribeAudience,
)
from satchel.protocol.permissions.live import RoleChanged, RulesChanged

__all__ = [
    "Envelope", "SessionsRevoked", "DatagramSeen", "WireEvent", "encode", "decode", "topic_of", "exported",
    "interest", "Topics", "change_key", "join", "JOIN_LIMIT", "sender_head",
]


class SessionsRevoked(msgspec.Struct, frozen=True, tag=True):
    """Sessions revoked on another process (``satchel.protocol.sessions.Revoked``)."""

    token_hash: str = ""
    user_id: str = ""
    kind: str = ""


class DatagramSeen(msgspec.Struct, frozen=True, tag=True):
    """An inbox datagram another process admitted: its tag and timestamp
    (``satchel.protocol.inbox.replay``), to be refused here as a replay."""

    tag: bytes
    timestamp_ms: int


WireEvent = Union[
    Change, DocumentChange, EntryChange, Deliver, SubscribeAudience, UnsubscribeAudience, CloseChannel,
    RulesChanged, RoleChanged, SessionsRevoked, DatagramSeen,
]


class Envelope(msgspec.Struct, array_like=True):
    """One broker message: the process that sent it, and events in its order."""

    node: bytes
    events: list[WireEvent]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode(node: bytes, events: list[Any]) -> bytes:
    """The broker message carrying ``events`` from ``node``."""
    return _encoder.encode(Envelope(node, events))


def decode(data: bytes) -> Envelope:
    """A broker message (``msgspec.ValidationError`` / ``DecodeError`` if it is not one)."""
    return _decoder.decode(data)


#: The largest message ``join`` makes (bytes): well under NATS's default
#: max_payload (1 MiB) and Redis's limits, and a bounded copy per join.
JOIN_LIMIT = 64 * 1024


def sender_head(node: bytes) -> bytes:
    """How every message ``encode`` makes for ``node`` starts (the
    envelope's array header and the node as msgpack bin): a process tells
    its own echoed messages (Redis) by it without decoding them."""
    return _encoder.encode(Envelope(node, []))[:-1]  # all but the empty events array


def join(first: bytes, second: bytes) -> bytes | None:
    """One message carrying the events of ``first`` then those of
    ``second``, both ``encode``d for the same node - or ``None`` when they
    are not (then each goes as it is).

    Why: a node publishes one message per action, and the actions of one
    read (a publisher's burst of broadcasts) queue several messages on one
    topic before the broker connection's next write. Sent as one, each
    receiving node pays its per-message costs (the broker client's parsing,
    the decode, one pass through the switchboard and the hub) once for the
    burst, and the broker forwards one message. The events' order is kept,
    so the order guarantees hold (``BrokerBus``). Done on the bytes - the
    envelope is ``[node, [event, ...]]`` in msgpack: the events array's
    header is rewritten and the events' bytes are concatenated - so nothing
    is decoded or encoded again."""
    try:
        end = 3 + first[2]  # after the header and the node
        marker_a, marker_b = first[end], second[end]
    except IndexError:
        return None
    head = first[:end]
    if not (second.startswith(head) and head.startswith(b"\x92\xc4")):
        return None
    # The usual case, a few events: both arrays are fixarrays and so is the joined one.
    if 0x90 <= marker_a <= 0x9F and 0x90 <= marker_b <= 0x9F and marker_a + marker_b < 0x130:
        return b"".join((head, _FIXARRAYS[marker_a + marker_b - 0x120], first[end + 1:], second[end + 1:]))
    count_a, start_a = _events_of(first, end)
    count_b, start_b = _events_of(second, end)
    if start_a < 0 or start_b < 0:
        return None
    count = count_a + count_b
    header = b"\xdc" + count.to_bytes(2, "big") if count < 65536 else b"\xdd" + count.to_bytes(4, "big")
    return b"".join((head, header, memoryview(first)[start_a:], memoryview(second)[start_b:]))


_FIXARRAYS = [bytes((0x90 | count,)) for count in range(16)]


def _events_of(data: bytes, end: int) -> tuple[int, int]:
    """(event count, where the first event starts) of the events array at
    ``end`` of a message ``encode`` made; ``(0, -1)`` if none is there."""
    marker = data[end]
    if 0x90 <= marker <= 0x9F:  # fixarray
        return marker & 0x0F, end + 1
    if marker == 0xDC:  # array 16
        return int.from_bytes(data[end + 1:end + 3], "big"), end + 3
    if marker == 0xDD:  # array 32
        return int.from_bytes(data[end + 1:end + 5], "big"), end + 5
    return 0, -1


@functools.lru_cache(maxsize=65_536)
def _token(*parts: str) -> str:
    # Cached: the same collections, channels and users come back with every write.
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


class Topics:
    """Topic names under one prefix (one Satchel cluster per prefix on a broker)."""

    __slots__ = ("prefix", "control")

    def __init__(self, prefix: str = "satchel") -> None:
        if not prefix or any(c in prefix for c in " \t\r\n*>"):
            raise ValueError(f"a broker prefix is a non-empty name without spaces, '*' or '>': {prefix!r}")
        self.prefix = prefix
        self.control = f"{prefix}.ctl.0"

    def collection(self, name: str) -> str:
        return f"{self.prefix}.rec.{_token(name)}"

    def entry(self, space: str, organization: str, project: str, entry_id: str) -> str:
        return f"{self.prefix}.ent.{_token(space, organization, project, entry_id)}"

    def document(self, read_token: str) -> str:
        return f"{self.prefix}.doc.{_token(read_token)}"

    def channel(self, protocol: str, channel: Channel) -> str:
        return f"{self.prefix}.ch.{_token(protocol, channel.type, channel.id)}"

    def user(self, protocol: str, user_id: str) -> str:
        return f"{self.prefix}.usr.{_token(protocol, user_id)}"

    def everyone(self, protocol: str) -> str:
        return f"{self.prefix}.all.{_token(protocol)}"

    def every(self, kind: str) -> str:
        """The pattern of every topic of ``kind`` (``rec``, ``ent``, ``doc``)."""
        return f"{self.prefix}.{kind}.*"

    def kind_of(self, topic: str) -> str:
        """``rec``, ``ch``, ... of a topic of this prefix."""
        return topic[len(self.prefix) + 1:].split(".", 1)[0]


def _audience_topic(topics: Topics, protocol: str, audience: Audience) -> str | None:
    if audience.connection is not None or audience.connections is not None:
        return None  # named connections live in this process
    if audience.channel is not None:
        return topics.channel(protocol, audience.channel)
    if audience.user_id is not None:
        return topics.user(protocol, audience.user_id)
    return topics.everyone(protocol)


def _remote_audience(audience: Audience) -> Audience:
    if audience.exclude is None and audience.include is None:
        return audience
    return msgspec.structs.replace(audience, exclude=None, include=None)


def exported(topics: Topics, events: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """(topic, event as the other processes apply it) for each of ``events``
    that crosses (module docstring), in order."""
    for event in events:
        kind = type(event)
        if kind is Change:
            if event.connection is not None:
                event = msgspec.structs.replace(event, connection=None)
            yield topics.collection(event.collection), event
        elif kind is EntryChange:
            yield topics.entry(event.space, event.organization, event.project, event.id), event
        elif kind is DocumentChange:
            yield topics.document(event.read_token), event
        elif kind is Deliver or kind is SubscribeAudience or kind is UnsubscribeAudience:
            topic = _audience_topic(topics, event.protocol, event.audience)
            if topic is not None:
                audience = _remote_audience(event.audience)
                if audience is not event.audience:
                    event = msgspec.structs.replace(event, audience=audience)
                yield topic, event
        elif kind is CloseChannel:
            yield topics.channel(event.protocol, event.channel), event
        elif kind is RulesChanged or kind is RoleChanged:
            yield topics.control, event


def topic_of(topics: Topics, event: Any) -> str | None:
    """The topic ``event`` crosses on (``None``: it stays in this process)."""
    for topic, _ in exported(topics, (event,)):
        return topic
    return None


def change_key(event: Any) -> tuple[tuple[str, ...], Any] | None:
    """(what a versioned write is about, its version): an entry's version,
    a document's revision, or a record's (created at, revision) - each grows
    with every write of it (README: Running several processes).

    A record's revision restarts at 1 if its id is ever created again after
    a delete (``Change.revision``: a delete's is above every other), so its
    version leads with the record's creation time: a later incarnation
    outranks the delete of the earlier one. A change of unknown revision (0)
    is not compared."""
    kind = type(event)
    if kind is Change:
        if not event.revision:
            return None
        record = event.record
        return ("rec", event.collection, record.get("_id", "")), (record.get("createdAt", ""), event.revision)
    if kind is EntryChange:
        return ("ent", event.space, event.organization, event.project, event.id), event.version
    if kind is DocumentChange:
        return ("doc", event.read_token), event.revision
    return None


# -- interest: which topics a process needs ------------------------------------------------

#: The chats collection of Asnity (``satchel.protocol.asnity.model.CHATS``).
def _asnity_chats() -> str:
    from satchel.protocol.asnity.model import CHATS

    return CHATS


def _backpack(topics: Topics, registry: ChannelRegistry) -> Iterator[str]:
    if len(registry):
        yield topics.every("rec")  # every connection is shown every collection's writes


def _everything(topics: Topics, registry: ChannelRegistry) -> Iterator[str]:
    if len(registry):
        yield topics.every("rec")
        yield topics.every("ent")
        yield topics.every("doc")


def _admin(topics: Topics, registry: ChannelRegistry) -> Iterator[str]:
    if _channels(registry):  # the live view's subscribers
        yield from _everything(topics, registry)


def _directus(topics: Topics, registry: ChannelRegistry) -> Iterator[str]:
    for channel in _channels(registry):
        if channel.type == "directus-collection":
            yield topics.collection(channel.id)


def _resources(topics: Topics, registry: ChannelRegistry) -> Iterator[str]:
    for channel in _channels(registry):
        if channel.type == "collection":
            yield topics.collection(channel.id)
        elif channel.type == "document":
            yield topics.document(channel.id)
        elif channel.type in ("kvStore", "liveConfig"):
            try:
                organization, project, entry_id = json.loads(channel.id)
            except (ValueError, TypeError):
                continue
            yield topics.entry(channel.type, organization, project, entry_id)


def _asnity(topics: Topics, registry: ChannelRegistry) -> Iterator[str]:
    if any(channel.type == "asnity-room" for channel in _channels(registry)):
        yield topics.collection(_asnity_chats())


#: mount name -> the change topics its connections need.
CHANGE_INTEREST: dict[str, Callable[[Topics, ChannelRegistry], Iterable[str]]] = {
    "backpack": _backpack,
    "admin": _admin,
    "directus": _directus,
    "resources": _resources,
    "asnity": _asnity,
    "inbox": lambda topics, registry: (),
    "landing": lambda topics, registry: (),
}


def _channels(registry: ChannelRegistry) -> Iterable[Channel]:
    # The registry's channels with members (its own bookkeeping, read only).
    return registry._members.keys()


def _users(registry: ChannelRegistry) -> Iterable[str]:
    return registry._connections_of_user.keys()


def topics_of_channels(topics: Topics, protocol: str, channels: Iterable[Channel]) -> frozenset[str]:
    """The topics a connection of ``protocol`` in ``channels`` (and nothing
    else) needs: what ``interest`` would add for it (``Follow``)."""
    registry = ChannelRegistry()
    registry.add_connection("follow", None)
    for channel in channels:
        registry.subscribe("follow", channel)
    return interest(topics, {protocol: registry}) - {topics.control}


def covered(interest: frozenset[str], topic: str) -> bool:
    """Whether following ``interest`` hears ``topic`` (by name or pattern)."""
    if topic in interest:
        return True
    return any(followed.endswith("*") and topic.startswith(followed[:-1]) for followed in interest)


def interest(topics: Topics, registries: dict[str, ChannelRegistry], extra: Iterable[str] = ()) -> frozenset[str]:
    """The topics (and ``*`` patterns) a process with these registries needs
    (module docstring), plus ``extra``; what a pattern covers is left out
    (Redis would deliver a message twice, once per subscription)."""
    wanted: set[str] = {topics.control, *extra}
    for protocol, registry in registries.items():
        if not len(registry):
            continue
        wanted.update(CHANGE_INTEREST.get(protocol, _everything)(topics, registry))
        wanted.add(topics.everyone(protocol))
        wanted.update(topics.channel(protocol, channel) for channel in _channels(registry))
        wanted.update(topics.user(protocol, user) for user in _users(registry))
    patterns = [topic[:-1] for topic in wanted if topic.endswith("*")]
    if patterns:
        wanted = {t for t in wanted if t.endswith("*") or not any(t.startswith(p) for p in patterns)}
    return frozenset(wanted)
