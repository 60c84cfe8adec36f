"""Settings of the Backpack protocol that a server operator chooses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

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
    #: SHA-256 of ``api_key``, computed once: every request's presented key
    #: is compared with it in constant time (``auth.api_key_matches``).
    api_key_digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.api_key.encode("utf-8", "surrogatepass")).digest()
        object.__setattr__(self, "api_key_digest", digest)
