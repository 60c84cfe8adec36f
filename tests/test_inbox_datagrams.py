"""Inbox messages over UDP (seed 001): the datagram codec, its handling, the
replay guard, and the trio endpoint on a real socket."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import socket
import struct
import time
from typing import Any

import pytest
import trio
from hypothesis import given, settings, strategies as st

from inbox_harness import MESSAGE_ID, OTHER_READ, OTHER_WRITE, READ, START_MS, WRITE, InboxCore
from satchel.protocol import inbox
from satchel.protocol.inbox import datagrams, replay, tokens
from satchel.protocol.inbox.datagrams import decode_answer, encode_request
from satchel.transports.udp import remove_message_udp, send_message_udp, serve_udp

NONCE = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def _request(message: Any = None, *, remove: bool = False, write: str = WRITE, message_id: str = MESSAGE_ID,
             timestamp_ms: int = START_MS, nonce: bytes = NONCE) -> bytes:
    return encode_request(write, message_id, message, remove=remove, timestamp_ms=timestamp_ms, nonce=nonce)


@pytest.fixture
def core() -> InboxCore:
    core = InboxCore()
    core.inbox({"owner": "me", "#messages": {}}, revision=10)
    core.take_changes()
    return core


# -- the layout -----------------------------------------------------------------------------


def test_the_request_layout_is_as_documented() -> None:
    datagram = _request(b'{"#":1}')
    token = bytes.fromhex(WRITE)
    assert datagram[0:4] == b"SINB" and datagram[4] == 1 and datagram[5:6] == b"A"
    assert datagram[6:22] == tokens.document_id(token)
    assert datagram[6:22] == hashlib.sha256(b"satchel-inbox-id" + token).digest()[:16]
    assert struct.unpack(">Q", datagram[22:30]) == (START_MS,)
    assert datagram[30:38] == NONCE
    assert datagram[38:46] == bytes.fromhex(MESSAGE_ID)
    assert datagram[46:-32] == b'{"#":1}'
    key = hashlib.sha256(b"satchel-inbox-key" + token).digest()
    assert datagram[-32:] == hmac.new(key, datagram[:-32], "sha256").digest()
    assert len(datagram) == 78 + 7
    removal = _request(remove=True)
    assert removal[5:6] == b"R" and len(removal) == 78


def test_encode_request_refuses_what_the_server_would_drop() -> None:
    for bad in (
        lambda: _request({}, write=WRITE[:-1]),
        lambda: _request({}, message_id="xyz"),
        lambda: _request({}, nonce=b"short"),
        lambda: _request({}, timestamp_ms=-1),
        lambda: _request(b""),
        lambda: _request(b"1" * 4097),
        lambda: _request({"x": 1}, remove=True),
    ):
        with pytest.raises(ValueError):
            bad()
    assert len(_request(b"1" * 4096)) == datagrams.MAX_REQUEST_BYTES == 4174


# -- handling ---------------------------------------------------------------------------------


def test_a_merge_is_answered_m_and_made(core: InboxCore) -> None:
    request = _request({"#": 5, "type": "temperature", "value": 21.1})
    answer = core.datagram(request)
    assert answer is not None and len(answer) == datagrams.ANSWER_BYTES == 30
    assert decode_answer(answer, WRITE, request) == "M"
    assert core.content() == {"owner": "me", "#messages": {MESSAGE_ID: {"#": 5, "type": "temperature", "value": 21.1}}}
    (change,) = core.take_changes()
    assert (change.read_token, change.origin, change.content) == (READ, "inbox-udp", core.get().body)


def test_a_no_op_merge_is_answered_m_without_a_write(core: InboxCore) -> None:
    core.datagram(_request({"#": 5}, nonce=b"a" * 8))
    core.take_changes()
    before = core.get()
    request = _request({"#": 4}, nonce=b"b" * 8)
    assert decode_answer(core.datagram(request), WRITE, request) == "M"
    assert core.get().body == before.body and core.take_changes() == []


def test_a_removal_is_answered_m_whether_or_not_the_message_was_there(core: InboxCore) -> None:
    core.datagram(_request({"#": 5}, nonce=b"a" * 8))
    for nonce in (b"b" * 8, b"c" * 8):
        request = _request(remove=True, nonce=nonce)
        assert decode_answer(core.datagram(request), WRITE, request) == "M"
        assert core.content()["#messages"] == {}
    assert len(core.take_changes()) == 2  # the merge and one removal


@pytest.mark.parametrize(
    "content, message, remove, code",
    [
        ({"no": "inbox"}, {"#": 1}, False, "N"),
        ({"no": "inbox"}, None, True, "N"),
        ({"#messages": {}}, b"{oops", False, "B"),
        ({"#messages": {}}, b"\xff", False, "B"),
        ({"#messages": {}}, {"#": True}, False, "B"),
        ({"#messages": {}}, {"#": "1"}, False, "B"),
    ],
)
def test_authentic_failures_get_their_code(content: Any, message: Any, remove: bool, code: str) -> None:
    core = InboxCore()
    core.put(content)
    before = core.get().body
    request = _request(message, remove=remove)
    assert decode_answer(core.datagram(request), WRITE, request) == code
    assert core.get().body == before


def test_a_remove_request_with_a_body_is_a_bad_message(core: InboxCore) -> None:
    request = bytearray(_request(b"{}"))
    request[5] = ord("R")
    signed = bytes(request[:-32])
    forged = signed + hmac.new(tokens.mac_key(bytes.fromhex(WRITE)), signed, "sha256").digest()
    assert decode_answer(core.datagram(forged), WRITE, forged) == "B"


def test_a_full_inbox_is_answered_t() -> None:
    core = InboxCore(inbox.InboxConfig(max_document_bytes=100))
    core.inbox()
    request = _request({"#": 1, "pad": "x" * 100})
    assert decode_answer(core.datagram(request), WRITE, request) == "T"


def _flip(datagram: bytes, index: int) -> bytes:
    return datagram[:index] + bytes([datagram[index] ^ 0x01]) + datagram[index + 1 :]


_DROPPED: list[tuple[str, Any]] = [
    ("empty", lambda r: b""),
    ("magic", lambda r: b"XINB" + r[4:]),
    ("version", lambda r: r[:4] + b"\x02" + r[5:]),
    ("operation", lambda r: r[:5] + b"X" + r[6:]),
    ("truncated tag", lambda r: r[:-1]),
    ("truncated to the header", lambda r: r[:46]),
    ("one byte more", lambda r: r + b"\x00"),
    ("tag flipped", lambda r: _flip(r, len(r) - 1)),
    ("message flipped", lambda r: _flip(r, 50)),
    ("message id flipped", lambda r: _flip(r, 40)),
    ("timestamp flipped", lambda r: _flip(r, 29)),
    ("unknown document", lambda r: _request({"#": 1}, write=OTHER_WRITE)),
    ("signed by another key", lambda r: r[:6] + tokens.document_id(bytes.fromhex(OTHER_WRITE)) + r[22:]),
    ("stale", lambda r: _request({"#": 1}, timestamp_ms=START_MS - 30_001)),
    ("from the future", lambda r: _request({"#": 1}, timestamp_ms=START_MS + 30_001)),
]


@pytest.mark.parametrize("what, mangle", _DROPPED, ids=[case[0] for case in _DROPPED])
def test_invalid_datagrams_are_dropped_without_an_answer(core: InboxCore, what: str, mangle: Any) -> None:
    before = core.get().body
    assert core.datagram(mangle(_request({"#": 1, "text": "hello"}))) is None
    assert core.get().body == before and core.take_changes() == []


def test_a_replay_is_dropped(core: InboxCore) -> None:
    request = _request({"#": 1})
    assert core.datagram(request) is not None
    core.clock.now_ms += 10_000
    assert core.datagram(request) is None
    # The same message in a new request is fine (and a no-op).
    fresh = _request({"#": 1}, nonce=b"n" * 8, timestamp_ms=core.clock.now_ms)
    assert decode_answer(core.datagram(fresh), WRITE, fresh) == "M"


def test_nothing_from_before_the_server_started_is_admitted() -> None:
    core = InboxCore()
    core.inbox()
    # Within the window, but sent before this server started: after a
    # restart, the replay memory of the previous run is gone.
    assert core.datagram(_request({"#": 1}, timestamp_ms=START_MS - 1)) is None
    assert core.datagram(_request({"#": 1}, timestamp_ms=START_MS)) is not None


def test_the_window_follows_the_clock(core: InboxCore) -> None:
    core.clock.now_ms = START_MS + 60_000
    assert core.datagram(_request({"#": 1}, timestamp_ms=START_MS + 30_000)) is not None
    assert core.datagram(_request({"#": 1}, timestamp_ms=START_MS + 29_999, nonce=b"x" * 8)) is None
    assert core.datagram(_request({"#": 1}, timestamp_ms=START_MS + 90_000, nonce=b"y" * 8)) is not None
    assert core.datagram(_request({"#": 1}, timestamp_ms=START_MS + 90_001, nonce=b"z" * 8)) is None


def test_an_answer_is_bound_to_its_request(core: InboxCore) -> None:
    request = _request({"#": 1})
    answer = core.datagram(request)
    other = _request({"#": 1}, nonce=b"o" * 8)
    assert decode_answer(answer, WRITE, request) == "M"
    assert decode_answer(answer, WRITE, other) is None
    assert decode_answer(answer, OTHER_WRITE, request) is None
    for index in range(len(answer)):
        assert decode_answer(_flip(answer, index), WRITE, request) is None
    assert decode_answer(answer[:-1], WRITE, request) is None


@settings(max_examples=60, deadline=None)
@given(
    message=st.one_of(
        st.binary(min_size=1, max_size=4096),
        st.dictionaries(st.sampled_from(["#", "a", "b"]), st.one_of(st.integers(), st.text(max_size=30), st.booleans(), st.none())),
    ),
    remove=st.booleans(),
    nonce=st.binary(min_size=8, max_size=8),
    skew=st.integers(-40_000, 40_000),
    message_id=st.integers(0, 2**64 - 1),
)
def test_an_answer_is_never_larger_than_its_request(message: Any, remove: bool, nonce: bytes, skew: int, message_id: int) -> None:
    core = InboxCore()
    core.inbox()
    core.clock.now_ms = START_MS + 40_000
    request = _request(None if remove else message, remove=remove, nonce=nonce, timestamp_ms=START_MS + 40_000 + skew,
                       message_id=f"{message_id:016x}")
    answer = core.datagram(request)  # the harness asserts len(answer) < len(request)
    if answer is not None:
        assert decode_answer(answer, WRITE, request) in ("M", "B")
    else:
        assert abs(skew) > 30_000


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=5000),
    st.binary(min_size=72, max_size=300).map(lambda tail: b"SINB\x01A" + tail),
    st.binary(min_size=72, max_size=300).map(lambda tail: b"SINB\x01R" + tail),
    st.binary(min_size=56, max_size=300).map(lambda tail: b"SINB\x01A" + tokens.document_id(bytes.fromhex(WRITE)) + tail),
))
def test_random_bytes_are_only_ever_dropped(datagram: bytes) -> None:
    core = InboxCore()
    core.inbox()
    core.take_changes()
    before = core.get().body
    assert core.datagram(datagram) is None
    assert core.get().body == before and core.take_changes() == []


# -- the replay guard ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 8),
    window=st.integers(1, 50),
    steps=st.lists(st.tuples(st.integers(0, 15), st.integers(-60, 60), st.integers(0, 20)), max_size=80),
)
def test_the_replay_guard_never_admits_twice_and_respects_its_bound(capacity: int, window: int, steps: list[tuple[int, int, int]]) -> None:
    start = 1000
    state = replay.new_replay_state(start, window_ms=window, capacity=capacity)
    now = start
    admitted: set[tuple[int, int]] = set()
    for request, offset, tick in steps:
        now += tick
        timestamp = now + offset
        tag = f"{request}@{timestamp}".encode()  # a replay repeats the tag and its timestamp
        was_fresh = replay.is_fresh(state, timestamp, now)
        was_seen = (request, timestamp) in admitted
        room = len(state) < capacity
        state, accepted = replay.admit(state, tag, timestamp, now)
        if accepted:
            assert not was_seen, "admitted a replay"
            assert timestamp >= start and abs(timestamp - now) <= window
            admitted.add((request, timestamp))
        elif room and was_fresh and not was_seen:
            raise AssertionError("refused a fresh datagram with room to remember it")
        assert len(state) <= capacity
        assert len(state.seen) == len(state.by_age)


def test_a_full_replay_guard_refuses_the_oldest_rather_than_forgetting_newer_ones() -> None:
    state = replay.new_replay_state(0, window_ms=1000, capacity=3)
    for n, timestamp in enumerate((100, 200, 300)):
        state, accepted = replay.admit(state, b"t%d" % n, timestamp, 300)
        assert accepted
    # Older than everything remembered: refused outright.
    state, accepted = replay.admit(state, b"older", 50, 300)
    assert not accepted and len(state) == 3
    # Newer: the oldest is forgotten and the floor rises above it...
    state, accepted = replay.admit(state, b"newer", 250, 300)
    assert accepted and len(state) == 3 and state.floor_ms == 101
    # ...so that what was forgotten cannot be replayed.
    state, accepted = replay.admit(state, b"t0", 100, 300)
    assert not accepted


def test_a_clock_stepping_back_reopens_nothing() -> None:
    state = replay.new_replay_state(0, window_ms=100, capacity=10)
    state, accepted = replay.admit(state, b"a", 1000, 1000)
    assert accepted
    state, _ = replay.admit(state, b"b", 5000, 5000)  # the clock jumps ahead; "a" is forgotten
    assert b"a" not in state.seen
    state, accepted = replay.admit(state, b"a", 1000, 1000)  # and back again
    assert not accepted


# -- the endpoint on a real socket ------------------------------------------------------------


def _serving_core() -> tuple[InboxCore, Any]:
    core = InboxCore()
    core.inbox()
    core.clock.now_ms = trio_time_ms()
    core.guard = inbox.new_replay_guard(core.config, core.clock.now_ms - 60_000)

    async def handle(datagram: bytes, address: Any) -> bytes | None:
        core.clock.now_ms = trio_time_ms()
        if datagram == b"explode":
            raise RuntimeError("a bug in the application")
        return core.datagram(datagram)

    return core, handle


def trio_time_ms() -> int:
    return time.time_ns() // 1_000_000


async def _exchange(sock: trio.socket.SocketType, port: int, datagram: bytes, *, wait: float = 2.0) -> bytes | None:
    await sock.sendto(datagram, ("127.0.0.1", port))
    with trio.move_on_after(wait):
        answer, _ = await sock.recvfrom(65536)
        return answer
    return None


async def test_serve_udp_answers_valid_requests_and_survives_garbage(nursery: trio.Nursery) -> None:
    core, handle = _serving_core()
    port = await nursery.start(serve_udp, handle, "127.0.0.1", 0)
    client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with client:
        request = _request({"#": 1, "n": 0}, timestamp_ms=trio_time_ms(), nonce=os.urandom(8))
        assert decode_answer(await _exchange(client, port, request), WRITE, request) == "M"

        # Garbage, an oversize datagram, a replay and a crashing handler: no answers.
        rng = random.Random(6)
        garbage = [rng.randbytes(rng.randrange(0, 5000)) for _ in range(300)]
        garbage += [b"SINB\x01A" + rng.randbytes(rng.randrange(72, 300)) for _ in range(100)]
        garbage += [b"x" * 9000, request, b"explode", b""]
        for datagram in garbage:
            await client.sendto(datagram, ("127.0.0.1", port))
        with trio.move_on_after(0.3):
            unexpected, _ = await client.recvfrom(65536)
            raise AssertionError(f"answered garbage: {unexpected!r}")

        # And it still answers valid requests.
        for n in range(1, 4):
            request = _request({"#": n, "n": n}, timestamp_ms=trio_time_ms(), nonce=os.urandom(8))
            assert decode_answer(await _exchange(client, port, request), WRITE, request) == "M"
    assert core.content()["#messages"] == {MESSAGE_ID: {"#": 3, "n": 3}}
    nursery.cancel_scope.cancel()


async def test_the_blocking_client_against_the_endpoint(nursery: trio.Nursery) -> None:
    core, handle = _serving_core()
    port = await nursery.start(serve_udp, handle, "127.0.0.1", 0)
    code = await trio.to_thread.run_sync(lambda: send_message_udp("127.0.0.1", port, WRITE, MESSAGE_ID, {"#": 7, "v": "udp"}, timeout=5))
    assert code == "M"
    assert core.content()["#messages"] == {MESSAGE_ID: {"#": 7, "v": "udp"}}
    assert await trio.to_thread.run_sync(lambda: remove_message_udp("127.0.0.1", port, WRITE, MESSAGE_ID, timeout=5)) == "M"
    assert core.content()["#messages"] == {}
    # A wrong token gets no answer at all.
    with pytest.raises(TimeoutError):
        await trio.to_thread.run_sync(lambda: send_message_udp("127.0.0.1", port, OTHER_WRITE, MESSAGE_ID, {}, timeout=0.3))
    nursery.cancel_scope.cancel()


async def test_serve_udp_drops_oversize_datagrams_unread(nursery: trio.Nursery) -> None:
    sizes: list[int] = []

    async def handle(datagram: bytes, address: Any) -> bytes | None:
        sizes.append(len(datagram))
        return b"ok"

    port = await nursery.start(lambda task_status: serve_udp(handle, "127.0.0.1", 0, max_datagram_bytes=100, task_status=task_status))
    client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with client:
        assert await _exchange(client, port, b"x" * 101, wait=0.2) is None
        assert await _exchange(client, port, b"x" * 100) == b"ok"
    assert sizes == [100]
    nursery.cancel_scope.cancel()


# -- batches ----------------------------------------------------------------------------------


def test_a_batch_is_answered_as_each_datagram_alone_with_one_store_write() -> None:
    """handle_datagrams: the same answers in order as one datagram at a time,
    a datagram repeated inside its own batch refused as a replay, one read
    of the keys and one ApplyMessages for the whole batch."""
    from satchel.protocol.operations import ApplyMessages, GetDocumentKeys

    def build(core: InboxCore) -> list[bytes]:
        core.inbox({"#messages": {}}, revision=10)
        core.put({"plain": True}, read=OTHER_READ, write=OTHER_WRITE)
        merge = _request({"#": 5, "v": 1}, nonce=b"a" * 8)
        return [
            merge,
            _request({"#": 6}, message_id="00000000000000b1", nonce=b"b" * 8),
            merge,  # a replay within the batch
            _request(b"{oops", nonce=b"c" * 8),  # B
            _request({"#": 1}, write=OTHER_WRITE, nonce=b"d" * 8),  # N
            b"garbage",
            _request({"#": 7, "v": 2}, nonce=b"e" * 8),  # supersedes the first
            _request({"#": 1}, write="9" * 32, nonce=b"f" * 8),  # unknown
            _request(remove=True, message_id="00000000000000b1", nonce=b"g" * 8),
            _request(remove=True, message_id="00000000000000b1", nonce=b"g" * 8),  # replay of a removal
        ]

    alone = InboxCore()
    batch = build(alone)
    one_at_a_time = [alone.datagram(datagram) for datagram in batch]

    together = InboxCore()
    assert build(together) == batch
    action = inbox.handle_datagrams(batch, together.guard, together.config, together.env)
    yielded: list[Any] = []
    try:
        operation = next(action)
        while True:
            yielded.append(operation)
            operation = action.send(together.store.execute_sync(operation))
    except StopIteration as done:
        outcomes = done.value
    assert [type(operation) for operation in yielded] == [GetDocumentKeys, ApplyMessages]
    assert len(yielded[1].edits) == 5  # the authentic, well-formed ones (the store finds which is no inbox)
    assert [outcome.answer for outcome in outcomes] == one_at_a_time
    codes = [decode_answer(answer, OTHER_WRITE if n == 4 else WRITE, batch[n]) if answer else None
             for n, answer in enumerate(one_at_a_time)]
    assert codes == ["M", "M", None, "B", "N", None, "M", None, "M", None]
    assert together.content() == alone.content() == {"#messages": {MESSAGE_ID: {"#": 7, "v": 2}}}
    revisions = [change.revision for outcome in outcomes for change in outcome.changes]
    assert revisions == [revisions[0] + n for n in range(4)]  # one change per write, each at its own revision
    assert outcomes[8].changes[0].content == together.get().body


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=100), st.binary(max_size=300))
def test_the_servers_precomputed_hmac_is_hmac_sha256(key: bytes, data: bytes) -> None:
    assert datagrams._keyed_mac(key, data) == hmac.new(key, data, "sha256").digest()
    assert datagrams._keyed_mac(key, data) == hmac.new(key, data, "sha256").digest()  # from the cached pads
