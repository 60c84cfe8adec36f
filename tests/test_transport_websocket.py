"""Websockets over Satchel's own transport (RFC 6455).

The opening handshake (good and bad), messages with a real client
(trio-websocket), then raw frames for everything a client library would
never send: fragments with control frames between them, every protocol
error and its close code, limits, and a fuzz harness. The frame parser is
also tested alone, fed whole and byte by byte.
"""

from __future__ import annotations

import logging
import os
import socket

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url

from satchel.transports.interfaces import ServerLimits
from satchel.transports.websocket import (
    BINARY,
    CLOSE,
    FAILED,
    PING,
    PONG,
    TEXT,
    FrameParser,
    accept_token,
    encode_binary_frame,
    encode_text_frame,
)

from transport_helpers import (
    GREETING,
    Reader,
    TestApp,
    assert_serving,
    client_frame,
    connect,
    handshake_request,
    open_raw_websocket,
    request,
    running,
)

FAST_CLOSE = ServerLimits(close_timeout=0.5, max_websocket_message_bytes=64 * 1024)


@pytest.fixture
def transport_errors(caplog):
    caplog.set_level(logging.ERROR, logger="satchel.transports")
    return lambda: [r for r in caplog.records if r.name.startswith("satchel.transports") and r.levelno >= logging.ERROR]


# --- the opening handshake ---------------------------------------------------


def test_accept_token_matches_rfc_6455_example():
    # RFC 6455 section 1.3.
    assert accept_token("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def test_good_handshake_gets_101_and_the_greeting_follows_it():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            await sock.send(handshake_request(key="dGhlIHNhbXBsZSBub25jZQ=="))
            reader = Reader(sock)
            response = await reader.read_response()
            assert response.status == 101
            assert response.headers["upgrade"].lower() == "websocket"
            assert response.headers["connection"].lower() == "upgrade"
            assert response.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            assert "sec-websocket-extensions" not in response.headers
            assert "sec-websocket-protocol" not in response.headers
            assert await reader.read_frame() == (TEXT, True, GREETING)


async def test_permessage_deflate_is_never_negotiated_and_subprotocol_is_echoed():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            await sock.send(
                handshake_request(
                    extra="Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                    "Sec-WebSocket-Protocol: 3yVr8h, other\r\n"
                )
            )
            response = await Reader(sock).read_response()
            assert response.status == 101
            assert "sec-websocket-extensions" not in response.headers
            assert response.headers["sec-websocket-protocol"] == "3yVr8h"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (handshake_request().replace(b"Sec-WebSocket-Key: ", b"X-Key: "), 400),
        (handshake_request(key="c2hvcnQ="), 400),
        (handshake_request(key="not base64 at all!!!"), 400),
        (handshake_request().replace(b"Version: 13", b"Version: 8"), 426),
        (handshake_request().replace(b"Sec-WebSocket-Version: 13\r\n", b""), 426),
        (handshake_request().replace(b"GET ", b"POST "), 400),
        (handshake_request().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        (handshake_request().replace(b"Host: t\r\n", b""), 400),
    ],
)
async def test_bad_handshakes_are_refused(data, status, transport_errors):
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            await sock.send(data)
            reader = Reader(sock)
            response = await reader.read_response()
            assert response.status == status, response
            assert "message" in response.json()
            if status == 426:
                assert response.headers["sec-websocket-version"] == "13"
            assert await reader.read_all() == b""
        await assert_serving(port)
    assert transport_errors() == []


async def test_upgrade_without_connection_upgrade_is_plain_http():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            data = handshake_request(path="/echo").replace(b"Connection: Upgrade\r\n", b"")
            response = await request(port, data)
            assert response.status == 200


async def test_application_may_refuse_the_upgrade():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            response = await request(port, handshake_request(path="/refuse"))
            assert response.status == 403 and response.json() == {"message": "Unauthorized"}


# --- messages with a real client ---------------------------------------------


async def test_text_and_binary_messages_with_trio_websocket():
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(5):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", subprotocols=["v1"]) as ws:
                assert ws.subprotocol == "v1"
                assert await ws.get_message() == GREETING.decode()
                await ws.send_message("héllo")
                assert await ws.get_message() == "héllo"
                await ws.send_message(b"\x00\x01\xff")
                assert await ws.get_message() == b"\x00\x01\xff"
                for size in (125, 126, 65535, 65536, 70_000):
                    await ws.send_message("x" * size)
                    assert await ws.get_message() == "x" * size
            with trio.fail_after(2):
                while not app.closed:
                    await trio.sleep(0.01)
            assert app.closed[0].close_code == 1000


async def test_server_initiated_close_handshake():
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(5):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.get_message()
                await ws.send_message("close-me")
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 4000
                assert closed.value.reason.reason == "bye"
            while not app.closed:
                await trio.sleep(0.01)
            assert app.closed[0].close_code == 4000


async def test_an_application_error_closes_with_1011_and_the_server_lives(transport_errors):
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(client_frame(TEXT, b"boom"))
            assert await reader.read_close() == 1011
            await sock.send(client_frame(CLOSE, (1011).to_bytes(2, "big")))
            assert await reader.read_all() == b""
        await assert_serving(port)
    [record] = transport_errors()
    assert "boom" in str(record.exc_info[1])


# --- raw frames --------------------------------------------------------------


async def test_fragments_with_control_frames_between_them():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(
                client_frame(TEXT, b"frag", fin=False)
                + client_frame(PING, b"p1")
                + client_frame(0, "mént".encode()[:2], fin=False)
                + client_frame(PONG, b"unsolicited")
                + client_frame(0, "mént".encode()[2:], fin=False)
                + client_frame(0, b"ed", fin=True)
            )
            assert await reader.read_frame() == (PONG, True, b"p1")
            assert await reader.read_frame() == (TEXT, True, "fragménted".encode())
            await sock.send(client_frame(BINARY, b"\x01", fin=False) + client_frame(0, b"\x02"))
            assert await reader.read_frame() == (BINARY, True, b"\x01\x02")


async def test_ping_gets_a_pong_with_the_same_payload():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            for payload in (b"", b"abc", os.urandom(125)):
                await sock.send(client_frame(PING, payload))
                assert await reader.read_frame() == (PONG, True, payload)


async def test_client_initiated_close_is_echoed_then_the_server_closes_tcp():
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(client_frame(CLOSE, (1001).to_bytes(2, "big") + b"going"))
            assert await reader.read_frame() == (CLOSE, True, (1001).to_bytes(2, "big"))
            assert await reader.read_all() == b""
            while not app.closed:
                await trio.sleep(0.01)
            [closed] = app.closed
            assert (closed.close_code, closed.close_reason) == (1001, "going")
            assert len(app.hub) == 0


async def test_empty_close_is_answered_with_an_empty_close():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(client_frame(CLOSE, b""))
            assert await reader.read_frame() == (CLOSE, True, b"")


async def test_dropped_connection_reports_1006_once():
    app = TestApp()
    async with running(app) as port:
        with trio.fail_after(5):
            sock, _ = await open_raw_websocket(port)
            sock.close()
            while not app.closed:
                await trio.sleep(0.01)
            await trio.sleep(0.05)
            assert [c.close_code for c in app.closed] == [1006]


BAD_FRAMES = [
    (client_frame(TEXT, b"unmasked", masked=False), 1002),
    (client_frame(TEXT, b"rsv", rsv=1), 1002),
    (client_frame(TEXT, b"rsv", rsv=4), 1002),
    (client_frame(0x3, b"reserved opcode"), 1002),
    (client_frame(0xB, b"reserved control"), 1002),
    (client_frame(PING, b"fragmented", fin=False), 1002),
    (client_frame(PING, b"p" * 126), 1002),
    (client_frame(0, b"continuation first"), 1002),
    (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
    (client_frame(TEXT, b"\xff\xfe"), 1007),
    (client_frame(TEXT, b"\xe2\x82", fin=False) + client_frame(0, b"\x28"), 1007),
    (client_frame(TEXT, b"a\xed\xa0\x80b"), 1007),  # an encoded surrogate
    (client_frame(CLOSE, b"\x03"), 1002),
    (client_frame(CLOSE, (999).to_bytes(2, "big")), 1002),
    (client_frame(CLOSE, (1005).to_bytes(2, "big")), 1002),
    (client_frame(CLOSE, (1006).to_bytes(2, "big")), 1002),
    (client_frame(CLOSE, (2000).to_bytes(2, "big")), 1002),
    (client_frame(CLOSE, (5000).to_bytes(2, "big")), 1002),
    (client_frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
    (client_frame(TEXT, b"x" * (64 * 1024 + 1)), 1009),
    (client_frame(BINARY, b"x" * 40_000, fin=False) + client_frame(0, b"x" * 40_000), 1009),
    # A 64-bit length with the top bit set, and one far past the limit: the
    # server answers from the header alone, without waiting for the payload.
    (bytes((0x82, 0xFF)) + (1 << 63).to_bytes(8, "big") + b"mask", 1002),
    (bytes((0x82, 0xFF)) + (1 << 40).to_bytes(8, "big") + b"mask", 1009),
]


# Ids by position: the frames carry random masks, and test ids must be the
# same in every pytest-xdist worker's collection.
@pytest.mark.parametrize(("data", "code"), BAD_FRAMES, ids=[f"frame{n}-{code}" for n, (_, code) in enumerate(BAD_FRAMES)])
async def test_protocol_errors_close_with_their_code(data, code, transport_errors):
    app = TestApp()
    async with running(app, FAST_CLOSE) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(data)
            assert await reader.read_close() == code
            assert await reader.read_all() == b""  # the server sent FIN after its close
            sock.close()
            while not app.closed:
                await trio.sleep(0.01)
            assert app.closed[0].close_code == code
        await assert_serving(port)
    assert transport_errors() == []


async def test_close_handshake_times_out_when_the_peer_never_answers():
    app = TestApp()
    async with running(app, FAST_CLOSE) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(client_frame(TEXT, b"close-me"))
            assert await reader.read_close() == 4000
            # We never answer and never close; the server gives up on us.
            start = trio.current_time()
            assert await reader.read_all() == b""
            assert trio.current_time() - start < 2


async def test_frames_after_the_handshake_bytes_in_the_same_packet():
    async with running(TestApp(greet=False)) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            await sock.send(handshake_request() + client_frame(TEXT, b"early") + client_frame(PING, b"x"))
            reader = Reader(sock)
            assert (await reader.read_response()).status == 101
            assert await reader.read_frame() == (TEXT, True, b"early")
            assert await reader.read_frame() == (PONG, True, b"x")


# --- the parser alone --------------------------------------------------------


def _events(parser: FrameParser, data: bytes, piece: int) -> list:
    events = []
    for start in range(0, len(data), piece):
        events.extend(parser.receive(data[start : start + piece]))
    return events


messages = st.lists(
    st.tuples(
        st.sampled_from([TEXT, BINARY, PING]),
        st.text(max_size=300).map(str.encode),
        st.integers(1, 4),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(messages, st.integers(1, 700))
def test_parser_reassembles_fragments_whatever_the_reads(plan, piece):
    stream = b""
    expected = []
    for opcode, payload, fragments in plan:
        if opcode == PING:
            payload = payload[:125]
            stream += client_frame(PING, payload)
            expected.append((PING, payload))
            continue
        cut = [len(payload) * i // fragments for i in range(fragments + 1)]
        for i in range(fragments):
            stream += client_frame(opcode if i == 0 else 0, payload[cut[i] : cut[i + 1]], fin=i == fragments - 1)
            if i == 0 and fragments > 1:
                stream += client_frame(PONG, b"between")
                expected.append((PONG, b"between"))
        expected.append((opcode, payload.decode() if opcode == TEXT else payload))
    assert _events(FrameParser(1 << 20), stream, len(stream) or 1) == expected
    assert _events(FrameParser(1 << 20), stream, piece) == expected
    assert _events(FrameParser(1 << 20), stream, 1) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_parser_on_garbage_only_fails_with_a_close_code(data, piece):
    for events in (_events(FrameParser(1024), data, len(data) or 1), _events(FrameParser(1024), data, piece)):
        failures = [value for opcode, value in events if opcode == FAILED]
        assert len(failures) <= 1
        assert all(code in (1002, 1007, 1009) for code, _ in failures)
        assert all(opcode in (TEXT, BINARY, PING, PONG, CLOSE, FAILED) for opcode, _ in events)


def test_encoded_frames_use_the_shortest_length():
    assert encode_text_frame(b"hi") == b"\x81\x02hi"
    assert encode_text_frame(b"a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert encode_binary_frame(b"a" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")


# --- fuzzing a live connection -----------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    noise=st.one_of(
        st.binary(max_size=600),
        st.lists(
            st.sampled_from(
                [client_frame(TEXT, b"ok"), client_frame(PING, b""), b"\x81\x80", b"\x01\x85", b"\x88\x82", b"\xff"]
            )
        ).map(b"".join),
    )
)
async def test_random_bytes_after_the_handshake_never_crash(noise, transport_errors):
    app = TestApp()
    async with running(app, FAST_CLOSE) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            await sock.send(noise)
            sock.shutdown(socket.SHUT_WR)  # we have said all we will say
            while True:
                try:
                    opcode, _, payload = await reader.read_frame()
                except EOFError:
                    break
                assert opcode in (TEXT, BINARY, PONG, CLOSE)
                if opcode == CLOSE and payload:
                    # Ours for a protocol error, or the echo of a valid one it sent.
                    assert 1000 <= int.from_bytes(payload[:2], "big") <= 4999
            while not app.closed:
                await trio.sleep(0.01)
            assert len(app.closed) == 1
        await assert_serving(port)
    assert transport_errors() == []


async def test_after_a_failure_the_peers_close_ends_the_connection_at_once():
    # A peer that keeps sending the oversized message it started, then answers
    # our close: the server skips the frame by its header, sees the answer and
    # closes without waiting out close_timeout.
    app = TestApp()
    limits = ServerLimits(close_timeout=10, max_websocket_message_bytes=1024)
    async with running(app, limits) as port:
        with trio.fail_after(5):
            sock, reader = await open_raw_websocket(port)
            oversized = client_frame(TEXT, b"x" * 100_000)
            await sock.send(oversized[:2000])
            assert await reader.read_close() == 1009
            await sock.send(oversized[2000:] + client_frame(CLOSE, (1009).to_bytes(2, "big")))
            start = trio.current_time()
            while not app.closed:
                await trio.sleep(0.01)
            assert trio.current_time() - start < 1
            assert app.closed[0].close_code == 1009


def test_parser_after_a_failure_finds_the_close_frame_in_any_reads():
    stream = (
        client_frame(TEXT, b"ok")
        + client_frame(TEXT, b"\xff")  # 1007
        + client_frame(BINARY, b"skipped" * 50, masked=False)
        + client_frame(0xB, b"any opcode")
        + client_frame(CLOSE, b"\x03\xe8")
        + b"after the close"
    )
    expected = [(TEXT, "ok"), (FAILED, (1007, "text message is not valid UTF-8")), (CLOSE, None)]
    for piece in (len(stream), 7, 1):
        assert _events(FrameParser(1 << 20), stream, piece) == expected
