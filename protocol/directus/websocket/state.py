"""What the switchboard keeps for one Directus websocket: ``Connection``.

A connection is in one **phase** (``connection.TRANSITIONS`` is the table of
what moves it from one to the next):

- ``UNDECIDED``: a tokenless upgrade without ``?protocol=``; its first
  frame decides - an ``auth`` message makes it core, anything else the
  extension;
- ``HANDSHAKE``: core, waiting for its first frame, which must be ``auth``
  (core's default ``handshake`` mode);
- ``CORE``: core, open - signed in, public, or signed in at the upgrade;
- ``EXTENSION`` / ``EXTENSION_V1``: the extension, latest or early format;
- ``CLOSED``: the server ended it (its ``CloseConnection`` is on its way)
  or it ended; nothing it sends is answered any more.

Who it is (``who``, an ``Accountability``; ``user_id``; ``expires_ms``,
when its token ends) and its subscriptions live here, with the times its
timer needs (``deadline_ms``).

The state is a plain mutable object owned by the switchboard. Actions change
it only in their last stretch, after their last ``yield``: a runner
publishes an action's events as soon as it returns, so each change and the
events that tell the hub about it happen together, even when a timer's
action runs between the messages of a connection.

What the renderer reads of a state - its phase, who it is, its
subscriptions - changes only through ``move``, ``sign_in`` and
``set_subscriptions``, and each of them advances ``generation()``: the
renderer's grouping of a collection's subscribers (``delivery``) holds while
it (and the registry's version) stays the same.
"""

from __future__ import annotations

from typing import Any

from ...permissions import Accountability
from .frames import CORE, EXTENSION, EXTENSION_V1
from .subscriptions import Subscription

__all__ = [
    "generation",
    "UNDECIDED",
    "HANDSHAKE",
    "CORE_OPEN",
    "EXTENSION_OPEN",
    "EXTENSION_V1_OPEN",
    "CLOSED",
    "PHASES",
    "HANDSHAKE_MODE",
    "PUBLIC_MODE",
    "TOKEN_MODE",
    "Connection",
]

UNDECIDED = "undecided"
HANDSHAKE = "handshake"
CORE_OPEN = "core"
EXTENSION_OPEN = "extension"
EXTENSION_V1_OPEN = "extension-v1"
CLOSED = "closed"
PHASES = (UNDECIDED, HANDSHAKE, CORE_OPEN, EXTENSION_OPEN, EXTENSION_V1_OPEN, CLOSED)

#: How a core connection authenticates (Directus's WEBSOCKETS_REST_AUTH):
#: ``handshake`` (an ``auth`` message first), ``public`` (the public role
#: until an ``auth``), ``token`` (signed in at the upgrade: core's
#: ``strict``, or any upgrade carrying ``?access_token=``).
HANDSHAKE_MODE = "handshake"
PUBLIC_MODE = "public"
TOKEN_MODE = "token"

#: Who a connection is before it signs in: nobody (the public role).
NOBODY = Accountability()

#: Advanced by every change of a state that the renderer reads (any
#: connection's: a cheap test that nothing changed, not which did).
_generation = 0


def generation() -> int:
    """A number that changes whenever any connection's phase, signed-in
    user or role, or subscriptions change."""
    return _generation


def _advance() -> None:
    global _generation
    _generation += 1


_FORMAT_OF_PHASE = {
    UNDECIDED: EXTENSION,
    HANDSHAKE: CORE,
    CORE_OPEN: CORE,
    EXTENSION_OPEN: EXTENSION,
    EXTENSION_V1_OPEN: EXTENSION_V1,
}


class Connection:
    """One open Directus websocket (see the module docstring)."""

    __slots__ = (
        "id", "phase", "public", "mode", "who", "user_id", "expires_ms", "auth_deadline_ms", "next_ping_ms",
        "pinged_ms", "last_message_ms", "subscriptions", "by_collection", "pending", "format", "user_fields",
    )

    def __init__(self, connection: str, phase: str, *, public: bool, mode: str = HANDSHAKE_MODE,
                 who: Accountability = NOBODY, expires_ms: int | None = None) -> None:
        #: the connection's id in the hub
        self.id = connection
        self.phase = phase
        #: the frame format it speaks (it keeps its last one once closed)
        self.format = _FORMAT_OF_PHASE.get(phase, EXTENSION)
        #: whether a tokenless connection has the public role (``websocket_public``)
        self.public = public
        #: core only: how it authenticates
        self.mode = mode
        self.who = who
        self.user_id: str | None = who.user
        #: when the token it signed in with expires (``None``: never, or nobody)
        self.expires_ms = expires_ms
        #: the account's fields, for a query's ``$CURRENT_USER.<field>``
        self.user_fields: dict[str, Any] | None = None
        #: by when an ``auth`` must arrive (``None``: none is awaited)
        self.auth_deadline_ms: int | None = None
        #: core heartbeat: the next ping, and when the last one was sent
        self.next_ping_ms: int | None = None
        self.pinged_ms: int | None = None
        #: when the client last sent a frame that counts for the heartbeat
        self.last_message_ms = 0
        self.subscriptions: list[Subscription] = []
        #: collection -> its subscriptions, for the renderer
        self.by_collection: dict[str, tuple[Subscription, ...]] = {}
        #: frames held back a few ms (``frames`` due at a time): see ``core.defer``
        self.pending: list[tuple[int, bytes]] = []

    def move(self, phase: str) -> None:
        """Enter ``phase`` (its frame format with it)."""
        _advance()
        self.phase = phase
        self.format = _FORMAT_OF_PHASE.get(phase, self.format)

    def set_subscriptions(self, subscriptions: list[Subscription]) -> None:
        """Replace the subscriptions (and their index by collection)."""
        _advance()
        self.subscriptions = subscriptions
        index: dict[str, list[Subscription]] = {}
        for sub in subscriptions:
            index.setdefault(sub.collection, []).append(sub)
        self.by_collection = {name: tuple(subs) for name, subs in index.items()}

    def sign_in(self, who: Accountability, expires_ms: int | None) -> None:
        """Make the connection ``who``'s (``Accountability()``: nobody's)."""
        _advance()
        self.who = who
        self.user_id = who.user
        self.expires_ms = expires_ms

    def deadline_ms(self) -> int | None:
        """The earliest time its timer is due, if any."""
        times = [t for t in (self.auth_deadline_ms, self.expires_ms, self.next_ping_ms) if t is not None]
        if self.pending:
            times.append(self.pending[0][0])
        return min(times) if times else None

    def __repr__(self) -> str:
        return f"Connection({self.id!r}, {self.phase}, who={self.who!r}, subscriptions={len(self.subscriptions)})"
