"""Communities: ``/api/community`` and ``/api/communities/*`` (asnity.md
section 3, "Communities").

Fixed bugs and choices:

- Adding users to a community is for its manager (bug 6: any member could);
  a member who is not the manager gets 400 ``사용자의 커뮤니티 수정 권한이
  없습니다.``, the original's answer for a member changing what only the
  manager may.
- A community one is not a member of answers exactly as one that does not
  exist: 400 ``해당하는 커뮤니티의 _id가 올바르지 않습니다.``.
- Deleting a community soft-deletes its channels and closes their rooms;
  deleted communities and channels are absent everywhere after (bug 16).
- Leaving a community takes the user out of every channel of it, and their
  sockets out of those rooms (bug 5).
- ``GET /api/communities`` skips a map entry whose community or channel is
  gone, where the original answered 400 for ever after (bug 12).
- A new manager (``settings``) must be a member of the community.
- Every write is done before the answer (bug 15).
"""

from __future__ import annotations

from typing import Any

from ..channels import SubscribeAudience
from ..operations import Action
from ..records import new_record
from .chats import last_chat
from .membership import (
    add_community_to_profile,
    delete_community,
    drop_community_from_profile,
    remove_channel_user,
)
from .model import (
    CHANNELS,
    COMMUNITIES,
    DEFAULT_COMMUNITY_DESCRIPTION,
    DEFAULT_COMMUNITY_PROFILE,
    channel_basic,
    community_basic,
    is_live,
    user_basic_info,
)
from .nest import bad_request
from .rooms import PROTOCOL, room_channel, user_in_namespace
from .store import (
    BAD_COMMUNITY,
    Context,
    ensure_profile,
    get,
    get_live,
    insert,
    member_community,
    profile_of,
    update,
)
from .validation import (
    APPEND_USERS,
    COMMUNITY,
    CREATE_COMMUNITY,
    MODIFY_COMMUNITY,
    validate,
)

__all__ = ["add_users", "create", "delete", "leave", "list_mine", "settings", "users"]

_NOT_MANAGER = "사용자의 커뮤니티 수정 권한이 없습니다."


def create(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/community {name, description?, profileUrl?}``: the caller
    becomes its manager and only member; CommunityBasic with ``channels: []``."""
    fields = validate(data, CREATE_COMMUNITY)
    user_id = ctx.user_id
    yield from ensure_profile(ctx, user_id, ctx.user)
    community = new_record(
        {
            "name": fields["name"],
            "managerId": user_id,
            "description": fields.get("description", DEFAULT_COMMUNITY_DESCRIPTION),
            "profileUrl": fields.get("profileUrl", DEFAULT_COMMUNITY_PROFILE),
            "channels": [],
            "users": [user_id],
        },
        ctx.env.new_id(),
        ctx.now(),
    )
    yield from insert(ctx, COMMUNITIES, community)
    yield from add_community_to_profile(ctx, user_id, community["_id"], ())
    return community_basic(community, [])


def list_mine(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/communities``: the caller's communities, each with the
    channels of its map (plus ``existUnreadChat``), both by ``createdAt``."""
    user_id = ctx.user_id
    profile = yield from ensure_profile(ctx, user_id, ctx.user)
    listed = []
    for community_id, entry in (profile or {}).get("communities", {}).items():
        community = yield from get_live(COMMUNITIES, community_id)
        if community is None or user_id not in community["users"] or not isinstance(entry, dict):
            continue
        channels = []
        for channel_id, read_at in entry.get("channels", {}).items():
            channel = yield from get_live(CHANNELS, channel_id)
            if channel is None or channel["communityId"] != community_id or user_id not in channel["users"]:
                continue
            info = channel_basic(channel)
            newest = yield from last_chat(channel_id)
            # The original: lastRead.getTime() <= createdAt of the last chat
            # (which counts one's own, deleted and bot chats).
            info["existUnreadChat"] = newest is not None and (not isinstance(read_at, str) or read_at <= newest["createdAt"])
            channels.append(info)
        channels.sort(key=lambda info: info["createdAt"])
        listed.append(community_basic(community, channels))
    listed.sort(key=lambda info: info["createdAt"])
    return {"communities": listed}


def _managed_community(ctx: Context, community_id: str) -> Action[dict[str, Any]]:
    community = yield from member_community(ctx, community_id)
    if community["managerId"] != ctx.user_id:
        raise bad_request(_NOT_MANAGER)
    return community


def add_users(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/communities/:community_id/users {users}``: the manager adds
    accounts; each joins every public channel, and its sockets their rooms."""
    fields = validate(data, APPEND_USERS)
    community_id = fields["community_id"]
    community = yield from _managed_community(ctx, community_id)
    invitees = list(dict.fromkeys(fields["users"]))
    for invitee in invitees:
        if (yield from ensure_profile(ctx, invitee)) is None:
            raise bad_request(f"커뮤니티에 추가를 요청한 사용자 _id({invitee})가 올바르지 않습니다.")
        if invitee in community["users"]:
            raise bad_request("이미 커뮤니티에 추가된 사용자 입니다.")

    def add_members(record: dict[str, Any], now: str) -> dict[str, Any] | None:
        if not is_live(record):
            raise bad_request(BAD_COMMUNITY)
        fresh = [user_id for user_id in invitees if user_id not in record["users"]]
        if not fresh:
            return None
        record["users"] = [*record["users"], *fresh]
        return record

    community = yield from update(ctx, COMMUNITIES, community_id, add_members)
    public = []
    for channel_id in community["channels"]:
        channel = yield from get_live(CHANNELS, channel_id)
        if channel is not None and channel["isPrivate"] is not True:
            public.append(channel_id)

            def add_to_channel(record: dict[str, Any], now: str) -> dict[str, Any] | None:
                fresh = [user_id for user_id in invitees if user_id not in record["users"]]
                if not fresh:
                    return None
                record["users"] = [*record["users"], *fresh]
                return record

            yield from update(ctx, CHANNELS, channel_id, add_to_channel)
    for invitee in invitees:
        yield from add_community_to_profile(ctx, invitee, community_id, public)
        for channel_id in public:
            room = room_channel(community_id, channel_id)
            ctx.emit(SubscribeAudience(PROTOCOL, user_in_namespace(community_id, invitee), room))
    return {"message": "커뮤니티 사용자 추가 완료"}


def users(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/communities/:community_id/users``: the members' UserBasicInfo."""
    fields = validate(data, COMMUNITY)
    community = yield from member_community(ctx, fields["community_id"])
    infos = []
    for user_id in community["users"]:
        profile = yield from profile_of(user_id)
        if profile is not None:
            infos.append(user_basic_info(profile))
    return {"users": infos}


def delete(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``DELETE /api/communities/:community_id``: the manager soft-deletes it,
    with its channels."""
    fields = validate(data, COMMUNITY)
    community = yield from get(COMMUNITIES, fields["community_id"])
    if community is None or ctx.user_id not in community["users"]:
        raise bad_request(BAD_COMMUNITY)
    if community["managerId"] != ctx.user_id:
        raise bad_request(_NOT_MANAGER)
    if not is_live(community) or not (yield from delete_community(ctx, community)):
        raise bad_request("이미 삭제된 커뮤니티입니다.")
    return {"message": "커뮤니티 삭제 성공"}


def leave(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``DELETE /api/communities/:community_id/me``: leave it and its channels;
    a manager alone deletes it, a manager with members may not leave."""
    fields = validate(data, COMMUNITY)
    community = yield from member_community(ctx, fields["community_id"])
    user_id = ctx.user_id
    if community["managerId"] == user_id:
        if len(community["users"]) > 1:
            raise bad_request("매니저는 커뮤니티에서 탈퇴할 수 없습니다. 매니저 위임하세요.")
        yield from delete_community(ctx, community)
        return {"message": "사용자 커뮤니티 탈퇴 성공"}

    def drop_member(record: dict[str, Any], now: str) -> dict[str, Any] | None:
        if user_id not in record["users"]:
            return None
        record["users"] = [member for member in record["users"] if member != user_id]
        return record

    community = yield from update(ctx, COMMUNITIES, community["_id"], drop_member)
    for channel_id in community["channels"]:
        channel = yield from get_live(CHANNELS, channel_id)
        if channel is not None and user_id in channel["users"]:
            yield from remove_channel_user(ctx, channel, user_id)
    yield from drop_community_from_profile(ctx, user_id, community["_id"])
    return {"message": "사용자 커뮤니티 탈퇴 성공"}


def settings(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``PATCH /api/communities/:community_id/settings {name?, managerId?,
    description?, profileUrl?}``: the manager's; ``managerId`` delegates."""
    fields = validate(data, MODIFY_COMMUNITY)
    community = yield from _managed_community(ctx, fields["community_id"])
    manager = fields.get("managerId")
    if manager is not None and manager not in community["users"]:
        raise bad_request("커뮤니티에 존재하지 않는 유저입니다.")
    changes = {key: fields[key] for key in ("name", "managerId", "description", "profileUrl") if key in fields}

    def rewrite(record: dict[str, Any], now: str) -> dict[str, Any]:
        if not is_live(record):
            raise bad_request(BAD_COMMUNITY)
        record.update(changes)
        return record

    yield from update(ctx, COMMUNITIES, community["_id"], rewrite)
    return {"message": "커뮤니티 정보 수정 완료"}

