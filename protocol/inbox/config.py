"""Settings of the inbox-document protocol that a server operator chooses."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InboxConfig", "MAX_MESSAGE_BYTES", "MAX_REVISION"]

#: Seed 001: "Messages are small JSON documents of up to 4096 bytes."
MAX_MESSAGE_BYTES = 4096
#: The largest revision a client may give: JavaScript's largest safe
#: integer, so that every revision survives a browser's JSON.parse.
MAX_REVISION = 2**53 - 1


@dataclass(frozen=True, slots=True)
class InboxConfig:
    """How the inbox-document protocol is bounded.

    ``max_document_bytes``: the largest document content, whether PUT or
    grown by merged messages (the HTTP transport's body limit must be at
    least this). ``max_batch_tokens``: the most documents one batch read may
    name. ``allowed_origins``: origins whose browser requests get CORS
    headers; ``None`` echoes any origin. ``datagram_window_ms`` and ``replay_capacity`` bound the datagrams'
    replay guard (``satchel.protocol.inbox.replay``).
    """

    max_document_bytes: int = 1024 * 1024
    max_batch_tokens: int = 200
    allowed_origins: frozenset[str] | None = None
    datagram_window_ms: int = 30_000
    replay_capacity: int = 65_536

    def __post_init__(self) -> None:
        for name in ("max_document_bytes", "max_batch_tokens", "datagram_window_ms", "replay_capacity"):
            if not getattr(self, name) > 0:
                raise ValueError(f"InboxConfig.{name} must be positive")
