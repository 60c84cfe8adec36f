"""The resource subscriptions' settings and limits (seed 004)."""

from __future__ import annotations

import msgspec

__all__ = ["ResourcesConfig", "KV_STORE", "LIVE_CONFIG", "COLLECTION", "DOCUMENT", "RESOURCE_TYPES", "ENTRY_SPACES"]

#: The resource types of seed 004, and ``document`` (an inbox document by
#: its read token). ``KV_STORE`` and ``LIVE_CONFIG`` are also the names the
#: permission rules know the two entry spaces by, as if they were
#: collections (``satchel.protocol.collections`` reserves both names, so no
#: record collection can take them).
KV_STORE = "kvStore"
LIVE_CONFIG = "liveConfig"
COLLECTION = "collection"
DOCUMENT = "document"
RESOURCE_TYPES = (KV_STORE, COLLECTION, LIVE_CONFIG, DOCUMENT)
#: The resource types whose values are entries of the store.
ENTRY_SPACES = (KV_STORE, LIVE_CONFIG)


class ResourcesConfig(msgspec.Struct, frozen=True):
    """Limits of the resource protocol, each with its error:

    - ``max_value_bytes``: the largest entry value (JSON bytes; REST 413).
    - ``max_id_chars``: the longest entry id (400 / an invalid-message error).
    - ``max_scope_chars``: the longest ``x-m2-organization`` / ``x-m2-project``.
    - ``max_subscriptions``: subscriptions per connection (beyond: the error
      ``{"error":"Too many subscriptions"}``, the subscription not made).
    - ``max_message_bytes``: the largest websocket message read (beyond:
      ``{"error":"Invalid message format"}``).
    - ``max_record_bytes``: the largest record a collection update carries;
      a larger one is sent as its key with ``"truncated": true``.
    - ``list_limit`` / ``max_list_limit``: entries per ``GET /realtime/kv``
      page, by default and at most; ``max_list_bytes`` bounds a page's values.
    - ``history_size``: the updates kept per resource for resume (``since``;
      0: none, every resume of a changed resource reloads);
      ``history_bytes`` / ``history_resources``: at most that many bytes and
      resources across the history (``history``: who is evicted first).
    """

    max_value_bytes: int = 256 * 1024
    max_id_chars: int = 512
    max_scope_chars: int = 128
    max_subscriptions: int = 1000
    max_message_bytes: int = 64 * 1024
    max_record_bytes: int = 64 * 1024
    list_limit: int = 100
    max_list_limit: int = 1000
    max_list_bytes: int = 1024 * 1024
    history_size: int = 100
    history_bytes: int = 16 * 1024 * 1024
    history_resources: int = 10_000
