"""Resource subscriptions (seed 004, after the MSquared realtime service).

A websocket at ``/realtime`` on which a client subscribes to resources -
``kvStore`` and ``liveConfig`` entries, record ``collection``s and inbox
``document``s - and receives each update as ``{userId, resource, data,
version}``; and a REST API that writes the entries. Browsers pass their
headers base58-encoded in ``Sec-WebSocket-Protocol``.

- ``base58``, ``headers``: the encoded headers of the upgrade.
- ``entries``: scopes, ids, versions and the rules of the two entry spaces,
  as actions on the store's entries (``operations.GetEntry`` ...).
- ``rest``: ``/realtime/kv``, ``/realtime/live-config``, ``/realtime/status``.
- ``frames``: every message of the websocket, both ways.
- ``websocket``: the upgrade, subscribe / unsubscribe, and how each change
  (``Change``, ``DocumentChange``, ``EntryChange``) reaches subscribers.
- ``versions``: ISO versions increasing per resource.
- ``history``: the bounded history of each resource's updates, from which
  a subscribe with ``since`` resumes (or is told ``history_lost``).
- ``mount``: ``ResourcesMount``, the line in the mount table.
"""

from .config import COLLECTION, DOCUMENT, KV_STORE, LIVE_CONFIG, RESOURCE_TYPES, ResourcesConfig
from .headers import InvalidHeaders, encode_headers, subprotocol_headers
from .mount import PROTOCOL, ResourcesMount

__all__ = [
    "PROTOCOL",
    "ResourcesMount",
    "ResourcesConfig",
    "KV_STORE",
    "LIVE_CONFIG",
    "COLLECTION",
    "DOCUMENT",
    "RESOURCE_TYPES",
    "InvalidHeaders",
    "encode_headers",
    "subprotocol_headers",
]
