"""NATS as Satchel's broker (``--broker nats://HOST:PORT``): core NATS
pub/sub over a small client of Satchel's own, native to trio.

Why not the official client: nats-py is built on asyncio and does not run
under trio; bridging it means an asyncio loop in a thread and a hop across
threads for every message each way (benches/bench_broker.py measures the
two). The part of NATS a bus needs - the text protocol's ``CONNECT``,
``PUB``, ``SUB``, ``UNSUB``, ``MSG``, ``PING``/``PONG`` - is a few lines to
parse, so it is parsed here sans-IO (``NatsParser``) and spoken over one trio
TCP stream. JetStream is not used: pub/sub, as with Redis, keeps nothing for
a process that is not connected.

One connection publishes and subscribes. It is opened with ``no_echo``, so
the server never sends a process its own messages. NATS delivers the
messages of one publishing connection to a subscriber in the order it
published them, which is what the commit-order guarantee across processes
rests on (``BrokerBus``). ``set_interest`` returns once the server has
processed the subscriptions (a ``PING`` answered after them).

Connection loss: the client reconnects every 0.5 s and subscribes again;
what was queued meanwhile is kept (at most ``max_queued`` messages; beyond,
the oldest are dropped and counted in ``dropped``). What others published
while this connection was down is not delivered (NATS core keeps nothing):
once the new connection's subscriptions are in force, the owner is told
(``resubscribed``).
"""

from __future__ import annotations

import collections
import json
import logging
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import trio

from .publishing import PublishQueue, QueuedPublisher
from .topics import JOIN_LIMIT

__all__ = ["NatsBroker", "NatsParser", "NatsProtocolError"]

log = logging.getLogger("satchel.broker")

_MAX_LINE = 64 * 1024


class NatsProtocolError(Exception):
    """The server sent something that is not NATS, or an ``-ERR``."""


class NatsParser:
    """Bytes from a NATS server in, operations out: ``("MSG", subject, sid,
    payload)``, ``("PING",)``, ``("PONG",)``, ``("INFO", dict)``, ``("OK",)``,
    ``("ERR", text)``."""

    __slots__ = ("_buffer", "_pending")

    def __init__(self) -> None:
        self._buffer = bytearray()
        # A MSG whose payload has not fully arrived: (subject, sid, size).
        self._pending: tuple[str, str, int] | None = None

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        buffer = self._buffer
        buffer += data
        out: list[tuple[Any, ...]] = []
        while True:
            if self._pending is not None:
                subject, sid, size = self._pending
                if len(buffer) < size + 2:
                    break
                out.append(("MSG", subject, sid, bytes(buffer[:size])))
                del buffer[:size + 2]
                self._pending = None
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > _MAX_LINE:
                    raise NatsProtocolError("a line longer than 64 KiB")
                break
            line = bytes(buffer[:end])
            del buffer[:end + 2]
            op, _, rest = line.partition(b" ")
            op = op.upper()
            if op == b"MSG":
                parts = rest.split()
                if len(parts) not in (3, 4):
                    raise NatsProtocolError(f"bad MSG line: {line[:200]!r}")
                self._pending = (parts[0].decode(), parts[1].decode(), int(parts[-1]))
            elif op == b"PING":
                out.append(("PING",))
            elif op == b"PONG":
                out.append(("PONG",))
            elif op == b"+OK":
                out.append(("OK",))
            elif op == b"-ERR":
                out.append(("ERR", rest.decode(errors="replace")))
            elif op == b"INFO":
                out.append(("INFO", json.loads(rest)))
            else:
                raise NatsProtocolError(f"unknown operation: {line[:200]!r}")
        return out


def _subject_ok(subject: str) -> bool:
    return bool(subject) and not any(c in subject for c in " \t\r\n")


class NatsBroker(QueuedPublisher):
    """Publishes and subscribes on the NATS server at ``url``."""

    def __init__(self, url: str, *, name: str = "satchel", max_queued: int = 100_000) -> None:
        split = urlsplit(url)
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port or 4222
        self.user, self.password = split.username, split.password
        #: ``?prefix=NAME`` in the URL: the topic prefix (one cluster per prefix)
        self.prefix = parse_qs(split.query).get("prefix", ["satchel"])[0]
        self.name = name
        #: what is yet to be published (bounded at ``max_queued``; ``publishing``)
        self.outgoing = PublishQueue(max_queued)
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._subscriptions: dict[str, int] = {}  # topic -> sid
        self._topic_of: dict[str, str] = {}  # sid -> topic
        self._next_sid = 1
        self._pongs: collections.deque[trio.Event] = collections.deque()
        self._connected = trio.Event()
        self._interest_lock = trio.Lock()
        #: Called (no arguments) once the subscriptions are back after a
        #: connection loss: what was published meanwhile was not received.
        self.resubscribed: Callable[[], None] | None = None
        self.published = 0
        #: the server's limit on one message (its INFO says; NATS closes a
        #: connection that sends more, so such a message is dropped here)
        self.max_payload = 1024 * 1024

    async def check(self) -> None:
        """Connect once and shake hands: raises when the server cannot be reached."""
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(self.host, self.port)
            async with stream:
                await self._handshake(stream, NatsParser())

    async def run(self, deliver: Callable[[str, bytes], None], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (again, whenever the connection is lost), follow what
        ``set_interest`` says and hand every message to ``deliver(topic,
        data)`` until cancelled."""
        first = True
        while True:
            try:
                stream = await trio.open_tcp_stream(self.host, self.port)
            except OSError as error:
                if first:
                    raise
                log.warning("cannot reach NATS at %s:%d (%s); retrying", self.host, self.port, error)
                await trio.sleep(0.5)
                continue
            try:
                async with stream, trio.open_nursery() as nursery:
                    parser = NatsParser()
                    await self._handshake(stream, parser)
                    self._stream = stream
                    # Subscribe again to what was followed before the loss.
                    topics = list(self._subscriptions)
                    self._subscriptions.clear()
                    self._topic_of.clear()
                    restored = None
                    if not first:
                        # The server's PONG to this PING says the SUBs before it are in force.
                        restored = trio.Event()
                        self._pongs.append(restored)
                    await self._write(b"".join(self._sub(topic) for topic in topics) + (b"PING\r\n" if restored is not None else b""))
                    self._connected.set()
                    nursery.start_soon(self._send)
                    if restored is not None:
                        nursery.start_soon(self._signal_when, restored)
                    if first:
                        first = False
                        task_status.started()
                    await self._receive(stream, parser, deliver)
            except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError, NatsProtocolError,
                     trio.TooSlowError) as lost:
                log.warning("lost the connection to NATS (%s); reconnecting", lost.exceptions[0])
            finally:
                self._stream = None
                self._connected = trio.Event()
                for waiter in self._pongs:
                    waiter.set()
                self._pongs.clear()
            await trio.sleep(0.5)

    async def _signal_when(self, restored: trio.Event) -> None:
        """Tell the owner (``resubscribed``) once the resubscription is in force."""
        await restored.wait()
        if self._stream is None:
            return  # lost again before the PONG: the next connection signals
        log.warning("broker subscriptions restored after a lost connection")
        if self.resubscribed is not None:
            try:
                self.resubscribed()
            except Exception:
                log.exception("handling the broker's resubscription failed")

    async def _handshake(self, stream: trio.SocketStream, parser: NatsParser) -> None:
        with trio.fail_after(10):
            info = None
            while info is None:
                data = await stream.receive_some(65536)
                if not data:
                    raise NatsProtocolError("the server closed the connection")
                for op in parser.feed(data):
                    if op[0] == "INFO":
                        info = op[1]
                        self.max_payload = int(info.get("max_payload", self.max_payload))
                        self.outgoing.join_limit = min(JOIN_LIMIT, self.max_payload)  # a joined message must fit too
            options: dict[str, Any] = {"verbose": False, "pedantic": False, "no_echo": True, "name": self.name,
                                       "lang": "python-trio", "version": "satchel", "protocol": 1, "headers": False}
            if self.user is not None:
                options.update(user=self.user, **{"pass": self.password or ""})
            await stream.send_all(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    raise NatsProtocolError("the server closed the connection")
                for op in parser.feed(data):
                    if op[0] == "ERR":
                        raise NatsProtocolError(op[1])
                    if op[0] == "PONG":
                        return

    def _sub(self, topic: str) -> bytes:
        sid = str(self._next_sid)
        self._next_sid += 1
        self._subscriptions[topic] = int(sid)
        self._topic_of[sid] = topic
        return f"SUB {topic} {sid}\r\n".encode()

    async def _write(self, data: bytes) -> None:
        stream = self._stream
        if stream is None or not data:
            return
        async with self._send_lock:
            await stream.send_all(data)

    async def set_interest(self, topics: frozenset[str]) -> None:
        """Follow exactly ``topics`` (a trailing ``*`` is NATS's one-token
        wildcard); returns once the server has processed it."""
        async with self._interest_lock:
            await self._connected.wait()
            lines = []
            for topic in sorted(topics - self._subscriptions.keys()):
                if _subject_ok(topic):
                    lines.append(self._sub(topic))
            for topic in sorted(self._subscriptions.keys() - topics):
                sid = str(self._subscriptions.pop(topic))
                self._topic_of.pop(sid, None)
                lines.append(f"UNSUB {sid}\r\n".encode())
            if not lines:
                return
            pong = trio.Event()
            self._pongs.append(pong)
            try:
                await self._write(b"".join(lines) + b"PING\r\n")
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the reconnection subscribes to what is recorded
            with trio.move_on_after(5):
                await pong.wait()

    async def _send(self) -> None:
        outgoing = self.outgoing
        while True:
            await outgoing.wait()
            await self._connected.wait()
            batch = outgoing.take(1000)
            chunks = []
            for topic, data in batch:
                if len(data) > self.max_payload:
                    outgoing.dropped += 1
                    log.warning("a %d-byte message on %s exceeds the NATS server's max_payload (%d): not sent",
                                len(data), topic, self.max_payload)
                    continue
                chunks.append(b"PUB %s %d\r\n%s\r\n" % (topic.encode(), len(data), data))
            try:
                await self._write(b"".join(chunks))
            except BaseException:
                outgoing.failed()
                raise
            outgoing.sent()
            self.published += len(batch)

    async def _receive(self, stream: trio.SocketStream, parser: NatsParser, deliver: Callable[[str, bytes], None]) -> None:
        while True:
            data = await stream.receive_some(256 * 1024)
            if not data:
                raise trio.BrokenResourceError("NATS closed the connection")
            for op in parser.feed(data):
                kind = op[0]
                if kind == "MSG":
                    topic = self._topic_of.get(op[2])
                    if topic is None:
                        continue  # a subscription just cancelled
                    try:
                        deliver(op[1], op[3])
                    except Exception:
                        log.exception("applying a broker message failed")
                elif kind == "PING":
                    await self._write(b"PONG\r\n")
                elif kind == "PONG":
                    if self._pongs:
                        self._pongs.popleft().set()
                elif kind == "ERR":
                    log.warning("NATS: %s", op[1])
