"""Settings of the Backpack protocol that a server operator chooses."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BackpackConfig"]

_DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class BackpackConfig:
    """How a Backpack server authenticates and what it allows.

    ``api_key``: the key every HTTP request must carry (``Authorization: key
    <KEY>``). ``allowed_origins``: origins whose browser requests get CORS
    headers; ``None`` echoes any origin, which is what the original did.
    ``cookie_name``: the session cookie (the original's was ``_redis``, after
    its session store). ``secure_cookies`` adds ``Secure`` (behind HTTPS).
    """

    api_key: str
    allowed_origins: frozenset[str] | None = None
    cookie_name: str = "_redis"
    session_ttl_ms: int = 14 * _DAY_MS
    secure_cookies: bool = False
    min_password_length: int = 8
    max_password_length: int = 1024
