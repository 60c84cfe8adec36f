"""Backpack's websocket: the sixteen actions of seed 000, as pure actions.

A connection belongs to the user whose session cookie opened it. Every frame
the client sends is a JSON object with an ``action``; ``handle_message``
turns one frame into a list of events for the hub: ``Change``s for the
writes (each protocol renders them; see ``render.render_change``) and
``Deliver``/``Subscribe``/... for messages and channel membership. Replies
reuse the action's name; anything the server cannot do is answered to the
sender alone as ``{"action":"error","message":...}``.

Where the original server and seed 000 disagree, Satchel follows the seed
(the documented intent) and says so here:
- ``joinChannel``/``leaveChannel`` notify the channel's *other* members; the
  caller gets one reply with its updated users-information document.
- ``broadcast`` relays the sender's object (plus ``userId``) by the routing
  rule; ``open``/``close`` do the same. The sender always gets its copy.
- The users-information document is the caller's record in the named
  collection whose ``userId`` is the caller; if there is none, the first
  channel action creates it (``channels: []``, no current channel,
  ``broadcast: false`` as seed 000 recommends) instead of failing.
- ``deleteChannel`` is allowed to the user who created the channel (its
  ``userId``), or to anyone for a channel document without an owner.
- When a user's last socket closes, everyone else receives
  ``{"action":"close","userId"}`` once. The original announced every closing
  socket to every other one: a user with two tabs "left" when one closed,
  and a mass disconnect of N sockets cost N x N frames (issue 14). The SDK
  only hands the frame to the page's ``close`` handler, so what a page
  learns is now simply true: that user is gone.
- A connection holds at most the server's bound of channels (issue 14,
  ``--max-channels-per-connection``): ``joinChannel`` or ``createChannel``
  past it is answered ``{"action":"error","message":"Too many channels for
  this connection (at most N)","failedAction":...}`` before anything is
  written (the channel is not created, the users-information document not
  changed); ``joinUsersChannels`` joins those that fit, replies as usual,
  then sends that error for the rest.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import msgspec

from .. import collections as data
from ..changes import DELETED, Change
from ..channels import (
    TOO_MANY_CHANNELS, Audience, Channel, ChannelLimit, ChannelRoom, CloseChannel, Deliver, Follow, Subscribe,
    Unsubscribe,
)
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, json_response
from ..operations import DEFAULT_ROLE, Action, DeleteRecords, GetRecord, ListRecords, StoredRecord
from ..permissions import Forbidden
from ..records import is_object_id
from . import auth, permits
from .config import BackpackConfig
from .rest import cors_headers
from .render import ORIGIN_CHANNEL_CREATED, ORIGIN_CHANNELS, ORIGIN_WEBSOCKET, PROTOCOL, audience_for, encode

__all__ = ["Socket", "Event", "ACTIONS", "GREETING", "accept", "greeting", "handle_message", "socket_closed"]

#: What the hub accepts from an action: writes and direct hub instructions.
Event = Union[Change, Deliver, Subscribe, Unsubscribe, CloseChannel]


class Socket(msgspec.Struct, frozen=True):
    """One open Backpack websocket: its hub connection id, its user, and the
    user's role as it was when the socket opened (what the changes it is
    sent are redacted for; its own actions read the role afresh)."""

    connection: str
    user_id: str
    role: str = DEFAULT_ROLE


#: The first frame of every connection (BRIEF section 1).
GREETING = encode({"action": "connection", "response": "Websocket connection established"})

_decode = msgspec.json.Decoder().decode
_NO_CHANNEL = {"channelType": None, "channelId": None}


def accept(
    request: HttpRequest, connection: str, config: BackpackConfig, env: Environment
) -> Action[Socket | HttpResponse]:
    """Admit a websocket upgrade: the session cookie names the user.

    Browsers cannot set headers on a websocket, so the upgrade carries no API
    key; the session (which only a login with the key could create) stands in
    for it. Without a live session the upgrade is refused with 401.
    """
    user_id = yield from auth.current_user(request, config, env)
    if user_id is None:
        response = json_response(401, {"message": "Log in before opening a websocket"})
        response.headers.extend(cors_headers(request, config))
        return response
    who = yield from permits.who_is(user_id)
    return Socket(connection, user_id, who.role)


def greeting(socket: Socket) -> list[Event]:
    """The events of a freshly accepted connection: its greeting."""
    return [Deliver(PROTOCOL, GREETING, Audience(connection=socket.connection))]


# -- the messages, as the SDK sends them (baas-sdk src/ws.js) ------------------


class _Collection(msgspec.Struct):
    collection: str


class _Find(msgspec.Struct):
    collection: str
    query: dict[str, Any] | None = None


class _One(msgspec.Struct):
    collection: str
    id: str


class _Create(msgspec.Struct):
    collection: str
    data: dict[str, Any]


class _Rewrite(msgspec.Struct):
    collection: str
    id: str
    data: dict[str, Any]


class _UsersChannels(msgspec.Struct):
    usersInformationCollection: str


class _CreateChannel(msgspec.Struct):
    usersInformationCollection: str
    channelType: str
    name: Any = None


class _ChannelAction(msgspec.Struct):
    usersInformationCollection: str
    channelType: str
    channelId: str


class _DeleteChannel(msgspec.Struct):
    usersInformationCollection: str
    channelMessagesCollection: str
    channelType: str
    channelId: str


def _reply(socket: Socket, message: dict[str, Any]) -> Deliver:
    return Deliver(PROTOCOL, encode(message), Audience(connection=socket.connection))


def _error(socket: Socket, message: str, action: str | None = None) -> Deliver:
    body: dict[str, Any] = {"action": "error", "message": message}
    if action is not None:
        body["failedAction"] = action
    return _reply(socket, body)


def _too_many(socket: Socket, room: ChannelRoom, action: str) -> Deliver:
    return _error(socket, f"{TOO_MANY_CHANNELS} (at most {room.bound})", action)


def _collection(name: str) -> str:
    return data.validate_collection_name(name)


# -- data actions -----------------------------------------------------------


def _find(socket: Socket, msg: _Find, env: Environment) -> Action[list[Event]]:
    collection = _collection(msg.collection)
    permit = yield from permits.permit(socket.user_id, collection, env, "read")
    if permit is None:
        records = yield ListRecords(collection, msg.query or None)
    else:
        records = yield from permit.find(msg.query or {})
    return [_reply(socket, {"action": "find", "collection": msg.collection, "response": records})]


def _get_all(socket: Socket, msg: _Collection, env: Environment) -> Action[list[Event]]:
    collection = _collection(msg.collection)
    permit = yield from permits.permit(socket.user_id, collection, env, "read")
    if permit is None:
        records = yield ListRecords(collection)
    else:
        records = (yield permit.list_all()).records
    return [_reply(socket, {"action": "getAll", "collection": msg.collection, "response": records})]


def _get_one(socket: Socket, msg: _One, env: Environment) -> Action[list[Event]]:
    collection = _collection(msg.collection)
    record: dict[str, Any] | None = None
    if is_object_id(msg.id):
        permit = yield from permits.permit(socket.user_id, collection, env, "read")
        stored: StoredRecord | None = yield GetRecord(collection, msg.id)
        if stored is not None:
            record = permits.shown(permit, stored.record)  # unreadable: as if absent
    return [_reply(socket, {"action": "getOne", "collection": msg.collection, "response": record})]


def _create(socket: Socket, msg: _Create, env: Environment) -> Action[list[Event]]:
    # Seed 000: "you never have to include the userId ... the server logs
    # the userId"; the author is the session's user, whatever the client says.
    collection = _collection(msg.collection)
    fields = {**msg.data, "userId": socket.user_id}
    permit = yield from permits.permit(socket.user_id, collection, env, "create")
    _, change = yield from data.create(
        collection, fields, socket.user_id, ORIGIN_WEBSOCKET, env, permits.guard_of(permit)
    )
    return [_authored(change, socket)]


def _authored(change: Change, socket: Socket) -> Change:
    return msgspec.structs.replace(change, connection=socket.connection)


_REWRITE_ACTION = {"update": "update", "patch": "update", "delete": "delete"}


def _rewriter(kind: str) -> Callable[[Socket, Any, Environment], Action[list[Event]]]:
    def rewrite(socket: Socket, msg: Any, env: Environment) -> Action[list[Event]]:
        collection = _collection(msg.collection)
        if not is_object_id(msg.id):
            return [_error(socket, f"No record {msg.id!r} in '{collection}'", kind)]
        permit = yield from permits.permit(socket.user_id, collection, env, _REWRITE_ACTION[kind])  # type: ignore[arg-type]
        guard = permits.guard_of(permit)
        if kind == "update":
            _, change = yield from data.overwrite(collection, msg.id, msg.data, socket.user_id, ORIGIN_WEBSOCKET, env, guard)
        elif kind == "patch":
            _, change = yield from data.patch(collection, msg.id, msg.data, socket.user_id, ORIGIN_WEBSOCKET, env, guard)
        else:
            _, change = yield from data.delete(collection, msg.id, socket.user_id, ORIGIN_WEBSOCKET, guard)
        if change is None:
            return [_error(socket, f"No record {msg.id!r} in '{collection}'", kind)]
        return [_authored(change, socket)]

    return rewrite


# -- relayed messages -------------------------------------------------------


def _relay(action: str) -> Callable[[Socket, dict[str, Any], Environment], Action[list[Event]]]:
    def relay(socket: Socket, message: dict[str, Any], env: Environment) -> Action[list[Event]]:
        body = {**message, "action": action, "userId": socket.user_id}
        return [Deliver(PROTOCOL, encode(body), audience_for(body, None, socket.connection))]
        yield  # unreachable: makes this a generator, the shape every action has

    return relay


# -- channel bookkeeping (seed 000, "Websocket Channels") ----------------------


def _channel_dict(channel: Channel) -> dict[str, str]:
    return {"channelType": channel.type, "channelId": channel.id}


def _listed(channels: Any) -> list[Any]:
    return list(channels) if isinstance(channels, list) else []


def _same_channel(entry: Any, channel: Channel) -> bool:
    return isinstance(entry, dict) and entry.get("channelType") == channel.type and entry.get("channelId") == channel.id


def _first_or_none(channels: list[Any]) -> dict[str, Any]:
    for entry in channels:
        if isinstance(entry, dict):
            return {"channelType": entry.get("channelType"), "channelId": entry.get("channelId")}
    return dict(_NO_CHANNEL)


def _users_information(
    collection: str, user_id: str, env: Environment, changes: list[Event], *, as_caller: bool = True
) -> Action[dict[str, Any]]:
    """The caller's users-information document, created if missing.

    Under the rules the caller must be able to read it, and to create it
    when it is missing. ``as_caller=False`` is the server's own bookkeeping
    of another member's document (``deleteChannel``), which the rules do not
    decide: the caller's right there is the deletion of the channel."""
    permit = (yield from permits.permit(user_id, collection, env, "read", "create")) if as_caller else None
    found = yield ListRecords(collection, {"userId": user_id})
    if found:
        if permit is not None and permit.shown(found[0]) is None:
            raise Forbidden()
        return found[0]
    fields = {"userId": user_id, "channels": [], "currentChannel": dict(_NO_CHANNEL), "broadcast": False}
    record, change = yield from data.create(collection, fields, user_id, ORIGIN_CHANNELS, env, permits.guard_of(permit))
    changes.append(change)
    return record


def _update_users_information(
    collection: str,
    user_id: str,
    update: Callable[[dict[str, Any]], dict[str, Any]],
    env: Environment,
    changes: list[Event],
    *,
    as_caller: bool = True,
) -> Action[dict[str, Any]]:
    """Apply ``update`` (record -> fields to patch) to the caller's document.

    The patch is a compare-and-swap inside ``collections.patch``; if another
    write slipped in, ``update`` is recomputed from the fresh document.
    """
    permit = (yield from permits.permit(user_id, collection, env, "update")) if as_caller else None
    while True:
        info = yield from _users_information(collection, user_id, env, changes, as_caller=as_caller)
        record, change = yield from data.patch(
            collection, info["_id"], update(info), user_id, ORIGIN_CHANNELS, env, permits.guard_of(permit)
        )
        if record is not None:
            changes.append(change)
            return record


def _shown(socket: Socket, collection: str, record: dict[str, Any], env: Environment) -> Action[dict[str, Any] | None]:
    """What the caller may read of ``record``, for a reply."""
    permit = yield from permits.permit(socket.user_id, collection, env, "read")
    return permits.shown(permit, record)


def _joined(channel: Channel) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def update(info: dict[str, Any]) -> dict[str, Any]:
        channels = _listed(info.get("channels"))
        if not any(_same_channel(entry, channel) for entry in channels):
            channels.append(_channel_dict(channel))
        return {"channels": channels, "currentChannel": _channel_dict(channel)}

    return update


def _left(channel: Channel) -> Callable[[dict[str, Any]], dict[str, Any]]:
    # Seed 000 (leaveChannel, deleteChannel): currentChannel becomes the first
    # remaining channel, or no channel.
    def update(info: dict[str, Any]) -> dict[str, Any]:
        channels = [entry for entry in _listed(info.get("channels")) if not _same_channel(entry, channel)]
        return {"channels": channels, "currentChannel": _first_or_none(channels)}

    return update


def _join_users_channels(socket: Socket, msg: _UsersChannels, env: Environment) -> Action[list[Event]]:
    events: list[Event] = []
    info = yield from _users_information(_collection(msg.usersInformationCollection), socket.user_id, env, events)
    channels = _listed(info.get("channels"))
    wanted = [Channel(entry["channelType"], entry["channelId"]) for entry in channels
              if isinstance(entry, dict) and isinstance(entry.get("channelType"), str)
              and isinstance(entry.get("channelId"), str)]
    room: ChannelRoom = yield ChannelLimit(PROTOCOL, socket.connection, tuple(wanted))
    refused = set(room.refused)
    joined = tuple(channel for channel in wanted if channel not in refused)
    if joined:
        yield Follow(PROTOCOL, socket.connection, joined)
    events.extend(Subscribe(PROTOCOL, socket.connection, channel) for channel in joined)
    events.append(_reply(socket, {"action": "joinUsersChannels", "usersChannels": channels}))
    if refused:
        events.append(_too_many(socket, room, "joinUsersChannels"))
    return events


def _create_channel(socket: Socket, msg: _CreateChannel, env: Environment) -> Action[list[Event]]:
    users_collection = _collection(msg.usersInformationCollection)
    channel_type = _collection(msg.channelType)
    # The new channel is one more for this connection: refused before it is created.
    room: ChannelRoom = yield ChannelLimit(PROTOCOL, socket.connection)
    if room.full():
        return [_too_many(socket, room, "createChannel")]
    events: list[Event] = []
    permit = yield from permits.permit(socket.user_id, channel_type, env, "create", "read")
    channel_doc, change = yield from data.create(
        channel_type,
        {"channelType": msg.channelType, "name": msg.name, "userId": socket.user_id},
        socket.user_id,
        ORIGIN_CHANNEL_CREATED,
        env,
        permits.guard_of(permit),
    )
    # The others hear of the channel from this change, as its renderer words
    # it ({"action":"createChannel",...}) for those who may read it.
    events.append(_authored(change, socket))
    channel = Channel(msg.channelType, channel_doc["_id"])
    info = yield from _update_users_information(users_collection, socket.user_id, _joined(channel), env, events)
    shown_info = (yield from _shown(socket, users_collection, info, env)) or {}
    events.append(Subscribe(PROTOCOL, socket.connection, channel))
    events.append(
        _reply(
            socket,
            {
                "action": "createChannel",
                "response": permits.shown(permit, channel_doc),
                "usersChannels": shown_info.get("channels"),
                "usersCurrentChannel": shown_info.get("currentChannel"),
            },
        )
    )
    return events


def _channel_notice(action: str, socket: Socket, channel: Channel) -> dict[str, Any]:
    return {"action": action, "userId": socket.user_id, "channelType": channel.type, "channelId": channel.id}


def _join_channel(socket: Socket, msg: _ChannelAction, env: Environment) -> Action[list[Event]]:
    channel = Channel(_collection(msg.channelType), msg.channelId)
    users_collection = _collection(msg.usersInformationCollection)
    if is_object_id(channel.id):
        # A channel with a document is joined by those who may read it.
        permit = yield from permits.permit(socket.user_id, channel.type, env, "read")
        if permit is not None:
            stored: StoredRecord | None = yield GetRecord(channel.type, channel.id)
            if stored is not None and permit.shown(stored.record) is None:
                raise Forbidden()
    room: ChannelRoom = yield ChannelLimit(PROTOCOL, socket.connection, (channel,))
    if room.refused:
        return [_too_many(socket, room, "joinChannel")]
    yield Follow(PROTOCOL, socket.connection, (channel,))
    events: list[Event] = []
    info = yield from _update_users_information(
        users_collection, socket.user_id, _joined(channel), env, events
    )
    notice = _channel_notice("joinChannel", socket, channel)
    events.append(Deliver(PROTOCOL, encode(notice), Audience(channel=channel, exclude=socket.connection)))
    events.append(Subscribe(PROTOCOL, socket.connection, channel))
    events.append(_reply(socket, {**notice, "response": (yield from _shown(socket, users_collection, info, env))}))
    return events


def _leave_channel(socket: Socket, msg: _ChannelAction, env: Environment) -> Action[list[Event]]:
    channel = Channel(_collection(msg.channelType), msg.channelId)
    users_collection = _collection(msg.usersInformationCollection)
    events: list[Event] = []
    info = yield from _update_users_information(
        users_collection, socket.user_id, _left(channel), env, events
    )
    notice = _channel_notice("leaveChannel", socket, channel)
    events.append(Unsubscribe(PROTOCOL, socket.connection, channel))
    events.append(Deliver(PROTOCOL, encode(notice), Audience(channel=channel, exclude=socket.connection)))
    events.append(_reply(socket, {**notice, "response": (yield from _shown(socket, users_collection, info, env))}))
    return events


def _change_channel(socket: Socket, msg: _ChannelAction, env: Environment) -> Action[list[Event]]:
    channel = Channel(_collection(msg.channelType), msg.channelId)
    users_collection = _collection(msg.usersInformationCollection)
    events: list[Event] = []
    info = yield from _update_users_information(
        users_collection,
        socket.user_id,
        lambda _info: {"currentChannel": _channel_dict(channel)},
        env,
        events,
    )
    shown_info = yield from _shown(socket, users_collection, info, env)
    events.append(_reply(socket, {**_channel_notice("changeChannel", socket, channel), "response": shown_info}))
    return events


def _delete_channel(socket: Socket, msg: _DeleteChannel, env: Environment) -> Action[list[Event]]:
    users_collection = _collection(msg.usersInformationCollection)
    messages_collection = _collection(msg.channelMessagesCollection)
    channel = Channel(_collection(msg.channelType), msg.channelId)
    if is_object_id(channel.id):
        stored: StoredRecord | None = yield GetRecord(channel.type, channel.id)
        owner = stored.record.get("userId") if stored is not None else None
        if owner is not None and owner != socket.user_id:
            return [_error(socket, "Only the user who created a channel can delete it", "deleteChannel")]
    events: list[Event] = []
    # The caller deletes the channel's messages and document: the rules of
    # those collections decide, before anything is deleted.
    channel_permit = yield from permits.permit(socket.user_id, channel.type, env, "delete")
    if channel_permit is not None and is_object_id(channel.id) and stored is not None:
        channel_permit.guard(stored.record, None)
    messages = {"channelType": channel.type, "channelId": channel.id}
    messages_permit = yield from permits.permit(socket.user_id, messages_collection, env, "delete")
    if messages_permit is None:
        removed = yield DeleteRecords(messages_collection, messages)
    else:
        doomed = yield ListRecords(messages_collection, messages)
        for record in doomed:
            messages_permit.guard(record, None)
        removed = yield DeleteRecords(messages_collection, messages)
    events.extend(Change(messages_collection, "delete", r, socket.user_id, ORIGIN_CHANNELS, revision=DELETED)
                  for r in removed)
    if is_object_id(channel.id):
        _, change = yield from data.delete(channel.type, channel.id, socket.user_id, ORIGIN_CHANNELS)
        if change is not None:
            events.append(change)
    # Every member's document loses the channel (seed 000); each connected
    # member subscribed to it is told, with its own updated document. That
    # is the server's bookkeeping of the deletion, not the caller's write.
    members = yield ListRecords(users_collection)
    caller_info: dict[str, Any] | None = None
    for info in members:
        if not any(_same_channel(entry, channel) for entry in _listed(info.get("channels"))):
            continue
        member = info.get("userId")
        if not isinstance(member, str):
            continue
        updated = yield from _update_users_information(
            users_collection, member, _left(channel), env, events, as_caller=member == socket.user_id
        )
        if member == socket.user_id:
            caller_info = updated
        member_view = yield from _member_view(member, users_collection, updated, env)
        notice = {**_channel_notice("deleteChannel", socket, channel), "response": member_view}
        events.append(
            Deliver(PROTOCOL, encode(notice), Audience(channel=channel, user_id=member, exclude=socket.connection))
        )
    if caller_info is None:
        caller_info = yield from _users_information(users_collection, socket.user_id, env, events)
    events.append(CloseChannel(PROTOCOL, channel))
    shown_info = yield from _shown(socket, users_collection, caller_info, env)
    events.append(_reply(socket, {**_channel_notice("deleteChannel", socket, channel), "response": shown_info}))
    return events


def _member_view(member: str, collection: str, record: dict[str, Any], env: Environment) -> Action[dict[str, Any] | None]:
    """What ``member`` may read of its own document."""
    permit = yield from permits.permit(member, collection, env, "read")
    return permits.shown(permit, record)


_Handler = Callable[[Socket, Any, Environment], Action[list[Event]]]

#: action name -> (message type, or None for "the whole object"; handler)
ACTIONS: dict[str, tuple[type | None, _Handler]] = {
    "find": (_Find, _find),
    "getAll": (_Collection, _get_all),
    "getOne": (_One, _get_one),
    "create": (_Create, _create),
    "update": (_Rewrite, _rewriter("update")),
    "patch": (_Rewrite, _rewriter("patch")),
    "delete": (_One, _rewriter("delete")),
    "broadcast": (None, _relay("broadcast")),
    "open": (None, _relay("open")),
    "close": (None, _relay("close")),
    "joinUsersChannels": (_UsersChannels, _join_users_channels),
    "createChannel": (_CreateChannel, _create_channel),
    "joinChannel": (_ChannelAction, _join_channel),
    "leaveChannel": (_ChannelAction, _leave_channel),
    "changeChannel": (_ChannelAction, _change_channel),
    "deleteChannel": (_DeleteChannel, _delete_channel),
}


def handle_message(socket: Socket, frame: str | bytes, env: Environment) -> Action[list[Event]]:
    """Carry out one frame from ``socket``; returns the events for the hub."""
    try:
        message = _decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return [_error(socket, f"Invalid JSON: {exc}")]
    if not isinstance(message, dict):
        return [_error(socket, "Every message must be a JSON object with an 'action'")]
    action = message.get("action")
    entry = ACTIONS.get(action) if isinstance(action, str) else None
    if entry is None:
        return [_error(socket, f"Unknown action {action!r}; valid actions: {', '.join(ACTIONS)}")]
    schema, handler = entry
    try:
        parsed = message if schema is None else msgspec.convert(message, schema)
    except msgspec.ValidationError as exc:
        return [_error(socket, f"Invalid {action} message: {exc}", action)]
    try:
        return (yield from handler(socket, parsed, env))
    except Forbidden:
        return [_error(socket, "Unauthorized", action)]
    except RemoteProtocolError as exc:
        return [_error(socket, exc.message, action)]


def socket_closed(socket: Socket) -> list[Event]:
    """The events of a closed connection: once the user's last connection has
    gone, everyone left hears that the user left (see the module docstring)."""
    body = {"action": "close", "userId": socket.user_id}
    return [Deliver(PROTOCOL, encode(body), Audience(if_user_left=socket.user_id))]

