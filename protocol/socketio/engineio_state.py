"""The states of a server-side Engine.IO v4 session and every transition
between them, in one table (engine.io-protocol README: "Transports",
"Heartbeat", "Upgrade"; behaviour checked against engine.io's server,
``lib/socket.ts`` and ``lib/transports/polling.ts``).

Theory of operation
-------------------
Two rules, after h11's ``_state.py``:

1. Everything that changes a session's state is in ``TRANSITIONS`` below:
   ``{state: {input: next state}}``. ``EngineIoSession`` never assigns its
   state anywhere but in the one method that looks this table up, so the
   diagram ``diagram()`` draws from it is the whole machine.
2. An input missing from a state's row is *refused* there: it changes
   nothing, and the session answers it the way engine.io does (an HTTP
   request gets 400 ``{"code":N,"message"}``, a second websocket is closed,
   a packet is ignored, a message to send is dropped). ``Input`` says how
   each one is refused.

What the states mean:

- POLLING: HTTP long-polling, the transport every session starts with by
  default. A GET is answered with everything queued, or held open until
  something is queued (a ping at the latest, every pingInterval).
- PROBING: a websocket has opened on the session's sid; polling goes on
  as before until the client probes it with ``2probe``.
- UPGRADING: the probe was answered ``3probe``. The client pauses polling,
  so a GET is answered at once, with what is queued or a noop ``6``, and
  the server waits for ``5`` on the websocket.
- WEBSOCKET: upgraded (or websocket from the start); every packet in both
  directions is a websocket frame. Polling requests are refused.
- CLOSING: the server closed the session; the packets still queued (on
  polling followed by a close packet ``1``) go out with the next GET, or
  when the transport next takes the websocket's frames.
- CLOSED: over. Requests get code 1 "Session ID unknown". A GET held at
  the moment of closing still gets its last answer: ``6`` after the
  client's own close packet, ``1`` otherwise (engine.io does the same).

What the inputs are: HTTP requests, packets (classified by the channel
they came on: the current transport, or the websocket being probed),
websocket events, the server's own sends and close, and time. Time is only
ever fed in (``tick(now_ms)``); the session reads no clock.

Two checks come before the table, as they come before engine.io's socket
sees anything (its ``Server.verify``): polling inputs (the requests, and a
held GET's abort) count only while the session's transport is polling,
and refused with code 3 once it is websocket, whatever the state; and a
websocket's inputs count only while that websocket is the one attached
(the probe, or the upgraded one). So CLOSING's polling entries apply to a
session closing on polling, its websocket entries to one closing on its
websocket.

Heartbeat (v4: the server pings): a ping is due pingInterval after the
session opened or after the last pong; if no pong arrives within
pingTimeout of a ping, the session closes with "ping timeout". Only a pong
answers a ping, as in engine.io (other packets do not). Deadlines are
counted from when each timer was due, not from when ``tick`` happened to
run, so a late tick never stretches a deadline.
"""

from __future__ import annotations

import enum

__all__ = ["State", "Input", "TRANSITIONS", "next_state", "diagram"]


class State(enum.Enum):
    """Where a session is; see the module docstring."""

    POLLING = "polling"
    PROBING = "probing"
    UPGRADING = "upgrading"
    WEBSOCKET = "websocket"
    CLOSING = "closing"
    CLOSED = "closed"


class Input(enum.Enum):
    """Everything that can happen to a session. The value is the label of the
    diagram's edge; the comment says how the input is refused where a state's
    row lacks it."""

    # HTTP long-polling requests (refused: 400 code 3, or code 1 when CLOSED)
    POLL = "GET"  # a poll request, none held
    POLL_OVERLAP = "second GET"  # a poll request while another is held
    POST = "POST"  # a polling body that decodes; its packets follow as inputs
    POST_REFUSED = "bad POST"  # a body over maxPayload, or sent as binary
    # the held poll request's client went away (refused: ignored)
    POLL_ABORTED = "GET aborted"
    # packets on the current transport: a POST's, or the upgraded websocket's
    # (refused: ignored, as engine.io ignores packets once it is closing)
    PONG = "3 pong"
    MESSAGE = "4 message"
    IGNORED = "0/5/6"  # open, upgrade, noop: meaningless from a client here
    CLIENT_CLOSE = "1 close"
    CLIENT_PING = "2 ping"  # v4: only the server pings ("invalid heartbeat direction")
    INVALID = "parse error"  # a body or frame that does not decode
    # a websocket (refused: that websocket is closed)
    WEBSOCKET_OPEN = "websocket opens"  # on this sid: the start of an upgrade
    # on the websocket being probed (refused: ignored)
    PROBE = "2probe"
    UPGRADE = "5 upgrade"
    PROBE_FAILED = "probe fails"  # anything else on it, or it went away
    # the upgraded websocket went away (refused: ignored)
    WEBSOCKET_CLOSED = "websocket closes"
    # the server (SEND refused: dropped; the others: nothing happens)
    SEND = "send"
    OVERFLOW = "queue full"  # a send would pass the queue's bounds
    CLOSE = "server close"
    FLUSHED = "last packets taken"  # CLOSING's final answer has gone out
    # time, from tick(now_ms) (refused: the timer does not run in that state)
    PING_DUE = "ping due"
    PING_TIMEOUT = "ping timeout"
    UPGRADE_TIMEOUT = "upgrade timeout"
    CLOSE_TIMEOUT = "close timeout"


P, PR, U, W, CG, CD = State.POLLING, State.PROBING, State.UPGRADING, State.WEBSOCKET, State.CLOSING, State.CLOSED

TRANSITIONS: dict[State, dict[Input, State]] = {
    State.POLLING: {
        Input.POLL: P,
        Input.POLL_OVERLAP: CD,  # "transport error"; the held GET gets "1"
        Input.POLL_ABORTED: CD,  # "transport error"
        Input.POST: P,
        Input.POST_REFUSED: CD,  # "transport error"
        Input.PONG: P,
        Input.MESSAGE: P,
        Input.IGNORED: P,
        Input.CLIENT_CLOSE: CD,  # "transport close"; the held GET gets "6"
        Input.CLIENT_PING: CD,  # "transport error"
        Input.INVALID: CD,  # "parse error"
        Input.WEBSOCKET_OPEN: PR,
        Input.SEND: P,
        Input.OVERFLOW: CD,  # "slow consumer"
        Input.CLOSE: CG,
        Input.PING_DUE: P,
        Input.PING_TIMEOUT: CD,  # "ping timeout"
    },
    State.PROBING: {
        Input.POLL: PR,
        Input.POLL_OVERLAP: CD,
        Input.POLL_ABORTED: CD,
        Input.POST: PR,
        Input.POST_REFUSED: CD,
        Input.PONG: PR,
        Input.MESSAGE: PR,
        Input.IGNORED: PR,
        Input.CLIENT_CLOSE: CD,
        Input.CLIENT_PING: CD,
        Input.INVALID: CD,
        Input.PROBE: U,  # answered "3probe"; a held GET is released
        Input.UPGRADE: W,  # engine.io accepts "5" without a probe
        Input.PROBE_FAILED: P,  # the probe websocket is closed; polling goes on
        Input.SEND: PR,
        Input.OVERFLOW: CD,
        Input.CLOSE: CG,  # the probe websocket is closed
        Input.PING_DUE: PR,
        Input.PING_TIMEOUT: CD,
        Input.UPGRADE_TIMEOUT: P,  # the probe websocket is closed
    },
    State.UPGRADING: {
        Input.POLL: U,  # answered at once: the queue, or "6"
        Input.POLL_OVERLAP: CD,
        Input.POLL_ABORTED: CD,
        Input.POST: U,
        Input.POST_REFUSED: CD,
        Input.PONG: U,
        Input.MESSAGE: U,
        Input.IGNORED: U,
        Input.CLIENT_CLOSE: CD,
        Input.CLIENT_PING: CD,
        Input.INVALID: CD,
        Input.PROBE: U,  # answered "3probe" again, as engine.io does
        Input.UPGRADE: W,  # a held GET gets "6"; the queue moves to the websocket
        Input.PROBE_FAILED: P,
        Input.SEND: U,
        Input.OVERFLOW: CD,
        Input.CLOSE: CG,
        Input.PING_DUE: U,
        Input.PING_TIMEOUT: CD,
        Input.UPGRADE_TIMEOUT: P,
    },
    State.WEBSOCKET: {
        Input.PONG: W,
        Input.MESSAGE: W,
        Input.IGNORED: W,
        Input.CLIENT_CLOSE: CD,  # "transport close"
        Input.CLIENT_PING: CD,  # "transport error"
        Input.INVALID: CD,  # "parse error"
        Input.WEBSOCKET_CLOSED: CD,  # "transport close"
        Input.SEND: W,
        Input.OVERFLOW: CD,  # "slow consumer"
        Input.CLOSE: CG,
        Input.PING_DUE: W,
        Input.PING_TIMEOUT: CD,  # "ping timeout"
    },
    State.CLOSING: {
        Input.POLL: CG,  # answered with the queue and "1", then FLUSHED
        Input.POLL_OVERLAP: CD,  # "transport error"
        Input.POLL_ABORTED: CD,  # "transport error"
        Input.POST: CG,  # "ok"; its packets are ignored
        Input.WEBSOCKET_CLOSED: CD,  # "transport close"
        Input.FLUSHED: CD,  # "forced close"
        Input.PING_TIMEOUT: CD,  # "ping timeout"
        Input.CLOSE_TIMEOUT: CD,  # "forced close": no GET came for the last packets
    },
    State.CLOSED: {},
}

del P, PR, U, W, CG, CD


def next_state(state: State, input: Input) -> State | None:
    """The state ``input`` leads to from ``state``, or None where it is refused."""
    return TRANSITIONS[state].get(input)


def diagram() -> str:
    """The machine as a Mermaid state diagram, drawn from ``TRANSITIONS``
    (self-loops are folded into one note per state to keep it legible)."""
    lines = ["stateDiagram-v2", "    [*] --> polling", "    [*] --> websocket"]
    for state, row in TRANSITIONS.items():
        loops = [input.value for input, target in row.items() if target is state]
        for input, target in row.items():
            if target is not state:
                lines.append(f"    {state.value} --> {target.value}: {input.value}")
        if loops:
            lines.append(f"    note right of {state.value}: stays on {', '.join(loops)}")
    lines.append("    closed --> [*]")
    return "\n".join(lines) + "\n"
