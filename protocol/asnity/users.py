"""Users: ``/api/user/*`` and ``/api/users`` (asnity.md section 3, "Users").

Fixed bugs and choices:

- ``GET /api/users?search=S`` needs a token (bug 6) and ``S`` is a literal
  substring of the email (``id``) or the nickname, compared without case,
  never a regular expression (``SearchRecords``); at most 100 users, never
  the bot. An empty or missing ``search`` is 400 rather than every user.
  Accounts found are those with an Asnity profile: a Backpack user who never
  used Asnity is not listed until they have one.
- Following keeps both sides in step: the toggle is decided by the caller's
  ``followings`` and the other user's ``followers`` is made to agree, so the
  two cannot disagree for ever (the original answered 409 once they did,
  and its fire-and-forget writes made that happen).
"""

from __future__ import annotations

from typing import Any

from ..operations import Action, SearchRecords
from .model import BOT_ID, PROFILES, user_basic_info
from .nest import bad_request
from .store import Context, ensure_profile, profile_of, update
from .validation import FOLLOW, MODIFY_USER, SEARCH_USERS, validate

__all__ = ["SEARCH_LIMIT", "follow", "followers", "followings", "search", "settings"]

#: The most users one search answers.
SEARCH_LIMIT = 100


def _toggle(key: str, value: str, present: bool) -> Any:
    def rewrite(profile: dict[str, Any], now: str) -> dict[str, Any] | None:
        values = list(profile.get(key, []))
        if (value in values) == present:
            return None
        profile[key] = [*values, value] if present else [other for other in values if other != value]
        return profile

    return rewrite


def follow(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/user/following/:followId``: follow, or unfollow if followed."""
    fields = validate(data, FOLLOW)
    other_id = fields["followId"]
    me = yield from ensure_profile(ctx, ctx.user_id, ctx.user)
    other = (yield from ensure_profile(ctx, other_id)) if other_id != BOT_ID else None
    if me is None or other is None:
        raise bad_request("해당하는 사용자의 _id가 올바르지 않습니다.")
    if other_id == ctx.user_id:
        raise bad_request("나 자신은 영원한 인생의 친구입니다.")
    now_following = other_id not in me.get("followings", [])
    yield from update(ctx, PROFILES, ctx.user_id, _toggle("followings", other_id, now_following))
    yield from update(ctx, PROFILES, other_id, _toggle("followers", ctx.user_id, now_following))
    return {"message": "팔로우 신청 완료" if now_following else "언팔로우 완료"}


def _related(ctx: Context, key: str) -> Action[list[dict[str, Any]]]:
    profile = yield from ensure_profile(ctx, ctx.user_id, ctx.user)
    infos = []
    for user_id in (profile or {}).get(key, []):
        other = yield from profile_of(user_id)
        if other is not None:
            infos.append(user_basic_info(other))
    return infos


def followers(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/user/followers``."""
    return {"followers": (yield from _related(ctx, "followers"))}


def followings(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/user/followings``."""
    return {"followings": (yield from _related(ctx, "followings"))}


def settings(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``PATCH /api/user/settings {nickname?, profileUrl?, description?, status?}``."""
    fields = validate(data, MODIFY_USER)
    yield from ensure_profile(ctx, ctx.user_id, ctx.user)

    def rewrite(profile: dict[str, Any], now: str) -> dict[str, Any]:
        profile.update(fields)
        return profile

    yield from update(ctx, PROFILES, ctx.user_id, rewrite)
    return {"message": "사용자 정보 변경 완료"}


def search(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/users?search=S``."""
    fields = validate(data, SEARCH_USERS)
    found = yield SearchRecords(PROFILES, ("id", "nickname"), fields["search"], SEARCH_LIMIT)
    return {"users": [user_basic_info(profile) for profile in found if profile["_id"] != BOT_ID]}
