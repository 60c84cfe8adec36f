"""Redis pub/sub as Satchel's broker (``--broker redis://HOST:PORT[/DB]``).

coredis is built on anyio and runs natively under trio (STACK.md; redis-py's
async client is asyncio-only), so nothing is bridged through a thread. Two
connections: one publishes - the messages queued since the last round trip
go out as one pipeline, in the order they were queued - and one holds the
subscriptions (SUBSCRIBE per topic, PSUBSCRIBE for ``*`` patterns) and
receives. Redis delivers the messages of one publishing connection to a
subscriber in the order it received them, across channels, which is what
the commit-order guarantee across processes rests on (``BrokerBus``).

Redis also delivers a process's own messages back to it when it follows
the topic; the bus drops them by the sender id in each message.

Connection loss: coredis reconnects the subscriber and subscribes again by
itself; the publisher retries its pipeline every 0.5 s, keeping what is
queued (at most ``max_queued`` messages; beyond, the oldest are dropped and
counted in ``dropped``). Pub/sub keeps nothing: what is published while a
process is not connected is not delivered to it. So the broker tells its
owner when it follows its topics again after a loss (``resubscribed``): the
subscription confirmations coredis's resubscription brings are the sign -
a confirmation for a topic already confirmed, and not unsubscribed since,
can only come from a resubscription on a new connection.
"""

from __future__ import annotations

import logging
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import coredis
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.retry import CompositeRetryPolicy, ConstantRetryPolicy, ExponentialBackoffRetryPolicy

from .publishing import PublishQueue, QueuedPublisher

__all__ = ["RedisBroker"]

log = logging.getLogger("satchel.broker")

#: How the subscriber reconnects: coredis's own policy, with its backoff
#: capped at 1 s instead of 16 s - while it waits, this process hears
#: nothing the others publish, and its clients are told only once it is back.
_RESUBSCRIBE = CompositeRetryPolicy(
    ExponentialBackoffRetryPolicy((RedisConnectionError,), retries=None, base_delay=0.1, max_delay=1, jitter=True),
    ConstantRetryPolicy((TimeoutError,), retries=2, delay=0.1),
)


class RedisBroker(QueuedPublisher):
    """Publishes and subscribes on the Redis at ``url``."""

    def __init__(self, url: str, *, name: str = "satchel", max_queued: int = 100_000) -> None:
        split = urlsplit(url)
        self.url = split._replace(query="").geturl()
        #: ``?prefix=NAME`` in the URL: the topic prefix (one cluster per prefix)
        self.prefix = parse_qs(split.query).get("prefix", ["satchel"])[0]
        self.name = name
        #: what is yet to be published (bounded at ``max_queued``; ``publishing``)
        self.outgoing = PublishQueue(max_queued)
        self._pubsub: Any = None
        self._channels: set[str] = set()
        self._patterns: set[str] = set()
        self._interest_lock = trio.Lock()
        # The topics Redis has confirmed on the current subscriber connection.
        self._confirmed: set[str] = set()
        # Set (and replaced) at each confirmation: ``set_interest`` waits for its own.
        self._confirmation_seen = trio.Event()
        #: Called (no arguments) once the subscriptions are back after a
        #: connection loss: what was published meanwhile was not received.
        self.resubscribed: Callable[[], None] | None = None
        self.published = 0

    async def check(self) -> None:
        """Connect once and PING: raises when the broker cannot be reached."""
        client = coredis.Redis.from_url(self.url, client_name=f"{self.name}-check")
        try:
            with trio.fail_after(5):
                async with client:
                    await client.ping()
        except BaseExceptionGroup as group:  # coredis's task groups: say what failed
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            raise leaf from None

    async def run(self, deliver: Callable[[str, bytes], None], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, subscribe to what ``set_interest`` says and hand every
        message to ``deliver(topic, data)`` until cancelled."""
        try:
            await self._run(deliver, task_status)
        except* anyio.ClosedResourceError:
            # coredis unsubscribes as it is cancelled, on a connection it has
            # closed already: nothing is lost at shutdown. Any other time it
            # is a failure.
            if trio.current_effective_deadline() != float("-inf"):
                raise

    async def _run(self, deliver: Callable[[str, bytes], None], task_status: Any) -> None:
        publisher = coredis.Redis.from_url(self.url, client_name=f"{self.name}-pub")
        subscriber = coredis.Redis.from_url(self.url, client_name=f"{self.name}-sub")
        async with publisher, subscriber:
            await publisher.ping()  # a broker that is not there fails the start, clearly
            # Subscription confirmations are read: they tell a resubscription (_confirmation).
            pubsub = subscriber.pubsub(ignore_subscribe_messages=False, retry_policy=_RESUBSCRIBE)
            async with pubsub, trio.open_nursery() as nursery:
                self._pubsub = pubsub
                nursery.start_soon(self._send, publisher)
                nursery.start_soon(self._receive, pubsub, deliver)
                task_status.started()

    async def set_interest(self, topics: frozenset[str]) -> None:
        """Follow exactly ``topics`` (names ending in ``*`` are patterns);
        returns once Redis confirmed the new ones (at most 5 s): from then on
        whatever another process publishes to them reaches this one
        (``BrokerBus.follow`` relies on it)."""
        async with self._interest_lock:
            pubsub = self._pubsub
            channels = {t for t in topics if not t.endswith("*")}
            patterns = topics - channels
            new = [f"c:{t}" for t in channels - self._channels] + [f"p:{t}" for t in patterns - self._patterns]
            if channels - self._channels:
                await pubsub.subscribe(*sorted(channels - self._channels))
            if patterns - self._patterns:
                await pubsub.psubscribe(*sorted(patterns - self._patterns))
            if self._channels - channels:
                await pubsub.unsubscribe(*sorted(self._channels - channels))
            if self._patterns - patterns:
                await pubsub.punsubscribe(*sorted(self._patterns - patterns))
            self._channels, self._patterns = channels, patterns
            with trio.move_on_after(5):
                while any(name not in self._confirmed for name in new):
                    await self._confirmation_seen.wait()

    async def _send(self, publisher: Any) -> None:
        outgoing = self.outgoing
        while True:
            await outgoing.wait()
            batch = outgoing.take(1000)
            try:
                if len(batch) == 1:
                    await publisher.publish(*batch[0])
                else:
                    async with publisher.pipeline(transaction=False) as pipe:
                        for topic, data in batch:
                            pipe.publish(topic, data)
            except (OSError, ConnectionError, Exception) as error:  # coredis raises its own ConnectionError
                outgoing.failed()
                log.warning("publishing to the broker failed (%s); retrying", error)
                await trio.sleep(0.5)
                continue
            outgoing.sent()
            self.published += len(batch)

    async def _receive(self, pubsub: Any, deliver: Callable[[str, bytes], None]) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=False)
            if message is None:
                continue
            kind = message["type"]
            if isinstance(kind, bytes):
                kind = kind.decode()
            if kind in ("subscribe", "psubscribe", "unsubscribe", "punsubscribe"):
                self._confirmation(kind, message["channel"])
                continue
            if kind not in ("message", "pmessage"):
                continue
            channel = message["channel"]
            try:
                deliver(channel.decode() if isinstance(channel, bytes) else channel, message["data"])
            except Exception:
                log.exception("applying a broker message failed")

    def _confirmation(self, kind: str, topic: Any) -> None:
        """Track what Redis confirmed; a topic confirmed twice means coredis
        subscribed again on a new connection (module docstring)."""
        name = (b"p:" if kind.startswith("p") else b"c:") + (topic if isinstance(topic, bytes) else str(topic).encode())
        key = name.decode(errors="replace")
        seen, self._confirmation_seen = self._confirmation_seen, trio.Event()
        seen.set()
        if kind.endswith("unsubscribe"):
            self._confirmed.discard(key)
            return
        if key in self._confirmed:
            # The first confirmation of the new connection: start its set
            # afresh, so that the resubscription's other confirmations (and
            # later subscribes) signal nothing more.
            self._confirmed = {key}
            log.warning("broker subscriptions restored after a lost connection")
            if self.resubscribed is not None:
                try:
                    self.resubscribed()
                except Exception:
                    log.exception("handling the broker's resubscription failed")
            return
        self._confirmed.add(key)
