"""Directus's sign-in, on Satchel's one table of users.

``@directus/sdk``'s ``authentication('json')`` (``../shared/protocols/
directus.md`` section 3) logs in with ``POST /auth/login {email, password,
mode: "json", otp?}`` and expects ``{"data": {"access_token", "expires",
"refresh_token"}}`` - ``expires`` in milliseconds, more than 30 s, or it
refreshes before every request - refreshes with ``POST /auth/refresh
{mode: "json", refresh_token}`` (same answer) and logs out with ``POST
/auth/logout {mode: "json", refresh_token}``. The core websocket's ``auth``
message signs in the same ways (email and password, a refresh token, an
access token), so these actions serve both: ``login``, ``refresh`` and
``logout`` here, and ``satchel.protocol.tokens.authenticate`` for a Bearer.

The account is the one Backpack registers and Asnity signs up (emails
compare lowercased, passwords are argon2id hashes checked by the runner's
``VerifyPassword``, which also spends the time of a check for an unknown
email). Tokens are Satchel's opaque ones (``satchel.protocol.tokens``), not
Directus's JWTs: an access token lives ``DirectusConfig.access_token_ttl_ms``
and is accepted wherever Asnity's are, a refresh token
``refresh_token_ttl_ms`` and is accepted only here. As in Directus, a
refresh rotates the refresh token (the old one is revoked), and logout
revokes the refresh token it is handed (and the access token the request
carries, if any: an opaque token can be revoked, unlike a JWT).

``otp`` is accepted and ignored: Satchel accounts have no second factor.
Only ``mode: "json"`` is served (the SDK's and every non-browser client's);
Directus's ``cookie`` and ``session`` modes are refused as an invalid payload.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..environment import Environment
from ..operations import ACCESS_TOKEN, REFRESH_TOKEN, Action, GetUser, GetUserByEmail, User, VerifyPassword
from ..tokens import issue_token, revoke_token, token_session
from .config import DirectusConfig
from .errors import invalid_credentials, invalid_payload

__all__ = ["Tokens", "login", "refresh", "logout", "login_body", "refresh_body"]

#: The longest password a login will have verified (argon2 costs the same
#: for any length, but a megabyte of password is not a password).
MAX_PASSWORD_LENGTH = 1024


class Tokens(msgspec.Struct, frozen=True):
    """What a sign-in hands out: the ``access_token``, the ``refresh_token``,
    ``expires`` (the access token's lifetime in ms, as Directus answers it),
    ``expires_at`` (when it ends, in ``env.now_ms()`` time) and the ``user``."""

    access_token: str
    refresh_token: str
    expires: int
    expires_at: int
    user: User

    def data(self) -> dict[str, Any]:
        """The ``data`` of Directus's answer: ``{"access_token", "expires", "refresh_token"}``."""
        return {"access_token": self.access_token, "expires": self.expires, "refresh_token": self.refresh_token}


def _issue(user: User, config: DirectusConfig, env: Environment) -> Action[Tokens]:
    access = yield from issue_token(user.id, ACCESS_TOKEN, env, config.access_token_ttl_ms)
    expires_at = env.now_ms() + config.access_token_ttl_ms
    refresh_token = yield from issue_token(user.id, REFRESH_TOKEN, env, config.refresh_token_ttl_ms)
    return Tokens(access, refresh_token, config.access_token_ttl_ms, expires_at, user)


def login(email: str, password: str, config: DirectusConfig, env: Environment) -> Action[Tokens]:
    """Sign in with an email and a password; raises ``DirectusError``
    ``INVALID_CREDENTIALS`` (401) for a wrong pair, whichever half is wrong."""
    if not isinstance(email, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        raise invalid_credentials()
    user: User | None = yield GetUserByEmail(email.strip())
    # An unknown email is still verified (against the runner's dummy hash),
    # so that it takes as long as a wrong password.
    matches = yield VerifyPassword(user.password_hash if user is not None else "", password)
    if user is None or not matches:
        raise invalid_credentials()
    return (yield from _issue(user, config, env))


def refresh(refresh_token: str, config: DirectusConfig, env: Environment) -> Action[Tokens]:
    """New tokens for a live refresh token, which is revoked (rotation);
    ``INVALID_CREDENTIALS`` for anything else - an access token included."""
    if not isinstance(refresh_token, str):
        raise invalid_credentials()
    session = yield from token_session(refresh_token, REFRESH_TOKEN, env)
    if session is None:
        raise invalid_credentials()
    user: User | None = yield GetUser(session.user_id)
    if user is None:
        raise invalid_credentials()
    # Spent by revoking it: of two refreshes racing with one token, only the
    # one whose revocation found it gets new tokens (no token forks in two).
    if not (yield from revoke_token(refresh_token)):
        raise invalid_credentials()
    return (yield from _issue(user, config, env))


def logout(refresh_token: str, access_token: str | None = None) -> Action[None]:
    """Revoke ``refresh_token`` (and ``access_token``, the Bearer the request
    carried). Unknown tokens are no error, as in Directus."""
    yield from revoke_token(refresh_token)
    if access_token:
        yield from revoke_token(access_token)


def _mode(body: dict[str, Any]) -> None:
    mode = body.get("mode", "json")
    if mode != "json":
        raise invalid_payload('"mode" must be "json" (Satchel serves no cookie or session mode)')


def login_body(body: Any) -> tuple[str, str]:
    """``(email, password)`` of a ``/auth/login`` body, or ``INVALID_PAYLOAD``."""
    if not isinstance(body, dict):
        raise invalid_payload("the body must be a JSON object")
    for name in ("email", "password"):
        if name not in body:
            raise invalid_payload(f'"{name}" is required')
        if not isinstance(body[name], str):
            raise invalid_payload(f'"{name}" must be a string')
    otp = body.get("otp")
    if otp is not None and not isinstance(otp, str):
        raise invalid_payload('"otp" must be a string')
    _mode(body)
    return body["email"], body["password"]


def refresh_body(body: Any) -> str:
    """The refresh token of a ``/auth/refresh`` or ``/auth/logout`` body,
    or ``INVALID_PAYLOAD``."""
    if not isinstance(body, dict):
        raise invalid_payload("the body must be a JSON object")
    _mode(body)
    token = body.get("refresh_token")
    if token is None:
        raise invalid_payload("the refresh token is required in the payload")
    if not isinstance(token, str) or not token:
        raise invalid_payload('"refresh_token" must be a string')
    return token
