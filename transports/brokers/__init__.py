"""Several server processes, one fan-out: the broker-backed bus.

``BrokerBus`` is the ``LocalBus`` of one process plus a broker (Redis
pub/sub, ``redis.RedisBroker``, or NATS, ``nats.NatsBroker``). It applies
every action's events here exactly as ``LocalBus`` does - in commit order,
through the reorder stage - and, in that same order, publishes what the
other processes need (``topics.exported``: writes, deliveries to channels,
users and everyone, subscription changes by audience, rule and role
changes), each on its topic. What arrives from the broker is applied here
the same way, minus what addresses this process's connections by id. So a
connection's subscriptions stay in its process, and each process follows on
the broker only the topics some connection of its own needs
(``topics.interest``, re-derived whenever a registry changes): a process
with nobody interested in a collection, a channel or a user is sent
nothing about it.

Order, the guarantee (README, "Running several processes"):

1. Within one process: commit order, as without a broker (``ordering.py``).
2. From one process to another: the order the sending process committed
   its writes (it publishes in that order on one broker connection; Redis
   and NATS keep the order of one connection's messages to a subscriber).
3. Writes of one record, kv / live config entry or inbox document made
   through different processes: a process never delivers an older version
   after a newer one. Each process remembers the latest version it
   delivered of every such thing lately (``max_versions``) and drops one
   that is not newer (``topics.change_key``: a record's store revision, an
   entry's version, a document's revision; the shared store gives each
   write of one thing a greater one than the write before) - so a
   subscriber may miss an intermediate version that lost the race on the
   broker, never see them out of order. Every record change carries the
   whole record after the write, so what a subscriber holds last is the
   record as stored.
4. The chats of one channel (creates numbered by ``InsertNumbered``: a
   channel's chat ids are its commit order, without gaps): delivered in
   number order, whichever processes made them. One that arrives before
   its predecessor waits for it, at most ``SequenceOrder.hold`` (50 ms;
   then the gap is given up on and the late one delivered when it comes) -
   so it may be overtaken by a later write of another record (2. holds but
   for those waits). ``sequences`` has the bookkeeping.

Subscribing: each process follows on the broker only what its connections
need, so a subscription to something new must wait until the broker
follows it, or a write another process commits meanwhile is never sent
here. Every protocol's subscribe yields ``channels.Follow`` after its
bound and before it reads the state it answers with; the runner hands it
to ``follow``, which returns once the broker confirmed the topics (one
round trip, and only for what this process did not follow yet).

A broker restart, or any lost broker connection: the bus keeps what this
process publishes meanwhile and sends it once connected again, but pub/sub
keeps nothing for a process that is not subscribed, so what the others
published while this process was away is lost to it. It is SIGNALLED, not
replayed: once the broker says this process's subscriptions are in force
again (``Broker.resubscribed``), every realtime connection of this process
is closed with code 1012 "Service Restart" (RFC 6455's "reconnect" code; an
Engine.IO session ends, so its Socket.IO client reconnects), and each
client's reconnection subscribes afresh and reads the current state from
the store (a Directus subscription's ``init``, a resource subscribe's data,
Backpack's getAll). Anything committed after the resubscription is
delivered; anything before it that a connection missed is followed by that
connection's 1012. Replaying from the store instead would need every write
to carry a position every protocol can resume from; no protocol here has
one for records.

Shared state: session revocations (a logout, an account disabled) reach the
other processes' session caches at once (``SessionsRevoked``); Bearer
tokens are read from the shared store on every request. The inbox's replay
memory is shared through the broker (``DatagramSeen``): a datagram admitted
by one process is refused by the others from the moment its notice
arrives; see ``share_replay_guard`` for why the broker and not the store.
"""

from __future__ import annotations

import collections
import logging
import secrets
from typing import Any, Iterable, Protocol

import trio

from satchel.protocol.changes import Change
from satchel.protocol.channels import CloseConnection, Follow
from satchel.protocol.sessions import Revoked
from satchel.protocol.switchboard import Switchboard

from ..bus import LocalBus
from ..hub import Hub
from ..ordering import Sequencer
from . import topics as wire
from .sequences import SequenceOrder
from .topics import DatagramSeen, SessionsRevoked, Topics

__all__ = ["Broker", "BrokerBus", "open_broker", "BrokerUrlError"]

log = logging.getLogger("satchel.broker")

#: How long a ``Follow`` waits for the broker at most, and how long its
#: topics stay followed before a registry must need them (seconds).
FOLLOW_WAIT = 2.0
FOLLOW_HOLD = 10.0

#: The close reason of a connection told to reconnect after the broker came back.
RESYNC_REASON = "broker reconnected: reconnect to resynchronize"


class Broker(Protocol):
    """What the bus needs of a broker connection."""

    prefix: str
    published: int
    dropped: int

    #: Set by the bus: called once the subscriptions are back after a lost connection.
    resubscribed: Any
    #: Set by the bus: joins two of its queued messages on one topic into one (``topics.join``).
    join: Any

    def publish(self, topic: str, data: bytes) -> bool: ...

    async def check(self) -> None: ...

    async def set_interest(self, topics: frozenset[str]) -> None: ...

    async def run(self, deliver: Any, *, task_status: Any = ...) -> None: ...


class BrokerUrlError(ValueError):
    """``--broker`` is not a ``redis://`` or ``nats://`` URL."""


def open_broker(url: str, *, name: str = "satchel") -> Broker:
    """The broker ``url`` names: ``redis://HOST[:PORT][/DB]`` (also
    ``rediss://``) or ``nats://HOST[:PORT]``; ``?prefix=NAME`` keeps one
    cluster's topics apart from another's on a shared broker."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisBroker

        return RedisBroker(url, name=name)
    if url.startswith("nats://"):
        from .nats import NatsBroker

        return NatsBroker(url, name=name)
    raise BrokerUrlError(f"--broker must be a redis:// or nats:// URL, not {url[:100]!r}")


class _Latest:
    """The latest version delivered of each versioned thing, bounded (the
    one remembered longest goes first)."""

    __slots__ = ("_versions", "size")

    def __init__(self, size: int) -> None:
        self._versions: collections.OrderedDict[tuple[str, ...], Any] = collections.OrderedDict()
        self.size = size

    def newer(self, key: tuple[str, ...], version: Any) -> bool:
        versions = self._versions
        known = versions.get(key)
        if known is not None and version <= known:
            return False
        versions[key] = version
        versions.move_to_end(key)
        if len(versions) > self.size:
            versions.popitem(last=False)
        return True


class BrokerBus(LocalBus):
    """Fan-out within this process and, through ``broker``, to the others
    (module docstring). Start ``run`` beside the server:
    ``await nursery.start(bus.run)``."""

    __slots__ = ("broker", "topics", "node", "received", "received_events", "sent", "stale", "_latest", "_interest_changed",
                 "_registries_seen", "_interest", "_running", "resyncs", "_held", "_interest_applied",
                 "follows_waited", "follows_timed_out", "_sequences", "_sequence_wake", "_own_head")

    def __init__(self, hub: Hub, board: Switchboard, broker: Broker, sequencer: Sequencer | None = None,
                 *, max_versions: int = 100_000) -> None:
        super().__init__(hub, board, sequencer)
        self.broker = broker
        self.topics = Topics(broker.prefix)
        #: this process, in every message it sends (Redis echoes a publisher's own)
        self.node = secrets.token_bytes(8)
        #: broker messages received / sent, by topic kind (``topics``: rec, ch, ...)
        self.received: collections.Counter[str] = collections.Counter()
        #: the events those messages carried (a burst on one topic is one message: ``topics.join``)
        self.received_events: collections.Counter[str] = collections.Counter()
        self.sent: collections.Counter[str] = collections.Counter()
        #: writes dropped because a newer version had been delivered
        self.stale = 0
        self._latest = _Latest(max_versions)
        self._interest_changed: trio.Event | None = None
        self._registries_seen = -1
        self._interest: frozenset[str] = frozenset()
        #: topic -> until when (trio clock) it is followed for a ``Follow``
        #: whose subscription is not in a registry yet
        self._held: dict[str, float] = {}
        #: set (and replaced) each time the broker follows a new interest
        self._interest_applied = trio.Event()
        #: ``Follow``s that had to wait for the broker, and those that gave up waiting
        self.follows_waited = 0
        self.follows_timed_out = 0
        board.across_processes = True  # its Follows come to ``follow``
        self._sequences = SequenceOrder()
        self._sequence_wake = trio.Event()
        self._running = False
        board.sessions.listen(self._revoked)
        share_replay_guard(board, self)
        broker.resubscribed = self._resubscribed
        # A burst of actions (one read of broadcasts) queues messages on one
        # topic before the broker's next write: sent as one (``topics.join``).
        broker.join = wire.join
        # How this process's messages start: its own, echoed by Redis, are
        # dropped before they are decoded.
        self._own_head = wire.sender_head(self.node)
        #: times this process's connections were told to reconnect (``_resubscribed``)
        self.resyncs = 0

    # -- this process's events -----------------------------------------------------

    def _apply(self, events: Iterable[Any]) -> None:
        events = events if type(events) is list else list(events)
        LocalBus._apply(self, self._fresh(events))
        self._export(events)
        self._registries_changed()

    def _export(self, events: list[Any]) -> None:
        if not events:
            return
        group: list[Any] = []
        current: str | None = None
        for topic, event in wire.exported(self.topics, events):
            if topic != current and group:
                self._send(current, group)  # type: ignore[arg-type]
                group = []
            current = topic
            group.append(event)
        if group:
            self._send(current, group)  # type: ignore[arg-type]

    def _send(self, topic: str, events: list[Any]) -> None:
        if not self.broker.publish(topic, wire.encode(self.node, events)):
            self.sent[self.topics.kind_of(topic)] += 1  # broker messages: one joined to the last is not one more

    def _revoked(self, revoked: Revoked) -> None:
        self._send(self.topics.control, [SessionsRevoked(revoked.token_hash, revoked.user_id, revoked.kind)])

    def datagram_admitted(self, tag: bytes, timestamp_ms: int) -> None:
        """Tell the other processes that this one admitted an inbox datagram."""
        self._send(self.topics.control, [DatagramSeen(tag, timestamp_ms)])

    def _fresh(self, events: list[Any]) -> list[Any]:
        """``events`` without the writes of records, entries and documents
        older than what was already delivered here (guarantee 3), with a
        numbered create that came before its predecessor held back, and
        what waited for one that came (guarantee 4, ``sequences``)."""
        kept = None
        for index, event in enumerate(events):
            key = wire.change_key(event)
            if key is not None and not self._latest.newer(*key):
                self.stale += 1
                if kept is None:
                    kept = events[:index]
                continue
            numbered = event.numbered if type(event) is Change else None
            if numbered is not None:
                if kept is None:
                    kept = events[:index]
                kept.extend(self._sequences.admit(numbered[0], numbered[1], event, trio.current_time()))
                if self._sequences.holding:
                    self._sequence_wake.set()
                continue
            if kept is not None:
                kept.append(event)
        return events if kept is None else kept

    async def _release_held(self) -> None:
        """Deliver the numbered creates whose predecessor did not come in
        time (``SequenceOrder.hold``)."""
        while True:
            deadline = self._sequences.next_deadline()
            if deadline is None:
                self._sequence_wake = trio.Event()
                await self._sequence_wake.wait()
                continue
            await trio.sleep_until(deadline)
            due = self._sequences.due(trio.current_time())
            if due:
                log.info("delivering %d chat(s) whose predecessor did not arrive within %.0f ms", len(due),
                         1000 * self._sequences.hold)
                LocalBus._apply(self, due)
                self._registries_changed()

    # -- the other processes' events -------------------------------------------------

    def _deliver_remote(self, topic: str, data: bytes) -> None:
        if data.startswith(self._own_head):
            return  # our own, echoed (Redis)
        try:
            envelope = wire.decode(data)
        except Exception:
            log.warning("dropped a broker message on %s that is not Satchel's", topic)
            return
        if envelope.node == self.node:
            return  # our own, echoed (Redis)
        kind_of_topic = self.topics.kind_of(topic)
        self.received[kind_of_topic] += 1
        self.received_events[kind_of_topic] += len(envelope.events)
        events: list[Any] = []
        for event in envelope.events:
            kind = type(event)
            if kind is SessionsRevoked:
                self.board.sessions.forget(Revoked(event.token_hash, event.user_id, event.kind))
            elif kind is DatagramSeen:
                guard = self.board.datagram_state
                if isinstance(guard, SharedReplayGuard):
                    guard.remember(event.tag, event.timestamp_ms, self.board.env.now_ms())
            else:
                events.append(event)
        if events:
            LocalBus._apply(self, self._fresh(events))
            self._registries_changed()

    def _resubscribed(self) -> None:
        """The broker follows this process's topics again after a lost
        connection: what the others published meanwhile never arrived, so
        every realtime connection is told to reconnect and read afresh
        (module docstring)."""
        connections = list(self.hub)
        self.resyncs += 1
        log.warning("broker connection restored: %d connection(s) closed with 1012 to resynchronize", len(connections))
        if connections:
            self.hub.deliver(CloseConnection("", "", 1012, RESYNC_REASON), connections)

    # -- interest ------------------------------------------------------------------

    def _registries_changed(self) -> None:
        seen = sum(registry.version for registry in self.board.registries.values())
        if seen != self._registries_seen:
            self._registries_seen = seen
            if self._interest_changed is not None:
                self._interest_changed.set()

    def interest(self) -> frozenset[str]:
        """The topics this process follows now."""
        return self._interest

    async def follow(self, operation: Follow) -> None:
        """Return once the broker follows every topic ``operation``'s
        channels need (``channels.Follow``; the runner calls this). A
        subscribe yields it before it reads the state it answers with: a
        write another process commits after that read is then published
        to a topic this process follows already. Without this the topic
        was followed only after the subscription was in the registry, a
        few milliseconds later, and such a write was missed silently.

        The topics stay followed for ``FOLLOW_HOLD`` seconds even if no
        registry needs them (the subscribe's own events put it there well
        before). The wait is bounded (``FOLLOW_WAIT``): a broker that does
        not answer does not hold a subscribe forever; a lost broker is
        signalled by its own close (module docstring)."""
        if self._interest_changed is None:
            return  # not started: the first interest is derived from the registries
        wanted = wire.topics_of_channels(self.topics, operation.protocol, operation.channels)
        missing = [topic for topic in wanted if not wire.covered(self._interest, topic)]
        until = trio.current_time() + FOLLOW_HOLD
        for topic in wanted:
            if topic in self._held or topic in missing:
                self._held[topic] = until
        if not missing:
            return
        self.follows_waited += 1
        self._interest_changed.set()
        with trio.move_on_after(FOLLOW_WAIT):
            while any(not wire.covered(self._interest, topic) for topic in missing):
                await self._interest_applied.wait()
            return
        self.follows_timed_out += 1
        log.warning("the broker did not follow %d topic(s) within %.0f s; subscribing anyway", len(missing),
                    FOLLOW_WAIT)

    def _held_topics(self) -> list[str]:
        """The topics held for ``Follow``s, the expired ones forgotten."""
        if not self._held:
            return []
        now = trio.current_time()
        expired = [topic for topic, until in self._held.items() if until <= now]
        for topic in expired:
            del self._held[topic]
        return list(self._held)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect to the broker, follow the topics local connections need and
        apply what arrives, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.broker.run, self._deliver_remote)
            self._interest = wire.interest(self.topics, self.board.registries)
            await self.broker.set_interest(self._interest)
            self._interest_changed = trio.Event()
            nursery.start_soon(self._follow)
            nursery.start_soon(self._release_held)
            nursery.start_soon(self._report)
            log.info("Broker %s connected (topic prefix %r)", type(self.broker).__name__, self.topics.prefix)
            task_status.started()

    async def _follow(self) -> None:
        while True:
            assert self._interest_changed is not None
            await self._interest_changed.wait()
            # Connections come in bursts: one recomputation for the burst.
            await trio.sleep(0.002)
            self._interest_changed = trio.Event()
            wanted = wire.interest(self.topics, self.board.registries, self._held_topics())
            if wanted != self._interest:
                try:
                    await self.broker.set_interest(wanted)
                except Exception:
                    log.exception("changing the broker subscriptions failed; retrying")
                    await trio.sleep(0.5)
                    self._interest_changed.set()
                    continue
                self._interest = wanted
            applied, self._interest_applied = self._interest_applied, trio.Event()
            applied.set()

    async def _report(self) -> None:
        """Log the broker traffic once a second while it changes."""
        last = None
        try:
            while True:
                await trio.sleep(1)
                # A registry changed without a publish after it (an upgrade
                # refused past its user's bound): follow what is left.
                self._registries_changed()
                if self._held and self._interest_changed is not None and \
                        min(self._held.values()) <= trio.current_time():
                    self._interest_changed.set()  # a Follow's hold ended: follow what is left
                now = self.traffic()
                if now != last:
                    log.info("broker traffic %s", _format(now))
                    last = now
        finally:
            log.info("broker traffic %s", _format(self.traffic()))

    def traffic(self) -> dict[str, Any]:
        """What this process sent and received, by topic kind, and how many topics it follows."""
        return {"received": dict(sorted(self.received.items())), "sent": dict(sorted(self.sent.items())),
                "received_events": dict(sorted(self.received_events.items())),
                "following": len(self._interest), "stale": self.stale, "dropped": self.broker.dropped}


def _format(traffic: dict[str, Any]) -> str:
    import json

    return json.dumps(traffic, separators=(",", ":"))


# -- the inbox's replay memory across processes ----------------------------------------------


class SharedReplayGuard:
    """A process's inbox replay guard whose admissions the other processes
    learn through the broker, and which learns theirs.

    Why the broker and not the store: the guard is consulted for every
    authentic datagram, on the UDP hot path (one store write per batch,
    ~5.5k merges/s); an exact shared memory would add a durable write (or a
    read) per datagram and a table to sweep. What a replay can do is
    bounded by the merge rule - a message merged twice is the same
    document - except bringing back a message removed since, which needs
    the replay to outlive its remove; the broker spreads an admission in
    well under a millisecond on loopback, and every process's own window
    (``replay.py``: +-30 s, and nothing older than its start) still holds.
    A replay sent to another process within that propagation delay is
    admitted (once per process, at most)."""

    __slots__ = ("inner", "bus")

    def __init__(self, inner: Any, bus: BrokerBus) -> None:
        self.inner = inner
        self.bus = bus

    def is_fresh(self, timestamp_ms: int, now_ms: int) -> bool:
        return self.inner.is_fresh(timestamp_ms, now_ms)

    def admit(self, tag: bytes, timestamp_ms: int, now_ms: int) -> bool:
        accepted = self.inner.admit(tag, timestamp_ms, now_ms)
        if accepted:
            self.bus.datagram_admitted(tag, timestamp_ms)
        return accepted

    def remember(self, tag: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Another process admitted ``tag``: refuse it here from now on."""
        self.inner.admit(tag, timestamp_ms, now_ms)

    def __len__(self) -> int:
        return len(self.inner)


def share_replay_guard(board: Switchboard, bus: BrokerBus) -> None:
    """Have ``board``'s datagram replay guard shared through ``bus``."""
    guard = board.datagram_state
    if guard is not None and hasattr(guard, "admit") and not isinstance(guard, SharedReplayGuard):
        board.datagram_state = SharedReplayGuard(guard, bus)
