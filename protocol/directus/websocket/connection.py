"""One Directus websocket from upgrade to close: which protocol, and every transition.

Theory of operation. Both protocols listen on ``/websocket`` (their
defaults). ``accept`` decides what it can from the upgrade, and the first
frame decides the rest:

- ``?protocol=directus-core``: core. With a token (``Authorization:
  Bearer``, ``?access_token=``) it is signed in at the upgrade (core's
  ``strict``); without, it is public if ``websocket_public``, else in
  handshake mode (``auth`` first).
- ``?protocol=directus-extension`` / ``?protocol=directus-extension-v1``:
  the extension, latest / early format. Any other ``?protocol=``: 400.
- ``?api_token=`` (without a Bearer or ``?access_token=``): the extension,
  v1 - only v1 clients sent it.
- ``Authorization: Bearer`` or ``?access_token=``: the extension, latest
  format (its test page sends ``?access_token=``).
- no token, no ``protocol``: undecided until the first frame. Exactly
  ``{"type":"auth",...}`` (that lower-case type) makes it core in
  handshake mode - what ``@directus/sdk`` sends; anything else (``GET``,
  ``subscribe``...) makes it the extension.

A token that is not valid is refused with 401 (``INVALID_CREDENTIALS``),
whatever the protocol; so is a tokenless extension upgrade (an explicit
``?protocol=directus-extension``) when ``websocket_public`` is off, as the
original refused it. An undecided connection cannot be refused at the
upgrade (it may be the SDK, whose token comes in its first frame): when
``websocket_public`` is off, a first frame that is not ``auth`` is answered
with an extension ``ERROR`` and the connection is closed (1008), and
silence ends it after ``auth_timeout_ms`` (``AUTH_TIMEOUT``, as core says).
Core's public mode (the SDK's ``authMode: "public"``, which sends no
``auth``) needs the switch: ``realtime({url: "ws://host/websocket?protocol=
directus-core", authMode: "public"})``; its ``strict`` mode likewise, with
the ``?access_token=`` it appends.

``TRANSITIONS`` is every (phase, input) the machine accepts, the handler it
runs and the phases it may end in; anything missing is ignored (a frame of
a closed connection, a timer that has nothing to do). Inputs are ``auth`` (a
core auth message), ``message`` (any other frame), and the timer's
``auth-timeout``, ``token-expired``, ``heartbeat`` and ``release`` (a frame
held back, ``core.defer``).

Timers (``deadline_ms`` / ``on_timer``): the auth deadline (handshake,
undecided, and after a core token expired), the token's expiry, the core
heartbeat - ``{"type":"ping"}`` every ``heartbeat_ms``, the first one a
whole period after auth-ok (never right after it: the SDK would lose the
frame after auth-ok), and a connection that sent nothing (``auth`` aside)
for the period after a ping is closed - and held-back frames (which also
go out before the answer to the connection's next message, so that a
runner that drives no timers still sends them).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl

import msgspec

from ...channels import CloseConnection
from ...environment import Environment
from ...errors import RemoteProtocolError
from ...http import HttpRequest, HttpResponse
from ...mounts import Accepted
from ...operations import Action
from ...tokens import authenticate, presented_token, request_token
from ..config import DirectusConfig
from ..errors import INVALID_CREDENTIALS, error_response
from . import core, extension
from .core import PROTOCOL, SignedIn, reply
from .frames import core_error, core_frame, extension_error
from .frames import internal_error as internal_error_frame
from .frames import unavailable as unavailable_frame
from .state import (
    CLOSED,
    CORE_OPEN,
    EXTENSION_OPEN,
    EXTENSION_V1_OPEN,
    HANDSHAKE,
    HANDSHAKE_MODE,
    PUBLIC_MODE,
    TOKEN_MODE,
    UNDECIDED,
    Connection,
)

__all__ = [
    "PROTOCOL_SWITCH",
    "PROTOCOL_CORE",
    "PROTOCOL_EXTENSION",
    "PROTOCOL_EXTENSION_V1",
    "TRANSITIONS",
    "accept",
    "handle_message",
    "closed",
    "deadline_ms",
    "on_timer",
    "internal_error",
    "unavailable",
]

#: The upgrade's query parameter that names the protocol, and its values.
PROTOCOL_SWITCH = "protocol"
PROTOCOL_CORE = "directus-core"
PROTOCOL_EXTENSION = "directus-extension"
PROTOCOL_EXTENSION_V1 = "directus-extension-v1"
_PROTOCOLS = (PROTOCOL_CORE, PROTOCOL_EXTENSION, PROTOCOL_EXTENSION_V1)

_decode = msgspec.json.Decoder().decode
_AUTH_CLOSE = 1008  # policy violation: the peer did not authenticate


def _params(query: str) -> dict[str, str]:
    # The first of each name wins, as in tokens.presented_token.
    return dict(reversed(parse_qsl(query, keep_blank_values=True))) if query else {}


def _refuse(message: str, status: int = 401) -> HttpResponse:
    return error_response(status, message, INVALID_CREDENTIALS if status == 401 else None)


def accept(request: HttpRequest, connection: str, config: DirectusConfig, env: Environment) -> Action[Accepted | HttpResponse]:
    """Decide an upgrade of ``/websocket`` (the table in the module docstring)."""
    params = _params(request.query)
    switch = params.get(PROTOCOL_SWITCH)
    if switch is not None and switch not in _PROTOCOLS:
        return _refuse(f'"?protocol=" is one of {", ".join(_PROTOCOLS)}', 400)
    signed: SignedIn | None = None
    if presented_token(request) is not None:
        bearer = yield from authenticate(request, env)
        if bearer is None:
            return _refuse("Invalid user credentials.")
        user = bearer.user
        signed = SignedIn(bearer.accountability, bearer.expires_ms, None,
                          {"id": user.id, "email": user.email, "role": user.role})
    now = env.now_ms()
    public = config.websocket_public
    if switch is None and signed is None:
        state = Connection(connection, UNDECIDED, public=public)
        if not public:
            state.auth_deadline_ms = now + config.auth_timeout_ms
        return Accepted(state, None)
    if switch == PROTOCOL_CORE:
        mode = TOKEN_MODE if signed is not None else PUBLIC_MODE if public else HANDSHAKE_MODE
        state = Connection(connection, HANDSHAKE if mode == HANDSHAKE_MODE else CORE_OPEN, public=public, mode=mode)
        if mode == HANDSHAKE_MODE:
            state.auth_deadline_ms = now + config.auth_timeout_ms
        else:
            _open_core(state, config, now)
    else:
        v1 = switch == PROTOCOL_EXTENSION_V1 or (
            switch is None and request_token(request) is None and "access_token" not in params and "api_token" in params
        )
        if signed is None and not public:
            return _refuse("A token is required: Authorization: Bearer <token> or ?access_token=<token>")
        state = Connection(connection, EXTENSION_V1_OPEN if v1 else EXTENSION_OPEN, public=public)
    if signed is not None:
        core.signed_in_events(state, signed, config, now)
    return Accepted(state, state.user_id)


def _open_core(state: Connection, config: DirectusConfig, now: int) -> None:
    state.move(CORE_OPEN)
    state.auth_deadline_ms = None
    state.last_message_ms = now
    state.pinged_ms = None
    state.next_ping_ms = now + config.heartbeat_ms if config.heartbeat_ms > 0 else None


def _close(state: Connection, reason: str, code: int = _AUTH_CLOSE) -> CloseConnection:
    state.move(CLOSED)
    state.auth_deadline_ms = state.next_ping_ms = state.expires_ms = None
    state.pending = []
    return CloseConnection(PROTOCOL, state.id, code, reason)


# -- the handlers of TRANSITIONS ------------------------------------------------------
# Each takes (state, the decoded frame or None for a timer, config, env, now)
# and returns an action; each changes the state only after its last yield.


def _handshake(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """The first frame of a handshake-mode (or undecided) core connection: an ``auth``."""
    uid = core.echoed_uid(message)
    try:
        signed = yield from core.sign_in(message, config, env)
    except RemoteProtocolError:
        if state.public:
            # Core's public mode: the failure is told, the connection stays, as public.
            state.mode = PUBLIC_MODE
            _open_core(state, config, now)
            return [*core.fall_back_to_public(state),
                    core.auth_error(state, "AUTH_FAILED", "Authentication failed.", uid)]
        return [core.auth_error(state, "AUTH_FAILED", "Authentication handshake failed."),
                _close(state, "Authentication handshake failed.")]
    if state.phase == CLOSED:
        return []
    state.mode = HANDSHAKE_MODE if not state.public else PUBLIC_MODE
    _open_core(state, config, now)
    events = core.signed_in_events(state, signed, config, now)
    return [*events, core.auth_ok(state, signed, uid)]


def _handshake_failed(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """Anything but ``auth`` first, in handshake mode."""
    return [core.auth_error(state, "AUTH_FAILED", "Authentication handshake failed."),
            _close(state, "Authentication handshake failed.")]
    yield  # an action


def _decide_extension(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """The first frame of an undecided connection is not ``auth``: the extension."""
    if not state.public:
        uid = message.get("uid") if isinstance(message, dict) and extension.truthy(message.get("uid")) else None
        text = ("Unauthorized: send a token with the upgrade (Authorization: Bearer <token> or ?access_token=<token>)"
                ' or {"type":"auth","access_token":"<token>"} as the first message')
        return [reply(state, extension_error(text, uid, code=INVALID_CREDENTIALS, status=401)),
                _close(state, "Unauthorized")]
    state.move(EXTENSION_OPEN)
    state.auth_deadline_ms = None
    return (yield from extension.handle(state, message, config, env))


def _reauth(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """An ``auth`` on an open core connection: sign in again (another role,
    a fresh token after ``TOKEN_EXPIRED``)."""
    uid = core.echoed_uid(message)
    try:
        signed = yield from core.sign_in(message, config, env)
    except RemoteProtocolError:
        if state.phase == CLOSED:
            return []
        events = [*core.fall_back_to_public(state), core.auth_error(state, "AUTH_FAILED", "Authentication failed.", uid)]
        if core.is_public_mode(state):
            return events
        return [*events, _close(state, "Authentication failed.")]
    if state.phase == CLOSED:
        return []
    events = core.signed_in_events(state, signed, config, now)
    return [*events, core.auth_ok(state, signed, uid)]


def _core_message(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    state.last_message_ms = now  # any frame but auth answers the heartbeat
    return (yield from core.handle(state, message, config, env))


def _extension_message(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    return (yield from extension.handle(state, message, config, env))


def _auth_timeout(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """No ``auth`` in time (after the upgrade, or after ``TOKEN_EXPIRED``)."""
    events = [core.auth_error(state, "AUTH_TIMEOUT", "Authentication timed out.")]
    state.auth_deadline_ms = None
    if state.phase == CORE_OPEN and core.is_public_mode(state):
        return events
    return [*events, _close(state, "Authentication timed out.")]
    yield  # an action


def _core_token_expired(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """The core connection's token ended: it is public until it signs in again."""
    events = [*core.fall_back_to_public(state), core.auth_error(state, "TOKEN_EXPIRED", "Token expired.")]
    state.auth_deadline_ms = now + config.auth_timeout_ms
    return events
    yield  # an action


def _extension_token_expired(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """An extension connection's token ended (its permissions were fixed at
    the upgrade): told, and closed - it reconnects with a fresh token."""
    frame = extension_error("Token expired.", v1=state.phase == EXTENSION_V1_OPEN, code="TOKEN_EXPIRED", status=401)
    return [reply(state, frame), _close(state, "Token expired.")]
    yield  # an action


def _heartbeat(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """Ping; or close a connection that sent nothing since the last ping."""
    if state.pinged_ms is not None and state.last_message_ms < state.pinged_ms:
        return [_close(state, "Heartbeat timed out", 1000)]
    state.pinged_ms = now
    state.next_ping_ms = now + config.heartbeat_ms
    return [reply(state, core_frame("ping", {}))]
    yield  # an action


def _release(state: Connection, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    """Send the first held-back frame; the next one waits its own gap from
    now, even if a late timer made it due already (never two together)."""
    if not state.pending:
        return []  # sent already, before the answer to a later message
    _, frame = state.pending.pop(0)
    if state.pending:
        due, following = state.pending[0]
        state.pending[0] = (max(due, now + config.reply_gap_ms), following)
    return [reply(state, frame)]
    yield  # an action


_Handler = Callable[[Connection, Any, DirectusConfig, Environment, int], Iterator[Any]]
_ALL = frozenset((UNDECIDED, HANDSHAKE, CORE_OPEN, EXTENSION_OPEN, EXTENSION_V1_OPEN, CLOSED))

#: (phase, input) -> (handler, the phases it may leave the connection in).
TRANSITIONS: dict[tuple[str, str], tuple[_Handler, frozenset[str]]] = {
    (UNDECIDED, "auth"): (_handshake, frozenset((CORE_OPEN, CLOSED))),
    (UNDECIDED, "message"): (_decide_extension, frozenset((EXTENSION_OPEN, CLOSED))),
    (UNDECIDED, "auth-timeout"): (_auth_timeout, frozenset((CLOSED,))),
    (HANDSHAKE, "auth"): (_handshake, frozenset((CORE_OPEN, CLOSED))),
    (HANDSHAKE, "message"): (_handshake_failed, frozenset((CLOSED,))),
    (HANDSHAKE, "auth-timeout"): (_auth_timeout, frozenset((CLOSED,))),
    (CORE_OPEN, "auth"): (_reauth, frozenset((CORE_OPEN, CLOSED))),
    (CORE_OPEN, "message"): (_core_message, frozenset((CORE_OPEN,))),
    (CORE_OPEN, "auth-timeout"): (_auth_timeout, frozenset((CORE_OPEN, CLOSED))),
    (CORE_OPEN, "token-expired"): (_core_token_expired, frozenset((CORE_OPEN,))),
    (CORE_OPEN, "heartbeat"): (_heartbeat, frozenset((CORE_OPEN, CLOSED))),
    (CORE_OPEN, "release"): (_release, frozenset((CORE_OPEN,))),
    (EXTENSION_OPEN, "message"): (_extension_message, frozenset((EXTENSION_OPEN,))),
    (EXTENSION_OPEN, "token-expired"): (_extension_token_expired, frozenset((CLOSED,))),
    (EXTENSION_V1_OPEN, "message"): (_extension_message, frozenset((EXTENSION_V1_OPEN,))),
    (EXTENSION_V1_OPEN, "token-expired"): (_extension_token_expired, frozenset((CLOSED,))),
}


def _run(state: Connection, event: str, message: Any, config: DirectusConfig, env: Environment, now: int) -> Action[list[Any]]:
    entry = TRANSITIONS.get((state.phase, event))
    if entry is None:
        return []
    handler, allowed = entry
    before = state.phase
    events = yield from handler(state, message, config, env, now)
    # A timer may close the connection while a message's action waits on the store.
    if state.phase not in allowed and state.phase != CLOSED:
        raise AssertionError(f"{handler.__name__} left a {before} connection {state.phase}")  # a bug: see TRANSITIONS
    return events


# -- the seam (called by mount.DirectusMount) --------------------------------------------


def _decoded(message: str | bytes) -> Any:
    try:
        return _decode(message)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return ...


def handle_message(state: Connection, message: str | bytes, config: DirectusConfig, env: Environment) -> Action[list[Any]]:
    """The action answering one frame of a Directus connection."""
    if state.phase == CLOSED:
        return []
    now = env.now_ms()
    if len(message) > config.max_message_bytes:
        text = f"Invalid payload. A message may be at most {config.max_message_bytes} bytes."
        if state.phase == CORE_OPEN:
            state.last_message_ms = now
            return [reply(state, core_error("server", "INVALID_PAYLOAD", text))]
        if state.phase in (EXTENSION_OPEN, EXTENSION_V1_OPEN):
            return [reply(state, extension_error(text, v1=state.phase == EXTENSION_V1_OPEN))]
        value: Any = ...  # a first frame: not an auth, whatever it holds
    else:
        value = _decoded(message)
    is_auth = isinstance(value, dict) and value.get("type") == "auth" and state.phase in (UNDECIDED, HANDSHAKE, CORE_OPEN)
    # Frames still held back go out before this message's answer, in order,
    # whether or not the runner drives the connection's timer.
    held, state.pending = state.pending, []
    events = yield from _run(state, "auth" if is_auth else "message", value, config, env, now)
    return [*(reply(state, frame) for _, frame in held), *events] if held else events


def closed(state: Connection) -> list[Any]:
    """The connection ended (the registry forgets its subscriptions)."""
    state.move(CLOSED)
    state.auth_deadline_ms = state.next_ping_ms = state.expires_ms = None
    state.pending = []
    return []


def deadline_ms(state: Connection, config: DirectusConfig) -> int | None:
    """When the connection's timer is next due."""
    return None if state.phase == CLOSED else state.deadline_ms()


def on_timer(state: Connection, config: DirectusConfig, env: Environment) -> Action[list[Any]]:
    """Whatever is due: auth deadline, token expiry, heartbeat, held frames."""
    now = env.now_ms()
    events: list[Any] = []
    for due, event in (
        (state.auth_deadline_ms, "auth-timeout"),
        (state.expires_ms, "token-expired"),
        (state.next_ping_ms, "heartbeat"),
        (state.pending[0][0] if state.pending else None, "release"),
    ):
        if state.phase == CLOSED:
            break
        if due is not None and due <= now:
            if event == "token-expired":
                state.expires_ms = None
            events += yield from _run(state, event, None, config, env, now)
    return events


def internal_error(state: Connection) -> bytes:
    """What a connection is told when its message crashed an action."""
    return internal_error_frame(state.format)


def unavailable(state: Connection, message: str | bytes) -> bytes:
    """What a connection is told when the store could not answer ``message``:
    Directus's SERVICE_UNAVAILABLE, answering the message's ``type`` and
    ``uid`` when it has them (the SDK matches an answer to its request by uid)."""
    return unavailable_frame(state.format, message)
