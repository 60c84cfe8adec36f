"""The protocols Satchel speaks: the one ordered table of mounts.

Every runner of the core - the reference server, the ASGI app, the
conformance kit's in-process target, the examples, the tests - builds its
``Switchboard`` from this table, so a protocol added here is reachable in
all of them. Order matters: a request goes to the first mount that claims
it, so specific paths come first and Backpack's catch-all comes last.
"""

from __future__ import annotations

from typing import Iterable

from .admin.mount import AdminMount
from .asnity.mount import AsnityMount
from .backpack.config import BackpackConfig
from .backpack.mount import BackpackMount
from .directus.config import DirectusConfig
from .directus.mount import DirectusMount
from .inbox.config import InboxConfig
from .inbox.mount import InboxMount
from .admin.landing import LandingMount
from .mounts import Mount, MountTable
from .resources.mount import ResourcesMount
from .socketio.engineio_session import EngineIoConfig

__all__ = ["standard_mounts"]


def standard_mounts(
    backpack: BackpackConfig,
    inbox: InboxConfig | None = None,
    *,
    engineio: EngineIoConfig | None = None,
    directus: DirectusConfig | None = None,
    first: Iterable[Mount] = (),
) -> MountTable:
    """Satchel's protocols, configured; ``engineio`` is the Engine.IO setting
    of the Socket.IO endpoint (heartbeat, payload limit), ``directus`` the
    Directus protocols' (token lifetimes, the websocket path); ``first`` are
    consulted before them (a server's static files, an embedding's own
    protocol)."""
    mounts = [
        *first,
        AdminMount(),  # /_/api: the administration API, before anything could shadow it
        InboxMount(inbox),  # /backend/documents, and the UDP datagrams
        AsnityMount(engineio),  # /api and /socket.io: Asnity's REST API and socket server
        ResourcesMount(),  # /realtime: resource subscriptions (seed 004) and the kv / live-config REST API
        DirectusMount(directus),  # /items, /auth, /users/me and /websocket: Directus REST and websockets
        BackpackMount(backpack),  # every other path and upgrade: the catch-all, last
    ]
    # GET / from a browser without an API key: a page listing the mounts above.
    mounts.insert(len(mounts) - 1, LandingMount(mounts))
    return MountTable(mounts)
