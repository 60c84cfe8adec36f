"""Asnity's data on Satchel's one data model (asnity.md section 4).

Where each thing lives, and why:

- **Accounts** are Satchel's shared ``User`` (one per email, whichever
  protocol registered it), so an email signed up here is taken for Backpack's
  ``/register`` and the reverse, and either password works on both.
- **Everything Asnity adds to a person** - nickname, status, profileUrl,
  description, followings, followers and the ``communities`` map with each
  channel's lastRead date - is one *profile* record, ``_id`` = the user's id,
  in the collection ``PROFILES``. A record rather than columns of ``User``:
  it changes all the time (lastRead every 10 s per client) and needs the
  store's compare-and-swap, which records have and users do not; and the
  user table stays what only the account actions read. A Backpack user who
  never came here gets a profile the first time Asnity needs one, with the
  nickname ``default_nickname(email)``: the email's local part cut to 8
  characters, padded with ``_`` to 2 (Asnity's nicknames are 2-8 long).
- **Communities, channels and chats** are records of ``COMMUNITIES``,
  ``CHANNELS`` and ``CHATS``. A chat's ``_id`` is ``<channelId>:<id, 12
  digits>``, so a page of 100 chats is one ``ListRecordRange`` through the
  store's index; its integer ``id`` comes from the channel's sequence
  (``TakeNumber``), which no two writers can both get (bug 9). A chat record
  carries ``communityId`` and ``channelId``, which is all the renderer of its
  ``Change`` needs. Deleted communities, channels and chats are kept with
  ``deletedAt`` and treated as absent everywhere (bug 16); a deleted chat's
  content is blanked when it is deleted (bug 11), so it cannot be read back.

The collection names start with ``_``, which no Backpack collection can
(``collections.validate_collection_name`` wants a letter or digit first): no
Backpack route or websocket action can read, write or shadow them.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..operations import User
from ..records import new_record

__all__ = [
    "CHAT_KEY_DIGITS",
    "chat_key_prefix",
    "BOT_ID",
    "CHANNELS",
    "CHATS",
    "CHAT_MAX_SOCKET_LENGTH",
    "COLLECTIONS",
    "COMMUNITIES",
    "DEFAULT_CHANNEL_DESCRIPTION",
    "DEFAULT_COMMUNITY_DESCRIPTION",
    "DEFAULT_COMMUNITY_PROFILE",
    "DEFAULT_PROFILE_URL",
    "DEFAULT_USER_DESCRIPTION",
    "ORIGIN_HTTP",
    "ORIGIN_SOCKET",
    "PAGE_SIZE",
    "PROFILES",
    "bot_message",
    "channel_basic",
    "chat_info",
    "chat_key",
    "chat_range",
    "chat_sequence",
    "community_basic",
    "default_nickname",
    "is_live",
    "kst_date",
    "last_read",
    "new_profile",
    "page_chat",
    "user_basic_info",
]

#: The profiles: what Asnity adds to a shared account.
PROFILES = "_asnity.profiles"
#: Communities (one Socket.IO namespace each).
COMMUNITIES = "_asnity.communities"
#: Channels (one room each, in their community's namespace).
CHANNELS = "_asnity.channels"
#: Chats of every channel, ``_id`` = ``chat_key(channelId, id)``.
CHATS = "_asnity.chats"
#: Every collection Asnity keeps its data in.
COLLECTIONS = (PROFILES, COMMUNITIES, CHANNELS, CHATS)

#: ``Change.origin`` of writes made through Asnity's REST API.
ORIGIN_HTTP = "asnity-http"
#: ``Change.origin`` of writes made by Asnity's socket events.
ORIGIN_SOCKET = "asnity-socket"

#: The sender of the bot's chats (``utils/def.ts``).
BOT_ID = "639045fc61d68253e03c50da"
#: Chats per page (the original's chat lists held 100).
PAGE_SIZE = 100
#: The longest content a socket ``chat`` event may carry.
CHAT_MAX_SOCKET_LENGTH = 300

DEFAULT_PROFILE_URL = "url"
DEFAULT_USER_DESCRIPTION = "default description"
DEFAULT_COMMUNITY_DESCRIPTION = "default community description"
DEFAULT_COMMUNITY_PROFILE = "default community profile"
DEFAULT_CHANNEL_DESCRIPTION = "default channel description"

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_KST_OFFSET_MS = 9 * 60 * 60 * 1000  # Korea has kept UTC+9, without summer time, since 1988
_ID_DIGITS = 12
#: The digits of a chat's number in its ``_id`` (``chat_key``).
CHAT_KEY_DIGITS = _ID_DIGITS


def is_live(record: dict[str, Any] | None) -> bool:
    """Whether a record exists and was not (soft) deleted."""
    return record is not None and "deletedAt" not in record


def default_nickname(email: str) -> str:
    """The nickname of an account that never chose one: the email's local
    part, cut to 8 characters and padded with ``_`` to 2."""
    local = email.split("@", 1)[0][:8]
    return local.ljust(2, "_")


def new_profile(user: User, nickname: str, now: str) -> dict[str, Any]:
    """A fresh profile for ``user``; its ``createdAt`` is the account's."""
    profile = new_record(
        {
            "id": user.email,
            "nickname": nickname,
            "status": "OFFLINE",
            "profileUrl": DEFAULT_PROFILE_URL,
            "description": DEFAULT_USER_DESCRIPTION,
            "followings": [],
            "followers": [],
            "communities": {},
        },
        user.id,
        now,
    )
    profile["createdAt"] = user.created_at
    return profile


def user_basic_info(profile: dict[str, Any]) -> dict[str, Any]:
    """UserBasicInfo: ``{_id, id, nickname, status, profileUrl, description,
    createdAt, updatedAt}``."""
    return {
        "_id": profile["_id"],
        "id": profile["id"],
        "nickname": profile["nickname"],
        "status": profile["status"],
        "profileUrl": profile["profileUrl"],
        "description": profile["description"],
        "createdAt": profile["createdAt"],
        "updatedAt": profile["updatedAt"],
    }


def community_basic(community: dict[str, Any], channels: list[Any]) -> dict[str, Any]:
    """CommunityBasic: the community without ``users``, with ``channels`` as given."""
    return {
        "_id": community["_id"],
        "name": community["name"],
        "managerId": community["managerId"],
        "profileUrl": community["profileUrl"],
        "description": community["description"],
        "channels": channels,
        "createdAt": community["createdAt"],
        "updatedAt": community["updatedAt"],
    }


def channel_basic(channel: dict[str, Any], users: Any = None) -> dict[str, Any]:
    """ChannelBasic; ``users`` replaces the channel's user ids when given."""
    return {
        "_id": channel["_id"],
        "name": channel["name"],
        "communityId": channel["communityId"],
        "managerId": channel["managerId"],
        "description": channel["description"],
        "type": channel["type"],
        "isPrivate": channel["isPrivate"],
        "users": list(channel["users"]) if users is None else users,
        "createdAt": channel["createdAt"],
        "updatedAt": channel["updatedAt"],
    }


def chat_key_prefix(channel_id: str) -> str:
    """What every chat ``_id`` of a channel starts with (``chat_key``)."""
    return f"{channel_id}:"


def chat_key(channel_id: str, chat_id: int) -> str:
    """The ``_id`` of chat ``chat_id`` of a channel: fixed-width, so ids sort
    as numbers."""
    return f"{channel_id}:{chat_id:0{_ID_DIGITS}d}"


def chat_range(channel_id: str, first: int = 0, stop: int | None = None) -> tuple[str, str]:
    """The ``ListRecordRange`` bounds of chats ``first <= id < stop`` of a
    channel (``stop=None``: to the last)."""
    end = chat_key(channel_id, stop) if stop is not None else f"{channel_id};"  # ';' follows ':'
    return chat_key(channel_id, first), end


def chat_sequence(channel_id: str) -> str:
    """The ``TakeNumber`` sequence of a channel's chat ids."""
    return f"{CHATS}/{channel_id}"


def chat_info(chat: dict[str, Any]) -> dict[str, Any]:
    """What the REST routes answer for a chat and the sockets receive:
    ``{type, content, senderId, channelId, id, communityId, createdAt,
    updatedAt[, deletedAt]}``; a deleted chat's content is blank."""
    info = {
        "type": chat["type"],
        "content": "" if "deletedAt" in chat else chat["content"],
        "senderId": chat["senderId"],
        "channelId": chat["channelId"],
        "id": chat["id"],
        "communityId": chat["communityId"],
        "createdAt": chat["createdAt"],
        "updatedAt": chat["updatedAt"],
    }
    if "deletedAt" in chat:
        info["deletedAt"] = chat["deletedAt"]
    return info


def page_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat in a page of ``GET /:channel_id/chat``: ``{id, type, content,
    senderId, createdAt, updatedAt[, deletedAt]}`` (deleted: content blank)."""
    item = {
        "id": chat["id"],
        "type": chat["type"],
        "content": "" if "deletedAt" in chat else chat["content"],
        "senderId": chat["senderId"],
        "createdAt": chat["createdAt"],
        "updatedAt": chat["updatedAt"],
    }
    if "deletedAt" in chat:
        item["deletedAt"] = chat["deletedAt"]
    return item


def kst_date(now_ms: int) -> str:
    """``toLocaleDateString('ko', {year, month:'short', day, hour, minute})``
    of the instant in Korea: ``2022년 12월 7일 오후 3:04``."""
    moment = _EPOCH + _dt.timedelta(milliseconds=now_ms + _KST_OFFSET_MS)
    half = "오전" if moment.hour < 12 else "오후"
    hour = moment.hour % 12 or 12
    return f"{moment.year}년 {moment.month}월 {moment.day}일 {half} {hour}:{moment.minute:02d}"


def bot_message(nickname: str, now_ms: int) -> str:
    """The bot's chat 0 of a new channel."""
    return f"{nickname}님이 이 채널을 {kst_date(now_ms)}에 생성했습니다."


def last_read(profile: dict[str, Any], community_id: str, channel_id: str) -> str | None:
    """A user's lastRead date of a channel (ISO 8601; such strings compare
    as the instants they name), or ``None``."""
    entry = profile.get("communities", {}).get(community_id)
    if not isinstance(entry, dict):
        return None
    value = entry.get("channels", {}).get(channel_id)
    return value if isinstance(value, str) else None
