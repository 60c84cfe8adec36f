"""What one peer may cost: token buckets and per-key counts, as plain data.

Trusted servers bound each peer (nginx: connections and request rate per
address; Centrifugo: connections per user, commands per second per
connection). These are the rules Satchel applies, without I/O or a clock of
their own: every call is handed ``now`` (seconds, any monotonic origin), so
they run the same under trio, in a test, or in another event loop.

- ``TokenBucket``: ``rate`` tokens a second, at most ``burst`` saved up. A
  message or request takes one; ``delay`` says how long until one is there
  (0: take it now). A websocket reader waits that long before reading on
  (TCP backpressure on the sender); an HTTP request is answered 429 with
  that ``Retry-After``; a datagram is dropped.
- ``Throttle``: a bucket that also says when its owner has been held back
  at every message for ``abuse_after`` seconds - a sender that keeps its
  socket full forever is closed (1008) rather than slowed forever; one that
  slows to the rate finds a token now and then and is not.
- ``BucketsByKey``: one bucket per address, at most ``size`` of them (the
  fullest are forgotten first: a forgotten bucket is a full one).
- ``is_loopback``: address-based limits do not apply to loopback peers unless
  asked: behind a reverse proxy on the same host every client is 127.0.0.1.
"""

from __future__ import annotations

import functools
import ipaddress
import math

__all__ = ["TokenBucket", "Throttle", "BucketsByKey", "is_loopback", "retry_after_seconds"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` kept; starts full."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def delay(self, now: float) -> float:
        """Take a token if there is one (0.0); else how many seconds until
        there is one (nothing taken)."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """Whether the bucket is full (its owner has been quiet)."""
        self._refill(now)
        return self.tokens >= self.burst


class Throttle:
    """A connection's message budget: a bucket, and since when its owner has
    found no token waiting for any of its messages.

    ``take(now)`` takes a token for one message and returns (seconds to wait
    before handling it, whether the owner is abusing: held back at every
    message for ``abuse_after`` seconds)."""

    __slots__ = ("bucket", "abuse_after", "held_since")

    def __init__(self, rate: float, burst: float, abuse_after: float, now: float) -> None:
        self.bucket = TokenBucket(rate, burst, now)
        self.abuse_after = abuse_after
        self.held_since: float | None = None

    def take(self, now: float) -> tuple[float, bool]:
        """See the class docstring."""
        bucket = self.bucket
        bucket._refill(now)
        # The token is taken now, in debt if need be: the message is handled
        # once the debt is paid (``wait`` seconds), with no second call.
        bucket.tokens -= 1
        if bucket.tokens >= 0:
            self.held_since = None  # a token was there: it slowed down
            return 0.0, False
        wait = -bucket.tokens / bucket.rate
        if self.held_since is None:
            self.held_since = now
        return wait, now - self.held_since >= self.abuse_after


class BucketsByKey:
    """A token bucket per key (an address), at most ``size`` kept."""

    __slots__ = ("rate", "burst", "size", "_buckets", "refused")

    def __init__(self, rate: float, burst: float, size: int = 65536) -> None:
        self.rate = rate
        self.burst = burst
        self.size = size
        self._buckets: dict[object, TokenBucket] = {}
        #: How many times ``delay`` refused, in all (a counter for operators).
        self.refused = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def delay(self, key: object, now: float) -> float:
        """``TokenBucket.delay`` for ``key``'s bucket."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.size:
                self._forget_full(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        wait = bucket.delay(now)
        if wait:
            self.refused += 1
        return wait

    def _forget_full(self, now: float) -> None:
        full = [key for key, bucket in self._buckets.items() if bucket.full(now)]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.size:
            # Every bucket is in use: forget the oldest half (insertion order).
            for key in list(self._buckets)[: self.size // 2]:
                del self._buckets[key]


@functools.lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IPv4 or IPv6 literal) is a loopback address.

    Cached: the UDP endpoint asks for every datagram (``DatagramGate``),
    and parsing the literal costs ~2.5 us, more than checking its HMAC."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def retry_after_seconds(wait: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
