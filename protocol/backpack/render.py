"""Who hears about a Backpack record or message, and how it is worded.

Seed 000's routing rule, in one place for REST writes, websocket writes and
relayed messages: an object that names a channel (``channelType`` and
``channelId``) goes to the connections subscribed to that channel, anything
else to every connection. A record with ``broadcast: false`` (the boolean, or
the string ``"false"`` that form posts produce) goes only to the connections
of the user who wrote it - seed 000 recommends it for per-user documents.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..changes import Change
from ..collections import RESERVED_PREFIX
from ..channels import EVERYONE, Audience, Channel, Deliver
from ..mounts import NO_CONTEXT, RenderContext
from ..permissions import Accountability, Subscriber, delivery_groups

__all__ = [
    "PROTOCOL",
    "ORIGIN_HTTP",
    "ORIGIN_WEBSOCKET",
    "ORIGIN_CHANNELS",
    "ORIGIN_CHANNEL_CREATED",
    "ORIGIN_UPLOADS",
    "WIRE_ACTION",
    "audience_for",
    "channel_of",
    "encode",
    "render_change",
]

#: The name Backpack connections are registered under in the hub.
PROTOCOL = "backpack"

#: ``Change.origin`` of writes made through Backpack's REST API.
ORIGIN_HTTP = "backpack-http"
#: ``Change.origin`` of writes made by Backpack's websocket data actions.
ORIGIN_WEBSOCKET = "backpack-ws"
#: ``Change.origin`` of the bookkeeping writes of the six channel actions.
ORIGIN_CHANNELS = "backpack-channels"
#: ``Change.origin`` of the channel document ``createChannel`` makes: the
#: other connections hear of it as ``{"action":"createChannel",...}``.
ORIGIN_CHANNEL_CREATED = "backpack-channel-created"

#: ``Change.origin`` of file metadata writes (``/uploads``).
ORIGIN_UPLOADS = "backpack-uploads"

#: Backpack's websocket action names for the shared change kinds.
WIRE_ACTION = {"create": "create", "patch": "patch", "overwrite": "update", "delete": "delete"}

encode = msgspec.json.Encoder().encode


def channel_of(obj: dict[str, Any]) -> Channel | None:
    """The channel an object names, if it names one with two strings."""
    channel_type = obj.get("channelType")
    channel_id = obj.get("channelId")
    if isinstance(channel_type, str) and isinstance(channel_id, str):
        return Channel(channel_type, channel_id)
    return None


def audience_for(obj: dict[str, Any], writer: str | None, author: str | None = None) -> Audience:
    """Seed 000's routing rule for a record or relayed message.

    ``writer`` is the user who made it; ``author`` the connection that sent it,
    which always receives it (replies reuse the action name).
    """
    flag = obj.get("broadcast")
    if (flag is False or flag == "false") and writer is not None:
        return Audience(user_id=writer, include=author)
    channel = channel_of(obj)
    if channel is not None:
        return Audience(channel=channel, include=author)
    return Audience(include=author) if author is not None else EVERYONE


def render_change(change: Change, context: RenderContext = NO_CONTEXT) -> list[Deliver]:
    """The messages Backpack websockets receive for a committed write.

    Writes made over HTTP - Backpack's REST API or another protocol's, such
    as Directus's items API - carry ``httpRequest: true`` (BRIEF section 1),
    so a client can tell them from its peers' websocket actions. The bookkeeping
    writes of channel actions are not repeated: the channel action's own
    messages (seed 000) already tell the clients what changed; a new
    channel's document is told to the other connections as
    ``createChannel``. File metadata is not broadcast either, as in the
    original.

    The routing rule picks the audience; the rules in force then decide what
    each recipient sees (``permissions.delivery_groups``): under the default
    rules everyone may read everything and the message is encoded once.
    """
    if change.origin == ORIGIN_CHANNEL_CREATED:
        message: dict[str, Any] = {"action": "createChannel"}
        audience = Audience(exclude=change.connection) if change.connection is not None else EVERYONE
    elif change.origin in (ORIGIN_CHANNELS, ORIGIN_UPLOADS) or change.collection.startswith(RESERVED_PREFIX):
        # Other protocols' own data (``_asnity.chats``...) is theirs to show.
        return []
    else:
        message = {"action": WIRE_ACTION[change.kind], "collection": change.collection}
        if change.is_http:
            message["httpRequest"] = True
        audience = audience_for(change.record, change.user_id, change.connection)
    rules = context.rules
    if rules.unrestricted(change.collection, "read"):
        message["response"] = change.record
        return [Deliver(PROTOCOL, encode(message), audience)]
    subscribers = [
        Subscriber(connection, Accountability(socket.user_id, socket.role))
        for connection, socket in context.recipients(audience)
    ]
    groups = delivery_groups(rules, change.collection, change.record, subscribers, now_ms=context.now_ms())
    return [
        Deliver(PROTOCOL, encode({**message, "response": group.record}), Audience(connections=group.members))  # type: ignore[arg-type]
        for group in groups
    ]
