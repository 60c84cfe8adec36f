"""Chats (asnity.md section 3, "Chats"): the writes the REST routes and the
socket ``chat`` event share, and the reads of pages and the unread mark.

Every chat write produces one ``Change`` of ``model.CHATS`` whose record is
the chat with its ``communityId`` and ``channelId``; the mount renders it to
the channel's room. A new chat is a ``create`` (``new-chat``), an edit a
``patch`` (``modify-chat``) and a soft delete a ``patch`` whose record has
``deletedAt`` (``delete-chat``): the record stays stored, rewritten, so it is
a patch to the store and to any other protocol; only the content is blanked.

Fixed bugs: only the channel's users read or write its chats (2, 6); a
chat's id comes from the channel's atomic sequence, so no two chats share
one (9); edit and delete answer the chat whatever its id, and a chat that
does not exist is 404, not 500 (8); pages return deleted chats with
``deletedAt`` and a blank content (11); the unread mark is the smallest id
created at or after lastRead, over every page (10), with lastRead read under
the channel's own community (12). A page cursor that is missing, not an
integer or out of range is 400 in Nest's format, not the original's 500.
"""

from __future__ import annotations

import re
from typing import Any

from ..operations import Action, InsertNumbered, ListRecordRange
from ..records import new_record
from .model import (
    CHAT_KEY_DIGITS,
    chat_key_prefix,
    CHATS,
    PAGE_SIZE,
    chat_info,
    chat_key,
    chat_range,
    chat_sequence,
    is_live,
    last_read,
    page_chat,
)
from .nest import NestError, bad_request, not_found
from .store import (
    NOT_IN_CHANNEL,
    Context,
    channel_member,
    get,
    profile_of,
    update,
    visible_channel,
)
from .validation import (
    CHANNEL,
    DELETE_CHAT,
    GET_CHATS,
    MODIFY_CHAT,
    POST_CHAT,
    validate,
)

__all__ = [
    "NO_CHAT",
    "channel_member_or_manager",
    "chat_page",
    "create_chat",
    "delete_chat",
    "delete_route",
    "last_chat",
    "modify_chat",
    "modify_route",
    "page_route",
    "parse_chat_id",
    "post_route",
    "unread_chat_id",
    "unread_route",
    "write_chat",
]

#: The answer for a chat that does not exist or was deleted.
NO_CHAT = "존재하지 않는 채팅입니다."
_NO_PAGE = "존재하지 않는 채팅 페이지입니다."
_NO_CURSOR = "prev 또는 next 값이 필요합니다."
_DIGITS = re.compile(r"[0-9]{1,15}\Z")
_CURSOR = re.compile(r"-?[0-9]{1,15}\Z")


def parse_chat_id(value: Any) -> int | None:
    """A chat id from a path (digits) or a socket event (an integer, or
    digits); ``None`` if it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    return None


def write_chat(ctx: Context, channel: dict[str, Any], sender_id: str, kind: str, content: str) -> Action[dict[str, Any]]:
    """Store a new chat of ``channel``, numbered by the channel's sequence."""
    channel_id = channel["_id"]
    fields = {
        "type": kind,
        "content": content,
        "senderId": sender_id,
        "channelId": channel_id,
        "communityId": channel["communityId"],
    }
    # The number and the record in one write (bug 9: atomic ids): the chat's
    # id is its number in the channel, its _id chat_key(channel, number).
    template = new_record(fields, chat_key(channel_id, 0), ctx.now())
    del template["_id"]
    sequence = chat_sequence(channel_id)
    record: dict[str, Any] = yield InsertNumbered(CHATS, template, sequence, "id", chat_key_prefix(channel_id),
                                                  CHAT_KEY_DIGITS)
    ctx.change(CHATS, "create", record, revision=1, numbered=(sequence, record["id"]))
    return record


def create_chat(ctx: Context, channel_id: str, kind: str, content: str) -> Action[dict[str, Any]]:
    """A chat by the acting user in a channel they are in; its chatInfo."""
    channel, _ = yield from channel_member(ctx, channel_id)
    record = yield from write_chat(ctx, channel, ctx.user_id, kind, content)
    return chat_info(record)


def _live_chat(channel_id: str, chat_id: Any) -> Action[dict[str, Any]]:
    number = parse_chat_id(chat_id)
    chat = (yield from get(CHATS, chat_key(channel_id, number))) if number is not None else None
    if not is_live(chat):
        raise not_found(NO_CHAT)
    return chat


def modify_chat(ctx: Context, channel_id: str, chat_id: Any, content: str) -> Action[dict[str, Any]]:
    """Edit a chat: only its sender, in a channel they are in; its chatInfo."""
    yield from channel_member(ctx, channel_id)
    chat = yield from _live_chat(channel_id, chat_id)
    if chat["senderId"] != ctx.user_id:
        raise bad_request("자신이 보낸 채팅만 수정할 수 있습니다.")

    def rewrite(record: dict[str, Any], now: str) -> dict[str, Any]:
        if not is_live(record):
            raise not_found(NO_CHAT)  # deleted meanwhile
        record["content"] = content
        return record

    updated = yield from update(ctx, CHATS, chat["_id"], rewrite)
    return chat_info(updated)


def delete_chat(ctx: Context, channel_id: str, chat_id: Any) -> Action[dict[str, Any]]:
    """Soft-delete a chat: its sender or the channel's manager, in the
    channel, or the community's manager; ``deletedAt = updatedAt = now`` and
    the content blanked. Its chatInfo."""
    channel, community = yield from channel_member_or_manager(ctx, channel_id)
    chat = yield from _live_chat(channel_id, chat_id)
    user_id = ctx.user_id
    in_channel = user_id in channel["users"]
    allowed = user_id == community["managerId"] or (in_channel and user_id in (chat["senderId"], channel["managerId"]))
    if not allowed:
        raise bad_request("채팅을 삭제할 수 없습니다.")

    def rewrite(record: dict[str, Any], now: str) -> dict[str, Any]:
        if not is_live(record):
            raise not_found(NO_CHAT)
        record["deletedAt"] = now
        record["content"] = ""
        return record

    updated = yield from update(ctx, CHATS, chat["_id"], rewrite)
    return chat_info(updated)


def channel_member_or_manager(ctx: Context, channel_id: str) -> Action[tuple[dict[str, Any], dict[str, Any]]]:
    """The channel if the user is in it, or manages its community (who may
    delete any chat of it, as in the original)."""
    try:
        return (yield from channel_member(ctx, channel_id))
    except NestError as refusal:
        if refusal.message != NOT_IN_CHANNEL:
            raise
    channel, community = yield from visible_channel(ctx, channel_id)
    if community["managerId"] != ctx.user_id:
        raise bad_request(NOT_IN_CHANNEL)
    return channel, community


def last_chat(channel_id: str) -> Action[dict[str, Any] | None]:
    """The chat with the highest id of a channel (deleted or not), if any."""
    start, stop = chat_range(channel_id)
    found = yield ListRecordRange(CHATS, start, stop, limit=1, descending=True)
    return found[0] if found else None


def _cursor(value: Any) -> int:
    if not isinstance(value, str) or not _CURSOR.match(value):
        raise bad_request(_NO_PAGE)
    return int(value)


def chat_page(ctx: Context, channel_id: str, prev: Any, next: Any) -> Action[dict[str, Any]]:
    """One page of 100 chats: page *i* holds ids ``100i .. 100i+99``.

    ``prev=-1`` is the last page; the answer names the page before as
    ``prev`` (or, for ``next=N``, the page after as ``next``), absent at
    either end - the original's cursor rules exactly.
    """
    yield from channel_member(ctx, channel_id)
    if prev is None and next is None:
        raise bad_request(_NO_CURSOR)
    cursor = _cursor(prev if prev is not None else next)
    last = yield from last_chat(channel_id)
    pages = last["id"] // PAGE_SIZE + 1 if last is not None else 0
    index = pages - 1 if cursor == -1 else cursor
    if not 0 <= index < pages:
        if cursor == -1:
            return {"chat": []}
        raise bad_request(_NO_PAGE)
    start, stop = chat_range(channel_id, index * PAGE_SIZE, (index + 1) * PAGE_SIZE)
    chats = yield ListRecordRange(CHATS, start, stop)
    result: dict[str, Any] = {"chat": [page_chat(chat) for chat in chats]}
    if cursor == -1 or prev is not None:
        if index - 1 >= 0:
            result["prev"] = index - 1
    elif index + 1 < pages:
        result["next"] = index + 1
    return result


def unread_chat_id(ctx: Context, channel_id: str) -> Action[int]:
    """The smallest id of a chat created at or after the user's lastRead of
    the channel, or -1 when there is none (bug 10). Every page is read."""
    channel, _ = yield from channel_member(ctx, channel_id)
    profile = yield from profile_of(ctx.user_id)
    since = last_read(profile, channel["communityId"], channel_id) if profile is not None else None
    start, stop = chat_range(channel_id)
    chats = yield ListRecordRange(CHATS, start, stop)
    unread = [chat["id"] for chat in chats if since is None or chat["createdAt"] >= since]
    return min(unread) if unread else -1


# -- the routes -----------------------------------------------------------------


def post_route(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/channels/:channel_id/chat {type, content}``."""
    fields = validate(data, POST_CHAT)
    return (yield from create_chat(ctx, fields["channel_id"], fields["type"], fields["content"]))


def page_route(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/channels/:channel_id/chat?prev=N`` (or ``next``)."""
    fields = validate(data, GET_CHATS)
    return (yield from chat_page(ctx, fields["channel_id"], fields.get("prev"), fields.get("next")))


def unread_route(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/channels/:channel_id/unread-chat``."""
    fields = validate(data, CHANNEL)
    return {"unreadChatId": (yield from unread_chat_id(ctx, fields["channel_id"]))}


def modify_route(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``PATCH /api/channels/:channel_id/chats/:chat_id {content}``."""
    fields = validate(data, MODIFY_CHAT)
    return (yield from modify_chat(ctx, fields["channel_id"], fields["chat_id"], fields["content"]))


def delete_route(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``DELETE /api/channels/:channel_id/chats/:chat_id``."""
    fields = validate(data, DELETE_CHAT)
    return (yield from delete_chat(ctx, fields["channel_id"], fields["chat_id"]))

