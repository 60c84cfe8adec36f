"""A server-side Engine.IO v4 session as a sans-IO state machine
(engine.io-protocol README "Transports", "Heartbeat", "Upgrade"; engine.io's
``lib/socket.ts`` and ``lib/transports/polling.ts`` for what the README
leaves open). The states and every transition are in ``engineio_state``.

The transport feeds in what happened and takes out what to send, h11/h2
style; the session does no I/O and reads no clock (every input that can
make a timer due carries ``now_ms``):

    what happened                     call                            answer
    a handshake (no sid)              EngineIoSession(sid, now_ms, ...)
    GET ?sid=                         poll(now_ms)                    response, or None: hold the GET
    the held GET's client left        poll_aborted()
    POST ?sid=                        receive_post(body, now_ms)      response
    websocket ?sid= opened            attach_websocket(now_ms)        websocket id, or None: close it
    a websocket frame                 receive_websocket(id, frame, now_ms)
    the websocket closed              websocket_closed(id)
    time passed                       tick(now_ms); next_deadline_ms() says when to call again
    the layer above sends             send(data) -> queued?
    the layer above closes            close(now_ms)

and after every call:

    take_poll_response()       the held GET's answer, once the session has one
    take_websocket_frames(id)  frames to write to websocket ``id``
    websocket_should_close(id) close websocket ``id`` (after writing its frames)
    take_events()              Message(data) / Upgraded() / Closed(reason) for the layer above

Outgoing packets wait in one bounded queue (``max_queued_packets`` and
``max_queued_bytes``): a polling GET takes all of it as one payload; on a
websocket the transport takes it when it is ready to write, so a peer that
does not read makes the queue grow. Policy: a send that would pass either
bound closes the session as a slow consumer (reason "slow consumer"), drops
what was queued and returns False; the client reconnects.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ..errors import LocalProtocolError
from ..http import HttpResponse, json_response
from .engineio_packets import (
    DEFAULT_MAX_PAYLOAD,
    RECORD_SEPARATOR,
    EngineIoError,
    EnginePacket,
    EnginePacketType,
    OpenPayload,
    decode_frame,
    decode_payload,
    encode_open,
)
from .engineio_requests import (
    BAD_REQUEST,
    POLLING,
    UNKNOWN_SID,
    WEBSOCKET,
    error_response,
)
from .engineio_state import TRANSITIONS, Input, State

__all__ = [
    "EngineIoConfig",
    "EngineIoSession",
    "Message",
    "Upgraded",
    "Closed",
    "EngineIoEvent",
    "TRANSPORT_CLOSE",
    "TRANSPORT_ERROR",
    "PARSE_ERROR",
    "PING_TIMEOUT",
    "FORCED_CLOSE",
    "SLOW_CONSUMER",
    "LATE_POLL_GRACE_MS",
]

#: How long after a client's close over POST a GET read late still gets its noop.
LATE_POLL_GRACE_MS = 1_000

# Close reasons: engine.io's words (Socket#onClose), plus our queue bound's.
TRANSPORT_CLOSE = "transport close"  # the client closed ("1", or the websocket went away)
TRANSPORT_ERROR = "transport error"  # the client broke the transport's rules
PARSE_ERROR = "parse error"  # the client sent what does not decode
PING_TIMEOUT = "ping timeout"  # no pong within pingTimeout of a ping
FORCED_CLOSE = "forced close"  # the server closed the session (close())
SLOW_CONSUMER = "slow consumer"  # the outgoing queue would pass its bounds


@dataclass(frozen=True, slots=True)
class EngineIoConfig:
    """A server's Engine.IO settings; times in ms, sizes in bytes.

    The defaults are engine.io's (the protocol test suite wants
    ``ping_interval_ms=300, ping_timeout_ms=200``). ``max_payload`` is
    announced in the open packet and caps a polling body and a single
    packet; the two queue bounds are Satchel's (engine.io has none) and
    match the websocket transport's outbox defaults.
    """

    ping_interval_ms: int = 25_000
    ping_timeout_ms: int = 20_000
    max_payload: int = DEFAULT_MAX_PAYLOAD
    upgrade_timeout_ms: int = 10_000
    # How long a closing session waits for its last packets to be taken (on
    # polling: for a GET to carry them).
    close_timeout_ms: int = 30_000
    max_queued_packets: int = 10_000
    max_queued_bytes: int = 4 * 1024 * 1024
    allow_upgrades: bool = True

    def __post_init__(self) -> None:
        for name in ("ping_interval_ms", "ping_timeout_ms", "max_payload", "upgrade_timeout_ms",
                     "close_timeout_ms", "max_queued_packets", "max_queued_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"EngineIoConfig.{name} must be a positive integer")


class Message(msgspec.Struct, frozen=True):
    """A message packet from the client: its data, text or binary."""

    data: str | bytes


class Upgraded(msgspec.Struct, frozen=True):
    """The session moved from polling to its websocket."""


class Closed(msgspec.Struct, frozen=True):
    """The session is over, for ``reason``; always the last event."""

    reason: str


EngineIoEvent = Message | Upgraded | Closed

_PING = EnginePacket(EnginePacketType.PING)
_NOOP = EnginePacket(EnginePacketType.NOOP)
_CLOSE = EnginePacket(EnginePacketType.CLOSE)
_PROBE_ANSWER = "3probe"


def _payload_response(packets: list[EnginePacket]) -> HttpResponse:
    body = RECORD_SEPARATOR.join([packet.text for packet in packets])
    return HttpResponse(
        200, [("content-type", "text/plain; charset=UTF-8"), ("cache-control", "no-store")], body.encode("utf-8")
    )


def _ok_response() -> HttpResponse:
    # text/html, not text/plain: engine.io's answer to a POST (GH-43 there).
    return HttpResponse(200, [("content-type", "text/html"), ("cache-control", "no-store")], b"ok")


class EngineIoSession:
    """One Engine.IO session, from its handshake to its close.

    ``sid`` comes from the caller (unguessable: it is the session's only
    credential). A polling session answers its handshake GET through
    ``poll``, which returns the open packet; a websocket session
    (``transport="websocket"``) is born with ``websocket_id`` attached and
    the open packet as its first frame.
    """

    __slots__ = (
        "sid", "config", "_state", "_transport", "_queue", "_queued_bytes", "_events", "_held",
        "_closed_tail", "_ws_id", "_ws_count", "_probe_out", "_next_ping_ms", "_ping_deadline_ms",
        "_upgrade_deadline_ms", "_close_deadline_ms", "_reason", "_late_noop_until_ms",
    )

    def __init__(self, sid: str, now_ms: int, config: EngineIoConfig | None = None, *,
                 transport: str = POLLING) -> None:
        if transport != POLLING and transport != WEBSOCKET:
            raise LocalProtocolError("transport is 'polling' or 'websocket'")
        config = config or EngineIoConfig()
        self.sid = sid
        self.config = config
        self._state = State.POLLING if transport == POLLING else State.WEBSOCKET
        self._transport = transport
        # A list, not a deque: it is only appended to and emptied whole, and
        # an empty list is a tenth of an empty deque (thousands of idle sessions).
        self._queue: list[EnginePacket] = []
        self._queued_bytes = 0
        self._events: list[EngineIoEvent] = []
        self._held = False
        self._closed_tail: EnginePacket | None = None
        self._ws_id: int | None = 1 if transport == WEBSOCKET else None
        self._ws_count = 1 if transport == WEBSOCKET else 0
        self._probe_out: list[str] = []
        self._next_ping_ms = now_ms + config.ping_interval_ms
        self._ping_deadline_ms: int | None = None
        self._upgrade_deadline_ms: int | None = None
        self._close_deadline_ms: int | None = None
        self._reason: str | None = None
        # After a client's close over POST with no GET held: until when a GET
        # (one that was in flight, read after the POST) still gets its noop.
        self._late_noop_until_ms: int | None = None
        upgrades = [WEBSOCKET] if transport == POLLING and config.allow_upgrades else []
        self._push(encode_open(OpenPayload(sid, upgrades, config.ping_interval_ms, config.ping_timeout_ms,
                                           config.max_payload)))

    # -- what the transport reads ------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state (``engineio_state.State``)."""
        return self._state

    @property
    def transport(self) -> str:
        """``"polling"`` until the upgrade completes, then ``"websocket"``."""
        return self._transport

    @property
    def closed(self) -> bool:
        """Whether the session is over."""
        return self._state is State.CLOSED

    @property
    def close_reason(self) -> str | None:
        """Why the session closed (None while it is open)."""
        return self._reason

    @property
    def websocket_id(self) -> int | None:
        """The id of the websocket attached (the probe or the upgraded one)."""
        return self._ws_id

    @property
    def has_late_poll(self) -> bool:
        """Whether a late GET may still be owed its noop (``late_poll_open``
        says whether it is still in time)."""
        return self._state is State.CLOSED and self._late_noop_until_ms is not None

    def late_poll_open(self, now_ms: int) -> bool:
        """Whether the session is closed by its client but one GET in flight
        at the close would still get its noop (see the CLOSE packet)."""
        until = self._late_noop_until_ms
        return self._state is State.CLOSED and until is not None and now_ms <= until

    @property
    def poll_held(self) -> bool:
        """Whether a GET is being held open for this session."""
        return self._held

    @property
    def poll_ready(self) -> bool:
        """Whether ``take_poll_response`` would answer the held GET now."""
        return self._poll_packets(drain=False) is not None

    @property
    def queued_packets(self) -> int:
        """Packets waiting in the outgoing queue."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Their size, as the queue bound counts it (data length + 1 each)."""
        return self._queued_bytes

    def next_deadline_ms(self) -> int | None:
        """When ``tick`` next has something to do (None: nothing is timed)."""
        due = self._next_timer()
        return None if due is None else due[0]

    def take_events(self) -> list[EngineIoEvent]:
        """What happened for the layer above, oldest first, since the last call."""
        events, self._events = self._events, []
        return events

    # -- the one place the state changes -------------------------------------------------------

    def _transition(self, input: Input, reason: str = TRANSPORT_ERROR, tail: EnginePacket = _CLOSE) -> bool:
        """Move along ``TRANSITIONS``; False (and no change) where ``input`` is refused.

        What entering a state means is done here, from the table's answer, not
        by the callers: leaving the probe states detaches the probe (or, into
        WEBSOCKET, makes it the transport), and entering CLOSED ends the
        session for ``reason``, a held GET getting ``tail`` as its last answer.
        """
        previous = self._state
        target = TRANSITIONS[previous].get(input)
        if target is None:
            return False
        self._state = target
        if target is not previous:
            if previous is State.PROBING or previous is State.UPGRADING:
                if target is State.WEBSOCKET:
                    self._transport = WEBSOCKET
                    self._upgrade_deadline_ms = None
                    self._events.append(Upgraded())
                elif target is not State.UPGRADING:
                    self._detach_probe()
            if target is State.CLOSED:
                self._finish(reason, tail)
        return True

    def _finish(self, reason: str, tail: EnginePacket) -> None:
        """Entering CLOSED: drop what was queued, keep the held GET's last
        answer, detach the websocket, stop the timers."""
        self._reason = reason
        self._queue = []
        self._queued_bytes = 0
        self._closed_tail = tail if self._held else None
        self._ws_id = None
        self._probe_out = []
        self._ping_deadline_ms = self._upgrade_deadline_ms = self._close_deadline_ms = None
        self._events.append(Closed(reason))

    # -- HTTP long-polling ---------------------------------------------------------------------

    def poll(self, now_ms: int) -> HttpResponse | None:
        """A GET for this session. Returns its answer, or None: hold the request
        open until ``poll_ready`` and answer it with ``take_poll_response``."""
        self.tick(now_ms)
        if self._state is State.CLOSED:
            in_time = self.late_poll_open(now_ms)
            self._late_noop_until_ms = None  # one late GET at most, in time or not
            return _payload_response([_NOOP]) if in_time else error_response(UNKNOWN_SID)
        if self._transport != POLLING:
            return error_response(BAD_REQUEST)
        if self._held:
            # Two GETs at once break the ordering: engine.io closes the session,
            # answers the held one "1" and this one 400.
            self._transition(Input.POLL_OVERLAP, TRANSPORT_ERROR)
            return error_response(BAD_REQUEST)
        if not self._transition(Input.POLL):
            return error_response(BAD_REQUEST)
        self._held = True
        return self.take_poll_response()

    def take_poll_response(self) -> HttpResponse | None:
        """The held GET's answer once there is one (then the GET is no longer held)."""
        packets = self._poll_packets(drain=True)
        if packets is None:
            return None
        self._held = False
        response = _payload_response(packets)
        # A GET held across the upgrade only ever gets a noop: the websocket
        # carries the closing session's last packets.
        if self._state is State.CLOSING and self._transport == POLLING:
            self._transition(Input.FLUSHED, FORCED_CLOSE)
        return response

    def _poll_packets(self, *, drain: bool) -> list[EnginePacket] | None:
        """What the held GET is answered with now, or None to keep holding it."""
        if not self._held:
            return None
        state = self._state
        if state is State.CLOSED:
            tail = self._closed_tail
            if drain:
                self._closed_tail = None
            return None if tail is None else [tail]
        if self._transport == WEBSOCKET:
            # Held across the upgrade: the queue belongs to the websocket now.
            return [_NOOP]
        if state is State.CLOSING:
            return [*self._drain(drain), _CLOSE]
        if self._queue:
            return self._drain(drain)
        if state is State.UPGRADING:
            # The client pauses polling for the upgrade: let this GET go.
            return [_NOOP]
        return None

    def _drain(self, drain: bool) -> list[EnginePacket]:
        packets = self._queue
        if drain:
            self._queue = []
            self._queued_bytes = 0
        return packets

    def poll_aborted(self) -> None:
        """The held GET's connection closed before it was answered."""
        if not self._held:
            return
        self._held = False
        self._closed_tail = None
        if self._transport == POLLING:
            self._transition(Input.POLL_ABORTED, TRANSPORT_ERROR)

    def receive_post(self, body: bytes | str, now_ms: int, *, content_type: str | None = None) -> HttpResponse:
        """A POST for this session: its packets are taken in, and the answer is
        "ok", or the error that closed the session (400; 413 over maxPayload)."""
        self.tick(now_ms)
        if self._state is State.CLOSED:
            return error_response(UNKNOWN_SID)
        if self._transport != POLLING:
            return error_response(BAD_REQUEST)
        if content_type is not None and content_type.split(";", 1)[0].strip().lower() == "application/octet-stream":
            # v4 sends binary as base64 text; engine.io refuses a binary body.
            self._transition(Input.POST_REFUSED, TRANSPORT_ERROR)
            return error_response(BAD_REQUEST)
        try:
            packets = decode_payload(body, self.config.max_payload)
        except EngineIoError as error:
            if error.status == 413:
                self._transition(Input.POST_REFUSED, TRANSPORT_ERROR)
                return json_response(413, {"code": BAD_REQUEST, "message": "Payload too large"})
            self._transition(Input.INVALID, PARSE_ERROR)
            return error_response(BAD_REQUEST)
        if not self._transition(Input.POST):
            return error_response(BAD_REQUEST)
        for packet in packets:
            self._receive_packet(packet, now_ms)
        return _ok_response()

    def _receive_packet(self, packet: EnginePacket, now_ms: int) -> None:
        """One packet on the current transport (a POST's, or the upgraded websocket's)."""
        kind = packet.type
        if kind is EnginePacketType.MESSAGE:
            if self._transition(Input.MESSAGE):
                self._events.append(Message(packet.data))
        elif kind is EnginePacketType.PONG:
            if self._transition(Input.PONG):
                self._ping_deadline_ms = None
                self._next_ping_ms = now_ms + self.config.ping_interval_ms
        elif kind is EnginePacketType.CLOSE:
            # engine.io lets a held GET go with a noop when the client closes.
            # A GET sent just before the close may be read just after it (two
            # HTTP connections keep no order between them): it gets the same
            # noop, if it comes within LATE_POLL_GRACE_MS.
            if not self._held and self._transport == POLLING:
                self._late_noop_until_ms = now_ms + LATE_POLL_GRACE_MS
            self._transition(Input.CLIENT_CLOSE, TRANSPORT_CLOSE, _NOOP)
        elif kind is EnginePacketType.PING:
            self._transition(Input.CLIENT_PING, TRANSPORT_ERROR)
        else:
            self._transition(Input.IGNORED)

    # -- the websocket -------------------------------------------------------------------------

    def attach_websocket(self, now_ms: int) -> int | None:
        """A websocket opened on this session's sid. Returns its id, or None:
        refused (one is attached already, the session is upgraded or closing,
        or upgrades are off); close it."""
        self.tick(now_ms)
        if not self.config.allow_upgrades or not self._transition(Input.WEBSOCKET_OPEN):
            return None
        self._ws_count += 1
        self._ws_id = self._ws_count
        self._upgrade_deadline_ms = now_ms + self.config.upgrade_timeout_ms
        return self._ws_id

    def receive_websocket(self, websocket_id: int, frame: str | bytes, now_ms: int) -> None:
        """One frame from websocket ``websocket_id`` (a detached one is ignored)."""
        self.tick(now_ms)
        if websocket_id != self._ws_id or websocket_id is None:
            return
        if self._state is State.PROBING or self._state is State.UPGRADING:
            self._receive_probe(frame)
            return
        try:
            packet = decode_frame(frame, self.config.max_payload)
        except EngineIoError:
            self._transition(Input.INVALID, PARSE_ERROR)
            return
        self._receive_packet(packet, now_ms)

    def _receive_probe(self, frame: str | bytes) -> None:
        try:
            packet: EnginePacket | None = decode_frame(frame, self.config.max_payload)
        except EngineIoError:
            packet = None
        if packet is not None and packet.type is EnginePacketType.PING and packet.data == "probe":
            self._transition(Input.PROBE)
            self._probe_out.append(_PROBE_ANSWER)
        elif packet is not None and packet.type is EnginePacketType.UPGRADE:
            self._transition(Input.UPGRADE)
        else:
            # engine.io closes a probe that says anything else; polling goes on.
            self._transition(Input.PROBE_FAILED)

    def _detach_probe(self) -> None:
        self._ws_id = None
        self._probe_out = []
        self._upgrade_deadline_ms = None

    def websocket_closed(self, websocket_id: int) -> None:
        """Websocket ``websocket_id`` went away (closed by either side)."""
        if websocket_id != self._ws_id or websocket_id is None:
            return
        if self._state is State.PROBING or self._state is State.UPGRADING:
            self._transition(Input.PROBE_FAILED)
        else:
            self._transition(Input.WEBSOCKET_CLOSED, TRANSPORT_CLOSE)

    def take_websocket_frames(self, websocket_id: int) -> list[str | bytes]:
        """The frames to write to websocket ``websocket_id`` now, in order:
        text frames as str, binary as bytes."""
        if websocket_id != self._ws_id or websocket_id is None:
            return []
        frames: list[str | bytes] = list(self._probe_out)
        self._probe_out = []
        if self._transport == WEBSOCKET:
            frames.extend([packet.frame for packet in self._queue])
            self._queue = []
            self._queued_bytes = 0
            if self._state is State.CLOSING:
                self._transition(Input.FLUSHED, FORCED_CLOSE)
        return frames

    def websocket_should_close(self, websocket_id: int) -> bool:
        """Whether to close websocket ``websocket_id`` once its frames are written:
        true for every websocket but the one attached to a live session."""
        return websocket_id is None or websocket_id != self._ws_id

    # -- the server ----------------------------------------------------------------------------

    def send(self, message: str | bytes | EnginePacket) -> bool:
        """Queue a message packet (data, or a prebuilt message ``EnginePacket``
        shared by a broadcast). False when it was not queued: the session is
        closing or closed, or the queue was full and the session is now closed."""
        packet = message if isinstance(message, EnginePacket) else EnginePacket(EnginePacketType.MESSAGE, message)
        if packet.type is not EnginePacketType.MESSAGE:
            raise LocalProtocolError("send() sends message packets")
        if isinstance(packet.data, str) and RECORD_SEPARATOR in packet.data:
            # It would split in a polling payload (README "Packet encoding").
            raise LocalProtocolError("a text message cannot contain \\x1e")
        if Input.SEND not in TRANSITIONS[self._state]:
            return False
        if not self._fits(packet):
            return False
        self._transition(Input.SEND)
        self._push(packet)
        return True

    def _fits(self, packet: EnginePacket) -> bool:
        """Whether ``packet`` fits in the queue; if not, close: slow consumer."""
        config = self.config
        if (len(self._queue) < config.max_queued_packets
                and self._queued_bytes + len(packet.data) + 1 <= config.max_queued_bytes):
            return True
        self._transition(Input.OVERFLOW, SLOW_CONSUMER)
        return False

    def _push(self, packet: EnginePacket) -> None:
        self._queue.append(packet)
        self._queued_bytes += len(packet.data) + 1

    def close(self, now_ms: int) -> None:
        """Close the session from the server: what is queued still goes out
        (on polling with a close packet after it), then it is CLOSED."""
        self.tick(now_ms)
        if not self._transition(Input.CLOSE):
            return
        self._close_deadline_ms = now_ms + self.config.close_timeout_ms
        if self._transport == WEBSOCKET and not self._queue:
            # Nothing left for the websocket: closed at once, as in engine.io.
            self._transition(Input.FLUSHED, FORCED_CLOSE)

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Run every timer due at ``now_ms``, oldest first, as if each had run
        on time (so a ping sent late still times out pingTimeout after it was due)."""
        # Every frame and request passes here: first a check that allocates nothing.
        soonest = self._ping_deadline_ms
        if soonest is None:
            soonest = self._next_ping_ms
        later = self._upgrade_deadline_ms
        if later is not None and later < soonest:
            soonest = later
        later = self._close_deadline_ms
        if later is not None and later < soonest:
            soonest = later
        if soonest > now_ms or self._state is State.CLOSED:
            return
        while True:
            due = self._next_timer()
            if due is None or due[0] > now_ms:
                return
            at, input = due
            if input is Input.PING_DUE:
                self._transition(input)
                self._ping_deadline_ms = at + self.config.ping_timeout_ms
                if self._fits(_PING):
                    self._push(_PING)
            elif input is Input.PING_TIMEOUT:
                self._transition(input, PING_TIMEOUT)
            else:  # UPGRADE_TIMEOUT leaves the probe states; CLOSE_TIMEOUT closes
                self._transition(input, FORCED_CLOSE)

    def _next_timer(self) -> tuple[int, Input] | None:
        """The earliest timer the current state runs, with its input."""
        row = TRANSITIONS[self._state]
        best: tuple[int, Input] | None = None
        for at, input in (
            (self._ping_deadline_ms, Input.PING_TIMEOUT),
            (self._next_ping_ms if self._ping_deadline_ms is None else None, Input.PING_DUE),
            (self._upgrade_deadline_ms, Input.UPGRADE_TIMEOUT),
            (self._close_deadline_ms, Input.CLOSE_TIMEOUT),
        ):
            if at is not None and input in row and (best is None or at < best[0]):
                best = (at, input)
        return best
