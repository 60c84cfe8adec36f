"""Asnity (seed 002): the REST API of a community chat and the meaning of
its socket events, as pure actions over Satchel's shared data model
(``/work/shared/protocols/asnity.md`` is the contract).

- ``AsnityMount`` (``mount``) claims ``/api`` and renders chat changes to
  the rooms of the Socket.IO namespaces (``rooms`` names them).
- ``rest.handle_request(request, env) -> Action[HttpOutcome]`` answers every
  route of sections 1-3, in NestJS's envelope and error bodies (``nest``,
  ``validation``), on the accounts Backpack shares (``accounts``).
- ``satchel.protocol.tokens`` (shared, re-exported as ``tokens``) holds the
  opaque Bearer access and refresh tokens any protocol
  may accept (``bearer_user``); ``accounts.authenticate`` is the socket
  layer's check.
- ``socket_events`` answers ``join``, ``chat`` and
  ``invite-users-to-channel`` for the Socket.IO layer, which only moves packets.

Where each thing is stored: ``model``. The access rules: ``store``.
"""

from .. import tokens
from . import accounts, model, nest, rest, rooms, socket_events, validation
from .accounts import AsnityUser, authenticate
from .mount import AsnityMount, render_change
from .rest import handle_request, is_asnity_path
from .rooms import (
    PROTOCOL,
    community_of_namespace,
    namespace_channel,
    namespace_of,
    room_channel,
)
from .socket_events import Admission, SocketOutcome, admit, handle_event
from ..tokens import bearer_user

__all__ = [
    "PROTOCOL",
    "Admission",
    "AsnityMount",
    "AsnityUser",
    "SocketOutcome",
    "accounts",
    "admit",
    "authenticate",
    "bearer_user",
    "community_of_namespace",
    "handle_event",
    "handle_request",
    "is_asnity_path",
    "model",
    "namespace_channel",
    "namespace_of",
    "nest",
    "render_change",
    "rest",
    "room_channel",
    "rooms",
    "socket_events",
    "tokens",
    "validation",
]
