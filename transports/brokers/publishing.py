"""What a broker connection has yet to publish: one bounded queue, in order,
shared by the Redis and NATS clients.

``put`` never blocks (the bus publishes from inside an action's publish,
which must not await). A message put on the same topic as the last one
queued, while that one is not being written yet, is joined to it
(``join``, set by the bus: ``topics.join``; at most ``join_limit`` bytes)
- one broker message for a burst, in order. Past ``max_queued`` messages
the oldest is dropped and counted (the broker is away; what it misses is
signalled when it is back, ``BrokerBus._resubscribed``).

A sender ``take``s the first messages, writes them, and says ``sent`` (or
``failed``, and they stay for the next try). While they are being written
they take no joins, and a drop of the oldest - one of them - makes
``sent`` remove one fewer, so a message never written is never removed.
"""

from __future__ import annotations

import collections
import logging
from typing import Callable

import trio

from .topics import JOIN_LIMIT

__all__ = ["PublishQueue", "QueuedPublisher"]

log = logging.getLogger("satchel.broker")


class PublishQueue:
    """The messages a broker connection has yet to publish (module docstring)."""

    __slots__ = ("max_queued", "join", "join_limit", "dropped", "_queue", "_taken", "_wake")

    def __init__(self, max_queued: int) -> None:
        self.max_queued = max_queued
        #: joins two messages into one (``topics.join``), or ``None``: each goes alone
        self.join: Callable[[bytes, bytes], bytes | None] | None = None
        self.join_limit = JOIN_LIMIT
        #: messages dropped (the oldest, past ``max_queued``; or too large for the broker)
        self.dropped = 0
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        # The first ``_taken`` queued messages are being written: never joined to.
        self._taken = 0
        self._wake = trio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, topic: str, data: bytes) -> bool:
        """Queue ``data`` for ``topic``; ``True`` when it was joined to the
        message queued last."""
        queue = self._queue
        if self.join is not None and len(queue) > self._taken:
            last_topic, last = queue[-1]
            if last_topic == topic and len(last) + len(data) <= self.join_limit:
                joined = self.join(last, data)
                if joined is not None:
                    queue[-1] = (topic, joined)
                    return True
        if len(queue) >= self.max_queued:
            queue.popleft()
            if self._taken:
                self._taken -= 1  # it was being written: ``sent`` removes one fewer
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("broker unreachable: %d message(s) dropped so far", self.dropped)
        queue.append((topic, data))
        self._wake.set()
        return False

    async def wait(self) -> None:
        """Return once something is queued."""
        while not self._queue:
            self._wake = trio.Event()
            await self._wake.wait()

    def take(self, most: int) -> list[tuple[str, bytes]]:
        """The first ``most`` messages (at most), to be written; they take no
        more joins until ``sent`` or ``failed``."""
        queue = self._queue
        taken = [queue[i] for i in range(min(len(queue), most))]
        self._taken = len(taken)
        return taken

    def sent(self) -> None:
        """What ``take`` handed out was written: forget it (less what was
        dropped from the front meanwhile)."""
        sent, self._taken = self._taken, 0
        for _ in range(sent):
            self._queue.popleft()

    def failed(self) -> None:
        """What ``take`` handed out was not written: it stays, first."""
        self._taken = 0


class QueuedPublisher:
    """What a broker client built on a ``PublishQueue`` (its ``outgoing``)
    shows the bus: ``publish``, ``join`` and ``dropped``."""

    outgoing: PublishQueue

    def publish(self, topic: str, data: bytes) -> bool:
        """Queue ``data`` for ``topic`` (never blocks; sent in queue order).
        ``True`` when it was joined to the message queued last, on the same
        topic and not being sent yet (``PublishQueue.put``)."""
        return self.outgoing.put(topic, data)

    @property
    def join(self) -> Callable[[bytes, bytes], bytes | None] | None:
        """Joins two queued messages on one topic into one (set by the bus: ``topics.join``)."""
        return self.outgoing.join

    @join.setter
    def join(self, join: Callable[[bytes, bytes], bytes | None] | None) -> None:
        self.outgoing.join = join

    @property
    def dropped(self) -> int:
        """Messages dropped: the oldest past ``max_queued``, or too large for the broker."""
        return self.outgoing.dropped
