"""Accounts as an administrator sees them: listed, created, disabled,
enabled, given a new password (issue 16 part 2).

What is shown of a user is ``user_view``: id, email, role, creation time
and whether it is ``disabled`` - never its password hash.

Disabling keeps the account (its records, files, role and email stay) and
makes it unusable: its stored hash is prefixed with ``DISABLED`` (``!``,
as ``/etc/shadow`` locks an account), which no password verifies against
(argon2 refuses the hash), and every token it holds - Backpack's cookie
sessions, Bearer access and refresh tokens, static tokens - is revoked, so
its next request is refused; the admin API also closes the websockets
the user has open (``live.close_connections``). Enabling removes the
prefix: the old password works again. A new password (``reset_password``)
revokes the tokens and closes the websockets too, and keeps a disabled
account disabled.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..directus.errors import DirectusError
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..operations import (
    ACCESS_TOKEN,
    DEFAULT_ROLE,
    REFRESH_TOKEN,
    SESSION,
    STATIC_TOKEN,
    Action,
    DeleteSessions,
    GetUser,
    HashPassword,
    InsertUser,
    ListUsers,
    SetUserPassword,
    User,
)
from ..permissions import PUBLIC, load_rules
from ..records import format_timestamp
from .bootstrap import MIN_PASSWORD_LENGTH

__all__ = ["DISABLED", "user_view", "is_disabled", "list_users", "create_user", "set_disabled", "reset_password"]

#: What the stored hash of a disabled account starts with.
DISABLED = "!"
_MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_TOKEN_KINDS = (SESSION, ACCESS_TOKEN, REFRESH_TOKEN, STATIC_TOKEN)
#: The most users one page lists.
MAX_PAGE = 500


def is_disabled(user: User) -> bool:
    """Whether the account is disabled."""
    return user.password_hash.startswith(DISABLED)


def user_view(user: User) -> dict[str, Any]:
    """What the admin API shows of ``user`` (never the hash)."""
    return {"id": user.id, "email": user.email, "role": user.role, "created_at": user.created_at,
            "disabled": is_disabled(user)}


def list_users(search: str, offset: int, limit: int) -> Action[list[User]]:
    """A page of the accounts, in id order, whose email contains ``search``."""
    users: list[User] = yield ListUsers(search.strip(), max(offset, 0), min(max(limit, 0), MAX_PAGE))
    return users


def _check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= _MAX_PASSWORD_LENGTH:
        raise RemoteProtocolError(f"a password has {MIN_PASSWORD_LENGTH} to {_MAX_PASSWORD_LENGTH} characters", 400)
    return password


def create_user(email: object, password: object, role: object, env: Environment) -> Action[User]:
    """A new account with ``password`` (hashed by the runner) and ``role``
    (one the stored rules define, never ``public``; ``None``: the default
    role). 400 for an invalid email, password or role; 409 when the email
    is registered already (through any protocol)."""
    if not isinstance(email, str) or len(email.strip()) > 254 or not _EMAIL.match(email.strip().lower()):
        raise RemoteProtocolError("\"email\" must be an email address", 400)
    password = _check_password(password)
    rules, _ = yield from load_rules()
    if role is None:
        role = DEFAULT_ROLE
    if not isinstance(role, str) or role == PUBLIC or rules.role(role) is None:
        raise RemoteProtocolError(f"\"role\" must be a role the rules define (not {PUBLIC!r})", 400)
    password_hash: str = yield HashPassword(password)
    user = User(env.new_id(), email.strip().lower(), password_hash, format_timestamp(env.now_ms()), role)
    if not (yield InsertUser(user)):
        raise RemoteProtocolError("an account with this email exists already", 409)
    return user


def _revoke_all(user_id: str) -> Action[int]:
    revoked = 0
    for kind in _TOKEN_KINDS:
        revoked += yield DeleteSessions(user_id, kind)
    return revoked


def set_disabled(user: User, disabled: bool) -> Action[User]:
    """Disable (its tokens revoked) or enable ``user``; the account after."""
    if disabled == is_disabled(user):
        if disabled:
            yield from _revoke_all(user.id)  # a token issued since: still none
        return user
    stored = DISABLED + user.password_hash if disabled else user.password_hash[len(DISABLED):]
    if not (yield SetUserPassword(user.id, stored)):
        raise DirectusError("NOT_FOUND", "The user does not exist.", 404)
    if disabled:
        yield from _revoke_all(user.id)
    return msgspec.structs.replace(user, password_hash=stored)


def reset_password(user: User, password: object) -> Action[User]:
    """Give ``user`` a new password and revoke every token it holds; a
    disabled account stays disabled."""
    password_hash: str = yield HashPassword(_check_password(password))
    stored = DISABLED + password_hash if is_disabled(user) else password_hash
    if not (yield SetUserPassword(user.id, stored)):
        raise DirectusError("NOT_FOUND", "The user does not exist.", 404)
    yield from _revoke_all(user.id)
    current: User | None = yield GetUser(user.id)
    return current if current is not None else msgspec.structs.replace(user, password_hash=stored)
