"""Engine.IO v4 session states: the transition table of ``engineio_state``
read as the spec, a sweep of every (state, input) pair through the public
API of ``EngineIoSession``, and a Hypothesis state machine that checks, over
random traffic, that every state change follows the table and that what the
server sends arrives once, in order, within the queue's bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from satchel.protocol.http import HttpResponse
from satchel.protocol.socketio import (
    TRANSITIONS,
    Closed,
    EngineIoConfig,
    EngineIoSession,
    EnginePacket,
    Input,
    State,
    decode_frame,
    decode_payload,
    diagram,
)
from satchel.protocol.socketio import (
    EnginePacketType as T,
)


def error_code(response: HttpResponse) -> int:
    return msgspec.json.decode(response.body)["code"]


def body(response: HttpResponse | None) -> str:
    assert response is not None and response.status == 200, response
    return response.body.decode()


# -- the table ------------------------------------------------------------------------------------

def test_the_table_reads_as_the_spec() -> None:
    live = (State.POLLING, State.PROBING, State.UPGRADING, State.WEBSOCKET)
    assert TRANSITIONS[State.CLOSED] == {}
    for state in live:
        row = TRANSITIONS[state]
        assert row[Input.SEND] is state and row[Input.MESSAGE] is state and row[Input.PONG] is state
        assert row[Input.IGNORED] is state and row[Input.PING_DUE] is state
        assert row[Input.CLOSE] is State.CLOSING
        for failure in (Input.CLIENT_CLOSE, Input.CLIENT_PING, Input.INVALID, Input.OVERFLOW, Input.PING_TIMEOUT):
            assert row[failure] is State.CLOSED
        assert (Input.POLL in row) == (state is not State.WEBSOCKET)
        assert (Input.PROBE in row) == (state in (State.PROBING, State.UPGRADING))
    assert Input.SEND not in TRANSITIONS[State.CLOSING]
    assert Input.PING_DUE not in TRANSITIONS[State.CLOSING]
    assert {target for row in TRANSITIONS.values() for target in row.values()} == set(State)


def test_the_diagram_is_drawn_from_the_table() -> None:
    drawn = diagram()
    for state, row in TRANSITIONS.items():
        for input, target in row.items():
            if target is not state:
                assert f"{state.value} --> {target.value}: {input.value}" in drawn
            else:
                assert input.value in drawn


class Traced(EngineIoSession):
    """A session that records every transition it makes."""

    __slots__ = ("trace",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.trace: list[tuple[State, Input, State]] = []
        super().__init__(*args, **kwargs)

    def _transition(self, input: Input, *args: Any) -> bool:
        before = self._state
        # recorded before the entry effects run, so nested transitions keep order
        target = TRANSITIONS[before].get(input)
        if target is not None:
            self.trace.append((before, input, target))
        moved = super()._transition(input, *args)
        assert moved == (target is not None)
        return moved


# No timer runs during a sweep step unless the step is about that timer.
QUIET: dict[str, Any] = {"ping_interval_ms": 1_000_000, "ping_timeout_ms": 1_000_000,
                         "upgrade_timeout_ms": 1_000_000, "close_timeout_ms": 1_000_000, "max_queued_packets": 4}
VARIANTS = ["polling", "probing", "upgrading", "websocket", "websocket-only", "closing-polling",
            "closing-websocket", "closed"]


def reach(variant: str, config: EngineIoConfig, *, held: bool = False,
          pinged: bool = False) -> tuple[Traced, int | None, int]:
    """A traced session in ``variant``, its websocket id and the time now.
    ``held``: a GET is held open on the way; ``pinged``: a ping is outstanding."""
    now = config.ping_interval_ms if pinged else 1
    if variant == "websocket-only":
        session = Traced("s", 0, config, transport="websocket")
        ws = session.websocket_id
        session.tick(now)
        session.take_websocket_frames(ws)  # type: ignore[arg-type]
    else:
        session = Traced("s", 0, config)
        session.poll(0)
        session.tick(now)
        if pinged:
            assert body(session.poll(now)) == "2"
        if held:
            assert session.poll(now) is None
        ws = None
        if variant in ("probing", "upgrading", "websocket", "closing-websocket"):
            ws = session.attach_websocket(now)
        if variant in ("upgrading", "websocket", "closing-websocket"):
            session.receive_websocket(ws, "2probe", now)  # type: ignore[arg-type]
        if variant in ("websocket", "closing-websocket"):
            session.receive_websocket(ws, "5", now)  # type: ignore[arg-type]
            session.take_websocket_frames(ws)  # type: ignore[arg-type]
    if variant == "closing-websocket":
        session.send("x")
        session.close(now)
    if variant == "closing-polling":
        session.close(now)
    if variant == "closed":
        session.receive_post(b"1", now)
        # A client's close leaves room for one late GET (its noop); take it,
        # so that "closed" is closed for every request that follows.
        session.poll(now)
    session.take_events()
    session.trace.clear()
    return session, ws, now


def _post_or_frame(data: str) -> Callable[[Traced, int | None, int], Any]:
    """Deliver a packet on the session's current transport."""
    def act(session: Traced, ws: int | None, now: int) -> Any:
        if session.transport == "websocket":
            return session.receive_websocket(ws, data, now)  # type: ignore[arg-type]
        return session.receive_post(data.encode(), now)
    return act


Act = Callable[[Traced, int | None, int], Any]
# input -> (how to reach the state, the public call that makes the input happen)
TRIGGERS: dict[Input, tuple[dict[str, Any], Act]] = {
    Input.POLL: ({}, lambda s, ws, now: s.poll(now)),
    Input.POLL_OVERLAP: ({"held": True}, lambda s, ws, now: s.poll(now)),
    Input.POLL_ABORTED: ({"held": True}, lambda s, ws, now: s.poll_aborted()),
    Input.POST: ({}, lambda s, ws, now: s.receive_post(b"6", now)),
    Input.POST_REFUSED: ({}, lambda s, ws, now: s.receive_post(b"4x", now, content_type="application/octet-stream")),
    Input.PONG: ({}, _post_or_frame("3")),
    Input.MESSAGE: ({}, _post_or_frame("4x")),
    Input.IGNORED: ({}, _post_or_frame("6")),
    Input.CLIENT_CLOSE: ({}, _post_or_frame("1")),
    Input.CLIENT_PING: ({}, _post_or_frame("2")),
    Input.INVALID: ({}, _post_or_frame("xyz")),
    Input.WEBSOCKET_OPEN: ({}, lambda s, ws, now: s.attach_websocket(now)),
    Input.PROBE: ({}, lambda s, ws, now: s.receive_websocket(ws, "2probe", now)),  # type: ignore[arg-type]
    Input.UPGRADE: ({}, lambda s, ws, now: s.receive_websocket(ws, "5", now)),  # type: ignore[arg-type]
    Input.PROBE_FAILED: ({}, lambda s, ws, now: s.receive_websocket(ws, "4x", now)),  # type: ignore[arg-type]
    Input.WEBSOCKET_CLOSED: ({}, lambda s, ws, now: s.websocket_closed(ws)),  # type: ignore[arg-type]
    Input.SEND: ({}, lambda s, ws, now: s.send("x")),
    Input.OVERFLOW: ({}, lambda s, ws, now: [s.send("x") for _ in range(10)]),
    Input.CLOSE: ({}, lambda s, ws, now: s.close(now)),
    Input.FLUSHED: ({"held": True},
                    lambda s, ws, now: (s.take_poll_response(), s.take_websocket_frames(ws))),  # type: ignore[arg-type]
    Input.PING_DUE: ({"config": {"ping_interval_ms": 1000}}, lambda s, ws, now: s.tick(1000)),
    Input.PING_TIMEOUT: ({"pinged": True, "config": {"ping_interval_ms": 1000, "ping_timeout_ms": 500}},
                         lambda s, ws, now: s.tick(1500)),
    Input.UPGRADE_TIMEOUT: ({"config": {"upgrade_timeout_ms": 100}}, lambda s, ws, now: s.tick(now + 100)),
    Input.CLOSE_TIMEOUT: ({"config": {"close_timeout_ms": 50}}, lambda s, ws, now: s.tick(now + 50)),
}
POLLING_INPUTS = {Input.POLL, Input.POLL_OVERLAP, Input.POLL_ABORTED, Input.POST, Input.POST_REFUSED}
WEBSOCKET_INPUTS = {Input.PROBE, Input.UPGRADE, Input.PROBE_FAILED, Input.WEBSOCKET_CLOSED}
STATE_OF = {"polling": State.POLLING, "probing": State.PROBING, "upgrading": State.UPGRADING,
            "websocket": State.WEBSOCKET, "websocket-only": State.WEBSOCKET, "closing-polling": State.CLOSING,
            "closing-websocket": State.CLOSING, "closed": State.CLOSED}


def test_every_input_has_a_trigger() -> None:
    assert set(TRIGGERS) == set(Input)


def sweep(variant: str, input: Input) -> bool:
    """Reach ``variant``, make ``input`` happen through the public API and
    check the outcome against the table; whether the table's entry was taken."""
    options, act = TRIGGERS[input]
    config = EngineIoConfig(**{**QUIET, **options.get("config", {})})
    session, ws, now = reach(variant, config, held=options.get("held", False), pinged=options.get("pinged", False))
    state = STATE_OF[variant]
    assert session.state is state
    # the two checks before the table (engineio_state's theory of operation)
    applies = not ((input in POLLING_INPUTS and session.transport == "websocket")
                   or (input in WEBSOCKET_INPUTS and session.websocket_id is None))
    answer = act(session, ws, now)
    expected = TRANSITIONS[state].get(input) if applies else None
    mine = [step for step in session.trace if step[1] is input]
    # the trace explains the whole way from the state before to the state after
    at = state
    for before, _, after in session.trace:
        assert before is at
        at = after
    assert at is session.state
    if expected is not None:
        assert mine and mine[0] == (state, input, expected), session.trace
        return True
    # refused: this input did not happen, and it was answered as Input says
    assert mine == [], session.trace
    if input in (Input.POLL, Input.POLL_OVERLAP):
        assert isinstance(answer, HttpResponse) and error_code(answer) == (1 if state is State.CLOSED else 3)
    if input is Input.WEBSOCKET_OPEN:
        assert answer is None
    if input is Input.SEND:
        assert answer is False
    return False


@pytest.mark.parametrize("input", list(Input), ids=lambda i: i.name)
@pytest.mark.parametrize("variant", VARIANTS)
def test_sweep_every_state_and_input_through_the_public_api(variant: str, input: Input) -> None:
    sweep(variant, input)


def test_the_public_api_reaches_every_transition_in_the_table() -> None:
    taken = {(STATE_OF[variant], input) for variant in VARIANTS for input in Input if sweep(variant, input)}
    assert taken == {(state, input) for state, row in TRANSITIONS.items() for input in row}


# -- a random walk: order, bounds and the trace ------------------------------------------------

FRAME_CHOICES = ["2probe", "5", "3", "4x", "1", "2", "6", "garbage", b"\x01"]
BODY_CHOICES = [b"3", b"4a\x1e4b", b"bAQID", b"1", b"6", b"junk", b"2", b""]


class SessionMachine(RuleBasedStateMachine):
    """Random traffic on one session; what the server sent arrives once, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.session = Traced("m", 0, EngineIoConfig(ping_interval_ms=300, ping_timeout_ms=200,
                                                     upgrade_timeout_ms=500, close_timeout_ms=700,
                                                     max_queued_packets=6, max_queued_bytes=256))
        self.now = 0
        self.ws: int | None = None
        self.sent: list[str | bytes] = []
        self.delivered: list[str | bytes] = []
        self.closed_events = 0
        self.opened = False

    def _step(self, call: Callable[[], Any]) -> Any:
        before = self.session.state
        self.session.trace.clear()
        result = call()
        at = before
        for state, input, after in self.session.trace:
            assert state is at and TRANSITIONS[state][input] is after
            at = after
        assert at is self.session.state
        if before is State.CLOSED:
            assert self.session.state is State.CLOSED
        for event in self.session.take_events():
            if isinstance(event, Closed):
                self.closed_events += 1
        return result

    def _collect_payload(self, response: HttpResponse | None) -> None:
        if response is not None and response.status == 200:
            for one in decode_payload(response.body):
                self._collect(one)

    def _collect(self, one: EnginePacket) -> None:
        if one.type is T.MESSAGE:
            self.delivered.append(one.data)
        elif one.type is T.OPEN:
            assert not self.opened
            self.opened = True

    @rule(ms=st.integers(0, 400))
    def time_passes(self, ms: int) -> None:
        self.now += ms
        self._step(lambda: self.session.tick(self.now))

    @rule()
    def get(self) -> None:
        self._collect_payload(self._step(lambda: self.session.poll(self.now)))

    @rule()
    def answer_held_get(self) -> None:
        self._collect_payload(self._step(self.session.take_poll_response))

    @rule()
    def abort_held_get(self) -> None:
        self._step(self.session.poll_aborted)

    @rule(data=st.sampled_from(BODY_CHOICES))
    def post(self, data: bytes) -> None:
        self._step(lambda: self.session.receive_post(data, self.now))

    @rule()
    def open_websocket(self) -> None:
        ws = self._step(lambda: self.session.attach_websocket(self.now))
        if ws is not None:
            self.ws = ws

    @rule(frame=st.sampled_from(FRAME_CHOICES), stale=st.booleans())
    def websocket_frame(self, frame: str | bytes, stale: bool) -> None:
        if self.ws is not None:
            ws = self.ws - 1 if stale else self.ws
            self._step(lambda: self.session.receive_websocket(ws, frame, self.now))

    @rule()
    def websocket_goes_away(self) -> None:
        if self.ws is not None:
            self._step(lambda: self.session.websocket_closed(self.ws))  # type: ignore[arg-type]

    @rule()
    def write_websocket(self) -> None:
        if self.ws is not None:
            frames = self._step(lambda: self.session.take_websocket_frames(self.ws))  # type: ignore[arg-type]
            for frame in frames:
                if frame != "3probe":
                    self._collect(decode_frame(frame))

    @rule(data=st.one_of(st.text(alphabet="ab€", max_size=12), st.binary(max_size=12)))
    def send(self, data: str | bytes) -> None:
        if self._step(lambda: self.session.send(data)):
            self.sent.append(data)

    @rule()
    def close(self) -> None:
        self._step(lambda: self.session.close(self.now))

    @invariant()
    def delivered_in_order_once(self) -> None:
        assert self.delivered == self.sent[: len(self.delivered)]

    @invariant()
    def bounded(self) -> None:
        config = self.session.config
        assert self.session.queued_packets <= config.max_queued_packets
        assert self.session.queued_bytes <= config.max_queued_bytes

    @invariant()
    def closed_once(self) -> None:
        assert self.closed_events == (1 if self.session.closed else 0)
        if self.session.closed:
            assert self.session.next_deadline_ms() is None and self.session.queued_packets == 0


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
