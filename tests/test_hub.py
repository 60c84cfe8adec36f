"""The hub: one encoded frame fanned out to many websockets, and the
slow-consumer policy that keeps a peer that does not read from growing the
server's memory or holding up everyone else."""

from __future__ import annotations

import trio

from satchel.transports.interfaces import ServerLimits
from satchel.transports.websocket import CLOSE, SLOW_CONSUMER_REASON, TEXT, encode_text_frame

from transport_helpers import TestApp, assert_serving, client_frame, open_raw_websocket, running


async def _wait_for(predicate, timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_one_frame_reaches_every_connection_as_the_same_bytes():
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(10):
            clients = [await open_raw_websocket(port) for _ in range(50)]
            await _wait_for(lambda: len(app.hub) == 50)
            payload = b'{"action":"create","response":{"n":1}}' * 5
            frame = encode_text_frame(payload)
            app.hub.deliver(payload, list(app.hub) + ["no-such-connection"])
            for _, reader in clients:
                assert await reader.read_exactly(len(frame)) == frame


async def test_frames_sent_during_accept_follow_the_101_in_order():
    class Racing(TestApp):
        async def accept_websocket(self, request, connection):
            answer = await super().accept_websocket(request, connection)
            # A delivery racing the acceptance, after the greeting.
            self.hub.deliver(b"raced", [connection.id])
            await trio.sleep(0.01)
            return answer

    app = Racing()
    async with running(app) as port:
        with trio.fail_after(5):
            _, reader = await open_raw_websocket(port)  # checks 101, then the greeting
            assert await reader.read_frame() == (TEXT, True, b"raced")


async def test_deliveries_to_a_closing_connection_are_dropped():
    app = TestApp()
    async with running(app, ServerLimits(close_timeout=0.5)) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(client_frame(TEXT, b"close-me"))
            assert await reader.read_close() == 4000
            app.hub.deliver(b"too late", list(app.hub))
            await sock.send(client_frame(CLOSE, (4000).to_bytes(2, "big")))
            assert await reader.read_all() == b""


async def test_a_slow_consumer_is_closed_with_1008_and_the_others_get_everything():
    limits = ServerLimits(websocket_outbox_bytes=32 * 1024, websocket_outbox_messages=200, close_timeout=0.5)
    app = TestApp(send_buffer=4096)
    async with running(app, limits) as port:
        with trio.fail_after(20):
            publisher, publisher_reader = await open_raw_websocket(port, "/chat")
            reader_sock, reader = await open_raw_websocket(port, "/chat")
            sleeper, sleeper_reader = await open_raw_websocket(port, "/chat", receive_buffer=4096)
            await _wait_for(lambda: len(app.hub) == 3)
            ids_before = set(app.hub)

            received: list[bytes] = []
            count = 600
            payload = b"m%05d:" + b"x" * 500

            async def read_everything(reader_, into):
                while len(into) < count:
                    opcode, _, data = await reader_.read_frame()
                    assert opcode == TEXT
                    into.append(data)

            published: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_everything, reader, received)
                nursery.start_soon(read_everything, publisher_reader, published)
                # Bursts of 20 messages, each burst sent once the reader has
                # caught up with the one before: the pace of a live client.
                for burst in range(0, count, 20):
                    await publisher.send(
                        b"".join(client_frame(TEXT, payload % n) for n in range(burst, burst + 20))
                    )
                    await _wait_for(lambda: len(received) >= burst + 20)

            assert received == [payload % n for n in range(count)]
            assert published == received
            # The sleeper was dropped along the way, with 1008...
            await _wait_for(lambda: len(app.closed) == 1)
            [dropped] = app.closed
            assert (dropped.close_code, dropped.close_reason) == (1008, SLOW_CONSUMER_REASON)
            assert dropped.id in ids_before and dropped.id not in app.hub
            assert dropped.buffered_bytes == 0
            # ...and no outbox ever held more than the bound.
            assert app.max_buffered <= limits.websocket_outbox_bytes
            # What the sleeper finds when it finally reads: whole frames in
            # order, perhaps the close frame, then the end of the stream.
            frames = []
            while True:
                try:
                    frames.append(await sleeper_reader.read_frame())
                except EOFError:
                    break
            texts = [data for opcode, _, data in frames if opcode == TEXT]
            assert texts == [payload % n for n in range(len(texts))]
            assert len(texts) < count
            if frames and frames[-1][0] == CLOSE:
                assert int.from_bytes(frames[-1][2][:2], "big") == 1008
        await assert_serving(port)


async def test_a_consumer_that_stops_reading_is_dropped_after_the_write_timeout():
    limits = ServerLimits(write_timeout=0.3, close_timeout=0.5)
    app = TestApp(send_buffer=4096)
    async with running(app, limits) as port:
        with trio.fail_after(10):
            sock, _ = await open_raw_websocket(port, receive_buffer=4096)
            await _wait_for(lambda: len(app.hub) == 1)
            [connection_id] = list(app.hub)
            # Enough to fill the kernel buffers, far below the outbox bounds.
            for _ in range(10):
                app.hub.deliver(b"y" * 10_000, [connection_id])
            app.hub.flush()  # written now rather than by the flusher, for the assertion
            assert app.hub.get(connection_id).buffered_bytes > 0
            await _wait_for(lambda: len(app.closed) == 1)
            assert app.closed[0].close_code == 1008
            sock.close()


async def test_writer_coalesces_a_backlog_in_order():
    app = TestApp(send_buffer=4096)
    async with running(app) as port:
        with trio.fail_after(10):
            _, reader = await open_raw_websocket(port, receive_buffer=4096)
            await _wait_for(lambda: len(app.hub) == 1)
            [connection_id] = list(app.hub)
            payloads = [b"%04d" % n + b"z" * 300 for n in range(500)]
            frames = [encode_text_frame(payload) for payload in payloads]
            for payload in payloads:
                app.hub.deliver(payload, [connection_id])
            app.hub.flush()
            connection = app.hub.get(connection_id)
            assert connection.buffered_bytes > 0  # the socket could not take it all at once
            for frame in frames:
                assert await reader.read_exactly(len(frame)) == frame
            await _wait_for(lambda: connection.buffered_bytes == 0)


async def test_one_tick_of_deliveries_reaches_each_connection_in_order():
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(10):
            (_, reader_a), (_, reader_b), (_, reader_c) = [await open_raw_websocket(port) for _ in range(3)]
            await _wait_for(lambda: len(app.hub) == 3)
            a, b, c = list(app.hub)
            payloads = [b"frame %d" % n for n in range(6)]
            frames = [encode_text_frame(payload) for payload in payloads]
            # One tick, mixed audiences: runs to everyone, to one, to two.
            app.hub.deliver(payloads[0], [a, b, c])
            app.hub.deliver(payloads[1], [a, b, c])
            app.hub.deliver(payloads[2], [b])
            app.hub.deliver(payloads[3], [a, b, c])
            app.hub.deliver(payloads[4], [c, a])
            app.hub.deliver(payloads[5], [a, b, c])
            assert app.hub.pending == 6  # nothing written yet: the flusher writes the tick's batch
            expected = {
                a: [0, 1, 3, 4, 5],
                b: [0, 1, 2, 3, 5],
                c: [0, 1, 3, 4, 5],
            }
            for connection_id, reader in ((a, reader_a), (b, reader_b), (c, reader_c)):
                wanted = b"".join(frames[n] for n in expected[connection_id])
                assert await reader.read_exactly(len(wanted)) == wanted
            assert app.hub.pending == 0


async def test_a_direct_send_never_overtakes_a_delivery_of_the_same_tick():
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(5):
            _, reader = await open_raw_websocket(port)
            await _wait_for(lambda: len(app.hub) == 1)
            [connection_id] = list(app.hub)
            first, second = encode_text_frame(b"delivered first"), encode_text_frame(b"sent second")
            app.hub.deliver(b"delivered first", [connection_id])
            app.hub.get(connection_id).send_frame(second)
            assert await reader.read_exactly(len(first + second)) == first + second


async def test_the_outbox_bound_on_messages_counts_every_frame_of_a_coalesced_write():
    limits = ServerLimits(websocket_outbox_messages=50, close_timeout=0.5)
    app = TestApp(send_buffer=4096)
    async with running(app, limits) as port:
        with trio.fail_after(10):
            sock, _ = await open_raw_websocket(port, receive_buffer=4096)
            await _wait_for(lambda: len(app.hub) == 1)
            [connection_id] = list(app.hub)
            connection = app.hub.get(connection_id)
            # Fill the kernel's buffers (the peer does not read), then one
            # tick of 60 small frames: one chunk in the outbox, 61 frames.
            app.hub.deliver(b"y" * 60_000, [connection_id])
            app.hub.flush()
            assert connection.queued_frames == 1
            for n in range(60):
                app.hub.deliver(b"%d" % n, [connection_id])
            app.hub.flush()
            assert (connection.close_code, connection.close_reason) == (1008, SLOW_CONSUMER_REASON)
            await _wait_for(lambda: len(app.closed) == 1)
            sock.close()


class _PollingLikeTarget:
    """A hub target that is not a websocket: it queues packets and joins them
    with a separator, as an Engine.IO long-polling session does."""

    def __init__(self, target_id: str, framing) -> None:
        self.id = target_id
        self.framing = framing
        self.writes: list[tuple[bytes, int]] = []

    def _send(self, data: bytes, count: int) -> None:
        self.writes.append((data, count))


async def test_each_kind_of_target_frames_a_payload_once_per_delivery():
    from satchel.transports.framing import Framing

    encoded: list[bytes] = []

    def packet(payload: bytes) -> bytes:
        encoded.append(payload)
        return b"4" + payload

    polling = Framing("test-polling", packet, b"\x1e")
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(5):
            (_, reader_a), (_, reader_b) = [await open_raw_websocket(port) for _ in range(2)]
            await _wait_for(lambda: len(app.hub) == 2)
            a, b = list(app.hub)
            p, q = _PollingLikeTarget("p", polling), _PollingLikeTarget("q", polling)
            app.hub.add(p)
            app.hub.add(q)
            # One tick: a run of two deliveries to everyone, then one to some.
            app.hub.deliver(b"one", [a, "p", b, "q"])
            app.hub.deliver(b"two", [a, "p", b, "q"])
            app.hub.deliver(b"three", ["q", b])
            await _wait_for(lambda: app.hub.pending == 0)
            # Framed once per kind, not once per recipient.
            assert encoded == [b"one", b"two", b"three"]
            assert p.writes == [(b"4one\x1e4two", 2)]
            assert q.writes == [(b"4one\x1e4two\x1e4three", 3)]
            frames = [encode_text_frame(payload) for payload in (b"one", b"two", b"three")]
            assert await reader_a.read_exactly(len(frames[0] + frames[1])) == frames[0] + frames[1]
            assert await reader_b.read_exactly(len(b"".join(frames))) == b"".join(frames)
            # A tick of one run only: still once per kind.
            app.hub.deliver(b"solo", [a, "p", b, "q"])
            await _wait_for(lambda: app.hub.pending == 0)
            assert encoded[3:] == [b"solo"]
            assert p.writes[1:] == [(b"4solo", 1)] and q.writes[1:] == [(b"4solo", 1)]
            solo = encode_text_frame(b"solo")
            assert await reader_a.read_exactly(len(solo)) == solo
            assert await reader_b.read_exactly(len(solo)) == solo
