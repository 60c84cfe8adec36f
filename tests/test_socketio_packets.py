"""Socket.IO v5 packets (seed 002's namespaces, events and acks), read
against socket.io-protocol's README, the cases of its test-suite and the
reference parser (socket.io-parser): wire cases in both directions, the
refusals, binary attachments and their limits, garbage only ever raising
``SocketIoError``, round trips, and Socket.IO riding on an Engine.IO session.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from satchel.protocol.errors import LocalProtocolError, RemoteProtocolError
from satchel.protocol.socketio import (
    Ack,
    Connect,
    ConnectError,
    Disconnect,
    EngineIoConfig,
    EngineIoSession,
    Event,
    Message,
    PacketDecoder,
    SocketIoError,
    SocketPacket,
    decode_payload,
    encode_ack,
    encode_connect,
    encode_connect_error,
    encode_disconnect,
    encode_event,
    encode_packet,
)
from satchel.protocol.socketio.packets import MAX_ACK_ID, RESERVED_EVENTS

P0 = {"_placeholder": True, "num": 0}
P1 = {"_placeholder": True, "num": 1}


def decode(*messages: str | bytes, decoder: PacketDecoder | None = None) -> SocketPacket | None:
    """Feed one decoder the messages; the packet the last one completes."""
    decoder = decoder or PacketDecoder()
    result = None
    for message in messages:
        result = decoder.receive(message)
    return result


# -- the README's examples, both directions ----------------------------------------------------

WIRE: list[tuple[SocketPacket, list[str | bytes]]] = [
    # "Connection to a namespace"
    (Connect(), ["0"]),
    (Connect("/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}), ['0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}']),
    (Connect("/admin", {"token": "123"}), ['0/admin,{"token":"123"}']),
    (ConnectError({"message": "Not authorized"}), ['4{"message":"Not authorized"}']),
    # "Sending and receiving data"
    (Event("foo"), ['2["foo"]']),
    (Event("bar", nsp="/admin"), ['2/admin,["bar"]']),
    (Event("baz", [b"\x01\x02\x03\x04"]), ['51-["baz",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"]),
    (Event("baz", [b"\x01\x02", b"\x03\x04"], "/admin"),
     ['52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01\x02", b"\x03\x04"]),
    # "Acknowledgement"
    (Event("foo", id=12), ['212["foo"]']),
    (Ack(12, []), ["312[]"]),
    (Ack(13, ["bar"], "/admin"), ['3/admin,13["bar"]']),
    (Ack(15, ["bar", b"\x01\x02\x03\x04"]), ['61-15["bar",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"]),
    # "Disconnection from a namespace"
    (Disconnect(), ["1"]),
    (Disconnect("/admin"), ["1/admin,"]),
    # "Sample session"
    (Connect("/admin", {"sid": "-G5j-67EZFp-q59rADQM"}), ['0/admin,{"sid":"-G5j-67EZFp-q59rADQM"}']),
    (Event("tellme", [], "/admin", 1), ['2/admin,1["tellme"]']),
    (Ack(1, [b"\xff"], "/admin"), ['61-/admin,1[{"_placeholder":true,"num":0}]', b"\xff"]),
    # the protocol test-suite's server answers
    (Event("auth", [{"token": "abc"}], "/custom"), ['2/custom,["auth",{"token":"abc"}]']),
    (Event("message-back", [1, "2", {"3": [True]}]), ['2["message-back",1,"2",{"3":[true]}]']),
    (Ack(456, [1, "2", {"3": [False]}]), ['3456[1,"2",{"3":[false]}]']),
    (Ack(789, [b"\x01\x02\x03", b"\x04\x05\x06"]),
     ['62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01\x02\x03", b"\x04\x05\x06"]),
    (ConnectError({"message": "Invalid namespace"}, "/random"), ['4/random,{"message":"Invalid namespace"}']),
    # non-ASCII goes out as UTF-8, as JSON.stringify leaves it
    (Event("chat", ["héllo €"]), ['2["chat","héllo €"]']),
]


@pytest.mark.parametrize(("packet", "wire"), WIRE)
def test_packets_on_the_wire_in_both_directions(packet: SocketPacket, wire: list[str | bytes]) -> None:
    assert encode_packet(packet) == wire
    assert decode(*wire) == packet


# What clients send that the server writes differently (or never writes).
DECODE_ONLY: list[tuple[list[str | bytes], SocketPacket]] = [
    (["0/custom"], Connect("/custom")),  # test-suite: no comma after the namespace
    (["0/custom,"], Connect("/custom")),
    (['0{"token":"123"}'], Connect("/", {"token": "123"})),
    (["0{}"], Connect("/", {})),
    (["1/custom"], Disconnect("/custom")),
    (['2["message",1,"2",{"3":[true]}]'], Event("message", [1, "2", {"3": [True]}])),
    (['2456["message-with-ack",1,"2",{"3":[false]}]'], Event("message-with-ack", [1, "2", {"3": [False]}], id=456)),
    (['52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01\x02\x03", b"\x04\x05\x06"],
     Event("message", [b"\x01\x02\x03", b"\x04\x05\x06"])),
    (['52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01", b"\x02"],
     Event("message-with-ack", [b"\x01", b"\x02"], id=789)),
    # placeholders anywhere in the payload, in any order, used twice
    ([('52-["up",{"files":[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]},'
       '{"_placeholder":true,"num":1}]'), b"a", b"b"], Event("up", [{"files": [b"b", b"a"]}, b"b"])),
    (['50-["nothing"]'], Event("nothing")),  # a binary event with no attachments
    (['2[ "spaced" , 1 ]'], Event("spaced", [1])),
    (['4"legacy string"'], ConnectError("legacy string")),
    (['2["x",{"_placeholder":true,"num":0}]'], Event("x", [P0])),  # not binary: left as it is
    ([f'2{MAX_ACK_ID}["x"]'], Event("x", id=MAX_ACK_ID)),
]


@pytest.mark.parametrize(("wire", "expected"), DECODE_ONLY)
def test_what_clients_send(wire: list[str | bytes], expected: SocketPacket) -> None:
    assert decode(*wire) == expected


def test_the_encoders_for_what_a_server_answers() -> None:
    assert encode_connect("wZX3oN0bSVIhsaknAAAI") == '0{"sid":"wZX3oN0bSVIhsaknAAAI"}'
    assert encode_connect("x", "/socket/commu-1") == '0/socket/commu-1,{"sid":"x"}'
    assert encode_connect_error("Unauthorized", "/socket/commu-1") == '4/socket/commu-1,{"message":"Unauthorized"}'
    assert encode_connect_error("no", data={"retry": False}) == '4{"message":"no","data":{"retry":false}}'
    assert encode_disconnect() == "1" and encode_disconnect("/a") == "1/a,"
    assert encode_event("new-chat", [{"id": 1}], "/socket/commu-1") == ['2/socket/commu-1,["new-chat",{"id":1}]']
    assert encode_event("hey", ("Jude",)) == ['2["hey","Jude"]']
    assert encode_ack(3, [{"written": True}], "/n") == ['3/n,3[{"written":true}]']
    assert encode_ack(0) == ["30[]"]
    assert encode_event("b", [bytearray(b"\x00"), memoryview(b"\x01")]) == [
        '52-["b",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x00", b"\x01"]


# -- refusals ------------------------------------------------------------------------------------

INVALID: list[list[str | bytes]] = [
    [""],
    ["7"], ["9"], ["a"], ["abc"], [" 0"],
    # test-suite "invalid format": unknown type, payload shape, ack id
    ["abc"], ["2{}"], ['2abc["message-with-ack",1,"2",{"3":[false]}]'],
    # events: a non-empty array starting with a name, not a reserved one
    ["2"], ["2[]"], ["2[1]"], ['2[null]'], ['2"x"'], ["2/a,"], ['2/a,{"x":1}'],
    *[[f'2["{name}"]'] for name in sorted(RESERVED_EVENTS)],
    # acks: an id and an array
    ["3[1]"], ["31"], ['31{"a":1}'], ['31"x"'], ["3/a,"],
    # connect: an object or nothing; disconnect: nothing; connect error: object or string
    ["0[]"], ['0"x"'], ["01"], ["0null"], ["012{}"], ["1{}"], ["1/a,{}"], ["1[]"], ["11"],
    ["4"], ["4[]"], ["41"], ["4null"], ["4/a,"], ["412{}"],
    # JSON that is not JSON
    ['2["x"'], ['2["x"]]'], ["2['x']"], ['2["x",NaN]'], ['2["x",1e400]'], ['2["\\ud800"]'],
    ["2" + "[" * 2000 + "]" * 2000],
    # ack ids beyond what a JavaScript peer can hold, or in a digit from elsewhere
    [f'2{MAX_ACK_ID + 1}["x"]'], ['2' + '9' * 40 + '["x"]'], ['2' + '9' * 5000 + '["x"]'], ['2١["x"]'],
    # attachment counts
    ['5-["a"]'], ['5x-["a"]'], ['51["a"]'], ['5١-["a"]'], ['511-["a"]'], ['5' + '9' * 30 + '-["a"]'],
    ['6-1[]'], ['61-[]'],
    # placeholders that point nowhere
    ['51-["a",{"_placeholder":true,"num":1}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":-1}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":"0"}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":true}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":0.0}]', b"x"],
    ['51-["a",{"_placeholder":true}]', b"x"],
    ['50-["a",{"_placeholder":true,"num":0}]'],
    # attachments out of turn
    [b"\x01"],
    ['51-["a",{"_placeholder":true,"num":0}]', '2["b"]'],
]


@pytest.mark.parametrize("wire", INVALID, ids=repr)
def test_invalid_packets_raise_socket_io_error(wire: list[str | bytes]) -> None:
    with pytest.raises(SocketIoError):
        decode(*wire)


def test_socket_io_error_is_the_cores_remote_error() -> None:
    assert issubclass(SocketIoError, RemoteProtocolError)


def test_the_attachment_count_and_size_are_capped() -> None:
    header = '53-["a",' + ",".join(f'{{"_placeholder":true,"num":{i}}}' for i in range(3)) + "]"
    few = PacketDecoder(max_attachments=2)
    with pytest.raises(SocketIoError):
        few.receive(header)
    small = PacketDecoder(max_attachment_bytes=10)
    assert small.receive(header) is None and small.awaiting == 3
    assert small.receive(b"12345") is None
    assert small.receive(b"12345") is None and small.awaiting == 1
    with pytest.raises(SocketIoError):
        small.receive(b"1")
    # and it starts afresh after the error
    assert small.awaiting == 0
    assert small.receive('2["again"]') == Event("again")
    exact = PacketDecoder(max_attachment_bytes=10)
    exact.receive(header)
    exact.receive(b"1234")
    exact.receive(b"12345")
    assert exact.receive(b"1") == Event("a", [b"1234", b"12345", b"1"])


def test_a_decoder_reassembles_packet_after_packet() -> None:
    decoder = PacketDecoder()
    assert decoder.receive('51-["a",{"_placeholder":true,"num":0}]') is None
    assert decoder.awaiting == 1
    assert decoder.receive(b"1") == Event("a", [b"1"])
    assert decoder.awaiting == 0
    assert decoder.receive('2["b"]') == Event("b")
    assert decoder.receive('61-/n,4[{"_placeholder":true,"num":0}]') is None
    assert decoder.receive(bytearray(b"2")) == Ack(4, [b"2"], "/n")
    with pytest.raises(SocketIoError):
        decoder.receive(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    lambda: Event("connect"),
    lambda: Event("disconnect", [1]),
    lambda: Event(3),  # type: ignore[arg-type]
    lambda: Event("x", nsp="admin"),
    lambda: Event("x", nsp="/a,b"),
    lambda: Event("x", id=-1),
    lambda: Event("x", id=True),
    lambda: Event("x", id=MAX_ACK_ID + 1),
    lambda: Event("x", args="abc"),  # type: ignore[arg-type]
    lambda: Ack(None, []),  # type: ignore[arg-type]
    lambda: Connect("/", ["x"]),  # type: ignore[arg-type]
    lambda: Disconnect(""),
    lambda: ConnectError(["x"]),  # type: ignore[arg-type]
    lambda: encode_event("x", [object()]),
    lambda: encode_event("x", ["\ud800"]),  # a lone surrogate is not UTF-8
    lambda: encode_connect_error("x", data=b"bytes"),
    lambda: encode_packet(Connect("/", {"file": b"x"})),
    lambda: encode_packet("2[]"),  # type: ignore[arg-type]
])
def test_the_encoders_refuse_what_a_peer_could_not_read(bad: Any) -> None:
    with pytest.raises(LocalProtocolError):
        bad()


def test_a_payload_nested_too_deeply_to_encode_is_a_local_error() -> None:
    deep: Any = b"x"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(LocalProtocolError):
        encode_event("deep", [deep])


# -- garbage in, SocketIoError out -----------------------------------------------------------

structured = st.text(alphabet='0123456-/,[]{}"_placeholder:truenum xy', max_size=60)
messages = st.one_of(st.text(max_size=40), st.binary(max_size=8), structured,
                     st.sampled_from(['51-["a",{"_placeholder":true,"num":0}]', '2["x"]', "0", "1/a,"]))


@settings(max_examples=500)
@given(st.lists(messages, max_size=6))
def test_a_decoder_returns_packets_or_raises_socket_io_error(sequence: list[str | bytes]) -> None:
    decoder = PacketDecoder(max_attachments=3, max_attachment_bytes=16)
    for message in sequence:
        try:
            result = decoder.receive(message)
        except SocketIoError:
            continue
        assert result is None or isinstance(result, (Connect, Disconnect, Event, Ack, ConnectError))


# -- round trips ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6).filter(lambda k: k != "_placeholder"), children, max_size=4),
    max_leaves=12,
)
with_bytes = st.recursive(
    json_values | st.binary(max_size=6),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6).filter(lambda k: k != "_placeholder"), children, max_size=3),
    max_leaves=8,
)
namespaces = st.just("/") | st.text(min_size=1, max_size=12).filter(lambda s: "," not in s).map(lambda s: "/" + s)
ids = st.none() | st.integers(0, MAX_ACK_ID)
names = st.text(min_size=0, max_size=10).filter(lambda s: s not in RESERVED_EVENTS)
objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
socket_packets = st.one_of(
    st.builds(Connect, namespaces, st.none() | objects),
    st.builds(Disconnect, namespaces),
    st.builds(Event, names, st.lists(with_bytes, max_size=4), namespaces, ids),
    st.builds(Ack, st.integers(0, MAX_ACK_ID), st.lists(with_bytes, max_size=4), namespaces),
    st.builds(ConnectError, objects | st.text(max_size=10), namespaces),
)


def _has_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, list):
        return any(_has_bytes(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    return False


@settings(max_examples=300)
@given(socket_packets)
def test_every_packet_comes_back_as_it_was_sent(packet: SocketPacket) -> None:
    wire = encode_packet(packet)
    assert isinstance(wire[0], str) and all(isinstance(extra, bytes) for extra in wire[1:])
    binary = isinstance(packet, (Event, Ack)) and _has_bytes(packet.args)
    assert wire[0][0] == {Connect: "0", Disconnect: "1", Event: "25"[binary], Ack: "36"[binary],
                          ConnectError: "4"}[type(packet)]
    assert (len(wire) > 1) == binary
    # any number of attachments goes out; a default decoder, like a stock
    # client's, takes ten
    assert decode(*wire, decoder=PacketDecoder(max_attachments=1000, max_attachment_bytes=10**6)) == packet
    if len(wire) - 1 > 10:
        with pytest.raises(SocketIoError):
            decode(*wire)


# -- Socket.IO over an Engine.IO session ----------------------------------------------------------

def test_a_binary_event_over_long_polling_both_ways() -> None:
    session = EngineIoSession("s", 0, EngineIoConfig())
    session.poll(0)
    # the client: a CONNECT with auth, then a binary event with an ack id
    session.receive_post(b'40/socket/commu-1,{"token":"Bearer t"}\x1e'
                         b'451-/socket/commu-1,7["upload",{"_placeholder":true,"num":0}]\x1ebAQID', 1)
    decoder = PacketDecoder()
    packets = [decoder.receive(event.data) for event in session.take_events() if isinstance(event, Message)]
    assert packets == [Connect("/socket/commu-1", {"token": "Bearer t"}), None,
                       Event("upload", [b"\x01\x02\x03"], "/socket/commu-1", 7)]
    # the server: the grant, and a binary ack
    session.send(encode_connect("n1", "/socket/commu-1"))
    for message in encode_ack(7, [{"ok": True}, b"\x04"], "/socket/commu-1"):
        session.send(message)
    response = session.poll(2)
    assert response is not None
    assert response.body.decode() == ('40/socket/commu-1,{"sid":"n1"}\x1e'
                                      '461-/socket/commu-1,7[{"ok":true},{"_placeholder":true,"num":0}]\x1ebBA==')
    client = PacketDecoder()
    back = [client.receive(p.data) for p in decode_payload(response.body)]
    assert back[-1] == Ack(7, [{"ok": True}, b"\x04"], "/socket/commu-1")


def test_garbage_from_a_client_is_a_socket_io_error_for_the_layer_above() -> None:
    # test-suite: "4abc" reaches Socket.IO as "abc", which closes the connection
    session = EngineIoSession("w", 0, EngineIoConfig(), transport="websocket")
    session.receive_websocket(1, "4abc", 1)
    (message,) = session.take_events()
    assert isinstance(message, Message)
    with pytest.raises(SocketIoError):
        PacketDecoder().receive(message.data)
