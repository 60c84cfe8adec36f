"""Directus (seed 003): the items REST API, sign-in, and the websocket
protocols at ``/websocket``, all on Backpack's records and under the one
rule set (``satchel.protocol.permissions``).

- ``DirectusMount`` (``mount``) wires them to the seam; ``DirectusConfig``
  (``config``) is what an operator chooses.
- ``rest``: the REST routes ``@directus/sdk``'s ``rest()`` and
  ``authentication('json')`` use (``/auth/*``, ``/users/me``, ``/items/*``).
- ``auth``: ``login`` / ``refresh`` / ``logout`` on Satchel's shared users,
  for REST and for the core websocket's ``auth`` message alike; a Bearer is
  resolved by ``satchel.protocol.tokens.authenticate``.
- ``items``: Directus's ItemsService on Backpack's records, with the id
  mapping (``_id`` is shown as ``id``) - every read and write checked by the
  rules.
- ``errors``: Directus's error codes and the ``{"errors": [...]}`` shape.
- ``websocket``: the extension's formats and the core realtime protocol.
"""

from .auth import Tokens, login, logout, refresh
from .config import DirectusConfig
from .errors import DirectusError
from .items import ORIGIN_REST
from .mount import PROTOCOL, DirectusMount

__all__ = [
    "DirectusMount",
    "DirectusConfig",
    "PROTOCOL",
    "ORIGIN_REST",
    "DirectusError",
    "Tokens",
    "login",
    "refresh",
    "logout",
]
