"""The replay guard of inbox datagrams: a pure state machine with a hard memory bound.

A datagram is authentic if its HMAC verifies, but an eavesdropper can send
the same bytes again. The guard refuses that with two rules:

1. Freshness: a datagram's timestamp must lie within ``window_ms`` of the
   server's clock, and not below the *floor*. The floor starts at the
   server's start time - after a restart the memory of rule 2 is empty, and
   without the floor every datagram of the last ``window_ms`` before the
   restart could be replayed - and only ever rises: to ``now - window_ms``
   as the clock advances (so a clock stepping back reopens nothing), and
   past whatever the memory forgets when full (below).
2. Memory: the tag (HMAC) of every datagram admitted with a timestamp at or
   above the floor is remembered, and a tag seen before is refused. Tags
   below the floor are forgotten; rule 1 refuses those timestamps anyway.

Policy when full (``capacity`` tags): the guard never errs towards
accepting a replay. It forgets the tags with the oldest timestamp and
raises the floor above it, so that what it forgot is refused by rule 1
from then on; and a datagram older than everything remembered is refused
outright rather than pushing out a newer tag. Under a flood of authentic
datagrams the effective window therefore narrows, and senders whose clocks
lag by more than it are refused until the flood passes: they resend.

``admit(state, tag, timestamp_ms, now_ms) -> (state, accepted)`` reads no
clock. The state is handed over, h11 style: ``admit`` updates it in place
and returns it, so that each call costs O(log n) instead of a copy of up to
``capacity`` tags, and callers keep only the returned value.
``ReplayGuard`` is the holder a server keeps for all its datagrams.
"""

from __future__ import annotations

import heapq

__all__ = ["ReplayState", "new_replay_state", "is_fresh", "admit", "ReplayGuard"]


class ReplayState:
    """What the guard remembers: the floor and the tags admitted above it.

    ``seen`` maps each remembered tag to its timestamp; ``by_age`` holds the
    same pairs as a heap ordered by timestamp, so the oldest is found at once.
    """

    __slots__ = ("window_ms", "capacity", "floor_ms", "seen", "by_age")

    def __init__(self, floor_ms: int, window_ms: int, capacity: int) -> None:
        if window_ms <= 0 or capacity <= 0:
            raise ValueError("window_ms and capacity must be positive")
        self.window_ms = window_ms
        self.capacity = capacity
        self.floor_ms = floor_ms
        self.seen: dict[bytes, int] = {}
        self.by_age: list[tuple[int, bytes]] = []

    def __len__(self) -> int:
        return len(self.seen)


def new_replay_state(start_ms: int, *, window_ms: int = 30_000, capacity: int = 65_536) -> ReplayState:
    """A guard for a server that started at ``start_ms``: nothing older is admitted."""
    return ReplayState(start_ms, window_ms, capacity)


def _raise_floor(state: ReplayState, floor_ms: int) -> None:
    if floor_ms > state.floor_ms:
        state.floor_ms = floor_ms
    while state.by_age and state.by_age[0][0] < state.floor_ms:
        _, tag = heapq.heappop(state.by_age)
        del state.seen[tag]


def is_fresh(state: ReplayState, timestamp_ms: int, now_ms: int) -> bool:
    """Rule 1 alone, without changing anything: a cheap first check before
    the datagram's document is looked up."""
    return max(state.floor_ms, now_ms - state.window_ms) <= timestamp_ms <= now_ms + state.window_ms


def admit(state: ReplayState, tag: bytes, timestamp_ms: int, now_ms: int) -> tuple[ReplayState, bool]:
    """Whether an authentic datagram with ``tag`` and ``timestamp_ms``,
    arriving at ``now_ms``, is admitted (and remembered) or refused as a
    replay or stale."""
    _raise_floor(state, now_ms - state.window_ms)
    if not is_fresh(state, timestamp_ms, now_ms) or tag in state.seen:
        return state, False
    if len(state.seen) >= state.capacity:
        oldest = state.by_age[0][0]
        if timestamp_ms <= oldest:
            return state, False
        _raise_floor(state, oldest + 1)
    state.seen[tag] = timestamp_ms
    heapq.heappush(state.by_age, (timestamp_ms, tag))
    return state, True


class ReplayGuard:
    """One server's replay guard: holds the ``ReplayState`` that ``admit`` threads through."""

    __slots__ = ("state",)

    def __init__(self, start_ms: int, *, window_ms: int = 30_000, capacity: int = 65_536) -> None:
        self.state = new_replay_state(start_ms, window_ms=window_ms, capacity=capacity)

    def is_fresh(self, timestamp_ms: int, now_ms: int) -> bool:
        """Rule 1 alone (see ``is_fresh``)."""
        return is_fresh(self.state, timestamp_ms, now_ms)

    def admit(self, tag: bytes, timestamp_ms: int, now_ms: int) -> bool:
        """Admit or refuse one authentic datagram (see ``admit``)."""
        self.state, accepted = admit(self.state, tag, timestamp_ms, now_ms)
        return accepted

    def __len__(self) -> int:
        return len(self.state)
