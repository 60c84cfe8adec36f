"""Engine.IO v4 (seed 002's transport layer): the packet codec, the request
checks, and the session machine, read against engine.io-protocol's README
and the cases of its test-suite (pingInterval 300, pingTimeout 200,
maxPayload 1e6), with engine.io's server for what the README leaves open.

Layout: wire cases in both directions; garbage only ever raises
``EngineIoError``; the request table; the session's flows (messages,
heartbeat with fed-in times, upgrade, close, the bounded queue). The
transition table itself, swept pair by pair and walked at random, is in
``test_socketio_engineio_states.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from satchel.protocol.errors import LocalProtocolError, RemoteProtocolError
from satchel.protocol.http import HttpResponse
from satchel.protocol.socketio import (
    Closed,
    EngineIoConfig,
    EngineIoError,
    EngineIoSession,
    EnginePacket,
    Message,
    OpenPayload,
    RequestKind,
    State,
    Upgraded,
    check_request,
    decode_frame,
    decode_open,
    decode_payload,
    encode_frame,
    encode_open,
    encode_payload,
    error_response,
)
from satchel.protocol.socketio import (
    EnginePacketType as T,
)
from satchel.protocol.socketio.engineio_requests import ERROR_MESSAGES

SUITE = EngineIoConfig(ping_interval_ms=300, ping_timeout_ms=200, max_payload=1_000_000)


def packet(kind: T, data: str | bytes = "") -> EnginePacket:
    return EnginePacket(kind, data)


def error_code(response: HttpResponse) -> int:
    return msgspec.json.decode(response.body)["code"]


def body(response: HttpResponse | None) -> str:
    assert response is not None and response.status == 200, response
    return response.body.decode()


def open_polling(now: int = 0, config: EngineIoConfig = SUITE) -> EngineIoSession:
    """A polling session whose handshake GET has been answered."""
    session = EngineIoSession("sid-1", now, config)
    assert body(session.poll(now)).startswith("0{")
    return session


# -- packets on the wire ------------------------------------------------------------------------

FRAMES = [
    ("0{\"sid\":\"x\"}", packet(T.OPEN, '{"sid":"x"}')),
    ("1", packet(T.CLOSE)),
    ("2", packet(T.PING)),
    ("2probe", packet(T.PING, "probe")),
    ("3", packet(T.PONG)),
    ("3probe", packet(T.PONG, "probe")),
    ("4hello", packet(T.MESSAGE, "hello")),
    ("4", packet(T.MESSAGE)),
    ("4€ and \x00", packet(T.MESSAGE, "€ and \x00")),
    ("5", packet(T.UPGRADE)),
    ("6", packet(T.NOOP)),
    (b"\x01\x02\x03\x04", packet(T.MESSAGE, b"\x01\x02\x03\x04")),
    (b"", packet(T.MESSAGE, b"")),
]


@pytest.mark.parametrize(("frame", "expected"), FRAMES)
def test_websocket_frames_in_both_directions(frame: str | bytes, expected: EnginePacket) -> None:
    assert decode_frame(frame) == expected
    assert encode_frame(expected) == frame
    assert type(encode_frame(expected)) is type(frame)


PAYLOADS = [
    # README "Packet encoding": the two examples, and the test-suite's bodies
    ("4hello\x1e2\x1e4world", [packet(T.MESSAGE, "hello"), packet(T.PING), packet(T.MESSAGE, "world")]),
    ("4hello\x1ebAQIDBA==", [packet(T.MESSAGE, "hello"), packet(T.MESSAGE, b"\x01\x02\x03\x04")]),
    ("4test1\x1e4test2\x1e4test3", [packet(T.MESSAGE, f"test{i}") for i in (1, 2, 3)]),
    ("6", [packet(T.NOOP)]),
    ("b", [packet(T.MESSAGE, b"")]),
]


@pytest.mark.parametrize(("payload", "expected"), PAYLOADS)
def test_polling_payloads_in_both_directions(payload: str, expected: list[EnginePacket]) -> None:
    assert decode_payload(payload) == expected
    assert decode_payload(payload.encode()) == expected
    assert encode_payload(expected) == payload


def test_a_text_frame_with_the_b_prefix_is_a_binary_message_as_in_engine_io() -> None:
    assert decode_frame("bAQIDBA==") == packet(T.MESSAGE, b"\x01\x02\x03\x04")
    assert decode_frame("bAQIDBA") == packet(T.MESSAGE, b"\x01\x02\x03\x04")  # padding may be left out


@pytest.mark.parametrize("bad", ["", "7", "abc", "\x1e", "b!!!!", "bA", "b€", "9hello", " 4x", "b AQ=="])
def test_frames_that_are_not_engine_io(bad: str) -> None:
    with pytest.raises(EngineIoError):
        decode_frame(bad)


@pytest.mark.parametrize("bad", ["", "abc", "4a\x1e", "\x1e4a", "4a\x1e\x1e4b", "4a\x1ex", b"4\xff", b"\xc3"])
def test_payloads_that_are_not_engine_io(bad: str | bytes) -> None:
    with pytest.raises(EngineIoError) as caught:
        decode_payload(bad)
    assert caught.value.status == 400


def test_max_payload_caps_a_body_and_a_single_packet() -> None:
    assert len(decode_payload(b"4" + b"x" * 99, max_payload=100)) == 1
    for too_big in (b"4" + b"x" * 100, "4" + "x" * 100):
        with pytest.raises(EngineIoError) as caught:
            decode_payload(too_big, max_payload=100)
        assert caught.value.status == 413
    assert decode_frame("4" + "x" * 99, max_payload=100).data == "x" * 99
    for too_big_frame in ("4" + "x" * 100, b"y" * 101):
        with pytest.raises(EngineIoError):
            decode_frame(too_big_frame, max_payload=100)


def test_engine_io_error_is_the_cores_remote_error() -> None:
    assert issubclass(EngineIoError, RemoteProtocolError)


def test_packets_are_immutable_and_only_messages_carry_bytes() -> None:
    ping = packet(T.PING)
    with pytest.raises(AttributeError):
        ping.data = "x"  # type: ignore[misc]
    with pytest.raises(LocalProtocolError):
        EnginePacket(T.PING, b"x")
    with pytest.raises(LocalProtocolError):
        EnginePacket(T.MESSAGE, 42)  # type: ignore[arg-type]
    assert EnginePacket(T.MESSAGE, bytearray(b"ab")) == packet(T.MESSAGE, b"ab")
    assert packet(T.MESSAGE, "ab") != packet(T.MESSAGE, b"ab")
    assert hash(packet(T.PONG, "probe")) == hash(packet(T.PONG, "probe"))


def test_encode_payload_refuses_what_would_not_come_back() -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload([])
    with pytest.raises(LocalProtocolError):
        encode_payload([packet(T.MESSAGE, "a\x1eb")])
    # bytes are base64 in a payload, so a 0x1e byte is fine there
    assert decode_payload(encode_payload([packet(T.MESSAGE, b"\x1e")])) == [packet(T.MESSAGE, b"\x1e")]


def test_the_open_packet_has_the_handshake_keys_in_engine_ios_order() -> None:
    opened = encode_open(OpenPayload("lv_VI97HAXpY6yYWAAAC", ["websocket"], 25000, 20000, 1000000))
    assert opened.text == (
        '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    )
    assert decode_open(decode_frame(opened.text)).ping_timeout == 20000
    for bad in (packet(T.MESSAGE, "{}"), packet(T.OPEN, "{"), packet(T.OPEN, '{"sid":1}')):
        with pytest.raises(EngineIoError):
            decode_open(bad)


# -- garbage in, EngineIoError out ------------------------------------------------------------

structured_text = st.text(alphabet="0123456b4\x1e AQIDBA=probe{}\"x€", max_size=40)


@settings(max_examples=400)
@given(st.one_of(st.text(), st.binary(), structured_text))
def test_decoders_return_packets_or_raise_engine_io_error(data: str | bytes) -> None:
    for decode in (decode_frame, decode_payload):
        try:
            result = decode(data, 64)
        except EngineIoError:
            continue
        packets = result if isinstance(result, list) else [result]
        assert all(isinstance(p, EnginePacket) for p in packets)


@given(st.one_of(st.text(), st.binary(), structured_text))
def test_decode_open_returns_a_handshake_or_raises_engine_io_error(data: str | bytes) -> None:
    try:
        decode_open(decode_frame(data))
    except EngineIoError:
        pass


engine_packets = st.one_of(
    st.builds(EnginePacket, st.sampled_from(list(T)), st.text().filter(lambda s: "\x1e" not in s)),
    st.builds(EnginePacket, st.just(T.MESSAGE), st.binary()),
)


@given(st.lists(engine_packets, min_size=1, max_size=8))
def test_payload_and_frame_round_trips(packets: list[EnginePacket]) -> None:
    assert decode_payload(encode_payload(packets)) == packets
    assert decode_payload(encode_payload(packets).encode()) == packets
    for one in packets:
        assert decode_frame(encode_frame(one)) == one


# -- which request is which ----------------------------------------------------------------------

def _sessions() -> dict[str, EngineIoSession]:
    polling = open_polling()
    upgraded = open_polling()
    ws = upgraded.attach_websocket(1)
    assert ws is not None
    upgraded.receive_websocket(ws, "5", 1)
    closed = open_polling()
    closed.receive_post(b"1", 1)
    closed.poll(1)  # the one late GET a client's close leaves room for
    return {"p": polling, "u": upgraded, "c": closed}


REQUESTS: list[tuple[str, str, bool, Any]] = [
    # (method, query, websocket?, expected kind or error code)
    ("GET", "EIO=4&transport=polling", False, RequestKind.HANDSHAKE),
    ("GET", "EIO=4&transport=polling&t=N8hyd6w", False, RequestKind.HANDSHAKE),
    ("GET", "EIO=4&transport=websocket", True, RequestKind.WEBSOCKET_HANDSHAKE),
    ("GET", "EIO=4&transport=polling&sid=p", False, RequestKind.POLL),
    ("POST", "EIO=4&transport=polling&sid=p", False, RequestKind.POST),
    ("GET", "EIO=4&transport=websocket&sid=p", True, RequestKind.UPGRADE),
    ("GET", "EIO=4&transport=websocket&sid=u", True, RequestKind.UPGRADE),  # the session refuses it
    # the test-suite's refusals
    ("GET", "transport=polling", False, 5),
    ("GET", "EIO=abc&transport=polling", False, 5),
    ("GET", "EIO=3&transport=polling", False, 5),
    ("GET", "EIO=4", False, 0),
    ("GET", "EIO=4&transport=abc", False, 0),
    ("POST", "EIO=4&transport=polling", False, 2),
    ("PUT", "EIO=4&transport=polling", False, 2),
    ("GET", "transport=websocket", True, 5),
    ("GET", "EIO=4&transport=abc", True, 0),
    # engine.io's Server.verify
    ("GET", "EIO=4&transport=polling&sid=nope", False, 1),
    ("GET", "EIO=4&transport=polling&sid=c", False, 1),  # closed: gone
    ("GET", "EIO=4&transport=polling&sid=u", False, 3),  # polling after the upgrade
    ("POST", "EIO=4&transport=polling&sid=u", False, 3),
    ("GET", "EIO=4&transport=websocket&sid=p", False, 3),  # plain HTTP asking for websocket
    ("GET", "EIO=4&transport=websocket", False, 3),
    ("GET", "EIO=4&transport=polling&sid=p", True, 3),  # an upgrade to polling
    ("GET", "EIO=4&transport=polling", True, 3),
    ("PUT", "EIO=4&transport=polling&sid=p", False, 3),
    ("GET", "EIO=3&transport=polling&sid=p", False, 5),
]


@pytest.mark.parametrize(("method", "query", "websocket", "expected"), REQUESTS)
def test_requests_are_sorted_or_refused_as_engine_io_does(method: str, query: str, websocket: bool,
                                                          expected: Any) -> None:
    sessions = _sessions()
    found = check_request(method, query, websocket=websocket, sessions=sessions)
    if isinstance(expected, RequestKind):
        assert not isinstance(found, HttpResponse), found
        assert found.kind is expected
        if "sid=" in query:
            assert found.session is sessions[found.sid]  # type: ignore[index]
    else:
        assert isinstance(found, HttpResponse)
        assert found.status == 400
        assert msgspec.json.decode(found.body) == {"code": expected, "message": ERROR_MESSAGES[expected]}


def test_error_answers_are_engine_ios() -> None:
    assert [msgspec.json.decode(error_response(code).body)["message"] for code in range(6)] == [
        "Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request", "Forbidden",
        "Unsupported protocol version"]
    forbidden = error_response(4, "not you")
    assert forbidden.status == 403 and msgspec.json.decode(forbidden.body) == {"code": 4, "message": "not you"}
    assert ("content-type", "application/json; charset=utf-8") in forbidden.headers


# -- the session: messages over polling (test-suite "message") ------------------------------------

def test_the_handshake_answers_the_open_packet() -> None:
    session = EngineIoSession("lv_VI97HAXpY6yYWAAAC", 0, SUITE)
    opened = decode_open(decode_frame(body(session.poll(0))))
    assert opened == OpenPayload("lv_VI97HAXpY6yYWAAAC", ["websocket"], 300, 200, 1000000)
    only_ws = EngineIoSession("w", 0, SUITE, transport="websocket")
    frames = only_ws.take_websocket_frames(only_ws.websocket_id)  # type: ignore[arg-type]
    assert decode_open(decode_frame(frames[0])).upgrades == []
    no_upgrades = EngineIoSession("n", 0, EngineIoConfig(allow_upgrades=False))
    assert decode_open(decode_frame(body(no_upgrades.poll(0)))).upgrades == []
    assert no_upgrades.attach_websocket(1) is None


def test_posted_packets_reach_the_layer_above_and_sends_reach_the_next_get() -> None:
    session = open_polling()
    ok = session.receive_post(b"4hello\x1ebAQIDBA==", 10)
    assert (ok.status, ok.body) == (200, b"ok")
    assert ("content-type", "text/html") in ok.headers
    assert session.take_events() == [Message("hello"), Message(b"\x01\x02\x03\x04")]
    assert session.take_events() == []
    for data in ("test1", "test2", b"\x01\x02\x03\x04"):
        assert session.send(data)
    answer = session.poll(11)
    assert answer is not None and ("content-type", "text/plain; charset=UTF-8") in answer.headers
    assert body(answer) == "4test1\x1e4test2\x1ebAQIDBA=="
    assert session.queued_packets == 0 and session.queued_bytes == 0


def test_a_get_with_nothing_queued_is_held_until_something_is() -> None:
    session = open_polling()
    assert session.poll(10) is None
    assert session.poll_held and not session.poll_ready
    assert session.take_poll_response() is None
    session.send("a")
    session.send("b")  # sends in the same step share the one answer
    assert session.poll_ready
    assert body(session.take_poll_response()) == "4a\x1e4b"
    assert not session.poll_held and session.take_poll_response() is None


def test_an_invalid_post_closes_the_session_with_parse_error() -> None:
    session = open_polling()
    refused = session.receive_post(b"abc", 10)
    assert refused.status == 400
    assert session.take_events() == [Closed("parse error")]
    assert error_code(session.poll(11)) == 1  # type: ignore[arg-type]


def test_a_binary_or_oversized_post_is_a_transport_error() -> None:
    binary = open_polling()
    assert binary.receive_post(b"4x", 10, content_type="application/octet-stream").status == 400
    assert binary.take_events() == [Closed("transport error")]
    big = open_polling(config=EngineIoConfig(max_payload=10))
    assert big.receive_post(b"4" + b"x" * 10, 10).status == 413
    assert big.close_reason == "transport error"


def test_two_gets_at_once_close_the_session_and_the_held_one_gets_a_close_packet() -> None:
    session = open_polling()
    assert session.poll(10) is None
    second = session.poll(15)
    assert second is not None and second.status == 400
    assert body(session.take_poll_response()) == "1"
    assert session.take_events() == [Closed("transport error")]
    assert error_code(session.poll(20)) == 1  # type: ignore[arg-type]


def test_the_clients_close_packet_lets_the_held_get_go_with_a_noop() -> None:
    # test-suite "close / HTTP long-polling": GET and POST "1" at once
    session = open_polling()
    assert session.poll(10) is None
    assert session.receive_post(b"1", 11).body == b"ok"
    assert body(session.take_poll_response()) == "6"
    assert session.take_events() == [Closed("transport close")]
    assert error_code(session.poll(12)) == 1  # type: ignore[arg-type]


def test_packets_after_a_close_packet_in_the_same_body_are_dropped() -> None:
    session = open_polling()
    session.receive_post(b"4a\x1e1\x1e4b", 10)
    assert session.take_events() == [Message("a"), Closed("transport close")]


def test_a_held_get_whose_client_leaves_is_a_transport_error() -> None:
    session = open_polling()
    session.poll_aborted()  # nothing held: nothing happens
    assert session.state is State.POLLING
    assert session.poll(10) is None
    session.poll_aborted()
    assert session.take_events() == [Closed("transport error")]


def test_a_client_ping_is_the_wrong_heartbeat_direction() -> None:
    session = open_polling()
    session.receive_post(b"2", 10)
    assert session.close_reason == "transport error"


def test_open_upgrade_and_noop_packets_from_the_client_are_ignored() -> None:
    session = open_polling()
    session.receive_post(b"0\x1e5\x1e6\x1e4x", 10)
    assert session.take_events() == [Message("x")] and session.state is State.POLLING


# -- the heartbeat, with fed-in times -------------------------------------------------------------

def test_pings_every_interval_and_pongs_reset_the_timer() -> None:
    # test-suite "heartbeat / HTTP long-polling / sends ping/pong packets"
    session = open_polling(now=0)
    now = 0
    for _ in range(3):
        assert session.next_deadline_ms() == now + 300
        assert session.poll(now + 1) is None
        session.tick(now + 299)
        assert not session.poll_ready
        session.tick(now + 300)
        assert body(session.take_poll_response()) == "2"
        assert session.next_deadline_ms() == now + 300 + 200  # the pong is due
        now += 310
        assert session.receive_post(b"3", now).status == 200
    assert session.state is State.POLLING and session.take_events() == []


def test_no_pong_within_ping_timeout_closes_the_session() -> None:
    # test-suite "closes the session upon ping timeout": sleep 500, then GET -> 400
    session = open_polling(now=0)
    assert error_code(session.poll(500)) == 1  # type: ignore[arg-type]
    assert session.take_events() == [Closed("ping timeout")]
    assert session.next_deadline_ms() is None


def test_a_get_just_before_the_timeout_still_gets_the_ping() -> None:
    session = open_polling(now=0)
    assert body(session.poll(499)) == "2"
    assert session.state is State.POLLING


def test_only_a_pong_answers_a_ping() -> None:
    session = open_polling(now=0)
    session.tick(300)
    session.receive_post(b"4still here", 400)
    session.tick(500)
    assert session.close_reason == "ping timeout"


def test_a_late_tick_does_not_stretch_the_deadline() -> None:
    session = open_polling(now=0)
    session.tick(450)  # the ping was due at 300: its pong is due at 500, not 650
    assert session.queued_packets == 1
    assert session.next_deadline_ms() == 500
    session.tick(500)
    assert session.closed


def test_an_unasked_pong_pushes_the_next_ping_back() -> None:
    session = open_polling(now=0)
    session.receive_post(b"3", 200)
    assert session.next_deadline_ms() == 500


def test_websocket_heartbeat() -> None:
    # test-suite "heartbeat / WebSocket": three pings answered, then silence
    session = EngineIoSession("w", 0, SUITE, transport="websocket")
    ws = session.websocket_id
    assert ws is not None
    assert session.take_websocket_frames(ws)[0].startswith("0{")
    now = 0
    for _ in range(3):
        now += 300
        session.tick(now)
        assert session.take_websocket_frames(ws) == ["2"]
        session.receive_websocket(ws, "3", now + 5)
        now += 5
    session.tick(now + 500)
    assert session.take_events() == [Closed("ping timeout")]
    assert session.websocket_should_close(ws)


# -- the upgrade (test-suite "upgrade") ---------------------------------------------------------

def test_the_upgrade_sequence() -> None:
    session = open_polling()
    ws = session.attach_websocket(10)
    assert ws is not None and session.state is State.PROBING
    assert session.transport == "polling"
    session.receive_websocket(ws, "2probe", 11)
    assert session.take_websocket_frames(ws) == ["3probe"]
    assert session.state is State.UPGRADING
    assert body(session.poll(12)) == "6"  # the noop ends long-polling cleanly
    session.receive_websocket(ws, "5", 13)
    assert session.state is State.WEBSOCKET and session.transport == "websocket"
    session.receive_websocket(ws, "4hello", 14)
    assert session.take_events() == [Upgraded(), Message("hello")]
    session.send("hello")
    assert session.take_websocket_frames(ws) == ["4hello"]
    assert not session.websocket_should_close(ws)


def test_after_the_upgrade_polling_and_a_second_websocket_are_refused() -> None:
    session = open_polling()
    ws = session.attach_websocket(10)
    assert ws is not None
    session.receive_websocket(ws, "2probe", 11)
    session.receive_websocket(ws, "5", 11)
    assert error_code(session.poll(12)) == 3  # type: ignore[arg-type]
    assert error_code(session.receive_post(b"4x", 12)) == 3
    assert session.attach_websocket(13) is None
    session.receive_websocket(ws, "4hello", 14)
    assert session.take_events() == [Upgraded(), Message("hello")]


def test_a_get_held_when_the_probe_arrives_is_released_with_a_noop() -> None:
    session = open_polling()
    assert session.poll(5) is None
    ws = session.attach_websocket(10)
    assert ws is not None
    assert not session.poll_ready  # still polling until the probe
    session.receive_websocket(ws, "2probe", 11)
    assert body(session.take_poll_response()) == "6"


def test_what_is_queued_while_upgrading_goes_to_a_get_or_else_to_the_websocket() -> None:
    session = open_polling()
    ws = session.attach_websocket(10)
    assert ws is not None
    session.receive_websocket(ws, "2probe", 11)
    session.send("early")
    assert body(session.poll(12)) == "4early"
    session.send("late")
    session.receive_websocket(ws, "5", 13)
    assert session.take_websocket_frames(ws) == ["3probe", "4late"]


def test_an_upgrade_without_a_probe_is_accepted_and_a_held_get_gets_a_noop() -> None:
    session = open_polling()
    assert session.poll(5) is None
    ws = session.attach_websocket(10)
    assert ws is not None
    session.send("x")
    session.receive_websocket(ws, "5", 11)
    assert body(session.take_poll_response()) == "6"
    assert session.take_websocket_frames(ws) == ["4x"]


@pytest.mark.parametrize("bad", ["4hello", "3", "2", "garbage", b"\x00", "1"])
def test_a_probe_that_says_anything_else_is_closed_and_polling_goes_on(bad: str | bytes) -> None:
    session = open_polling()
    ws = session.attach_websocket(10)
    assert ws is not None
    session.receive_websocket(ws, bad, 11)
    assert session.state is State.POLLING and session.websocket_should_close(ws)
    session.receive_websocket(ws, "5", 12)  # a detached websocket is not heard
    assert session.state is State.POLLING and session.take_websocket_frames(ws) == []
    retry = session.attach_websocket(13)
    assert retry is not None and retry != ws
    session.receive_websocket(retry, "2probe", 14)
    assert session.take_websocket_frames(retry) == ["3probe"]
    session.receive_websocket(retry, "5", 15)
    session.send("for the new one")
    assert session.take_websocket_frames(ws) == [] and session.queued_packets == 1
    assert session.take_websocket_frames(retry) == ["4for the new one"]


def test_a_probe_that_goes_away_or_takes_too_long_leaves_polling() -> None:
    gone = open_polling()
    ws = gone.attach_websocket(10)
    assert ws is not None
    gone.websocket_closed(ws)
    assert gone.state is State.POLLING
    slow = open_polling(config=EngineIoConfig(ping_interval_ms=300_000, upgrade_timeout_ms=100))
    ws = slow.attach_websocket(10)
    assert ws is not None and slow.next_deadline_ms() == 110
    slow.tick(110)
    assert slow.state is State.POLLING and slow.websocket_should_close(ws)


@pytest.mark.parametrize("probed", [False, True], ids=["probing", "upgrading"])
@pytest.mark.parametrize("breach", ["second GET", "GET aborted", "binary POST"])
def test_polling_breaks_the_same_way_during_an_upgrade(probed: bool, breach: str) -> None:
    session = open_polling()
    assert session.poll(5) is None
    ws = session.attach_websocket(10)
    assert ws is not None
    if probed:
        session.receive_websocket(ws, "2probe", 11)
    if breach == "second GET":
        assert session.poll(12).status == 400  # type: ignore[union-attr]
    elif breach == "GET aborted":
        session.poll_aborted()
    else:
        session.receive_post(b"4x", 12, content_type="application/octet-stream")
    assert session.close_reason == "transport error"
    assert session.websocket_should_close(ws)


@pytest.mark.parametrize("failure", ["garbage", "gone", "timeout"])
def test_a_probe_that_fails_after_its_answer_leaves_polling(failure: str) -> None:
    session = open_polling(config=EngineIoConfig(ping_interval_ms=300_000, upgrade_timeout_ms=100))
    ws = session.attach_websocket(10)
    assert ws is not None
    session.receive_websocket(ws, "2probe", 11)
    assert session.state is State.UPGRADING
    if failure == "garbage":
        session.receive_websocket(ws, "4x", 12)
    elif failure == "gone":
        session.websocket_closed(ws)
    else:
        session.tick(110)
    assert session.state is State.POLLING and session.websocket_should_close(ws)
    assert session.poll(120) is None  # a GET is held again: polling as before


def test_the_upgraded_websocket_going_away_is_transport_close() -> None:
    session = EngineIoSession("w", 0, SUITE, transport="websocket")
    session.websocket_closed(session.websocket_id)  # type: ignore[arg-type]
    assert session.take_events() == [Closed("transport close")]


def test_the_clients_close_or_garbage_on_the_websocket_close_it() -> None:
    # test-suite "close / WebSocket" and "closes the session upon invalid packet format"
    for frame, reason in (("1", "transport close"), ("abc", "parse error"), ("2", "transport error")):
        session = EngineIoSession("w", 0, SUITE, transport="websocket")
        ws = session.websocket_id
        assert ws is not None
        session.receive_websocket(ws, frame, 1)
        assert session.take_events() == [Closed(reason)]
        assert session.websocket_should_close(ws)


# -- the server closes --------------------------------------------------------------------------

def test_a_server_close_on_polling_goes_out_with_the_next_get() -> None:
    session = open_polling()
    session.send("bye")
    session.close(10)
    assert session.state is State.CLOSING
    assert not session.send("too late")
    assert body(session.poll(11)) == "4bye\x1e1"
    assert session.take_events() == [Closed("forced close")]


def test_a_server_close_answers_a_held_get_at_once() -> None:
    session = open_polling()
    assert session.poll(5) is None
    session.close(10)
    assert body(session.take_poll_response()) == "1"
    assert session.take_events() == [Closed("forced close")]


def test_a_closing_session_that_no_get_reaches_closes_after_the_close_timeout() -> None:
    session = open_polling(config=EngineIoConfig(close_timeout_ms=1000))
    session.close(10)
    session.tick(1009)
    assert session.state is State.CLOSING
    session.tick(1010)
    assert session.take_events() == [Closed("forced close")]


def test_a_server_close_on_a_websocket_writes_what_is_queued_then_closes_it() -> None:
    session = EngineIoSession("w", 0, SUITE, transport="websocket")
    ws = session.websocket_id
    assert ws is not None
    session.send("bye")
    session.close(10)
    assert not session.websocket_should_close(ws)
    assert session.take_websocket_frames(ws)[-1] == "4bye"
    assert session.websocket_should_close(ws)
    assert session.take_events() == [Closed("forced close")]
    idle = EngineIoSession("i", 0, SUITE, transport="websocket")
    idle.take_websocket_frames(1)
    idle.close(10)
    assert idle.closed and idle.websocket_should_close(1)


def test_a_get_held_across_the_upgrade_does_not_take_a_closing_websockets_packets() -> None:
    session = open_polling()
    assert session.poll(5) is None
    ws = session.attach_websocket(10)
    assert ws is not None
    session.receive_websocket(ws, "5", 11)
    session.send("bye")
    session.close(12)
    assert body(session.take_poll_response()) == "6"
    session.poll_aborted()  # a leftover of polling: nothing to do with the websocket
    assert session.state is State.CLOSING
    assert session.take_websocket_frames(ws) == ["4bye"]
    assert session.take_events() == [Upgraded(), Closed("forced close")]


def test_while_closing_a_second_get_or_an_aborted_get_still_break_the_transport() -> None:
    overlap = open_polling()
    assert overlap.poll(5) is None
    overlap.close(10)
    assert overlap.poll(11).status == 400  # type: ignore[union-attr]
    assert body(overlap.take_poll_response()) == "1"
    assert overlap.take_events() == [Closed("transport error")]
    aborted = open_polling()
    assert aborted.poll(5) is None
    aborted.close(10)
    aborted.poll_aborted()
    assert aborted.take_events() == [Closed("transport error")]


def test_a_post_while_closing_is_answered_ok_and_ignored() -> None:
    # engine.io's socket ignores packets once closing; the POST still gets "ok"
    session = open_polling()
    session.close(10)
    answer = session.receive_post(b"4late\x1e3", 11)
    assert (answer.status, answer.body) == (200, b"ok")
    assert session.take_events() == [] and session.state is State.CLOSING


def test_a_ping_unanswered_while_closing_still_times_out() -> None:
    session = open_polling(now=0)
    session.tick(300)
    session.close(310)
    session.tick(499)
    assert session.state is State.CLOSING
    session.tick(500)
    assert session.take_events() == [Closed("ping timeout")]


def test_a_websocket_that_goes_away_while_closing_ends_the_session() -> None:
    session = EngineIoSession("w", 0, SUITE, transport="websocket")
    session.send("unsent")
    session.close(10)
    assert session.state is State.CLOSING
    session.websocket_closed(1)
    assert session.take_events() == [Closed("transport close")]
    assert session.take_websocket_frames(1) == []


def test_a_server_close_during_the_probe_closes_the_probe() -> None:
    session = open_polling()
    ws = session.attach_websocket(10)
    assert ws is not None
    session.close(11)
    assert session.websocket_should_close(ws)
    assert body(session.poll(12)) == "1"


# -- the bounded queue --------------------------------------------------------------------------

def test_a_send_past_the_packet_bound_closes_a_slow_consumer() -> None:
    session = open_polling(config=EngineIoConfig(max_queued_packets=3))
    assert all(session.send(f"m{i}") for i in range(3))
    assert not session.send("m3")
    assert session.take_events() == [Closed("slow consumer")]
    assert session.queued_packets == 0
    assert error_code(session.poll(10)) == 1  # type: ignore[arg-type]


def test_the_byte_bound_is_inclusive() -> None:
    session = open_polling(config=EngineIoConfig(max_queued_bytes=100))
    assert session.send("x" * 99)
    assert session.queued_bytes == 100 and session.state is State.POLLING
    assert not session.send("")
    assert session.close_reason == "slow consumer"


def test_a_websocket_that_is_drained_never_overflows_and_one_that_is_not_does() -> None:
    config = EngineIoConfig(max_queued_packets=2)
    session = EngineIoSession("w", 0, config, transport="websocket")
    ws = session.websocket_id
    assert ws is not None
    for i in range(10):
        assert session.send(f"m{i}")
        assert session.take_websocket_frames(ws)[-1] == f"4m{i}"
    assert session.send("a") and session.send("b")  # nobody writes: the queue fills
    assert not session.send("c")
    assert session.close_reason == "slow consumer"
    assert not session.send("d")
    assert session.take_websocket_frames(ws) == [] and session.websocket_should_close(ws)


def test_a_ping_into_a_full_queue_closes_the_session_too() -> None:
    session = open_polling(config=EngineIoConfig(max_queued_packets=1, ping_interval_ms=300))
    assert session.send("fill")
    session.tick(300)
    assert session.close_reason == "slow consumer"


def test_send_refuses_what_the_wire_cannot_carry() -> None:
    session = open_polling()
    with pytest.raises(LocalProtocolError):
        session.send("a\x1eb")
    with pytest.raises(LocalProtocolError):
        session.send(packet(T.PING))
    assert session.state is State.POLLING


def test_a_broadcast_packet_is_encoded_once_for_every_session() -> None:
    shared = packet(T.MESSAGE, '2["news",1]')
    sessions = [EngineIoSession(f"w{i}", 0, SUITE, transport="websocket") for i in range(3)]
    frames = []
    for session in sessions:
        session.take_websocket_frames(1)
        session.send(shared)
        frames.append(session.take_websocket_frames(1)[0])
    assert frames[0] == '42["news",1]'
    assert frames[0] is frames[1] is frames[2]


def test_config_values_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EngineIoConfig(ping_interval_ms=0)
    with pytest.raises(ValueError):
        EngineIoConfig(max_queued_packets=True)
    with pytest.raises(LocalProtocolError):
        EngineIoSession("x", 0, transport="carrier pigeon")


# -- a session takes anything -------------------------------------------------------------

@settings(max_examples=300)
@given(st.lists(st.one_of(st.text(max_size=20), st.binary(max_size=20)), max_size=10))
def test_a_session_takes_any_frames_and_bodies_without_raising(inputs: list[str | bytes]) -> None:
    polling = open_polling()
    socket = EngineIoSession("w", 0, SUITE, transport="websocket")
    ws = socket.websocket_id
    assert ws is not None
    for now, data in enumerate(inputs, start=1):
        answer = polling.receive_post(data, now)
        assert answer.status in (200, 400, 413)
        socket.receive_websocket(ws, data, now)
    assert all(isinstance(e, (Message, Closed)) for e in polling.take_events() + socket.take_events())


def test_a_get_read_just_after_the_clients_close_still_gets_its_noop_once() -> None:
    """Two HTTP connections keep no order: a GET sent before a close POST may
    be read after it. It gets the noop a held GET would have got; the next
    GET, or one too late, is refused as for any closed session."""
    from satchel.protocol.socketio.engineio_requests import RequestKind, check_request
    from satchel.protocol.socketio.engineio_session import LATE_POLL_GRACE_MS

    for late_by, answered in ((0, True), (LATE_POLL_GRACE_MS, True), (LATE_POLL_GRACE_MS + 1, False)):
        session = open_polling()
        assert session.receive_post(b"1", 10).status == 200
        assert session.closed
        sessions = {session.sid: session}
        query = f"EIO=4&transport=polling&sid={session.sid}"
        found = check_request("GET", query, sessions=sessions)
        assert not isinstance(found, HttpResponse) and found.kind is RequestKind.POLL
        answer = session.poll(10 + late_by)
        assert answer is not None
        if answered:
            assert (answer.status, answer.body) == (200, b"6")
        else:
            assert answer.status == 400
        # after it (or too late): refused, at the router or by the session
        again = check_request("GET", query, sessions=sessions)
        assert isinstance(again, HttpResponse) and again.status == 400
        assert check_request("POST", query, sessions=sessions).status == 400  # type: ignore[union-attr]


def test_a_close_with_a_get_held_leaves_no_room_for_a_late_one() -> None:
    session = open_polling()
    assert session.poll(5) is None  # held
    session.receive_post(b"1", 6)
    assert session.take_poll_response().body == b"6"  # type: ignore[union-attr]
    answer = session.poll(7)
    assert answer is not None and answer.status == 400
