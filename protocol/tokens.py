"""Bearer tokens on Satchel's shared accounts, for every protocol that accepts
``Authorization: Bearer <token>``: Asnity's REST API and sockets (asnity.md
section 2, bugs 4 and 14), the Directus-style protocols and the resource
subscriptions.

Decision: the tokens are **opaque** random strings (``env.new_token()``),
not the original's JWTs. A token is revoked the moment its row is deleted
(signout, or an operator removing a user's tokens), where a JWT stays valid
until it expires; and no client ever decodes one (Asnity's keeps it in
memory and sends it back). Only the SHA-256 of a token is stored, in the
shared session table (``operations.Session``), and the presented token's
hash is compared in constant time. Each token has a kind and an expiry:

- ``ACCESS_TOKEN``, 1 hour: accepted by the guarded routes and by the
  sockets (``bearer_user``);
- ``REFRESH_TOKEN``, 100 hours: accepted only to issue access tokens. A
  refresh token is never an access token (bug 14) and neither is a Backpack
  cookie session, whose kind is ``SESSION``.
- ``STATIC_TOKEN``: a static API token (Directus's static tokens, issue 11
  part 3), made by an administrator for any user or by a user for itself
  (``issue_static_token``), accepted wherever an access token is, never
  expiring, revoked by deleting it (``revoke_static_token``). Each has a
  public ``id`` - the first 16 hex digits of its hash - by which it is
  listed and revoked; the token itself is shown once, when it is made.

An expired or revoked token is refused. The socket layer checks the token
at namespace connect and again before each write, so a socket outlives its
token by no more than one message (bug 4).

``authenticate`` is the one answer to "who is this Bearer?" for the
Directus-style protocols (REST and both websockets), the admin API and the
protocols that follow: it takes a request - ``Authorization: Bearer``,
else ``?access_token=`` (Directus core), else ``?api_token=`` (the
directus-websocket-subscribe extension's early clients) - or a token, and
accepts a live access token or a static token. Asnity's ``bearer_user``
keeps to access tokens, as its original did.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

import msgspec

from .environment import Environment
from .http import HttpRequest
from .operations import (
    ACCESS_TOKEN,
    NEVER_EXPIRES_MS,
    REFRESH_TOKEN,
    STATIC_TOKEN,
    Action,
    DeleteSession,
    DeleteSessions,
    GetSession,
    GetUser,
    InsertSession,
    ListSessions,
    Session,
    User,
)
from .permissions.rules import Accountability

__all__ = [
    "ACCESS_TOKEN",
    "ACCESS_TTL_MS",
    "REFRESH_TOKEN",
    "REFRESH_TTL_MS",
    "STATIC_TOKEN",
    "BEARER_KINDS",
    "Bearer",
    "StaticToken",
    "authenticate",
    "bearer_token",
    "bearer_user",
    "hash_token",
    "issue_static_token",
    "issue_token",
    "list_static_tokens",
    "presented_token",
    "request_token",
    "revoke_static_token",
    "revoke_token",
    "revoke_tokens",
    "static_token_id",
    "token_session",
]

#: An access token lives an hour (the original's ``expiresIn: '1hr'``).
ACCESS_TTL_MS = 60 * 60 * 1000
#: A refresh token lives 100 hours (``'100hr'``).
REFRESH_TTL_MS = 100 * 60 * 60 * 1000

_TTL = {ACCESS_TOKEN: ACCESS_TTL_MS, REFRESH_TOKEN: REFRESH_TTL_MS}


def hash_token(token: str) -> str:
    """The form a token is stored in: hex SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_token(value: str | None) -> str | None:
    """The token in ``"Bearer <token>"`` (the word is compared without case)
    or in a bare ``"<token>"``; ``None`` for anything else."""
    if not isinstance(value, str):
        return None
    parts = value.split()
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    return None


def request_token(request: HttpRequest) -> str | None:
    """The token of a request's ``Authorization: Bearer <token>`` header
    (passport-jwt's ``fromAuthHeaderAsBearerToken``: the scheme is required)."""
    header = request.header("authorization")
    if header is None:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def issue_token(user_id: str, kind: str, env: Environment, ttl_ms: int | None = None) -> Action[str]:
    """Make a new token of ``kind`` for ``user_id`` and store its hash;
    returns the token (shown to the client once, never stored)."""
    token = env.new_token()
    lifetime = ttl_ms if ttl_ms is not None else _TTL[kind]
    yield InsertSession(Session(hash_token(token), user_id, env.now_ms() + lifetime, kind))
    return token


def token_session(token: str | None, kind: str, env: Environment) -> Action[Session | None]:
    """The live session of ``token`` if it is of ``kind``; ``None`` when the
    token is unknown (or revoked), expired or of another kind."""
    if not token:
        return None
    token_hash = hash_token(token)
    session: Session | None = yield GetSession(token_hash)
    if session is None or not hmac.compare_digest(session.token_hash, token_hash):
        return None
    if session.kind != kind or session.expires_ms <= env.now_ms():
        return None
    return session


def bearer_user(request_or_token: HttpRequest | str | None, env: Environment) -> Action[User | None]:
    """The account a Bearer access token belongs to, or ``None``.

    Takes a request (its ``Authorization`` header) or the token itself, with
    or without ``"Bearer "`` (a socket's ``auth.token``). Only a live access
    token of an existing account is accepted.
    """
    if isinstance(request_or_token, HttpRequest):
        token = request_token(request_or_token)
    else:
        token = bearer_token(request_or_token)
    session = yield from token_session(token, ACCESS_TOKEN, env)
    if session is None:
        return None
    user: User | None = yield GetUser(session.user_id)
    return user


def revoke_token(token: str) -> Action[bool]:
    """Revoke one token, whatever its kind; whether it existed (of two
    requests revoking one token, exactly one gets ``True``)."""
    existed: bool = yield DeleteSession(hash_token(token))
    return existed


def revoke_tokens(user_id: str, kind: str) -> Action[int]:
    """Revoke every token of ``kind`` of a user; how many there were."""
    count: int = yield DeleteSessions(user_id, kind)
    return count


# -- every Bearer of the Directus-style protocols ---------------------------------

#: The kinds of token ``authenticate`` accepts as a Bearer.
BEARER_KINDS = frozenset((ACCESS_TOKEN, STATIC_TOKEN))
#: The query parameters a token may arrive in, in the order they are read.
_QUERY_TOKENS = ("access_token", "api_token")


class Bearer(msgspec.Struct, frozen=True):
    """Who a Bearer token names: the ``user`` (its account, as stored now),
    the token's ``kind`` (``ACCESS_TOKEN`` or ``STATIC_TOKEN``), its
    ``token_hash`` (what revokes it: ``DeleteSession``) and when it expires
    (``expires_ms``, in ``env.now_ms()`` time; ``None``: never, a static
    token)."""

    user: User
    kind: str
    token_hash: str
    expires_ms: int | None

    @property
    def accountability(self) -> Accountability:
        """The ``permissions.Accountability`` of the token's user."""
        return Accountability(self.user.id, self.user.role)


def presented_token(request: HttpRequest) -> str | None:
    """The token a request presents: ``Authorization: Bearer <t>``, else the
    query's ``access_token``, else its ``api_token`` (the first non-empty
    one); ``None`` when it presents none. An ``Authorization`` header of
    another scheme (Backpack's ``key <KEY>``) presents nothing."""
    token = request_token(request)
    if token:
        return token
    query = request.query
    if query:
        values = dict(reversed(parse_qsl(query, keep_blank_values=True)))  # the first of each name wins
        for name in _QUERY_TOKENS:
            value = values.get(name)
            if value:
                return value
    return None


def authenticate(request_or_token: HttpRequest | str | None, env: Environment) -> Action[Bearer | None]:
    """The ``Bearer`` a request (see ``presented_token``) or a token (with
    or without ``"Bearer "``) names, or ``None``: no token, or one that is
    unknown, revoked, expired, of another kind (a refresh token, a Backpack
    cookie), or whose user is gone.

    Accepts live access tokens (Directus ``/auth/login``, Asnity's signin)
    and static tokens. A caller that must tell "no token" (the public role)
    from "a bad token" (401) asks ``presented_token`` first.
    """
    if isinstance(request_or_token, HttpRequest):
        token = presented_token(request_or_token)
    else:
        token = bearer_token(request_or_token)
    if not token:
        return None
    token_hash = hash_token(token)
    session: Session | None = yield GetSession(token_hash)
    if session is None or not hmac.compare_digest(session.token_hash, token_hash):
        return None
    if session.kind not in BEARER_KINDS:
        return None
    static = session.kind == STATIC_TOKEN
    if not static and session.expires_ms <= env.now_ms():
        return None
    user: User | None = yield GetUser(session.user_id)
    if user is None:
        return None
    return Bearer(user, session.kind, token_hash, None if static else session.expires_ms)


# -- static tokens ------------------------------------------------------------------


class StaticToken(msgspec.Struct, frozen=True):
    """A static token as listed: its public ``id`` and its user. The token
    itself is never stored, so never listed."""

    id: str
    user_id: str


def static_token_id(token_hash: str) -> str:
    """The public id of the static token stored under ``token_hash``."""
    return token_hash[:16]


def issue_static_token(user_id: str, env: Environment) -> Action[tuple[StaticToken, str]]:
    """Make a static token for ``user_id``; ``(its listing, the token)`` - the
    token is shown to its holder once and never stored. The caller checks
    that the user exists and may have one."""
    token = env.new_token()
    token_hash = hash_token(token)
    yield InsertSession(Session(token_hash, user_id, NEVER_EXPIRES_MS, STATIC_TOKEN))
    return StaticToken(static_token_id(token_hash), user_id), token


def list_static_tokens(user_id: str) -> Action[list[StaticToken]]:
    """The static tokens of ``user_id``, ordered by id."""
    sessions: list[Session] = yield ListSessions(user_id, STATIC_TOKEN)
    return [StaticToken(static_token_id(session.token_hash), user_id) for session in sessions]


def revoke_static_token(user_id: str, token_id: str) -> Action[bool]:
    """Revoke the static token ``token_id`` of ``user_id``; ``False`` when
    that user has no such token."""
    sessions: list[Session] = yield ListSessions(user_id, STATIC_TOKEN)
    matching = [s for s in sessions if static_token_id(s.token_hash) == token_id]
    if len(matching) != 1:
        return False
    yield DeleteSession(matching[0].token_hash)
    return True
