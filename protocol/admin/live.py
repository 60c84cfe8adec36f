"""The console's live view (issue 16 part 2): connections per protocol, and
every change as it is committed.

**Connections.** An action asks ``yield ConnectionCounts()``; the
``Switchboard`` answers it (as it answers ``CurrentRules``) with the open
connections of each mount, by mount name - websockets and Socket.IO
sessions alike, as the switchboard registered them. ``GET /_/api/stats``
answers it; the console polls it.

**The change stream.** A websocket at ``LIVE_PATH`` (``/_/api/live``)
owned by the admin mount. The token never travels in the URL: the first
message authenticates, as Directus's core protocol does::

    -> {"type": "auth", "access_token": "<an admin's Bearer token>"}
    <- {"type": "auth", "status": "ok", "user": "<id>"}
    <- {"type": "change", "kind": "create", "collection": "notes", "id": "...",
        "origin": "backpack-http", "user": "...", "record": {...}}
    <- {"type": "entry", "kind": "put", "space": "kvStore", "organization": "",
        "project": "", "id": "...", "version": 1700000000000, "origin": "...", "user": "..."}
    <- {"type": "document", "read_token": "...", "revision": 3, "origin": "inbox-udp"}
    -> {"type": "ping"}   <- {"type": "pong"}

A token that is not an admin's is answered ``{"type": "auth", "status":
"error", "code": "FORBIDDEN" | "INVALID_CREDENTIALS"}`` and the connection
is closed (4403 / 4401); any message before a successful auth likewise.
The stream is every write of the one data model - it is how the console
sees a change made through any protocol. A connection whose user stops
being an admin (``RoleChanged``) is sent nothing more.

**The session is checked again** while the stream is open, not only at its
first message: the connection's timer (``deadline_ms`` / ``on_timer``) is
due when its access token expires and at most ``RECHECK_MS`` after the last
check, and then looks the token up again. A token that expired, was
revoked (a sign-out - the console's revokes its access token too -, a
password reset, the account disabled) or whose user is no longer an admin
ends the stream with a last message and a close, so it never outlives the
session by more than ``RECHECK_MS``::

    <- {"type": "auth", "status": "error", "code": "TOKEN_EXPIRED"}         close 4401 "token expired"
    <- {"type": "auth", "status": "error", "code": "INVALID_CREDENTIALS"}   close 4401 "session revoked"
    <- {"type": "auth", "status": "error", "code": "FORBIDDEN"}             close 4403 "not an administrator"

(Disabling an account closes its connections at once, ``close_connections``;
the re-check is what bounds a sign-out or a demotion.) One store read per
open stream every ``RECHECK_MS``: the streams are the administrators' own. Records are shown
whole (the administrator may read everything); a record larger than
``MAX_RECORD_BYTES`` is sent as its id with ``"truncated": true``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..changes import Change, DocumentChange, EntryChange
from ..channels import Audience, Channel, CloseConnection, Deliver, IdentifyConnection, Subscribe
from ..environment import Environment
from ..mounts import Event, RenderContext
from ..operations import STATIC_TOKEN, Action, GetSession, GetUser, Operation, Session, User
from ..permissions import ADMIN
from ..tokens import authenticate

__all__ = ["LIVE_PATH", "ConnectionCounts", "UserConnections", "close_connections", "LiveState", "MAX_RECORD_BYTES",
           "RECHECK_MS", "accept", "deadline_ms", "handle_message", "on_timer", "render", "role_changed"]

#: Where the change stream's websocket is.
LIVE_PATH = "/_/api/live"
#: The largest record the stream sends whole.
MAX_RECORD_BYTES = 16 * 1024
#: The longest an open stream goes without its token being looked up again.
RECHECK_MS = 5_000
_LIVE = Channel("admin", "live")
_LIVE_AUDIENCE = Audience(channel=_LIVE)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class ConnectionCounts(Operation, frozen=True):
    """-> ``dict[str, int]``: the open connections of each mount, by its
    name. Answered by the switchboard."""


class UserConnections(Operation, frozen=True):
    """-> ``list[tuple[str, str]]``: (mount name, connection id) of every
    open connection of user ``user_id`` (what a disabled account's
    websockets are closed by). Answered by the switchboard."""

    user_id: str


def close_connections(user_id: str, reason: str) -> Action[list[Event]]:
    """The events that close every open connection of ``user_id`` (a
    disabled account, a password reset: signed out everywhere, websockets
    too), with the close code 4403 where the protocol has one."""
    found: list[tuple[str, str]] = yield UserConnections(user_id)
    return [CloseConnection(protocol, connection, 4403, reason) for protocol, connection in found]


class LiveState(msgspec.Struct):
    """One change-stream connection: its id, and the admin it belongs to
    once authenticated (``None`` before; also after a demotion); the hash
    of the token it authenticated with, when that token expires (``None``:
    a static token) and when it is next checked (``env.now_ms()`` time)."""

    connection: str
    user: str | None = None
    authenticated: bool = False
    token_hash: str | None = None
    expires_ms: int | None = None
    check_ms: int | None = None


def accept(connection: str) -> LiveState:
    """A new connection: nothing is sent until it authenticates."""
    return LiveState(connection)


def _send(protocol: str, state: LiveState, message: dict[str, Any]) -> Deliver:
    return Deliver(protocol, _encode(message), Audience(connection=state.connection))


def _refuse(protocol: str, state: LiveState, code: str, close: int) -> list[Event]:
    return [_send(protocol, state, {"type": "auth", "status": "error", "code": code}),
            CloseConnection(protocol, state.connection, close, code.lower())]


def handle_message(protocol: str, state: LiveState, message: str | bytes, env: Environment) -> Action[list[Event]]:
    """One message of a change-stream connection."""
    try:
        frame = _decode(message)
    except (msgspec.DecodeError, UnicodeDecodeError):
        frame = None
    kind = frame.get("type") if isinstance(frame, dict) else None
    if state.authenticated:
        if kind == "ping":
            return [_send(protocol, state, {"type": "pong"})]
        return [_send(protocol, state, {"type": "error", "message": "the stream takes only pings"})]
    if kind != "auth" or not isinstance(frame.get("access_token"), str):
        return _refuse(protocol, state, "INVALID_CREDENTIALS", 4401)
    bearer = yield from authenticate(frame["access_token"], env)
    if bearer is None:
        return _refuse(protocol, state, "INVALID_CREDENTIALS", 4401)
    if bearer.user.role != ADMIN:
        return _refuse(protocol, state, "FORBIDDEN", 4403)
    state.user = bearer.user.id
    state.authenticated = True
    state.token_hash = bearer.token_hash
    state.expires_ms = bearer.expires_ms
    state.check_ms = env.now_ms() + RECHECK_MS
    return [IdentifyConnection(protocol, state.connection, bearer.user.id),
            Subscribe(protocol, state.connection, _LIVE),
            _send(protocol, state, {"type": "auth", "status": "ok", "user": bearer.user.id})]


def role_changed(state: LiveState, role: str) -> LiveState:
    """A demoted admin's stream is sent nothing more (``render`` skips it);
    its next check closes it."""
    if role != ADMIN:
        state.authenticated = False
        state.user = None
    return state


def deadline_ms(state: LiveState) -> int | None:
    """When the stream's session is next checked: at the next ``RECHECK_MS``
    or when its token expires, whichever is first (no timer before auth)."""
    if state.check_ms is None:
        return None
    if state.expires_ms is not None and state.expires_ms < state.check_ms:
        return state.expires_ms
    return state.check_ms


def _ended(session: Session | None, user: User | None, now_ms: int) -> tuple[str, int, str] | None:
    """Why a stream's session no longer holds - ``(code, close code, reason)`` - or ``None``."""
    if session is None:
        return "INVALID_CREDENTIALS", 4401, "session revoked"
    if session.kind != STATIC_TOKEN and session.expires_ms <= now_ms:
        return "TOKEN_EXPIRED", 4401, "token expired"
    if user is None or user.role != ADMIN:
        return "FORBIDDEN", 4403, "not an administrator"
    return None


def on_timer(protocol: str, state: LiveState, env: Environment) -> Action[list[Event]]:
    """Look the stream's token up again; close the stream if its session
    ended (expired, revoked, its user no longer an admin)."""
    if state.token_hash is None:
        return []
    session: Session | None = yield GetSession(state.token_hash)
    user: User | None = None
    if session is not None and session.token_hash == state.token_hash:
        user = yield GetUser(session.user_id)
    else:
        session = None
    now = env.now_ms()
    ended = _ended(session, user, now)
    if ended is None:
        state.check_ms = now + RECHECK_MS
        return []
    code, close, reason = ended
    state.authenticated = False
    state.user = None
    state.token_hash = state.check_ms = None
    return [_send(protocol, state, {"type": "auth", "status": "error", "code": code}),
            CloseConnection(protocol, state.connection, close, reason)]


def _record(record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    if len(_encode(record)) > MAX_RECORD_BYTES:
        return {"_id": record.get("_id")}, True
    return record, False


def _message(change: Change | DocumentChange | EntryChange) -> dict[str, Any]:
    if isinstance(change, Change):
        record, truncated = _record(change.record)
        message = {"type": "change", "kind": change.kind, "collection": change.collection,
                   "id": change.record.get("_id"), "origin": change.origin, "user": change.user_id, "record": record}
        if truncated:
            message["truncated"] = True
        return message
    if isinstance(change, EntryChange):
        return {"type": "entry", "kind": change.kind, "space": change.space, "organization": change.organization,
                "project": change.project, "id": change.id, "version": change.version, "origin": change.origin,
                "user": change.user_id}
    return {"type": "document", "read_token": change.read_token, "revision": change.revision,
            "origin": change.origin}


def render(protocol: str, change: Change | DocumentChange | EntryChange, context: RenderContext) -> list[Deliver]:
    """The delivery of ``change`` to every authenticated change-stream
    connection (none, without a cost beyond one lookup, when nobody watches)."""
    watching = context.recipients(_LIVE_AUDIENCE)
    if not watching:
        return []
    admins = tuple(connection for connection, state in watching if state.authenticated)
    if not admins:
        return []
    return [Deliver(protocol, _encode(_message(change)), Audience(connections=admins))]
