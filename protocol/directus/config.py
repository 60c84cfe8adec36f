"""Settings of the Directus-style protocols that a server operator chooses."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DirectusConfig"]


@dataclass(frozen=True, slots=True)
class DirectusConfig:
    """How the Directus protocols are served (directus.md sections 1-3).

    ``websocket_path``: where both websocket protocols listen (the
    extension's ``WEBSOCKET_PATH`` and core's ``WEBSOCKETS_REST_PATH`` both
    default to ``/websocket``). ``websocket_public``: the extension's
    ``WEBSOCKET_PUBLIC`` - tokenless connections get the public role instead
    of a 401. ``heartbeat_ms``: the core protocol's ping period
    (``WEBSOCKETS_HEARTBEAT_PERIOD``); ``auth_timeout_ms``: how long a
    handshake-mode connection may wait before its ``auth`` message.
    ``access_token_ttl_ms`` / ``refresh_token_ttl_ms``: the tokens
    ``/auth/login`` hands out (``expires`` is answered in ms, > 30 s as the
    SDK needs; ``__post_init__`` refuses less). ``query_limit_default``:
    the page size of a read that names no ``limit`` (Directus's
    ``QUERY_LIMIT_DEFAULT``); ``max_batch``: the most items one request may
    create, update or delete. ``reply_gap_ms``: how long a core websocket's
    answer to an ``items`` write waits when that connection also subscribes
    to the collection, so that the event and the answer do not arrive in
    one read (``@directus/sdk`` loses the second of two such frames,
    directus.md section 3; 0: never wait).
    """

    websocket_path: str = "/websocket"
    websocket_public: bool = False
    heartbeat_ms: int = 30_000
    auth_timeout_ms: int = 10_000
    access_token_ttl_ms: int = 15 * 60 * 1000
    refresh_token_ttl_ms: int = 7 * 24 * 60 * 60 * 1000
    max_message_bytes: int = 1024 * 1024
    query_limit_default: int = 100
    max_batch: int = 1000
    reply_gap_ms: int = 10

    def __post_init__(self) -> None:
        # The SDK refreshes 30 s before expiry: a shorter lifetime would make
        # every request a refresh.
        if self.access_token_ttl_ms <= 30_000:
            raise ValueError("access_token_ttl_ms must be more than 30000 (the SDK refreshes 30 s before expiry)")
        if self.refresh_token_ttl_ms <= 0 or self.query_limit_default < 1 or self.max_batch < 1:
            raise ValueError("refresh_token_ttl_ms, query_limit_default and max_batch must be positive")
