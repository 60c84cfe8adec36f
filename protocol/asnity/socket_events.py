"""What Asnity's socket events mean (asnity.md section 5), as pure actions,
for the Socket.IO layer to call. No Socket.IO here: the layer decodes the
packets, calls these, and encodes what they answer.

The layer's calls, per socket (one Socket.IO socket = one namespace = one
``connection`` id of the hub):

- on CONNECT to a namespace: ``admit(token, namespace, connection, env)``.
  Refused (``Admission.error``): CONNECT_ERROR ``{"message": error}``.
  Admitted: CONNECT, then publish ``Admission.events`` (the socket joins its
  namespace's channel, which the audiences by user read).
- on each EVENT: ``handle_event(token, community_id, connection, name, data,
  env)`` with the token captured at CONNECT and the event's first argument.
  It authenticates again first (bug 4), then runs ``join``, ``chat`` or
  ``invite_users_to_channel``. Publish ``SocketOutcome.events``; if the
  client asked for an ack, ack with ``SocketOutcome.ack`` (``None``: ack
  with no arguments - ``join`` has no ack value); emit each of
  ``SocketOutcome.emits`` (``(event name, args)``) to this socket only.
  With ``socketio.server``'s handler types that is ``Reply(ack=None if
  o.ack is None else [o.ack], emits=o.emits, events=o.events)``, and an
  ``Admission`` is ``Admitted(user_id=a.user.id, state=...)`` or
  ``Refused(a.error)`` (its ``events`` are the namespace subscription the
  server makes itself when its handler's ``namespace_channel`` is
  ``rooms.namespace_channel``).

Semantics, with the bugs of section 7 fixed:

- ``join {channels}`` subscribes *this* socket (bug 1) to the rooms of the
  listed channels that belong to the namespace's community and that the user
  is in (bug 2); others are skipped silently. Rooms past the connection's
  bound of channels (issue 14) are not joined and the socket is told, as
  of any failure: ``failed-to-send-message {message: "Too many channels for
  this connection"}`` (the rooms that fit are joined).
- ``chat {chatType, channelId, chatId?, content?}``: content over 300
  characters acks ``{written:false}``; otherwise the same write as the REST
  route (``chats``), only for a channel of this community (bug 2). Its
  ``Change`` is rendered to the room minus this socket as ``new-chat``,
  ``modify-chat`` or ``delete-chat`` (``mount``); the ack is ``{written:true,
  chatInfo}``. Every failure acks ``{written:false}`` (bug 3) and emits
  ``failed-to-send-message {message}`` to the sender.
- ``invite-users-to-channel {community_id, channel_id, users}``: the REST
  invite, for this community only; the invitees' sockets in the namespace
  join the room and receive ``invited-to-channel`` with the channel; the ack
  is ``{isSuccess}``, and a failure also emits ``failed-to-send-message``.

A refused connect says ``Unauthorized`` (no live access token),
``Invalid namespace`` (not ``/socket/commu-<id>``) or ``Forbidden`` (the
community does not exist or the user is not a member of it: bug 2).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..channels import TOO_MANY_CHANNELS, ChannelLimit, ChannelRoom, Follow, Subscribe
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..mounts import Event
from ..operations import Action, GetUser, User
from .accounts import AsnityUser, authenticate
from .channels import invite_channel
from .chats import create_chat, delete_chat, modify_chat
from .model import CHANNELS, CHAT_MAX_SOCKET_LENGTH, COMMUNITIES, ORIGIN_SOCKET
from .nest import NestError
from .rooms import PROTOCOL, community_of_namespace, namespace_channel, room_channel
from .store import NO_CHANNEL, Context, get_live
from .validation import DELETE_CHAT, INVITE_CHANNEL, MODIFY_CHAT, POST_CHAT, validate

__all__ = [
    "CHAT",
    "FAILED_TO_SEND",
    "INVITE",
    "INVITED",
    "JOIN",
    "Admission",
    "SocketOutcome",
    "admit",
    "unavailable",
    "chat",
    "handle_event",
    "invite_users_to_channel",
    "join",
]

#: The event a failure is reported to its sender with.
FAILED_TO_SEND = "failed-to-send-message"
#: The events a client sends.
JOIN, CHAT, INVITE = "join", "chat", "invite-users-to-channel"
#: The event an invitee's sockets receive.
INVITED = "invited-to-channel"

_UNAUTHORIZED = "Unauthorized"
_MAX_JOIN = 1000  # channels one join may name: more is not a client, it is a flood


class Admission(msgspec.Struct):
    """The answer to a namespace CONNECT: ``error`` is the CONNECT_ERROR
    message (``None``: admitted, as ``user`` in ``community_id``, and
    ``events`` are to be published)."""

    error: str | None
    user: AsnityUser | None = None
    community_id: str | None = None
    events: list[Event] = []


class SocketOutcome(msgspec.Struct):
    """The answer to one event: ``ack``, the ack's one argument (``None``: no
    ack value - send ``[ack]`` as the ACK's arguments otherwise); ``events``
    to publish (writes, room joins, deliveries); ``emits``, the events for
    the sending socket only, as ``(name, args)``."""

    ack: Any = None
    events: list[Event] = []
    emits: list[tuple[str, list[Any]]] = []


def _is_member(community_id: str, user_id: str) -> Action[bool]:
    community = yield from get_live(COMMUNITIES, community_id)
    return community is not None and user_id in community["users"]


def admit(token: str | None, namespace: str, connection: str, env: Environment) -> Action[Admission]:
    """Decide a CONNECT to ``namespace`` with ``token`` (``auth.token`` or the
    ``token`` header): only a live access token of a member of the
    namespace's community is admitted."""
    community_id = community_of_namespace(namespace)
    if community_id is None:
        return Admission("Invalid namespace")
    user = yield from authenticate(token, env)
    if user is None:
        return Admission(_UNAUTHORIZED)
    if not (yield from _is_member(community_id, user.id)):
        return Admission("Forbidden")
    return Admission(None, user, community_id, [Subscribe(PROTOCOL, connection, namespace_channel(community_id))])


def handle_event(
    token: str | None, community_id: str, connection: str, name: str, data: Any, env: Environment
) -> Action[SocketOutcome]:
    """Authenticate ``token`` again (bug 4), then answer event ``name`` with
    its first argument ``data``. Unknown events are ignored, as socket.io
    ignores events without a handler."""
    if name not in (JOIN, CHAT, INVITE):
        return SocketOutcome()
    user = yield from authenticate(token, env)
    if user is None:
        return _failure(name, _UNAUTHORIZED)
    if name == JOIN:
        return (yield from join(user, community_id, connection, data, env))
    if name == CHAT:
        return (yield from chat(user, community_id, connection, data, env))
    return (yield from invite_users_to_channel(user, community_id, connection, data, env))


def unavailable(name: str, message: str) -> SocketOutcome:
    """The answer to event ``name`` when the store could not be reached: the
    original's failure for that event (an unknown event: nothing)."""
    return _failure(name, message) if name in (JOIN, CHAT, INVITE) else SocketOutcome()


def _failure(name: str, message: Any) -> SocketOutcome:
    ack: Any = None
    if name == CHAT:
        ack = {"written": False}
    elif name == INVITE:
        ack = {"isSuccess": False}
    return SocketOutcome(ack, [], [(FAILED_TO_SEND, [{"message": message}])])


def join(user: AsnityUser, community_id: str, connection: str, data: Any, env: Environment) -> Action[SocketOutcome]:
    """``join {channels}``: this socket joins the rooms of the listed
    channels of this community that the user is in."""
    channels = data.get("channels") if isinstance(data, dict) else None
    if not isinstance(channels, list):
        return _failure(JOIN, "channels must be an array")
    if not (yield from _is_member(community_id, user.id)):
        return SocketOutcome()
    rooms = []
    for channel_id in dict.fromkeys(c for c in channels[:_MAX_JOIN] if isinstance(c, str)):
        channel = yield from get_live(CHANNELS, channel_id)
        if channel is not None and channel["communityId"] == community_id and user.id in channel["users"]:
            rooms.append(room_channel(community_id, channel_id))
    if not rooms:
        return SocketOutcome()
    room: ChannelRoom = yield ChannelLimit(PROTOCOL, connection, tuple(rooms))
    refused = set(room.refused)
    joined = tuple(r for r in rooms if r not in refused)
    if joined:
        yield Follow(PROTOCOL, connection, joined)
    events: list[Event] = [Subscribe(PROTOCOL, connection, r) for r in joined]
    if refused:
        return SocketOutcome(None, events, [(FAILED_TO_SEND, [{"message": TOO_MANY_CHANNELS}])])
    return SocketOutcome(None, events)


def _context(user: AsnityUser, connection: str, env: Environment) -> Action[Context | None]:
    account: User | None = yield GetUser(user.id)
    if account is None:
        return None
    return Context(env, ORIGIN_SOCKET, account, connection=connection)


def _in_community(channel_id: Any, community_id: str) -> Action[bool]:
    if not isinstance(channel_id, str):
        return False
    channel = yield from get_live(CHANNELS, channel_id)
    return channel is not None and channel["communityId"] == community_id


def _js_length(text: str) -> int:
    """``text.length`` as JavaScript counts it (UTF-16 code units): the
    original's limit, so an emoji counts two, as its client counts it."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def chat(user: AsnityUser, community_id: str, connection: str, data: Any, env: Environment) -> Action[SocketOutcome]:
    """``chat {chatType: new|modify|delete, channelId, chatId?, content?}``."""
    if not isinstance(data, dict):
        return _failure(CHAT, "Cannot read the chat event's data")
    content = data.get("content")
    if isinstance(content, str) and _js_length(content) > CHAT_MAX_SOCKET_LENGTH:
        return SocketOutcome({"written": False})
    chat_type = data.get("chatType")
    if chat_type not in ("new", "modify", "delete"):
        return _failure(CHAT, "Unknown Message Request Type")
    channel_id = data.get("channelId")
    ctx = yield from _context(user, connection, env)
    if ctx is None:
        return _failure(CHAT, _UNAUTHORIZED)
    try:
        if not (yield from _in_community(channel_id, community_id)):
            raise NestError(400, NO_CHANNEL)
        if chat_type == "new":
            fields = validate({"channel_id": channel_id, "type": "TEXT", "content": content}, POST_CHAT)
            info = yield from create_chat(ctx, fields["channel_id"], "TEXT", fields["content"])
        elif chat_type == "modify":
            fields = validate({"channel_id": channel_id, "chat_id": data.get("chatId"), "content": content}, MODIFY_CHAT)
            info = yield from modify_chat(ctx, fields["channel_id"], fields["chat_id"], fields["content"])
        else:
            fields = validate({"channel_id": channel_id, "chat_id": data.get("chatId")}, DELETE_CHAT)
            info = yield from delete_chat(ctx, fields["channel_id"], fields["chat_id"])
    except (NestError, RemoteProtocolError) as refusal:
        failed = _failure(CHAT, refusal.message)
        return SocketOutcome(failed.ack, ctx.events, failed.emits)
    return SocketOutcome({"written": True, "chatInfo": info}, ctx.events)


def invite_users_to_channel(
    user: AsnityUser, community_id: str, connection: str, data: Any, env: Environment
) -> Action[SocketOutcome]:
    """``invite-users-to-channel {community_id, channel_id, users}``."""
    if not isinstance(data, dict):
        return _failure(INVITE, "Cannot read the invite event's data")
    ctx = yield from _context(user, connection, env)
    if ctx is None:
        return _failure(INVITE, _UNAUTHORIZED)
    try:
        fields = validate(data, INVITE_CHANNEL)
        if fields["community_id"] != community_id:
            raise NestError(401, "존재하지 않는 커뮤니티 입니다.")
        yield from invite_channel(ctx, fields["channel_id"], community_id, fields["users"])
    except (NestError, RemoteProtocolError) as refusal:
        failed = _failure(INVITE, refusal.message)
        return SocketOutcome(failed.ack, ctx.events, failed.emits)
    return SocketOutcome({"isSuccess": True}, ctx.events)
