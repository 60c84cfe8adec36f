"""The broker's routing, without a broker (``satchel.transports.brokers``):
which events cross and how they are rewritten, which topics a process
follows, the newest-version rule, the wire codec, and the NATS parser fed
whole and one byte at a time."""

from __future__ import annotations

from typing import Any

import pytest

from satchel.protocol.changes import DELETED, Change, DocumentChange, EntryChange
from satchel.protocol.channels import (
    Audience,
    Channel,
    ChannelRegistry,
    CloseChannel,
    CloseConnection,
    Deliver,
    Subscribe,
    SubscribeAudience,
)
from satchel.protocol.permissions.live import RoleChanged
from satchel.transports.brokers import _Latest, open_broker, BrokerUrlError
from satchel.transports.brokers import topics as wire
from satchel.transports.brokers.nats import NatsParser, NatsProtocolError

T = wire.Topics("p")
ROOM = Channel("asnity-room", "/socket/commu-1#c1")


def test_what_crosses_and_how_it_is_rewritten() -> None:
    change = Change("notes", "create", {"_id": "1"}, "u1", "backpack-ws", connection="c7")
    events = [
        change,
        EntryChange("kvStore", "o", "p", "k", "put", b"1", 5, "u1", "resources-http"),
        DocumentChange("r" * 32, 2, b"{}", "inbox-udp"),
        Deliver("backpack", b"hi", Audience(exclude="c7")),  # a broadcast: everyone but its sender
        Deliver("asnity", b"m", Audience(channel=ROOM, exclude="c7")),
        Deliver("backpack", b"reply", Audience(connection="c7")),  # a reply: stays
        Deliver("directus", b"g", Audience(connections=("c1", "c2"))),  # rendered groups: stay
        SubscribeAudience("asnity", Audience(user_id="u2", channel=Channel("asnity-namespace", "/n")), ROOM),
        Subscribe("asnity", "c7", ROOM),  # one connection: stays
        CloseConnection("backpack", "c7"),
        CloseChannel("backpack", Channel("rooms", "r1")),
        RoleChanged("u2", "admin"),
    ]
    crossed = list(wire.exported(T, events))
    assert [topic for topic, _ in crossed] == [
        T.collection("notes"), T.entry("kvStore", "o", "p", "k"), T.document("r" * 32), T.everyone("backpack"),
        T.channel("asnity", ROOM), T.channel("asnity", Channel("asnity-namespace", "/n")),
        T.channel("backpack", Channel("rooms", "r1")), T.control,
    ]
    assert crossed[0][1].connection is None  # c7 names nothing elsewhere
    assert crossed[3][1].audience == Audience() and crossed[4][1].audience == Audience(channel=ROOM)
    envelope = wire.decode(wire.encode(b"node", [event for _, event in crossed]))
    assert envelope.node == b"node" and envelope.events == [event for _, event in crossed]


def test_topic_names_are_safe_subjects_whatever_the_names() -> None:
    for topic in (T.collection("a b.c*>"), T.channel("x", Channel("t\x00", "\r\n#")), T.user("p", "ü")):
        assert all(c not in topic for c in " \t\r\n*>") and topic.count(".") == 2
    with pytest.raises(ValueError):
        wire.Topics("bad prefix")


def _registry(*members: tuple[str, str | None, list[Channel]]) -> ChannelRegistry:
    registry = ChannelRegistry()
    for connection, user, channels in members:
        registry.add_connection(connection, user)
        for channel in channels:
            registry.subscribe(connection, channel)
    return registry


def test_a_process_follows_only_what_its_connections_need() -> None:
    empty = {"backpack": ChannelRegistry(), "directus": ChannelRegistry()}
    assert wire.interest(T, empty) == {T.control}
    directus = _registry(("d1", "u1", [Channel("directus-collection", "notes")]))
    got = wire.interest(T, {"backpack": ChannelRegistry(), "directus": directus})
    assert got == {T.control, T.collection("notes"), T.everyone("directus"), T.user("directus", "u1"),
                   T.channel("directus", Channel("directus-collection", "notes"))}
    entry = Channel("kvStore", '["o", "p", "k"]')
    resources = _registry(("r1", None, [entry, Channel("document", "r" * 32)]))
    got = wire.interest(T, {"resources": resources})
    assert T.entry("kvStore", "o", "p", "k") in got and T.document("r" * 32) in got
    assert T.collection("notes") not in got


def test_a_pattern_covers_the_topics_it_matches() -> None:
    """Backpack shows every collection: one pattern, and no topic it covers
    subscribed again (the broker would deliver such a message twice)."""
    registries = {"backpack": _registry(("b1", "u1", [])),
                  "directus": _registry(("d1", "u1", [Channel("directus-collection", "notes")]))}
    got = wire.interest(T, registries)
    assert T.every("rec") in got and T.collection("notes") not in got
    assert T.user("backpack", "u1") in got  # other kinds are not covered


def test_an_unknown_mount_is_given_everything_once_it_has_a_connection() -> None:
    got = wire.interest(T, {"echo": _registry(("e1", None, []))})
    assert {T.every("rec"), T.every("ent"), T.every("doc"), T.everyone("echo")} <= got


def test_the_newest_version_wins_and_memory_is_bounded() -> None:
    latest = _Latest(2)
    key = ("ent", "kvStore", "o", "p", "k")
    assert latest.newer(key, 5) and latest.newer(key, 7)
    assert not latest.newer(key, 6) and not latest.newer(key, 7)  # older, or the same write again
    latest.newer(("doc", "a"), 1)
    latest.newer(("doc", "b"), 1)  # the entry is forgotten: the bound holds
    assert latest.newer(key, 1)


def test_a_records_writes_are_ranked_by_revision_and_a_delete_outranks_them_until_it_is_created_again() -> None:
    """Guarantee 3 for records (``change_key``): what a process drops when a
    write of one record reaches it after a newer one, through the broker."""
    latest = _Latest(10)

    def fresh(kind: str, revision: int, created: str = "2026-12-01T10:00:00.000Z") -> bool:
        change = Change("things", kind, {"_id": "r1", "createdAt": created, "n": revision}, "u", "backpack-http",
                        revision=revision)
        key = wire.change_key(change)
        assert key is not None
        return latest.newer(*key)

    assert fresh("create", 1) and fresh("patch", 3)
    assert not fresh("patch", 2)  # committed before 3, arrived after it
    assert fresh("delete", DELETED)
    assert not fresh("patch", 4)  # a write that lost the race with the delete
    assert fresh("create", 1, created="2026-12-01T10:00:05.000Z")  # the id created again, later
    # A change whose revision is unknown is never compared (nor dropped).
    assert wire.change_key(Change("things", "patch", {"_id": "r1"}, "u", "backpack-http")) is None
    # The revision crosses the broker.
    crossed = wire.decode(wire.encode(b"n" * 8, [Change("t", "patch", {"_id": "x"}, None, "o", revision=7)]))
    assert crossed.events[0].revision == 7


def test_a_burst_on_one_topic_is_joined_into_one_message_in_order() -> None:
    node = b"n" * 8
    burst = [Deliver("backpack", b"m%d" % n, Audience()) for n in range(70)]
    # Joined on the bytes: array headers of every size (fix, 16-bit), events in order.
    joined = wire.encode(node, burst[:1])
    for n in range(1, 70):
        joined = wire.join(joined, wire.encode(node, burst[n:n + 1]))
    assert wire.decode(joined) == wire.Envelope(node, burst)
    assert wire.decode(wire.join(wire.encode(node, []), wire.encode(node, burst[:20]))).events == burst[:20]
    # Another node's message, or bytes that are not an envelope, are not joined.
    assert wire.join(wire.encode(node, burst[:1]), wire.encode(b"m" * 8, burst[1:2])) is None
    assert wire.join(b"\x92\xc4", wire.encode(node, burst[:1])) is None
    assert wire.encode(node, burst[:3]).startswith(wire.sender_head(node))
    assert not wire.encode(b"m" * 8, burst[:3]).startswith(wire.sender_head(node))
    for broker in (open_broker("nats://127.0.0.1:1?prefix=p"), open_broker("redis://127.0.0.1:1?prefix=p")):
        message = wire.encode(node, burst[:1])
        queued = broker.outgoing  # the broker's PublishQueue
        assert broker.publish("p.all.x", message) is False  # no join set: each goes alone
        assert broker.publish("p.all.x", message) is False and len(queued) == 2
        queued.take(2)
        queued.sent()
        broker.join = wire.join
        assert broker.publish("p.all.x", message) is False
        assert broker.publish("p.all.x", wire.encode(node, burst[1:2])) is True
        assert broker.publish("p.ch.y", message) is False  # another topic: its own message, after
        assert broker.publish("p.all.x", message) is False  # not joined across the other topic
        written = queued.take(3)
        assert [topic for topic, _ in written] == ["p.all.x", "p.ch.y", "p.all.x"]
        assert wire.decode(written[0][1]).events == burst[:2]
        # What is being written takes nothing more: it would be dropped from the queue with it.
        assert broker.publish("p.all.x", message) is False and len(queued) == 4
        queued.sent()
        assert len(queued) == 1
        big = wire.encode(node, [Deliver("backpack", b"x" * (wire.JOIN_LIMIT // 2), Audience())])
        assert broker.publish("p.all.x", big) is True
        assert broker.publish("p.all.x", big) is False  # joined, it would pass JOIN_LIMIT


def test_broker_urls() -> None:
    assert type(open_broker("nats://127.0.0.1:4222?prefix=x")).__name__ == "NatsBroker"
    assert open_broker("redis://127.0.0.1:6379/0?prefix=x").prefix == "x"
    with pytest.raises(BrokerUrlError):
        open_broker("amqp://localhost")


NATS_BYTES = (b'INFO {"server_id":"x","max_payload":1048576}\r\n+OK\r\nPING\r\n'
              b"MSG p.rec.1 3 5\r\nhello\r\nMSG p.ch.2 4 reply.to 0\r\n\r\nMSG p.x 5 7\r\na\r\nb\r\nc\r\nPONG\r\n"
              b"-ERR 'Unknown Subject'\r\n")
NATS_OPS = [("INFO", {"server_id": "x", "max_payload": 1048576}), ("OK",), ("PING",),
            ("MSG", "p.rec.1", "3", b"hello"), ("MSG", "p.ch.2", "4", b""), ("MSG", "p.x", "5", b"a\r\nb\r\nc"),
            ("PONG",), ("ERR", "'Unknown Subject'")]


def test_the_nats_parser_whole_and_byte_by_byte() -> None:
    assert NatsParser().feed(NATS_BYTES) == NATS_OPS
    parser = NatsParser()
    ops = []
    for i in range(len(NATS_BYTES)):
        ops += parser.feed(NATS_BYTES[i:i + 1])
    assert ops == NATS_OPS
    with pytest.raises(NatsProtocolError):
        NatsParser().feed(b"HELLO\r\n")


def test_serve_refuses_a_broker_url_it_cannot_use(capsys: pytest.CaptureFixture[str]) -> None:
    from satchel.transports.cli import main

    assert main(["serve", "--broker", "amqp://127.0.0.1"]) == 2
    assert "--broker must be a redis:// or nats:// URL" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_a_full_queue_overflowing_while_a_batch_is_sent_drops_the_oldest_and_never_an_unsent_one(
        kind: str) -> None:
    """The send queue's bound (``max_queued``) drops the oldest message; if
    that one is part of the batch being written, the write's removal of
    what it sent must be one shorter - it used to remove the first message
    after the batch too, which was never sent."""
    import trio

    written: list[list[bytes]] = []
    writing = trio.Event()
    finish = trio.Event()

    async def hold(sent: list[bytes]) -> None:
        written.append(sent)
        writing.set()
        await finish.wait()

    if kind == "redis":
        from satchel.transports.brokers.redis import RedisBroker

        broker: Any = RedisBroker("redis://127.0.0.1:1", max_queued=4)

        class Publisher:
            async def publish(self, topic: str, data: bytes) -> None:
                await hold([data])

            def pipeline(self, transaction: bool) -> Any:
                batch: list[bytes] = []

                class Pipe:
                    def publish(self, topic: str, data: bytes) -> None:
                        batch.append(data)

                    async def __aenter__(self) -> "Pipe":
                        return self

                    async def __aexit__(self, *exc: object) -> None:
                        await hold(batch)

                return Pipe()

        send = lambda: broker._send(Publisher())  # noqa: E731
    else:
        from satchel.transports.brokers.nats import NatsBroker

        broker = NatsBroker("nats://127.0.0.1:1", max_queued=4)
        broker._connected.set()

        async def write(data: bytes) -> None:
            await hold([line for line in data.split(b"\r\n") if line.startswith(b"m")])

        broker._write = write
        send = broker._send
    for n in range(3):
        broker.publish(f"t{n}", b"m%d" % n)  # three topics: no joins
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await writing.wait()  # m0 m1 m2 are being sent
        for n in range(3, 6):
            broker.publish(f"t{n}", b"m%d" % n)  # the queue is full at 4: m0 and m1 are dropped
        finish.set()
        await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert written[0] == [b"m0", b"m1", b"m2"]
    sent = [data for batch in written for data in batch]
    assert sent[3:] == [b"m3", b"m4", b"m5"], sent  # every message after the batch went out
    assert broker.dropped == 2
