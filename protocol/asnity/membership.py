"""Who is in which community and channel, kept in step on both sides.

Membership is written twice, as in the original (asnity.md section 4): in
the community's or channel's ``users`` (what the access rules read) and in
each member's profile ``communities`` map (what ``GET /api/communities``
lists, with the lastRead dates). The writes that change it live here, each
one record at a time by compare-and-swap, every one done before the action
answers (bug 15), and each also moves the user's sockets: joining a channel
subscribes the user's sockets in the community's namespace to its room,
leaving unsubscribes them (bug 5), deleting closes the room.

Deleting a community soft-deletes its channels too (bug 16).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..channels import Audience, CloseChannel, SubscribeAudience, UnsubscribeAudience
from ..operations import Action
from .model import CHANNELS, COMMUNITIES, PROFILES, is_live
from .rooms import PROTOCOL, room_channel, user_in_namespace
from .store import Context, get_live, update

__all__ = [
    "add_channel_users",
    "add_community_to_profile",
    "delete_channel",
    "delete_community",
    "drop_community_from_profile",
    "remove_channel_user",
    "set_last_read",
]


def _with_entry(profile: dict[str, Any], community_id: str) -> dict[str, Any]:
    communities = profile.setdefault("communities", {})
    entry = communities.get(community_id)
    if not isinstance(entry, dict):
        entry = communities[community_id] = {"_id": community_id, "channels": {}}
    entry.setdefault("channels", {})
    return entry


def set_last_read(ctx: Context, user_id: str, community_id: str, channel_id: str) -> Action:
    """``user.communities[community_id].channels[channel_id] = now``."""

    def rewrite(profile: dict[str, Any], now: str) -> dict[str, Any]:
        _with_entry(profile, community_id)["channels"][channel_id] = now
        return profile

    yield from update(ctx, PROFILES, user_id, rewrite)


def add_community_to_profile(ctx: Context, user_id: str, community_id: str, channel_ids: Iterable[str]) -> Action:
    """``user.communities[community_id] = {_id, channels: {<id>: now, ...}}``."""
    channel_ids = list(channel_ids)

    def rewrite(profile: dict[str, Any], now: str) -> dict[str, Any]:
        profile.setdefault("communities", {})[community_id] = {
            "_id": community_id,
            "channels": {channel_id: now for channel_id in channel_ids},
        }
        return profile

    yield from update(ctx, PROFILES, user_id, rewrite)


def drop_community_from_profile(ctx: Context, user_id: str, community_id: str) -> Action:
    """``$unset user.communities[community_id]``."""

    def rewrite(profile: dict[str, Any], now: str) -> dict[str, Any] | None:
        if community_id not in profile.get("communities", {}):
            return None
        del profile["communities"][community_id]
        return profile

    yield from update(ctx, PROFILES, user_id, rewrite)


def _drop_channel_from_profile(ctx: Context, user_id: str, community_id: str, channel_id: str) -> Action:
    def rewrite(profile: dict[str, Any], now: str) -> dict[str, Any] | None:
        entry = profile.get("communities", {}).get(community_id)
        if not isinstance(entry, dict) or channel_id not in entry.get("channels", {}):
            return None
        del entry["channels"][channel_id]
        return profile

    yield from update(ctx, PROFILES, user_id, rewrite)


def add_channel_users(ctx: Context, channel: dict[str, Any], user_ids: list[str]) -> Action[dict[str, Any] | None]:
    """Add users to a channel (``$addToSet``), set their lastRead to now and
    subscribe their sockets in the namespace to the room; the channel after."""
    channel_id, community_id = channel["_id"], channel["communityId"]

    def rewrite(record: dict[str, Any], now: str) -> dict[str, Any] | None:
        fresh = [user_id for user_id in user_ids if user_id not in record["users"]]
        if not fresh:
            return None
        record["users"] = [*record["users"], *fresh]
        return record

    updated = yield from update(ctx, CHANNELS, channel_id, rewrite)
    for user_id in user_ids:
        yield from set_last_read(ctx, user_id, community_id, channel_id)
    room = room_channel(community_id, channel_id)
    for user_id in user_ids:
        ctx.emit(SubscribeAudience(PROTOCOL, user_in_namespace(community_id, user_id), room))
    return updated


def remove_channel_user(ctx: Context, channel: dict[str, Any], user_id: str) -> Action:
    """Take a user out of a channel (both sides) and their sockets out of its room."""
    channel_id, community_id = channel["_id"], channel["communityId"]

    def rewrite(record: dict[str, Any], now: str) -> dict[str, Any] | None:
        if user_id not in record["users"]:
            return None
        record["users"] = [member for member in record["users"] if member != user_id]
        return record

    yield from update(ctx, CHANNELS, channel_id, rewrite)
    yield from _drop_channel_from_profile(ctx, user_id, community_id, channel_id)
    room = room_channel(community_id, channel_id)
    ctx.emit(UnsubscribeAudience(PROTOCOL, Audience(channel=room, user_id=user_id), room))


def _soft_delete(record: dict[str, Any], now: str) -> dict[str, Any] | None:
    if not is_live(record):
        return None
    record["deletedAt"] = now
    return record


def delete_channel(ctx: Context, channel: dict[str, Any], *, detach: bool = True) -> Action:
    """Soft-delete a channel: out of its users' maps and (``detach``) of its
    community's ``channels``, its room closed."""
    channel_id, community_id = channel["_id"], channel["communityId"]
    for user_id in channel["users"]:
        yield from _drop_channel_from_profile(ctx, user_id, community_id, channel_id)
    if detach:

        def rewrite(community: dict[str, Any], now: str) -> dict[str, Any] | None:
            if channel_id not in community["channels"]:
                return None
            community["channels"] = [other for other in community["channels"] if other != channel_id]
            return community

        yield from update(ctx, COMMUNITIES, community_id, rewrite)
    yield from update(ctx, CHANNELS, channel_id, _soft_delete)
    ctx.emit(CloseChannel(PROTOCOL, room_channel(community_id, channel_id)))


def delete_community(ctx: Context, community: dict[str, Any]) -> Action[bool]:
    """Soft-delete a community and every channel of it (bug 16), and take it
    out of every member's map; ``False`` if it was deleted already (by a
    concurrent request: nothing more is done)."""
    community_id = community["_id"]
    won = False

    def rewrite(record: dict[str, Any], now: str) -> dict[str, Any] | None:
        nonlocal won
        won = is_live(record)
        return _soft_delete(record, now)

    deleted = yield from update(ctx, COMMUNITIES, community_id, rewrite)
    if deleted is None or not won:
        return False
    for channel_id in deleted["channels"]:
        channel = yield from get_live(CHANNELS, channel_id)
        if channel is not None:
            yield from delete_channel(ctx, channel, detach=False)
    for user_id in deleted["users"]:
        yield from drop_community_from_profile(ctx, user_id, community_id)
    return True
