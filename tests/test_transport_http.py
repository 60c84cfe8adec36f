"""HTTP/1.1 over Satchel's own transport, on raw sockets.

Read like the spec: keep-alive and pipelining, bodies (length, chunked,
100-continue), HEAD, every limit and its status, malformed input, timeouts,
an application that raises, the hypercorn hazard (STACK.md), and a fuzz
harness holding that no input earns a 500 or takes the server down.
"""

from __future__ import annotations

import gc
import logging
import socket

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satchel.protocol.http import HttpResponse
from satchel.transports.http import RequestParser, Received, Rejected, format_response
from satchel.transports.interfaces import ServerLimits
from satchel.transports.server import Server

from transport_helpers import (
    Reader,
    TestApp,
    assert_serving,
    connect,
    exchange_all,
    open_raw_websocket,
    parse_responses,
    request,
    running,
)

SMALL = ServerLimits(
    max_header_bytes=1024,
    max_body_bytes=4096,
    header_timeout=0.3,
    body_timeout=0.3,
    keepalive_timeout=0.3,
    close_timeout=0.5,
)


@pytest.fixture
def transport_errors(caplog):
    """The ERROR records the transport logged during the test."""
    caplog.set_level(logging.ERROR, logger="satchel.transports")
    return lambda: [r for r in caplog.records if r.name.startswith("satchel.transports") and r.levelno >= logging.ERROR]


# --- keep-alive, pipelining, bodies ------------------------------------------


async def test_keep_alive_answers_requests_in_turn():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            for n in range(3):
                await sock.send(f"GET /echo?n={n} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                response = await reader.read_response()
                assert response.status == 200
                assert response.json()["target"] == f"/echo?n={n}"
                assert "connection" not in response.headers
                assert response.headers["content-type"] == "application/json; charset=utf-8"
                assert "date" in response.headers


async def test_a_large_body_does_not_count_against_the_next_requests_head():
    # Regression: the read that completed a large body was once counted as
    # head bytes of the next request, which then got 431.
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            body = b"b" * 50_000
            await sock.send(f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            await trio.sleep(0.05)  # the server reads the head alone, then the body in one large read
            await sock.send(body)
            assert (await reader.read_response()).status == 200
            await sock.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await reader.read_response()).status == 200


async def test_pipelined_requests_are_answered_in_order():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(
                b"GET /echo?1 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST /echo?2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /echo?4 HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            first, second, third, fourth = [await reader.read_response() for _ in range(4)]
            assert first.json()["target"] == "/echo?1"
            assert second.json()["body"] == "hello"
            assert third.status == 404 and third.json() == {"message": "Not found"}
            assert fourth.json()["target"] == "/echo?4"


async def test_chunked_request_body_arriving_in_pieces():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            pieces = [
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n",
                b"1;ext=1\r\n,\r\n6\r\n world\r\n",
                b"0\r\nTrailer: x\r\n\r\n",
            ]
            for piece in pieces:
                await sock.send(piece)
                await trio.sleep(0.01)
            response = await Reader(sock).read_response()
            assert response.status == 200
            assert response.json()["body"] == "hello, world"


async def test_expect_100_continue_invites_the_body():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
            interim = await reader.read_response()
            assert interim.status == 100
            await sock.send(b"data")
            final = await reader.read_response()
            assert final.status == 200 and final.json()["body"] == "data"


async def test_expect_100_continue_with_too_large_body_gets_413_not_100():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            response = await request(
                port, b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 99999\r\n\r\n"
            )
            assert response.status == 413


async def test_head_sends_the_length_of_the_body_but_not_the_body():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\nHEAD /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            get = await reader.read_response()
            head = await reader.read_response(head_only=True)
            assert head.status == 200
            assert head.headers["content-length"] == str(len(get.body.replace(b'"GET"', b'"HEAD"')))
            # No body bytes followed the HEAD answer: the next response starts clean.
            await sock.send(b"GET /echo?after HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await reader.read_response()).json()["target"] == "/echo?after"


async def test_connection_close_is_honoured():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            response = await reader.read_response()
            assert response.headers["connection"] == "close"
            assert await reader.read_all() == b""


async def test_http_10_closes_unless_kept_alive():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert (await reader.read_response()).headers["connection"] == "keep-alive"
            await sock.send(b"GET /echo HTTP/1.0\r\n\r\n")
            assert (await reader.read_response()).headers["connection"] == "close"
            assert await reader.read_all() == b""


# --- limits and malformed input ----------------------------------------------


async def test_oversized_headers_get_431():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            big = b"x" * 2000
            for data in (
                b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + big + b"\r\n\r\n",
                b"GET /echo?" + big + b" HTTP/1.1\r\nHost: t\r\n\r\n",
                b"GET /echo HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(300)) + b"\r\n",
            ):
                response = await request(port, data)
                assert response.status == 431
                assert response.headers["connection"] == "close"
            # A head that never ends is cut off too, without waiting for its end.
            assert parse_responses(await exchange_all(port, b"GET / HTTP/1.1\r\nX: " + b"y" * 5000)) == [431]
        await assert_serving(port)


async def test_oversized_bodies_get_413_without_being_read():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            response = await request(port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n")
            assert response.status == 413 and response.json() == {"message": "Request body too large"}
            chunk = b"1000\r\n" + b"z" * 4096 + b"\r\n"
            data = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3
            assert parse_responses(await exchange_all(port, data)) == [413]
        await assert_serving(port)


async def test_a_body_at_the_limit_is_accepted():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            body = b"b" * SMALL.max_body_bytes
            response = await request(port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n" + body)
            assert response.status == 200 and len(response.json()["body"]) == 4096


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n: empty\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: t\n\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ],
)
async def test_malformed_requests_get_an_error_and_a_close(data, status, transport_errors):
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            await sock.send(data)
            reader = Reader(sock)
            response = await reader.read_response()
            assert response.status == status
            assert response.headers["connection"] == "close"
            assert "message" in response.json()
            assert await reader.read_all() == b""
        await assert_serving(port)
    assert transport_errors() == []


async def test_an_error_after_pipelined_requests_comes_after_their_answers():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            data = b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n" * 2 + b"BAD REQUEST\r\n\r\n"
            assert parse_responses(await exchange_all(port, data)) == [200, 200, 400]


# --- timeouts ----------------------------------------------------------------


async def test_slowloris_is_cut_off_by_the_header_timeout():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            await sock.send(b"GET /echo HTTP/1.1\r\n")
            start = trio.current_time()
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                # One header byte every 50 ms never completes the head in time.
                for _ in range(100):
                    await sock.send(b"X")
                    await trio.sleep(0.05)
            assert trio.current_time() - start < 2
        await assert_serving(port)


async def test_a_silent_connection_is_closed():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            start = trio.current_time()
            assert await Reader(sock).read_all() == b""
            assert 0.2 < trio.current_time() - start < 2


async def test_idle_keep_alive_connection_is_closed():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await reader.read_response()).status == 200
            assert await reader.read_all() == b""


async def test_a_stalled_body_is_cut_off():
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            await sock.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            assert await Reader(sock).read_all() == b""


# --- the application misbehaving ---------------------------------------------


async def test_an_application_error_is_a_500_and_the_connection_lives_on(transport_errors):
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
            response = await reader.read_response()
            assert response.status == 500
            assert response.json() == {"message": "Internal server error"}
            await sock.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await reader.read_response()).status == 200
        await assert_serving(port)
    [record] = transport_errors()
    assert record.exc_info and "boom" in str(record.exc_info[1])


async def test_a_response_header_with_a_line_break_is_a_500():
    class Splitter(TestApp):
        async def handle_http(self, request):
            return HttpResponse(200, [("x-evil", "a\r\nset-cookie: stolen=1")], b"")

    async with running(Splitter()) as port:
        with trio.fail_after(5):
            response = await request(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert response.status == 500 and "set-cookie" not in response.headers


# --- the hypercorn hazard (STACK.md) -----------------------------------------

UPGRADE_HEADERS = (
    b"Host: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.mark.parametrize(
    "data",
    [
        # A websocket path: 101, then the trailing bytes are bad frames (1002).
        b"GET /ws HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\ntrailing bytes",
        b"GET /ws HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\n\x00\xff" * 100,
        # A plain path: an ordinary request; what trails is read as HTTP.
        b"GET /echo HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\ntrailing bytes",
        b"POST /echo HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Content-Length: 3\r\n\r\nabc\x00\x01garbage",
        b"GET /missing HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\n" + bytes(range(256)),
        b"GET /echo HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nPRI * HTTP/2.0\r\n",
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n\x16\x03\x01garbage",
        # A refused upgrade, then garbage.
        b"GET /refuse HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\n\xde\xad\xbe\xef",
    ],
)
async def test_upgrade_with_trailing_bytes_never_kills_the_server(data, transport_errors):
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            await exchange_all(port, data)
        await assert_serving(port)
    assert transport_errors() == []


async def test_ignored_upgrade_keeps_the_body_and_the_pipeline():
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            reader = Reader(sock)
            await sock.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                b"GET /echo?next HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            first = await reader.read_response()
            assert first.status == 200 and first.json()["body"] == "abc"
            assert ["upgrade", "h2c"] in first.json()["headers"]
            assert (await reader.read_response()).json()["target"] == "/echo?next"


# --- the parser alone, and fuzzing -------------------------------------------

REQUESTS = (
    b"GET /echo?a HTTP/1.1\r\nHost: t\r\n\r\n"
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
    b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
)


def _parse(pieces: list[bytes]) -> list:
    parser = RequestParser(ServerLimits(), lambda request: False)
    for piece in pieces:
        parser.feed(piece)
    return [
        (item.request.method, item.request.target, item.request.body) if type(item) is Received else item
        for item in parser.items
    ]


def test_parser_gives_the_same_requests_whole_or_byte_by_byte():
    whole = _parse([REQUESTS])
    assert whole == [("GET", "/echo?a", b""), ("POST", "/echo", b"abc"), ("PUT", "/echo", b"xy")]
    assert _parse([REQUESTS[i : i + 1] for i in range(len(REQUESTS))]) == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_parser_on_garbage_only_rejects(data, piece):
    """Whatever the bytes, the parser yields requests or one 4xx/5xx
    ``Rejected`` - never an exception - fed whole or in pieces."""
    whole = _parse([data])
    assert _parse([data[i : i + piece] for i in range(0, len(data), piece)]) == whole or any(
        type(item) is Rejected for item in whole
    )
    rejected = [item for item in whole if type(item) is Rejected]
    assert len(rejected) <= 1 and all(item.status in (400, 413, 431, 501, 505) for item in rejected)


request_prefixes = st.sampled_from(
    [
        b"",
        b"GET / HTTP/1.1\r\n",
        b"GET /echo HTTP/1.1\r\nHost: t\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n",
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /ws HTTP/1.1\r\n" + UPGRADE_HEADERS,
        b"GET /echo HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\n",
        b"GET /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    ]
)
garbage = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from([b"\r\n", b":", b" ", b"0", b"\x00", b"X-A: b", b"HTTP/1.1", b"\r\n\r\n"])).map(b"".join),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(prefix=request_prefixes, noise=garbage)
async def test_fuzzed_input_gets_at_most_a_4xx_and_the_server_lives(prefix, noise, transport_errors):
    async with running(TestApp(), SMALL) as port:
        with trio.fail_after(5):
            answer = await exchange_all(port, prefix + noise)
        if not answer.startswith(b"HTTP/1.1 101 "):
            assert all(status < 500 or status in (501, 505) for status in parse_responses(answer)), answer
        await assert_serving(port)
    assert transport_errors() == []


# --- response formatting -----------------------------------------------------


def test_format_response_owns_framing_headers():
    response = HttpResponse(201, [("Content-Length", "999"), ("x-a", "b"), ("connection", "upgrade")], b"hi")
    data = format_response(response, head_only=False, connection="close")
    head, body = data.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 201 Created"
    assert b"x-a: b" in lines and b"content-length: 2" in lines and b"connection: close" in lines
    assert not any(line.lower().startswith(b"content-length: 999") for line in lines)
    assert body == b"hi"
    no_content = format_response(HttpResponse(204, [], b""), head_only=False)
    assert b"content-length" not in no_content and no_content.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("header", [("x-a", "b\r\nset-cookie: stolen=1"), ("x-a", "b\nx-b: c"), ("x\rb", "c")])
def test_format_response_refuses_a_line_break_in_a_header(header):
    # Response splitting: a value (or name) carrying CR or LF must never
    # reach the wire as a header line of its own.
    with pytest.raises(ValueError):
        format_response(HttpResponse(200, [("content-type", "text/plain"), header], b"hi"), head_only=False)


async def test_server_reports_its_port_and_serves_many_connections():
    async with running(TestApp()) as port:
        with trio.fail_after(10):
            results = []

            async def one(n):
                response = await request(port, f"GET /echo?{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                results.append(response.json()["target"])

            async with trio.open_nursery() as nursery:
                for n in range(50):
                    nursery.start_soon(one, n)
            assert sorted(results) == sorted(f"/echo?{n}" for n in range(50))


async def test_max_connections_holds_new_connections_back():
    limits = ServerLimits(max_connections=2, keepalive_timeout=0.3)
    async with running(TestApp(), limits) as port:
        with trio.fail_after(5):
            held = [await connect(port) for _ in range(2)]
            for sock in held:
                await sock.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
                assert (await Reader(sock).read_response()).status == 200
            # The third waits in the backlog until a held one idles out.
            start = trio.current_time()
            await assert_serving(port)
            assert trio.current_time() - start > 0.2
            for sock in held:
                sock.close()


async def test_socket_level_reset_is_harmless(transport_errors):
    async with running(TestApp()) as port:
        with trio.fail_after(5):
            sock = await connect(port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            await sock.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab")
            sock.close()  # RST
            await assert_serving(port)
    assert transport_errors() == []


async def test_the_task_guard_logs_errors_and_lets_only_fatal_ones_through(transport_errors):
    server = Server(TestApp())

    async def fails():
        raise ExceptionGroup("many", [ValueError("one"), KeyError("two")])

    async def fails_fatally():
        raise BaseExceptionGroup("mixed", [ValueError("logged"), KeyboardInterrupt()])

    await server._guarded(fails)
    with pytest.raises(BaseExceptionGroup) as fatal:
        await server._guarded(fails_fatally)
    assert fatal.group_contains(KeyboardInterrupt) and not fatal.group_contains(ValueError)
    assert len(transport_errors()) == 2


async def test_a_finished_connection_leaves_no_parser_for_the_cyclic_collector():
    # llhttp holds the parser's bound callbacks: unless the connection breaks
    # that cycle when it is done with HTTP, each parser - with its
    # connection and socket object - waits for a full collection, which
    # after a mass connect can be minutes away and keeps ~2 KB per
    # connection scattered over memory that cannot be returned (issue 14).
    # With automatic collection off, only reference counting frees them.
    gc.collect()
    gc.disable()
    try:
        async with running(TestApp()) as port:
            sock, _reader = await open_raw_websocket(port)  # past HTTP: upgraded
            assert parse_responses(await exchange_all(port, b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")) == [200]
            await trio.sleep(0.05)  # the server's side of the plain request ends
            left = [o for o in gc.get_objects() if type(o) is RequestParser]
            assert left == [], f"{len(left)} parser(s) kept alive by a reference cycle"
            sock.close()
    finally:
        gc.enable()
