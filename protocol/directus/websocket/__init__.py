"""The Directus websockets at ``/websocket``: the extension and core realtime, on one path.

Two protocols (``../shared/protocols/directus.md``) answer on the one path
both default to:

- **the ``directus-websocket-subscribe`` extension** (seed 003; section 1):
  ``GET``/``POST``/``PATCH``/``DELETE``/``SUBSCRIBE``/``UNSUBSCRIBE`` in
  any case, ``RESPONSE``/``ERROR``/``SUBSCRIPTION`` frames - its latest
  format, and its early (v1) clients in theirs (``extension``);
- **Directus core's realtime websocket** (section 2), which
  ``@directus/sdk`` v26 ``realtime()`` speaks with its default URL, in
  handshake mode with a static token or after ``login()`` (``core``).

Which one a connection speaks is decided per connection, by its upgrade
(a token, ``?api_token=``, ``?protocol=``) and its first frame (an
``{"type":"auth"}`` is core): the table in ``connection``'s docstring.

Every read, write and delivery obeys the one rule set
(``satchel.protocol.permissions``); items are Backpack's records through
``satchel.protocol.directus.items`` (``_id`` shown as ``id``), so a record
created over Backpack REST reaches a Directus subscriber and the reverse.
Each change is re-read with each subscriber's rules and query and encoded
once per distinct frame (``delivery``).

Modules: ``connection`` (upgrade, the transition table, timers), ``core``
and ``extension`` (the two protocols' messages), ``subscriptions``,
``delivery`` (the renderer), ``frames`` (every frame's encoding), ``state``
(what the switchboard keeps per connection). ``satchel.protocol.directus.
mount.DirectusMount`` calls the functions below.
"""

from __future__ import annotations

from typing import Sequence

from ...changes import Change
from ...channels import Deliver
from ...mounts import RenderContext
from ..config import DirectusConfig
from . import delivery
from .connection import (
    PROTOCOL_CORE,
    PROTOCOL_EXTENSION,
    PROTOCOL_EXTENSION_V1,
    PROTOCOL_SWITCH,
    TRANSITIONS,
    accept,
    closed,
    deadline_ms,
    handle_message,
    internal_error,
    on_timer,
    unavailable,
)
from .core import ORIGIN_WEBSOCKET, PROTOCOL
from .state import Connection
from .subscriptions import COLLECTION_CHANNEL, Subscription

__all__ = [
    "PROTOCOL",
    "ORIGIN_WEBSOCKET",
    "PROTOCOL_SWITCH",
    "PROTOCOL_CORE",
    "PROTOCOL_EXTENSION",
    "PROTOCOL_EXTENSION_V1",
    "COLLECTION_CHANNEL",
    "TRANSITIONS",
    "Connection",
    "Subscription",
    "accept",
    "handle_message",
    "closed",
    "deadline_ms",
    "on_timer",
    "internal_error",
    "unavailable",
    "render",
]


def render(change: Change, context: RenderContext, config: DirectusConfig) -> Sequence[Deliver]:
    """The deliveries ``change`` makes to the Directus subscribers of its
    collection, re-read with each one's rules and query (``delivery``)."""
    return delivery.render(change, context, PROTOCOL)
