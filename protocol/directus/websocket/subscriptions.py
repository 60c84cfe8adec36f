"""A connection's subscriptions, and how they are known to the hub.

A subscription is what one ``subscribe`` message asked for: a collection, a
query (its filter and fields decide what each event shows), for core
connections an ``event`` and an ``item`` filter, and the ``uid`` its events
carry. It lives in the connection's state (``state.Connection``), because
what a subscriber receives depends on who it is *now* (a core connection
may sign in again, or its token may expire).

The hub needs to know only which connections listen to a collection: each
connection with at least one subscription on collection ``c`` is subscribed
to ``Channel("directus-collection", c)`` in the mount's registry. The
renderer (``delivery``) asks that channel's recipients for their states and
groups their subscriptions there, so nothing else is registered per
subscription and nothing can go stale when a connection's role changes.

uids (directus.md 1b and 2):

- core: ``uid`` is a string or a number; events carry ``String(uid)`` (the
  SDK compares with ``===`` against the string it sent). A subscribe whose
  uid this connection already uses **replaces** that subscription (the SDK
  re-sends its subscribes with the same uids after a reconnect).
- extension, latest format: any truthy uid is echoed as it was sent; uids
  may repeat (the original never deduplicated).
- extension v1: events carry no uid.

Bound (issue 14, ``--max-channels-per-connection``): a subscribe that would
take the connection past it is refused with Directus's ``LIMIT_EXCEEDED``,
in the format of the protocol that asked (core: ``{"type":"subscribe",
"status":"error","error":{"code":"LIMIT_EXCEEDED","message"},"uid"}``;
extension: its ``ERROR`` frame with the uid), and nothing is subscribed.
A connection's channels are its collections, but many subscriptions can
share one: the subscriptions themselves are bounded by the same number.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ...channels import TOO_MANY_CHANNELS, Channel, ChannelLimit, ChannelRoom, Follow, Subscribe, Unsubscribe
from ...operations import Action
from ...query import Query
from ..errors import DirectusError
from .frames import CORE, EXTENSION_V1, encode

__all__ = [
    "COLLECTION_CHANNEL",
    "EventName",
    "Subscription",
    "subscription",
    "collection_channel",
    "replace",
    "remove",
    "LIMIT_EXCEEDED",
    "check_room",
]

#: Directus's code for a bound passed (its ``LimitExceededError``).
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"

#: The channel type of "connections with a subscription on a collection".
COLLECTION_CHANNEL = "directus-collection"

#: The change kinds as both protocols name them.
EventName = Literal["create", "update", "delete"]
_EVENT_OF_KIND = {"create": "create", "patch": "update", "overwrite": "update", "delete": "delete"}


class Subscription(msgspec.Struct, frozen=True):
    """One subscription of one connection.

    ``format`` is how its events are worded (``frames.CORE``,
    ``EXTENSION``, ``EXTENSION_V1``); ``query`` is the subscription's query
    as stored paths (``items.stored_query``: ``id`` read as ``_id``), or
    ``None`` for v1, whose events ignored the query (the read rule still
    applies); ``event`` / ``item`` the core's filters; ``uid`` what its
    events echo (``None``: none).

    For the renderer (``delivery``), which groups thousands of them per
    change, two keys are computed once (bytes: their hashes are cached):
    ``query_key`` says which subscriptions decide alike (equal queries),
    ``frame_key`` which are worded alike for one rendering (format, uid,
    item-mode); ``selective`` whether ``wants`` must be asked at all.
    """

    collection: str
    format: str
    uid: Any
    query: Query | None
    event: EventName | None = None
    item: str | None = None
    query_key: bytes = b""
    frame_key: bytes = b""
    selective: bool = False

    def wants(self, kind: str, key: str) -> bool:
        """Whether a change of ``kind`` to the item ``key`` concerns it
        (the core's ``event`` and ``item`` filters)."""
        if self.event is not None and _EVENT_OF_KIND[kind] != self.event:
            return False
        return self.item is None or self.item == key


def subscription(
    collection: str,
    fmt: str,
    uid: Any,
    query: Query | None,
    event: EventName | None = None,
    item: str | None = None,
) -> Subscription:
    """A ``Subscription`` with its grouping keys filled in."""
    query_key = b"" if query is None else encode(query)
    # uids of the extension may be any JSON value: told apart by their encoding.
    uid_key = b"" if uid is None or fmt == EXTENSION_V1 else encode(uid)
    frame_key = encode([fmt, item is not None]) + uid_key
    return Subscription(collection, fmt, uid, query, event, item, query_key, frame_key,
                        event is not None or item is not None)


def collection_channel(collection: str) -> Channel:
    """The registry channel of the connections that listen to ``collection``."""
    return Channel(COLLECTION_CHANNEL, collection)


def _channel_events(
    protocol: str, connection: str, before: list[Subscription], after: list[Subscription]
) -> list[Any]:
    had = {sub.collection for sub in before}
    has = {sub.collection for sub in after}
    events: list[Any] = [Unsubscribe(protocol, connection, collection_channel(c)) for c in sorted(had - has)]
    events += [Subscribe(protocol, connection, collection_channel(c)) for c in sorted(has - had)]
    return events


def replace(
    protocol: str, connection: str, subscriptions: list[Subscription], new: Subscription
) -> tuple[list[Subscription], list[Any]]:
    """``subscriptions`` with ``new`` added - for the core, in place of the
    one with the same uid, if any - and the hub events that keep the
    registry in step."""
    kept = subscriptions
    if new.format == CORE and new.uid is not None:
        kept = [sub for sub in subscriptions if sub.uid != new.uid]
    after = [*kept, new]
    return after, _channel_events(protocol, connection, subscriptions, after)


def remove(
    protocol: str, connection: str, subscriptions: list[Subscription], uid: Any
) -> tuple[list[Subscription], list[Any]]:
    """``subscriptions`` without those of ``uid`` (``None``: all of them),
    and the hub events that keep the registry in step."""
    if uid is None:
        after: list[Subscription] = []
    else:
        wanted = encode(uid)
        after = [sub for sub in subscriptions if sub.uid is None or encode(sub.uid) != wanted]
    return after, _channel_events(protocol, connection, subscriptions, after)


def check_room(protocol: str, connection: str, subscriptions: list[Subscription], collection: str, fmt: str,
               uid: Any) -> Action[None]:
    """Raise ``LIMIT_EXCEEDED`` when a subscription of ``fmt`` with ``uid``
    on ``collection`` would take the connection past its bound: one
    collection more than it may listen to, or one subscription more (a core
    subscribe that replaces its uid's is not one more)."""
    room: ChannelRoom = yield ChannelLimit(protocol, connection, (collection_channel(collection),))
    kept = subscriptions
    if fmt == CORE and uid is not None:
        kept = [sub for sub in subscriptions if sub.uid != uid]
    refused = bool(room.refused)
    if refused and len(kept) < len(subscriptions):
        # A swap: the collection the replaced subscription leaves (its
        # Unsubscribe goes first, ``_channel_events``) makes room for this one.
        listened = {sub.collection for sub in kept}
        refused = all(sub.collection in listened for sub in subscriptions if sub not in kept)
    if refused or (room.bound is not None and len(kept) >= room.bound):
        raise DirectusError(LIMIT_EXCEEDED, f"{TOO_MANY_CHANNELS}: at most {room.bound} subscriptions.", 400)
    # Before the init data is read: every process's later writes reach it.
    yield Follow(protocol, connection, (collection_channel(collection),))
