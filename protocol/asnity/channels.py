"""Channels: ``/api/channel`` and ``/api/channels/:channel_id/*``
(asnity.md section 3, "Channels").

Fixed bugs and choices:

- A channel one may not see (``store.visible_channel``: not a member of
  its community, or a private channel one is not in) answers 400
  ``존재하지 않는 채널입니다.``, as one that does not exist: ``GET`` of a
  channel, invite and join check it (bug 6), so a private channel is joined
  only by invitation and only its users invite to it.
- ``isPrivate`` is stored as sent (bug 7). Settings by someone who is not
  the channel's manager answer **403** ``채널 관리자가 아닙니다.`` (the
  original's 401 told its client to log in again); a new ``managerId`` must
  be one of the channel's users; a new name is 2-20 characters.
- Creation ignores a body ``users`` (bug 17): a private channel has its
  creator, a public one its community's members, and each of them gets the
  channel in their profile.
- The lastRead date is keyed by the channel's own community, whatever the
  body's ``community_id`` says (bug 12); invite and join refuse a
  ``community_id`` that is not the channel's (401 ``존재하지 않는 커뮤니티
  입니다.``, the original's answer for a bad community).
- Leaving or being removed takes the user's sockets out of the room (bug 5);
  joining, being invited or creating puts them in; deleting closes it.
- The invitees of ``POST /:channel_id/users`` receive ``invited-to-channel``
  on their sockets in the community's namespace, whether the invite came
  over REST or the socket.
"""

from __future__ import annotations

from typing import Any

from ..channels import Deliver, SubscribeAudience
from ..operations import Action
from ..records import is_object_id, new_record
from ..socketio.packets import encode_event
from .chats import write_chat
from .membership import (
    add_channel_users,
    delete_channel,
    remove_channel_user,
    set_last_read,
)
from .model import (
    BOT_ID,
    CHANNELS,
    COMMUNITIES,
    DEFAULT_CHANNEL_DESCRIPTION,
    bot_message,
    channel_basic,
    is_live,
    user_basic_info,
)
from .nest import NestError, bad_request, forbidden, unauthorized
from .rooms import PROTOCOL, namespace_of, room_channel, user_in_namespace
from .store import (
    NO_CHANNEL,
    NOT_IN_CHANNEL,
    Context,
    channel_member,
    ensure_profile,
    get_live,
    insert,
    profile_of,
    update,
    visible_channel,
)
from .validation import (
    CHANNEL,
    CREATE_CHANNEL,
    INVITE_CHANNEL,
    JOIN_CHANNEL,
    MODIFY_CHANNEL,
    UPDATE_LAST_READ,
    validate,
)

__all__ = ["create", "delete", "get", "invite", "invite_channel", "join", "last_read", "leave", "settings"]

_NO_COMMUNITY = "존재하지 않는 커뮤니티 입니다."


def create(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/channel {communityId, name, isPrivate, type, description?}``:
    ChannelBasic without ``users``; the bot's chat 0 announces it."""
    fields = validate(data, CREATE_CHANNEL)
    user_id = ctx.user_id
    community = yield from get_live(COMMUNITIES, fields["communityId"])
    if community is None:
        raise bad_request("커뮤니티가 없습니다.")
    if user_id not in community["users"]:
        raise bad_request("커뮤니티에 존재하지 않는 유저입니다.")
    profile = yield from ensure_profile(ctx, user_id, ctx.user)
    members = [user_id] if fields["isPrivate"] else list(community["users"])
    channel = new_record(
        {
            "name": fields["name"],
            "communityId": community["_id"],
            "managerId": user_id,
            "description": fields.get("description", DEFAULT_CHANNEL_DESCRIPTION),
            "type": fields["type"],
            "isPrivate": fields["isPrivate"],
            "users": members,
        },
        ctx.env.new_id(),
        ctx.now(),
    )
    yield from insert(ctx, CHANNELS, channel)
    channel_id = channel["_id"]

    def attach(record: dict[str, Any], now: str) -> dict[str, Any]:
        record["channels"] = [*record["channels"], channel_id]
        return record

    yield from update(ctx, COMMUNITIES, community["_id"], attach)
    for member in members:
        yield from set_last_read(ctx, member, community["_id"], channel_id)
    nickname = profile["nickname"] if profile is not None else ""
    yield from write_chat(ctx, channel, BOT_ID, "SYSTEM", bot_message(nickname, ctx.env.now_ms()))
    yield from set_last_read(ctx, user_id, community["_id"], channel_id)
    room = room_channel(community["_id"], channel_id)
    for member in members:
        ctx.emit(SubscribeAudience(PROTOCOL, user_in_namespace(community["_id"], member), room))
    basic = channel_basic(channel)
    del basic["users"]
    return basic


def get(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/channels/:channel_id``: ChannelBasic with the users' UserBasicInfo."""
    if not is_object_id(data.get("channel_id")):
        # The original's ObjectIdValidationPipe, and its message.
        raise bad_request("올바른 사용자 _id 형식이 아닙니다.")
    channel, _ = yield from visible_channel(ctx, data["channel_id"])
    users = []
    for member in channel["users"]:
        profile = yield from profile_of(member)
        if profile is not None:
            users.append(user_basic_info(profile))
    return channel_basic(channel, users)


def settings(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``PATCH /api/channels/:channel_id/settings {name?, description?,
    isPrivate?, managerId?}``: the channel manager's."""
    fields = validate(data, MODIFY_CHANNEL)
    channel, _ = yield from visible_channel(ctx, fields["channel_id"])
    if channel["managerId"] != ctx.user_id:
        raise forbidden("채널 관리자가 아닙니다.")
    manager = fields.get("managerId")
    if manager is not None and manager not in channel["users"]:
        raise bad_request("채널에 존재하지 않는 유저입니다.")
    changes = {key: fields[key] for key in ("name", "description", "isPrivate", "managerId") if key in fields}

    def rewrite(record: dict[str, Any], now: str) -> dict[str, Any]:
        if not is_live(record):
            raise bad_request(NO_CHANNEL)
        record.update(changes)
        return record

    yield from update(ctx, CHANNELS, channel["_id"], rewrite)
    return {"message": "채널 수정 성공!"}


def delete(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``DELETE /api/channels/:channel_id``: the manager soft-deletes it."""
    fields = validate(data, CHANNEL)
    channel, _ = yield from visible_channel(ctx, fields["channel_id"])
    if channel["managerId"] != ctx.user_id:
        raise bad_request("관리자가 아닙니다!")
    yield from delete_channel(ctx, channel)
    return {"message": "채널 삭제 성공"}


def leave(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``DELETE /api/channels/:channel_id/me``: a manager alone deletes it,
    a manager with others may not leave."""
    fields = validate(data, CHANNEL)
    channel, _ = yield from channel_member(ctx, fields["channel_id"])
    if channel["managerId"] == ctx.user_id:
        if len(channel["users"]) > 1:
            raise bad_request("관리자를 변경하고 채널을 퇴장하십시오!")
        yield from delete_channel(ctx, channel)
    yield from remove_channel_user(ctx, channel, ctx.user_id)
    return {"message": "채널 퇴장 성공!"}


def _same_community(channel: dict[str, Any], community_id: str) -> None:
    if community_id != channel["communityId"]:
        raise unauthorized(_NO_COMMUNITY)


def invite_channel(ctx: Context, channel_id: str, community_id: str, invitees: list[str]) -> Action[dict[str, Any]]:
    """Add community members to a channel the caller is in; ChannelBasic +
    ``existUnreadChat: false``, also sent to the invitees' sockets as
    ``invited-to-channel``. The REST route and the socket event share it."""
    channel, community = yield from channel_member(ctx, channel_id)
    _same_community(channel, community_id)
    if any(invitee not in community["users"] for invitee in invitees):
        raise bad_request("커뮤니티에 없는 유저는 채널에 참여할 수 없습니다.")
    invitees = list(dict.fromkeys(invitees))
    updated = yield from add_channel_users(ctx, channel, invitees)
    result = {**channel_basic(updated if updated is not None else channel), "existUnreadChat": False}
    # One payload for every invitee: encoded once, delivered per user.
    payload = encode_event("invited-to-channel", [result], namespace_of(community_id))[0].encode()
    for invitee in invitees:
        ctx.emit(Deliver(PROTOCOL, payload, user_in_namespace(community_id, invitee)))
    return result


def invite(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/channels/:channel_id/users {community_id, users}``."""
    fields = validate(data, INVITE_CHANNEL)
    return (yield from invite_channel(ctx, fields["channel_id"], fields["community_id"], fields["users"]))


def join(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/channels/:channel_id {community_id}``: join a public
    channel of one's community; ChannelBasic + ``lastRead: false``."""
    fields = validate(data, JOIN_CHANNEL)
    channel, _ = yield from visible_channel(ctx, fields["channel_id"])
    _same_community(channel, fields["community_id"])
    updated = yield from add_channel_users(ctx, channel, [ctx.user_id])
    return {**channel_basic(updated if updated is not None else channel), "lastRead": False}


def last_read(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``PATCH /api/channels/:channel_id/lastRead``: lastRead = now, under the
    channel's own community."""
    fields = validate(data, UPDATE_LAST_READ)
    try:
        channel, _ = yield from channel_member(ctx, fields["channel_id"])
    except NestError:
        raise bad_request(NOT_IN_CHANNEL) from None
    yield from set_last_read(ctx, ctx.user_id, channel["communityId"], channel["_id"])
    return {"message": "Last Read 업데이트 성공"}
