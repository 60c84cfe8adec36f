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

An expired or revoked token is refused. The socket layer checks the token
at namespace connect and again before each write, so a socket outlives its
token by no more than one message (bug 4).
"""

from __future__ import annotations

import hashlib
import hmac

from .environment import Environment
from .http import HttpRequest
from .operations import (
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    Action,
    DeleteSession,
    DeleteSessions,
    GetSession,
    GetUser,
    InsertSession,
    Session,
    User,
)

__all__ = [
    "ACCESS_TOKEN",
    "ACCESS_TTL_MS",
    "REFRESH_TOKEN",
    "REFRESH_TTL_MS",
    "bearer_token",
    "bearer_user",
    "hash_token",
    "issue_token",
    "request_token",
    "revoke_token",
    "revoke_tokens",
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


def revoke_token(token: str) -> Action[None]:
    """Revoke one token, whatever its kind (a no-op when unknown)."""
    yield DeleteSession(hash_token(token))


def revoke_tokens(user_id: str, kind: str) -> Action[int]:
    """Revoke every token of ``kind`` of a user; how many there were."""
    count: int = yield DeleteSessions(user_id, kind)
    return count
