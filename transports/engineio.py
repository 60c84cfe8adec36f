"""Engine.IO v4 under trio: long-polling, the websocket, the upgrade, heartbeats.

A mount claims an Engine.IO path (``Mount.claims_engineio``); this endpoint
serves it. Every decision is the sans-IO ``EngineIoSession``'s
(``satchel.protocol.socketio.engineio_session``): this file holds the
sessions by sid, feeds each one what arrived - a GET, a POST, a websocket
opening on its sid, a frame, a close, the passing of time - and carries out
what it says: answer a GET now or hold it until the session has something,
write frames to the attached websocket, close it.

To the rest of the server a session is one connection, like a websocket:
the switchboard accepts it at the handshake (``Switchboard.accept`` with the
mount), hears each Engine.IO message in order (``handle_message``) and its
end (``closed``). It is also one hub target (``EngineIoChannel``), whose
framing follows its transport: while polling, each payload becomes a
message packet of the session's queue, released to the held GET; once
upgraded, the payload is framed ``4<payload>`` (a binary frame for
``Binary``) and written straight to the websocket, so fan-out to upgraded
clients costs what fan-out to any websocket costs.

Time: sessions run on trio's monotonic clock in milliseconds; one ``Timers``
heap wakes each session when its next heartbeat or timeout is due.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import trio

from satchel.protocol.channels import Binary, CloseConnection
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mounts import Mount
from satchel.protocol.socketio.engineio_requests import RequestKind, check_request, parse_query
from satchel.protocol.socketio.engineio_session import (
    LATE_POLL_GRACE_MS,
    Closed,
    EngineIoConfig,
    EngineIoSession,
    Message,
)
from satchel.storage_backends.base import StoreUnavailable
from satchel.transports.framing import Framing
from satchel.transports.websocket.frames import encode_binary_frame, encode_text_frame

from .access_log import enabled as access_logged, log_event, peer_of
from .interfaces import WebsocketAccept
from .timers import Timers

if TYPE_CHECKING:
    from .bus import LocalBus
    from .hub import Hub
    from .runner import Runner
    from .websocket.connection import WebsocketConnection

__all__ = ["EngineIoEndpoint", "EngineIoChannel", "ENGINEIO_POLLING", "ENGINEIO_WEBSOCKET"]

log = logging.getLogger(__name__)


def _polling_packet(payload: bytes | Binary) -> bytes:
    # The channel turns these back into session packets (see _send): text as
    # it is, binary as engine.io's polling form, "b" + base64.
    if type(payload) is bytes:
        return payload
    return b"b" + base64.b64encode(payload.data)  # type: ignore[union-attr]


def _websocket_packet(payload: bytes | Binary) -> bytes:
    if type(payload) is bytes:
        return encode_text_frame(b"4" + payload)
    return encode_binary_frame(payload.data)  # type: ignore[union-attr]


#: A polling session's payloads: one message packet each, joined as a
#: polling body joins packets.
ENGINEIO_POLLING = Framing("engineio-polling", _polling_packet, b"\x1e")
#: An upgraded session's payloads: websocket frames of message packets.
ENGINEIO_WEBSOCKET = Framing("engineio-websocket", _websocket_packet)


#: Messages of one session whose actions may run at once.
MAX_IN_FLIGHT = 64


def _websocket_id(channel: EngineIoChannel, connection: WebsocketConnection) -> int | None:
    for websocket_id, websocket in channel.websockets.items():
        if websocket is connection:
            return websocket_id
    return None


def _now_ms() -> int:
    return int(trio.current_time() * 1000)


class EngineIoChannel:
    """One Engine.IO session: the sans-IO machine, its websockets, its held
    GET, and - as a hub target - where deliveries to it go.

    Kept small: 5000 idle clients are 5000 of these. ``released`` exists
    only while a GET is held, ``pending`` only while events wait;
    ``framing`` and ``websocket`` are plain attributes, switched once at the
    upgrade, because the hub reads them for every delivery.
    """

    __slots__ = (
        "id", "session", "mount", "websockets", "websocket", "framing", "released", "pending", "in_flight",
        "slot_free", "handling", "finished", "_hub", "_endpoint", "logged",
    )

    def __init__(self, session: EngineIoSession, mount: Mount, endpoint: EngineIoEndpoint) -> None:
        self.id = session.sid
        self.session = session
        self.mount = mount
        #: websocket id (the session's) -> the connection carrying it
        self.websockets: dict[int, WebsocketConnection] = {}
        #: The upgraded websocket, once the session's transport is one.
        self.websocket: WebsocketConnection | None = None
        self.framing = ENGINEIO_POLLING
        # Set when the held GET may be answered (or the session ended).
        self.released: trio.Event | None = None
        # Events taken from the session, handled in order by ``_handle``.
        self.pending: deque[Any] | None = None
        # Messages whose actions run now, and the event the next one waits on
        # when there are too many.
        self.in_flight = 0
        self.slot_free: trio.Event | None = None
        self.handling = False
        self.finished = False
        self._hub: Hub | None = None
        self._endpoint = endpoint
        #: While the access log is on: the opening request's id, the peer and
        #: the opening time, for the line of the session's close.
        self.logged: tuple[str, str, float] | None = None

    def _send(self, data: bytes, count: int) -> None:
        """Payloads from the hub (framed by ``framing``)."""
        websocket = self.websocket
        if websocket is not None:
            websocket._send(data, count)
            return
        session = self.session
        if session.transport != "polling":
            return  # upgrading: the websocket is not the transport yet
        for part in data.split(b"\x1e") if count > 1 else (data,):
            if part[:1] == b"b":
                try:
                    queued = session.send(base64.b64decode(part[1:]))
                except binascii.Error:  # pragma: no cover - we encoded it
                    continue
            else:
                queued = session.send(part.decode("utf-8"))
            if not queued:
                break
        self._endpoint._pump(self)

    def _end(self, close: CloseConnection) -> None:
        """The core asked to end the session: it closes after what is queued."""
        self.session.close(_now_ms())
        self._endpoint._pump(self)


class EngineIoEndpoint:
    """The Engine.IO sessions of one server, whichever mount claims them.

    ``watch(connection)`` is called when a session opens and after its
    messages, so that the owner can (re)schedule the mount's own timer for it
    (``Switchboard.deadline_ms``); ``spawn`` starts a background task.
    """

    def __init__(
        self,
        runner: Runner,
        bus: LocalBus,
        timers: Timers,
        spawn: Callable[[Callable[[], Awaitable[None]]], None],
        watch: Callable[[str], None],
    ) -> None:
        self.runner = runner
        self.bus = bus
        self.board = bus.board
        self.hub = bus.hub
        self.timers = timers
        self.spawn = spawn
        self.watch = watch
        self.sessions: dict[str, EngineIoSession] = {}
        self.channels: dict[str, EngineIoChannel] = {}
        self._tick_callback = self._tick

    def __len__(self) -> int:
        return len(self.channels)

    # -- HTTP long-polling -------------------------------------------------------------

    async def handle_http(self, request: HttpRequest, mount: Mount, config: EngineIoConfig) -> HttpResponse:
        """A request under an Engine.IO path: a handshake, a poll or a POST."""
        if request.method == "OPTIONS":
            return _preflight(request)
        found = check_request(request.method, parse_query(request.query), websocket=False, sessions=self.sessions)
        if isinstance(found, HttpResponse):
            return _with_cors(request, found)
        if found.kind is RequestKind.HANDSHAKE:
            response = await self._handshake(request, mount, config)
        elif found.kind is RequestKind.POLL:
            channel = self.channels.get(found.sid)
            if channel is None:
                # Closed by its client a moment ago: a GET read after the
                # close still gets its noop once (EngineIoSession.late_poll_open).
                self.sessions.pop(found.sid, None)
                response = found.session.poll(_now_ms())
            else:
                response = await self._poll(channel)
        else:  # POST
            channel = self.channels[found.sid]
            response = channel.session.receive_post(request.body, _now_ms(), content_type=request.header("content-type"))
            self._pump(channel)
            await self._handle(channel)
        return _with_cors(request, response)

    async def _handshake(self, request: HttpRequest, mount: Mount, config: EngineIoConfig) -> HttpResponse:
        sid = secrets.token_urlsafe(15)
        session = EngineIoSession(sid, _now_ms(), config)
        channel = await self._open(request, mount, session)
        if isinstance(channel, HttpResponse):
            return channel
        response = session.poll(_now_ms())
        self._pump(channel)
        assert response is not None  # the open packet is always there
        return response

    async def _poll(self, channel: EngineIoChannel) -> HttpResponse:
        session = channel.session
        response = session.poll(_now_ms())
        self._pump(channel)
        while response is None:
            # Held until the session has something (a delivery, a ping, the
            # upgrade's noop, its end); a ping is due every pingInterval.
            released = channel.released = trio.Event()
            await released.wait()
            channel.released = None
            response = session.take_poll_response()
            self._pump(channel)
        await self._handle(channel)
        return response

    # -- websockets ---------------------------------------------------------------------

    async def accept_websocket(
        self, request: HttpRequest, connection: WebsocketConnection, mount: Mount, config: EngineIoConfig
    ) -> WebsocketAccept | HttpResponse:
        """An upgrade under an Engine.IO path: a websocket-only handshake, or
        the probe of a polling session."""
        found = check_request("GET", parse_query(request.query), websocket=True, sessions=self.sessions)
        if isinstance(found, HttpResponse):
            return found
        if found.kind is RequestKind.WEBSOCKET_HANDSHAKE:
            session = EngineIoSession(secrets.token_urlsafe(15), _now_ms(), config, transport="websocket")
            channel = await self._open(request, mount, session)
            if isinstance(channel, HttpResponse):
                return channel
            websocket_id = session.websocket_id
        else:  # UPGRADE of a polling session
            channel = self.channels[found.sid]
            websocket_id = channel.session.attach_websocket(_now_ms())
            if websocket_id is None:
                # Refused (one is attached, or the session is upgraded):
                # engine.io lets it open and closes it at once.
                self._pump(channel)
                connection.app_state = channel  # in none of its websockets: ignored
                connection.close(1000)
                return WebsocketAccept()
        assert websocket_id is not None
        channel.websockets[websocket_id] = connection
        # The connection's app_state is its channel; the session's id for it
        # is found in channel.websockets (one or two entries).
        connection.app_state = channel
        if channel.session.transport == "websocket":
            channel.websocket, channel.framing = connection, ENGINEIO_WEBSOCKET
        # Frames written now wait in the connection's outbox behind the 101.
        self._pump(channel)
        return WebsocketAccept()

    async def on_websocket_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        channel: EngineIoChannel = connection.app_state  # type: ignore[assignment]
        websocket_id = _websocket_id(channel, connection)
        if websocket_id is None:
            return  # refused, or detached: what it says is ignored
        channel.session.receive_websocket(websocket_id, message, _now_ms())
        self._pump(channel)
        await self._handle(channel)

    async def on_websocket_closed(self, connection: WebsocketConnection) -> None:
        channel: EngineIoChannel = connection.app_state  # type: ignore[assignment]
        websocket_id = _websocket_id(channel, connection)
        if websocket_id is None:
            return
        del channel.websockets[websocket_id]
        if channel.websocket is connection:
            channel.websocket = None
        channel.session.websocket_closed(websocket_id)
        self._pump(channel)
        self._drain_now(channel)

    # -- one session's life ---------------------------------------------------------------

    async def _open(self, request: HttpRequest, mount: Mount, session: EngineIoSession) -> EngineIoChannel | HttpResponse:
        with self.runner.ticket() as ticket:
            accepted = await self.runner.run(self.board.accept(request, session.sid, mount), ticket)
            if isinstance(accepted, HttpResponse):
                return accepted
            channel = EngineIoChannel(session, mount, self)
            if access_logged():
                # Named by the request that opened it: the session id is a
                # credential of its own (?sid= lets anyone poll it).
                rid = request.__dict__.get("request_id", "-")
                channel.logged = (rid, peer_of(request), trio.current_time())
                log_event("engineio open", rid, mount.name, channel.logged[1])
            self.sessions[session.sid] = session
            self.channels[session.sid] = channel
            self.hub.add(channel)
            self.bus.publish(accepted.events, ticket, opening=True)
        self.watch(session.sid)
        return channel

    def _pump(self, channel: EngineIoChannel) -> None:
        """Carry out what the session says after any input: frames to its
        websockets (and closes), the upgrade, the held GET's release, its
        events queued for ``_handle``, its next deadline."""
        session = channel.session
        for websocket_id, websocket in list(channel.websockets.items()):
            for frame in session.take_websocket_frames(websocket_id):
                if isinstance(frame, str):
                    websocket.send_text(frame.encode("utf-8"))
                else:
                    websocket.send_binary(frame)
            if session.websocket_should_close(websocket_id):
                del channel.websockets[websocket_id]
                if channel.websocket is websocket:
                    channel.websocket = None
                websocket.close(1000)
        if channel.websocket is None and session.transport == "websocket" and not session.closed:
            # Upgraded: from now on the hub writes to the websocket directly.
            upgraded = channel.websockets.get(session.websocket_id or 0)
            if upgraded is not None:
                channel.websocket, channel.framing = upgraded, ENGINEIO_WEBSOCKET
        if channel.released is not None and ((session.poll_held and session.poll_ready) or session.closed):
            channel.released.set()
        events = session.take_events()
        if events:
            if channel.pending is None:
                channel.pending = deque()
            channel.pending.extend(events)
            if any(type(event) is Closed for event in events):
                # The end is handled now, even if no request is around to do it.
                self._drain_now(channel)
        due = session.next_deadline_ms()
        # The channel is its own timer key, and the callback one bound method:
        # nothing new is made per schedule.
        self.timers.schedule(channel, None if due is None else due / 1000, self._tick_callback)

    def _tick(self, channel: Any) -> None:
        if channel.finished:
            return
        channel.session.tick(_now_ms())
        self._pump(channel)

    async def _handle(self, channel: EngineIoChannel) -> None:
        """Hand the session's events to the switchboard, in order.

        A message's action starts here, in arrival order, up to its first
        storage operation (so the Socket.IO decoder and namespace bookkeeping
        see messages in order), then runs on in a task of its own, so that a
        client with several events in flight - socket.io's handlers are
        concurrent too - has them stored in one group commit and fanned out
        in one flush. At most ``MAX_IN_FLIGHT`` per session: beyond, the
        caller (the websocket's reader) waits, and the peer is slowed by TCP.
        """
        if channel.handling:
            return  # the task handling it now takes what was just queued too
        channel.handling = True
        try:
            pending = channel.pending
            while pending:
                event = pending.popleft()
                if type(event) is Message:
                    if channel.finished:
                        continue
                    while channel.in_flight >= MAX_IN_FLIGHT:
                        free = channel.slot_free = trio.Event()
                        await free.wait()
                    self._start(channel, event.data)
                elif type(event) is Closed:
                    self._finish(channel, event.reason)
            channel.pending = None
        finally:
            channel.handling = False

    def _drain_now(self, channel: EngineIoChannel) -> None:
        """Take the session's events at once, without waiting for room in
        flight (the session is ending: its last messages still start, in order,
        then its end is handled). Left to the task handling it, if one is."""
        if channel.handling:
            return
        pending = channel.pending
        while pending:
            event = pending.popleft()
            if type(event) is Message:
                if not channel.finished:
                    self._start(channel, event.data)
            elif type(event) is Closed:
                self._finish(channel, event.reason)
        channel.pending = None

    def _start(self, channel: EngineIoChannel, data: str | bytes) -> None:
        action = self.board.handle_message(channel.id, data)
        try:
            operation = next(action)
        except StopIteration as done:
            self.bus.publish(done.value)
            self.watch(channel.id)
            return
        except Exception:
            log.exception("Engine.IO message failed on session %s", channel.id)
            return
        channel.in_flight += 1
        self.spawn(lambda: self._resume(channel, action, operation, data))

    async def _resume(self, channel: EngineIoChannel, action: Any, operation: Any, data: str | bytes) -> None:
        with self.runner.ticket() as ticket:
            try:
                events = await self.runner.resume(action, operation, ticket)
            except StoreUnavailable as error:
                # The protocol's own failure for this packet (Socket.IO: a
                # connect_error, or the handler's failed ack and emits).
                log.warning("store unavailable answering a message of session %s: %s", channel.id, error)
                events = self.board.unavailable_events(channel.id, data)
            except Exception:
                log.exception("Engine.IO message failed on session %s", channel.id)
                return
            finally:
                channel.in_flight -= 1
                if channel.slot_free is not None:
                    channel.slot_free.set()
                    channel.slot_free = None
            self.bus.publish(events, ticket)
        self.watch(channel.id)

    def _finish(self, channel: EngineIoChannel, reason: str) -> None:
        if channel.finished:
            return
        channel.finished = True
        logged = channel.logged
        if logged is not None:
            log_event("engineio close", logged[0], channel.mount.name, logged[1], trio.current_time() - logged[2],
                      reason=reason)
        self.channels.pop(channel.id, None)
        if channel.session.has_late_poll:
            # Kept for the one late GET it may still owe, then forgotten.
            self.timers.schedule(("late-poll", channel.id), trio.current_time() + LATE_POLL_GRACE_MS / 1000,
                                 lambda key: self.sessions.pop(key[1], None))
        else:
            self.sessions.pop(channel.id, None)
        self.hub.remove(channel.id)
        self.timers.cancel(channel)
        self.timers.cancel(("mount", channel.id))
        if channel.released is not None:
            channel.released.set()
        for websocket in channel.websockets.values():
            websocket.close(1000)
        channel.websockets.clear()
        self.bus.publish(self.board.closed(channel.id))


def _cors(request: HttpRequest) -> list[tuple[str, str]]:
    # socket.io's servers are commonly configured cors {origin: "*"}; echoing
    # the origin with credentials serves both that and a cookie-carrying client.
    origin = request.header("origin")
    if origin is None:
        return []
    return [("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"), ("vary", "Origin")]


def _with_cors(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    headers = _cors(request)
    if headers:
        response = HttpResponse(response.status, [*response.headers, *headers], response.body)
    return response


def _preflight(request: HttpRequest) -> HttpResponse:
    headers = _cors(request)
    if headers:
        asked = request.header("access-control-request-headers") or "content-type"
        headers += [("access-control-allow-methods", "GET, POST, OPTIONS"), ("access-control-allow-headers", asked)]
    return HttpResponse(204, headers)
