"""Asnity's accounts: ``/api/user/auth/*`` (asnity.md section 2) on
Satchel's shared users, and ``authenticate``, which the socket layer calls.

Signup makes the same ``User`` Backpack's ``/register`` makes (the email
lowercased, as Backpack stores it; the password as an argon2id hash through
``HashPassword``) plus the user's Asnity profile (``model``); an email
registered on either protocol is taken on both, and signin works for a
Backpack account (its profile is made then, with the default nickname).

Signin answers an access token and sets the refresh token as the cookie
``refreshToken`` on ``Path=/api/user/auth/refresh`` (HttpOnly, 100 hours,
no SameSite, as the original). Refresh issues a new access token and does
not rotate the refresh token (as the original). Signout revokes the
presented access token and every refresh token of the user, and clears the
cookie on the path it was set on (bug 13). Tokens: ``satchel.protocol.tokens``.

Departure: the original's refresh answered 401 ``refreshToken이 일치하지
않습니다.`` when the cookie held a valid JWT that was not the stored one;
with opaque tokens that is when the cookie holds a live *access* token.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec

from ..environment import Environment
from ..operations import (
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    Action,
    GetUser,
    GetUserByEmail,
    HashPassword,
    InsertUser,
    User,
    VerifyPassword,
)
from .model import PROFILES, default_nickname, new_profile, user_basic_info
from .nest import cookie, forbidden, guard_failure, unauthorized
from .store import Context, ensure_profile, insert, profile_of, update
from ..tokens import (
    REFRESH_TTL_MS,
    bearer_user,
    issue_token,
    request_token,
    revoke_token,
    revoke_tokens,
    token_session,
)
from .validation import SIGN_IN, SIGN_UP, validate

__all__ = [
    "REFRESH_COOKIE",
    "REFRESH_PATH",
    "AsnityUser",
    "authenticate",
    "cleared_refresh_cookie",
    "me",
    "refresh",
    "refresh_cookie",
    "signin",
    "signout",
    "signup",
]

#: The refresh token's cookie and the only path it is sent to.
REFRESH_COOKIE = "refreshToken"
REFRESH_PATH = "/api/user/auth/refresh"

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class AsnityUser(msgspec.Struct, frozen=True):
    """Who a socket (or a request) is: the account's id and its nickname."""

    id: str
    nickname: str


def authenticate(token: str | None, env: Environment) -> Action[AsnityUser | None]:
    """The user a socket's token names, or ``None`` (refuse: CONNECT_ERROR
    ``{"message":"Unauthorized"}``, or a failed write).

    ``token`` is ``auth.token`` or the ``token`` header, with or without
    ``"Bearer "``. Only a live access token is accepted, so the socket layer
    calls this at namespace connect and again before each write (bug 4). It
    writes nothing: an account without a profile yet gets the default
    nickname.
    """
    user = yield from bearer_user(token, env)
    if user is None:
        return None
    profile = yield from profile_of(user.id)
    return AsnityUser(user.id, profile["nickname"] if profile is not None else default_nickname(user.email))


def _http_date(ms: int) -> str:
    # Spelled out rather than strftime's %a/%b, which follow the locale.
    moment = _EPOCH + _dt.timedelta(milliseconds=ms)
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def refresh_cookie(token: str, now_ms: int) -> str:
    """Express's ``res.cookie('refreshToken', token, {path, httpOnly, maxAge: 100 h})``."""
    return (
        f"{REFRESH_COOKIE}={token}; Max-Age={REFRESH_TTL_MS // 1000}; Path={REFRESH_PATH}; "
        f"Expires={_http_date(now_ms + REFRESH_TTL_MS)}; HttpOnly"
    )


def cleared_refresh_cookie() -> str:
    """The ``Set-Cookie`` that removes the refresh cookie: on its own path,
    where the original cleared ``Path=/`` and left it in place (bug 13)."""
    return f"{REFRESH_COOKIE}=expired; Max-Age=0; Path={REFRESH_PATH}; Expires={_http_date(0)}; HttpOnly"


def signup(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/user/auth/signup {id, password, nickname}``."""
    fields = validate(data, SIGN_UP)
    email = fields["id"].lower()
    taken = forbidden("아이디가 중복되었습니다.")
    if (yield GetUserByEmail(email)) is not None:
        raise taken
    password_hash: str = yield HashPassword(fields["password"])
    user = User(ctx.env.new_id(), email, password_hash, ctx.now())
    if not (yield InsertUser(user)):
        raise taken  # a concurrent signup or register of the same email won
    yield from insert(ctx, PROFILES, new_profile(user, fields["nickname"], ctx.now()))
    return {"message": "회원가입 성공!"}


def _set_status(ctx: Context, user: User, status: str) -> Action[None]:
    yield from ensure_profile(ctx, user.id, user)

    def rewrite(profile: dict[str, Any], now: str) -> dict[str, Any] | None:
        if profile.get("status") == status:
            return None
        profile["status"] = status
        return profile

    yield from update(ctx, PROFILES, user.id, rewrite)


def signin(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/user/auth/signin {id, password}``: the access token, and
    the refresh token as a cookie."""
    fields = validate(data, SIGN_IN)
    user: User | None = yield GetUserByEmail(fields["id"])
    # A missing account still costs a verification (against a dummy hash),
    # so the two failures take the same time.
    matches = yield VerifyPassword(user.password_hash if user is not None else "", fields["password"])
    if user is None:
        raise forbidden("존재하는 아이디가 없습니다.")
    if not matches:
        raise forbidden("비밀번호가 일치하지 않습니다.")
    access = yield from issue_token(user.id, ACCESS_TOKEN, ctx.env)
    refresh_token = yield from issue_token(user.id, REFRESH_TOKEN, ctx.env)
    yield from _set_status(ctx, user, "ONLINE")
    ctx.headers.append(("set-cookie", refresh_cookie(refresh_token, ctx.env.now_ms())))
    return {"message": "로그인 성공!", "accessToken": access}


def refresh(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/user/auth/refresh`` with the refresh cookie: a new access token."""
    assert ctx.request is not None
    token = cookie(ctx.request, REFRESH_COOKIE)
    if token is None:
        raise guard_failure()
    session = yield from token_session(token, REFRESH_TOKEN, ctx.env)
    if session is None:
        if (yield from token_session(token, ACCESS_TOKEN, ctx.env)) is not None:
            raise unauthorized("refreshToken이 일치하지 않습니다.")
        raise guard_failure()  # unknown, revoked or expired
    user: User | None = yield GetUser(session.user_id)
    if user is None:
        raise forbidden("잘못된 요청입니다.")
    access = yield from issue_token(user.id, ACCESS_TOKEN, ctx.env)
    return {"message": "accessToken 재발행 성공!", "accessToken": access}


def me(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``GET /api/user/auth/me``: the user's UserBasicInfo."""
    profile = yield from ensure_profile(ctx, ctx.user_id, ctx.user)
    if profile is None:
        raise guard_failure()
    return user_basic_info(profile)


def signout(ctx: Context, data: dict[str, Any]) -> Action[dict[str, Any]]:
    """``POST /api/user/auth/signout``: revoke the access token presented and
    every refresh token of the user; clear the cookie."""
    assert ctx.request is not None and ctx.user is not None
    token = request_token(ctx.request)
    if token is not None:
        yield from revoke_token(token)
    yield from revoke_tokens(ctx.user.id, REFRESH_TOKEN)
    yield from _set_status(ctx, ctx.user, "OFFLINE")
    ctx.headers.append(("set-cookie", cleared_refresh_cookie()))
    return {"message": "로그아웃 성공!"}
