"""One websocket connection under trio: its outbox, its reader, its close.

``WebsocketConnection`` writes with an immediate non-blocking ``send`` when
nothing is queued; what the kernel does not take waits in a bounded outbox
that a writer task, started only while the connection is busy, drains in
coalesced writes - one scheduler trip per batch, not per frame (STACK.md:
~100k deliveries/s against ~31k for an awaited send per recipient). The hub
goes one step further: it hands each connection everything one scheduler
tick sent it as one chunk, so a stream of broadcasts costs one ``send`` per
recipient per tick, not per message (hub.py). The outbox is bounded in
bytes and in frames; a connection that would pass either bound is a slow
consumer and is closed with 1008, so it cannot grow the server's memory or
slow its neighbours.

Senders are held back, never their readers (issue 14). Before each message
it reads, a connection takes a token from its own ``Throttle``
(``satchel.protocol.limits``): past ``ServerLimits.websocket_message_rate``
its reader waits, so a flooder's kernel buffers fill and TCP slows it; one
held back for ``websocket_abuse_seconds`` without a pause is closed with
1008. And while any reader that is still making progress has an outbox past
its high-water mark (a quarter of the bounds), every sender waits for it to
drain (``Pressure``): fan-out goes at the pace of the readers that keep up.
A reader that makes no progress for a second no longer holds anyone back;
it is closed as a slow consumer when its outbox bound or the write timeout
is reached, as before.

``open_websocket`` runs the opening handshake (``handshake.py``) and asks the
application; ``run_websocket`` reads frames (``frames.py``) until the end.
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import socket
from typing import TYPE_CHECKING, Awaitable, Callable

import trio

from satchel.protocol.channels import Binary, CloseConnection
from satchel.protocol.limits import Throttle
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.transports.framing import Framing
from satchel.transports.http.parser import UpgradeRequested
from satchel.transports.http.connection import application_error
from satchel.transports.http.responses import format_response
from satchel.transports.interfaces import Application, ServerLimits, WebsocketAccept
from satchel.transports.metrics import METRICS
from satchel.transports.sockets import RECEIVE_SIZE, close_gracefully, send_all

from .frames import (
    BINARY,
    CLOSE,
    FAILED,
    PING,
    PONG,
    TEXT,
    FrameParser,
    encode_binary_frame,
    encode_close_frame,
    encode_frame,
    encode_text_frame,
    valid_close_code,
)
from .handshake import handshake_problem, switching_protocols
from .pacing import ClosePacer, Pressure

if TYPE_CHECKING:
    from satchel.transports.hub import Hub

__all__ = [
    "WebsocketConnection", "open_websocket", "run_websocket", "SLOW_CONSUMER_REASON", "RATE_LIMIT_REASON",
    "Spawn", "WEBSOCKET_TEXT",
]

logger = logging.getLogger(__name__)

SLOW_CONSUMER_REASON = "slow consumer: outbox limit exceeded"
RATE_LIMIT_REASON = "rate limit: sent messages faster than allowed for too long"

# CONNECTING: handshake checked, the application deciding; frames queue.
# OPEN: frames flow. CLOSING: our close frame is queued or sent; nothing more
# is sent. CLOSED: the socket is closed or about to be.
CONNECTING, OPEN, CLOSING, CLOSED = "connecting", "open", "closing", "closed"

# sendmsg takes at most IOV_MAX (1024 on Linux) buffers in one call.
_MAX_WRITE_BUFFERS = 1024

# Connection ids: unique in this process, and across processes with high
# probability (a broker carries them between servers).
_ID_PREFIX = base64.urlsafe_b64encode(os.urandom(6)).decode("ascii")
_id_counter = itertools.count(1)

Spawn = Callable[[Callable[[], Awaitable[None]]], None]



def _frame_payload(payload: bytes | Binary) -> bytes:
    if type(payload) is bytes:
        return encode_text_frame(payload)
    return encode_binary_frame(payload.data)  # type: ignore[union-attr]


#: How the hub frames a payload for a websocket: one unmasked text frame (a
#: binary frame for ``Binary``), the same bytes for every recipient (frames
#: are not joined by anything).
WEBSOCKET_TEXT = Framing("websocket-text", _frame_payload)


class WebsocketConnection:
    """One accepted (or being accepted) websocket.

    ``id`` names it in the hub; ``app_state`` is the application's slot (the
    user id, say). ``close_code`` / ``close_reason`` say how it ended: the
    code this side sent when it started the close, the peer's when the peer
    did, 1006 when the connection dropped without a close frame, None while
    open.

    The send methods never block and never await: a frame is written at once
    if the socket takes it, or queued (see the module docstring). Frames sent
    after the close started are dropped.

    As a hub target its ``framing`` is ``WEBSOCKET_TEXT``: the hub hands it
    payloads framed as text frames, joined with what else the tick sent it.
    """

    framing = WEBSOCKET_TEXT

    __slots__ = (
        "id",
        "app_state",
        "close_code",
        "close_reason",
        "_sock",
        "_limits",
        "_spawn",
        "_state",
        "_outbox",
        "_outbox_frames",
        "_outbox_bytes",
        "_queued_frames",
        "_partial",
        "_writing",
        "_drained",
        "_early",
        "_hub",
        "_pressure",
        "_throttle",
        "_pacer",
    )

    def __init__(
        self,
        sock: socket.socket,
        limits: ServerLimits,
        spawn: Spawn,
        early: bytes = b"",
        pressure: Pressure | None = None,
        pacer: ClosePacer | None = None,
    ) -> None:
        self.id = f"{_ID_PREFIX}{next(_id_counter):x}"
        self.app_state: object = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._sock = sock
        self._limits = limits
        self._spawn = spawn
        self._state = CONNECTING
        # Chunks of whole frames (the first perhaps partly written), and how
        # many frames each chunk holds: the outbox is bounded in both.
        self._outbox: list[bytes] = []
        self._outbox_frames: list[int] = []
        self._outbox_bytes = 0
        self._queued_frames = 0
        # Whether _outbox[0] is the unwritten rest of a partly written frame.
        self._partial = False
        # Whether the writer task is running.
        self._writing = False
        # Set by the writer when it stops, for a close waiting on it.
        self._drained: trio.Event | None = None
        # Bytes that arrived behind the handshake: the first frames.
        self._early = early
        # The hub that fans out to this connection (set by Hub.add), whose
        # deliveries of this tick must go out before a direct send.
        self._hub: Hub | None = None
        # The server's congested readers (None: this connection holds no
        # sender back, and is held back by none).
        self._pressure = pressure
        # Its message budget, made at its first message: an idle connection
        # does not pay for one.
        self._throttle: Throttle | None = None
        self._pacer = pacer

    def __repr__(self) -> str:
        return f"<WebsocketConnection {self.id} {self._state}>"

    @property
    def state(self) -> str:
        """One of "connecting", "open", "closing" and "closed"."""
        return self._state

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued in the outbox, not yet taken by the kernel."""
        return self._outbox_bytes

    def send_text(self, payload: bytes) -> None:
        """Send a text message whose UTF-8 ``payload`` is already encoded."""
        self.send_frame(encode_text_frame(payload))

    def send_binary(self, payload: bytes) -> None:
        """Send a binary message."""
        self.send_frame(encode_binary_frame(payload))

    def send_frame(self, frame: bytes) -> None:
        """Send one complete, already encoded frame (see ``encode_text_frame``).

        Deliveries the hub holds for this tick go out first, so that every
        connection sees frames in the order they were sent.
        """
        hub = self._hub
        if hub is not None and hub._batch:
            hub.flush()
        METRICS.direct_frames += 1
        self._send(frame, 1)

    @property
    def queued_frames(self) -> int:
        """Frames waiting in the outbox (a partly written one included)."""
        return self._queued_frames

    def _send(self, data: bytes, frames: int) -> None:
        """Write ``data`` - ``frames`` whole frames - now if the kernel takes
        it, else queue what it did not take. Never blocks, never awaits."""
        if self._state is OPEN:
            if not self._outbox:
                try:
                    sent = self._sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._lost()
                    return
                if sent == len(data):
                    return
                if sent:
                    data = data[sent:]
                    self._partial = True
            self._enqueue(data, frames)
        elif self._state is CONNECTING:
            self._enqueue(data, frames)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake: queue a close frame behind what is
        queued, send nothing more, and end the connection when the peer
        answers (or after ``ServerLimits.close_timeout``)."""
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        encoded = reason.encode("utf-8")
        if len(encoded) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        if self._state is not OPEN and self._state is not CONNECTING:
            return
        self.send_frame(encode_frame(CLOSE, code.to_bytes(2, "big") + encoded))
        if self._state is CLOSED:
            return
        self._state = CLOSING
        self.close_code = code
        self.close_reason = reason
        # A peer that never answers the close is cut off after close_timeout.
        # A task that exists only while closing does it, rather than a cancel
        # scope around every connection's reader (half a kilobyte per idle
        # connection).
        self._spawn(self._close_watchdog)

    async def _close_watchdog(self) -> None:
        await trio.sleep(self._limits.close_timeout)
        if self._state is not CLOSED:
            self._abort()  # the reader sees the socket closed and ends

    def _end(self, close: CloseConnection) -> None:
        """The core asked to end this connection (as a hub target)."""
        code = close.code if valid_close_code(close.code) else 1000
        reason = close.reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        self.close(code, reason)

    # The outbox.

    def _enqueue(self, data: bytes, frames: int) -> None:
        limits = self._limits
        size = self._outbox_bytes + len(data)
        queued = self._queued_frames + frames
        if size > limits.websocket_outbox_bytes or queued > limits.websocket_outbox_messages:
            self._slow_consumer()
            return
        self._outbox.append(data)
        self._outbox_frames.append(frames)
        self._outbox_bytes = size
        self._queued_frames = queued
        pressure = self._pressure
        if pressure is not None and (size > limits.websocket_outbox_bytes // 4 or queued > limits.websocket_outbox_messages // 4):
            pressure.congest(self)
        if not self._writing and self._state is OPEN:
            self._writing = True
            self._spawn(self._write_outbox)

    def _write_some(self) -> None:
        """Hand the kernel as much of the outbox as it takes, in one call."""
        outbox = self._outbox
        try:
            sent = self._sock.sendmsg(outbox[:_MAX_WRITE_BUFFERS])
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        self._outbox_bytes -= sent
        taken = sent
        written = 0
        for chunk in outbox:
            if sent < len(chunk):
                break
            sent -= len(chunk)
            written += 1
        if written:
            counts = self._outbox_frames
            self._queued_frames -= sum(counts[:written])
            del counts[:written]
            del outbox[:written]
        if sent:
            outbox[0] = outbox[0][sent:]
            self._partial = True
        elif written:
            self._partial = False
        pressure = self._pressure
        if pressure is not None and self in pressure.congested:
            limits = self._limits
            if (self._outbox_bytes <= limits.websocket_outbox_bytes // 8
                    and self._queued_frames <= limits.websocket_outbox_messages // 8):
                pressure.relieve(self)
            else:
                pressure.progress(self, taken)

    async def _write_outbox(self) -> None:
        """The writer task: runs while the outbox is not empty."""
        timeout = self._limits.write_timeout
        try:
            while self._outbox and (self._state is OPEN or self._state is CLOSING):
                with trio.move_on_after(timeout) as stalled:
                    await trio.lowlevel.wait_writable(self._sock)
                if stalled.cancelled_caught:
                    self._slow_consumer()
                    break
                self._write_some()
        except trio.ClosedResourceError:
            pass  # closed under us by _abort(): nothing left to write
        finally:
            self._writing = False
            if self._drained is not None:
                self._drained.set()

    def _open(self, head: bytes) -> None:
        """The application accepted: write the 101 and everything queued."""
        if self._state is CLOSED:
            return
        if self._state is CONNECTING:
            self._state = OPEN
        self._outbox.insert(0, head)
        self._outbox_frames.insert(0, 0)  # the 101 response is no frame
        self._outbox_bytes += len(head)
        self._write_some()
        if self._outbox and not self._writing and self._state is not CLOSED:
            self._writing = True
            self._spawn(self._write_outbox)

    async def _wait_drained(self) -> None:
        """Wait (bounded by close_timeout) until the outbox has been written."""
        if not self._writing:
            return
        self._drained = trio.Event()
        with trio.move_on_after(self._limits.close_timeout):
            await self._drained.wait()

    # Ending.

    def _slow_consumer(self) -> None:
        """The peer does not read fast enough: close with 1008 now, best effort."""
        if self._state is CLOSED:
            return
        logger.info("websocket %s closed: %s", self.id, SLOW_CONSUMER_REASON)
        METRICS.slow_consumer_closes += 1
        if self._state is OPEN:
            # One non-blocking attempt: finish the frame the peer is in the
            # middle of (so the close frame is not read as its payload), then
            # the close frame. The socket is full, so this often writes nothing.
            frame = encode_close_frame(1008, SLOW_CONSUMER_REASON)
            if self._partial:
                frame = self._outbox[0] + frame
            try:
                self._sock.send(frame)
            except OSError:
                pass
        self.close_code = 1008
        self.close_reason = SLOW_CONSUMER_REASON
        self._abort()

    def _lost(self) -> None:
        """The socket failed under a write: the peer is gone."""
        if self.close_code is None:
            self.close_code = 1006
        self._abort()

    def _abort(self) -> None:
        """Close the socket now, free the outbox, and wake the reader and the
        writer (their waits raise ClosedResourceError)."""
        self._state = CLOSED
        self._outbox = []
        self._outbox_frames = []
        self._outbox_bytes = 0
        self._queued_frames = 0
        self._partial = False
        if self._pressure is not None:
            self._pressure.relieve(self)
        sock = self._sock
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _serve(self, app: Application, hub: Hub) -> None:
        """The connection's own task (``run_websocket``): read frames until
        the connection ends, then leave the hub and tell the application,
        whatever ended it. One method, not a reader inside a wrapper: an idle
        connection waits with one frame fewer on its stack (thousands of them)."""
        try:
            parser = FrameParser(self._limits.max_websocket_message_bytes)
            data = self._early
            self._early = b""
            # close_timeout is enforced by close()'s watchdog, not a scope here.
            ended = False
            while self._state is not CLOSED and not ended:
                events = parser.receive(data)
                data = b""
                for opcode, value in events:
                    if opcode == TEXT or opcode == BINARY:
                        if self._state is OPEN:
                            if not await self._may_read_on():
                                ended = True
                                break
                            await self._deliver(app, value)  # type: ignore[arg-type]
                    elif opcode == PING:
                        self.send_frame(encode_frame(PONG, value))  # type: ignore[arg-type]
                    elif opcode == CLOSE:
                        if self._state is OPEN:
                            code, reason = value  # type: ignore[misc]
                            # Echo the peer's code (RFC 6455 section 5.5.1).
                            self.send_frame(encode_close_frame(None if code == 1005 else code))
                            self._state = CLOSING
                            self.close_code = code
                            self.close_reason = reason
                        # The handshake is complete either way: the server
                        # closes the TCP connection first (section 7.1.1).
                        ended = True
                        break
                    elif opcode == FAILED:
                        # Fail the connection (RFC 6455 section 7.1.7): send
                        # our close, then FIN, so that a peer that cannot
                        # answer in kind still sees the end; its own close,
                        # if it sends one, ends the wait (see FrameParser).
                        code, reason = value  # type: ignore[misc]
                        self.close(code, reason)
                        await self._wait_drained()
                        try:
                            self._sock.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                if ended:
                    break
                # Nothing of the last read stays alive while the next is awaited
                # (an idle connection would hold its last message for good).
                events = value = None  # type: ignore[assignment]
                # receive_some (sockets.py), written out here: one frame fewer.
                sock = self._sock
                try:
                    data = sock.recv(RECEIVE_SIZE)
                except BlockingIOError:
                    data = None  # type: ignore[assignment]
                except OSError:
                    data = b""
                else:
                    await trio.lowlevel.checkpoint()
                while data is None:
                    try:
                        await trio.lowlevel.wait_readable(sock)
                    except trio.ClosedResourceError:
                        data = b""
                        break
                    try:
                        data = sock.recv(RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                if not data:
                    if self.close_code is None:
                        self.close_code = 1006
                        # The peer vanished: perhaps with thousands of others.
                        if self._pacer is not None:
                            await self._pacer.turn()
                    break
            await self._wait_drained()
        finally:
            hub.remove(self.id)
            self._abort()
            # Cleanup must run even while the server is being cancelled, and
            # must not hang it: shielded, bounded.
            with trio.CancelScope(deadline=trio.current_time() + self._limits.close_timeout, shield=True):
                try:
                    await app.on_websocket_closed(self)
                except Exception:
                    logger.exception("on_websocket_closed failed on websocket %s", self.id)

    async def _may_read_on(self) -> bool:
        """Hold this sender back as its budget and the readers say (see the
        module docstring); False when it has abused its budget and is closed."""
        throttle = self._throttle
        now = trio.current_time()
        if throttle is None:
            limits = self._limits
            rate = limits.websocket_message_rate
            if rate is None:
                wait, abusing = 0.0, False
            else:
                throttle = self._throttle = Throttle(
                    rate, limits.websocket_message_burst, limits.websocket_abuse_seconds, now
                )
        if throttle is not None:
            wait, abusing = throttle.take(now)
        if abusing:
            logger.info("websocket %s closed: %s", self.id, RATE_LIMIT_REASON)
            self.close(1008, RATE_LIMIT_REASON)
            return False
        if wait:
            await trio.sleep(wait)
        pressure = self._pressure
        if pressure is not None and pressure.congested and pressure.holding(self):
            await pressure.wait(self)
        return True

    async def _deliver(self, app: Application, message: str | bytes) -> None:
        try:
            await app.on_websocket_message(self, message)
        except Exception:
            logger.exception("on_websocket_message failed on websocket %s", self.id)
            self.close(1011, "Internal error")


async def open_websocket(
    sock: socket.socket,
    upgrade: UpgradeRequested,
    app: Application,
    hub: Hub,
    limits: ServerLimits,
    spawn: Spawn,
    pressure: Pressure | None = None,
    pacer: ClosePacer | None = None,
) -> WebsocketConnection | None:
    """The opening handshake: check it, ask the application, write the 101
    (or the refusal). Returns the open connection, for ``run_websocket``, or
    None when refused; the caller closes the socket once done with it.

    Nothing of the handshake request outlives this call unless the
    application keeps it: a browser's handshake headers weigh ~3 KB, about
    half of what an idle connection costs otherwise.
    """
    request = upgrade.request
    problem = handshake_problem(
        request, upgrade.http_version, lambda status, message: application_error(app, request, status, message)
    )
    if problem is not None:
        await _refuse(sock, problem, limits)
        return None
    connection = WebsocketConnection(sock, limits, spawn, upgrade.data, pressure, pacer)
    hub.add(connection)
    try:
        answer = await _ask_application(app, request, connection)
    except BaseException:
        hub.remove(connection.id)
        raise
    if isinstance(answer, HttpResponse):
        hub.remove(connection.id)
        connection._state = CLOSED
        connection._outbox = []
        connection._outbox_frames = []
        connection._queued_frames = 0
        await _refuse(sock, answer, limits)
        return None
    connection._open(answer)
    return connection


def run_websocket(connection: WebsocketConnection, app: Application, hub: Hub) -> Awaitable[None]:
    """Run an accepted connection to its end; then it leaves the hub and
    ``on_websocket_closed`` is called, whatever ended it.

    A plain function returning the connection's coroutine, so that an idle
    connection's suspended stack is one frame shorter (there are thousands)."""
    return connection._serve(app, hub)


async def _ask_application(
    app: Application, request: HttpRequest, connection: WebsocketConnection
) -> bytes | HttpResponse:
    """The 101 response head if the application accepts, else its refusal."""
    try:
        answer = await app.accept_websocket(request, connection)
    except Exception:
        logger.exception("accept_websocket failed for %s", request.loggable)
        return application_error(app, request, 500, "Internal server error")
    if isinstance(answer, HttpResponse):
        return answer
    try:
        if not isinstance(answer, WebsocketAccept):
            raise TypeError(f"accept_websocket returned {answer!r}")
        return switching_protocols(request, answer.subprotocol, answer.headers)
    except Exception:
        # The application accepted but the 101 cannot be built (a subprotocol
        # the client never offered): refuse, and let it forget the connection.
        logger.exception("accept_websocket gave an unusable answer for %s", request.loggable)
        with trio.CancelScope(shield=True):
            try:
                await app.on_websocket_closed(connection)
            except Exception:
                logger.exception("on_websocket_closed failed on websocket %s", connection.id)
        return application_error(app, request, 500, "Internal server error")


async def _refuse(sock: socket.socket, response: HttpResponse, limits: ServerLimits) -> None:
    try:
        await send_all(sock, format_response(response, head_only=False, connection="close"), limits.write_timeout)
        await close_gracefully(sock, limits.close_timeout)
    except (OSError, trio.TooSlowError):
        pass

