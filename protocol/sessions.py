"""The sessions a switchboard read lately, so a request costs no session read.

Every Backpack request with a cookie looks its session up by the token's
hash (``GetSession``). The ``Switchboard`` answers that lookup from a
``SessionCache`` when it read the same session less than
``SESSION_CACHE_MS`` ago, and from the store otherwise. Only cookie
sessions (kind ``SESSION``) are kept: the Bearer tokens of the other
protocols are still read on every request (their revocations are also made
by actions run outside a switchboard - ``tokens.revoke_*`` from an
embedding or a test - which this cache would not see). What the cache
keeps is the stored ``Session`` row as read (hashes only, never a token):
the callers still compare its hash in constant time and check its kind and
its expiry against the clock on every request, so an expired session is
refused at the millisecond it expires, cached or not.

Revocation is exact within a process: a ``DeleteSession`` (logout) or
``DeleteSessions`` (every session of a user: an account disabled) that an
action run by the switchboard yields passes through it, which forgets the
matching entries before the store deletes the rows and again after, so no
request answered after the revocation's answer is served from the cache. A
read that was in flight when a revocation happened is not kept (the
``generation`` it started under is stale). Negative answers (no such
session) are never kept: random tokens cannot fill the cache.

Across processes (issue 15) the cache gives a broker its hook: ``listen``
registers a callback that is told of every revocation this process makes
(``Revoked``), for the broker to carry to the other nodes, whose bus calls
``forget`` with it. Until then a revocation made behind this process's back
(another server on the same database, ``satchel admin`` on a running
server's data dir) takes effect within ``SESSION_CACHE_MS``, as a role
changed that way does (``permissions.live.ROLE_CACHE_MS``).

Pure: the clock is handed in (``now_ms``); no I/O.
"""

from __future__ import annotations

from typing import Callable

import msgspec

from .operations import Session

__all__ = ["SessionCache", "Revoked", "SESSION_CACHE_MS", "SESSION_CACHE_SIZE"]

#: How long (ms) a session read from the store is trusted without reading it
#: again: the bound on how late a revocation made by another process is seen.
SESSION_CACHE_MS = 1000
#: The most sessions kept (the one read longest ago goes first).
SESSION_CACHE_SIZE = 10_000


class Revoked(msgspec.Struct, frozen=True):
    """Sessions that no longer exist: the one stored under ``token_hash``,
    or (``token_hash`` empty) every session of ``kind`` of ``user_id``."""

    token_hash: str = ""
    user_id: str = ""
    kind: str = ""


class SessionCache:
    """Sessions by token hash, each with when it was read; bounded."""

    __slots__ = ("_entries", "_generation", "_listeners", "size", "ttl_ms")

    def __init__(self, size: int = SESSION_CACHE_SIZE, ttl_ms: int = SESSION_CACHE_MS) -> None:
        self.size = size
        self.ttl_ms = ttl_ms
        self._entries: dict[str, tuple[Session, int]] = {}
        #: bumped by every forget: a read begun before one is not kept
        self._generation = 0
        self._listeners: list[Callable[[Revoked], None]] = []

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def generation(self) -> int:
        """Take it before reading a session from the store; hand it to ``remember``."""
        return self._generation

    def get(self, token_hash: str, now_ms: int) -> Session | None:
        """The session stored under ``token_hash`` if it was read less than
        ``ttl_ms`` ago and has not expired; ``None``: ask the store."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        session, read_ms = entry
        if now_ms - read_ms >= self.ttl_ms or session.expires_ms <= now_ms:
            del self._entries[token_hash]
            return None
        return session

    def remember(self, session: Session, now_ms: int, generation: int) -> None:
        """Keep ``session``, read from the store at ``now_ms`` by a read that
        began at ``generation`` (not kept when a revocation came since)."""
        if generation != self._generation:
            return
        entries = self._entries
        entries.pop(session.token_hash, None)
        if len(entries) >= self.size:
            del entries[next(iter(entries))]  # the one read longest ago
        entries[session.token_hash] = (session, now_ms)

    def forget(self, revoked: Revoked) -> None:
        """Drop what ``revoked`` names (a revocation here, or from a broker)."""
        self._generation += 1
        entries = self._entries
        if revoked.token_hash:
            entries.pop(revoked.token_hash, None)
            return
        doomed = [
            token_hash
            for token_hash, (session, _) in entries.items()
            if session.user_id == revoked.user_id and session.kind == revoked.kind
        ]
        for token_hash in doomed:
            del entries[token_hash]

    def revoked(self, revoked: Revoked) -> None:
        """A revocation made in this process: forget it and tell the listeners."""
        self.forget(revoked)
        for listener in self._listeners:
            listener(revoked)

    def listen(self, listener: Callable[[Revoked], None]) -> None:
        """Have ``listener`` told of every revocation made in this process
        (a broker-backed bus sends them to the other nodes)."""
        self._listeners.append(listener)

    def clear(self) -> None:
        """Forget every session."""
        self._generation += 1
        self._entries.clear()
