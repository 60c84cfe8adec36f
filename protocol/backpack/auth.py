"""Backpack accounts: the API key, sessions, register, login and logout.

Wire facts (BRIEF section 1): every HTTP request carries ``Authorization:
key <KEY>`` - the word before the key is ignored - and a wrong or missing key
answers 401 ``{"message":"Check your auth tokens"}``. A login sets a session
cookie; the browser SDK sends it with ``credentials: 'include'`` and the
websocket upgrade carries it too.

Security decisions: passwords are hashed with argon2id by the runner
(``HashPassword``/``VerifyPassword``); session tokens are random, only their
SHA-256 is stored, and both the API key and session hashes are compared in
constant time. A login for an unknown email still verifies a password (the
runner uses a dummy hash) so the two failures take the same time.

Accounts are shared with the other protocols (one ``User`` per email: an
email registered through Asnity's signup is taken here too, and logs in
here). Their Bearer tokens live in the same session table under other kinds
(``operations.Session.kind``); a cookie is only accepted when its session is
of kind ``SESSION``, so no access or refresh token doubles as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from ..environment import Environment
from ..http import HttpRequest
from ..operations import (
    Action,
    DeleteSession,
    GetSession,
    GetUserByEmail,
    HashPassword,
    InsertSession,
    InsertUser,
    SESSION,
    Session,
    User,
    VerifyPassword,
)
from ..records import format_timestamp
from .config import BackpackConfig

__all__ = [
    "AuthFailure",
    "api_key_matches",
    "session_token",
    "hash_token",
    "current_user",
    "register",
    "login",
    "logout",
    "session_cookie",
    "expired_cookie",
]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")


class AuthFailure(Exception):
    """An account action refused; ``status`` and ``message`` go on the wire."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def api_key_matches(request: HttpRequest, config: BackpackConfig) -> bool:
    """Whether the request's ``Authorization`` header carries the API key.

    The header is ``<word> <KEY>``; the word is ignored, as in the original.
    Comparing digests keeps the comparison constant-time whatever the length;
    the configured key's digest is computed once (``BackpackConfig.api_key_digest``),
    the presented key's on every request.
    """
    header = request.header("authorization")
    if not header:
        return False
    words = header.split()
    presented = words[-1] if words else ""
    return hmac.compare_digest(_digest(presented), config.api_key_digest)


def session_token(request: HttpRequest, config: BackpackConfig) -> str | None:
    """The session token from the request's cookie header, if any.

    ``Cookie: a=1; _redis=TOKEN; b=2`` (RFC 6265 section 5.4: pairs joined by
    ``"; "``). Read with plain string operations, not ``http.cookies`` -
    ``SimpleCookie`` cost ~6-7 us a request, a fifth of a get-by-id in the
    core - and, as ``SimpleCookie`` did, the last pair of the name within a
    header counts, a value in double quotes is taken without them, and the
    first ``Cookie`` header that names the cookie wins. Whatever is found is
    only ever hashed and looked up, so a lenient reading admits nothing.
    """
    wanted = config.cookie_name
    for name, value in request.headers:
        if name != "cookie" or wanted not in value:
            continue
        found: str | None = None
        for pair in value.split(";"):
            key, equals, token = pair.partition("=")
            if equals and key.strip() == wanted:
                token = token.strip()
                if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
                    token = token[1:-1]
                found = token
        if found:
            return found
    return None


def hash_token(token: str) -> str:
    """The form a session token is stored in: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def current_user(request: HttpRequest, config: BackpackConfig, env: Environment) -> Action[str | None]:
    """The id of the logged-in user making ``request``, or ``None``."""
    token = session_token(request, config)
    if token is None:
        return None
    token_hash = hash_token(token)
    session: Session | None = yield GetSession(token_hash)
    if session is None or not hmac.compare_digest(session.token_hash, token_hash):
        return None
    if session.kind != SESSION:
        return None  # a Bearer token of another protocol is not a login cookie
    if session.expires_ms <= env.now_ms():
        return None
    return session.user_id


def _credentials(body: Any, config: BackpackConfig) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise AuthFailure(422, "Send a JSON object with email and password")
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise AuthFailure(422, "Email and password must be strings")
    if len(password) > config.max_password_length:
        raise AuthFailure(422, f"Password must be at most {config.max_password_length} characters")
    return email.strip().lower(), password


def register(body: Any, config: BackpackConfig, env: Environment) -> Action[str]:
    """Create an account; returns the new user's id. Does not log in."""
    email, password = _credentials(body, config)
    if len(email) > 254 or not _EMAIL.match(email):
        raise AuthFailure(422, "Invalid email address")
    if len(password) < config.min_password_length:
        raise AuthFailure(422, f"Password must be at least {config.min_password_length} characters")
    if (yield GetUserByEmail(email)) is not None:
        raise AuthFailure(422, "A user with that email already exists")
    password_hash: str = yield HashPassword(password)
    user = User(env.new_id(), email, password_hash, format_timestamp(env.now_ms()))
    if not (yield InsertUser(user)):
        # Two registrations of one email raced; the store's uniqueness decided.
        raise AuthFailure(422, "A user with that email already exists")
    return user.id


def login(body: Any, config: BackpackConfig, env: Environment) -> Action[tuple[str, str]]:
    """Check credentials and open a session; returns ``(user_id, cookie token)``."""
    email, password = _credentials(body, config)
    user: User | None = yield GetUserByEmail(email)
    # An empty hash makes the runner verify against a dummy, costing the same time.
    if not (yield VerifyPassword(user.password_hash if user else "", password)) or user is None:
        raise AuthFailure(401, "Invalid email or password")
    token = env.new_token()
    yield InsertSession(Session(hash_token(token), user.id, env.now_ms() + config.session_ttl_ms))
    return user.id, token


def logout(request: HttpRequest, config: BackpackConfig) -> Action[None]:
    """End the request's session, if it has one."""
    token = session_token(request, config)
    if token is not None:
        yield DeleteSession(hash_token(token))


def session_cookie(token: str, config: BackpackConfig) -> str:
    """The ``Set-Cookie`` value that stores a session token in the browser.

    ``SameSite=Lax`` still reaches an API on another port of the same host
    (same site), and keeps other sites from riding the session.
    """
    attributes = f"; Path=/; HttpOnly; SameSite=Lax; Max-Age={config.session_ttl_ms // 1000}"
    return f"{config.cookie_name}={token}{attributes}{'; Secure' if config.secure_cookies else ''}"


def expired_cookie(config: BackpackConfig) -> str:
    """The ``Set-Cookie`` value that removes the session cookie."""
    return f"{config.cookie_name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
