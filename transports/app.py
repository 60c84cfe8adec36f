"""The reference server's application: a switchboard of mounts, a store and
the bus, wired to the transport's ``Application`` seam.

Nothing here decides anything a protocol specifies, and nothing here names
a protocol: every request, upgrade, message and datagram goes to the
switchboard (``satchel.protocol.Switchboard``), which routes it to the mount
that claims it; the runner executes what the action yields, and the events
it returns go to the bus. What this file does own is operational: uploads
stream to a staged file, a download becomes a ``FileResponse`` streamed from
the file store, and a failing action is logged and answered in the owning
protocol's error format instead of killing a connection.
"""

from __future__ import annotations

import logging
import os
from time import perf_counter

from typing import Any, Awaitable, Callable

import trio

from functools import partial

from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mounts import HttpOutcome, MountTable
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.base import Store, StoreUnavailable
from satchel.storage_backends.files import LocalFileStore

from .bus import LocalBus
from .engineio import EngineIoChannel, EngineIoEndpoint
from .hub import Hub
from .health import OPERATIONS_PATHS, Operations
from .interfaces import BodySink, FileResponse, ServerLimits, WebsocketAccept
from .metrics import METRICS
from .runner import Runner
from .system_environment import system_environment
from .timers import Timers
from .uploads import MultipartSink, multipart_boundary
from .websocket.connection import WebsocketConnection

__all__ = ["SatchelApp", "serve_mounts"]

log = logging.getLogger("satchel")

#: The message of every protocol's answer to ``StoreUnavailable``.
UNAVAILABLE = "Service unavailable: the store cannot be reached now; try again"


class SatchelApp:
    """Serves every mount of ``bus.board`` over HTTP, websockets, Engine.IO and
    (through ``handle_datagram``) UDP, from one store.

    ``run`` is its background work - the timers of mounts and of Engine.IO
    sessions - to be started beside the server: ``await nursery.start(app.run)``.
    """

    def __init__(self, runner: Runner, bus: LocalBus, *, max_upload_bytes: int = 50 * 1024 * 1024) -> None:
        self.runner = runner
        self.bus = bus
        if bus.sequencer is None:
            # Publishes wait for the writes committed before theirs (ordering.py).
            bus.sequencer = runner.sequencer
        self.board = bus.board
        self.max_upload_bytes = max_upload_bytes
        self.timers = Timers()
        self.engineio = EngineIoEndpoint(runner, bus, self.timers, self._spawn, self._watch)
        self._nursery: trio.Nursery | None = None
        # Connections that ended in this scheduler tick, not yet forgotten.
        self._closing: list[str] = []
        #: ``/health``, ``/ready``, ``/metrics`` (``health.Operations``; set by ``serve_mounts``).
        self.operations: Operations | None = None
        self.limit(ServerLimits())

    def limit(self, limits: ServerLimits) -> None:
        """Apply the bounds of ``limits`` that concern users and channels:
        websockets per user (over every protocol; the next upgrade is
        answered 429; a Socket.IO namespace CONNECT, ``connect_error``) and
        channels per connection (``ChannelRegistry``; each protocol answers a
        join past it with its own error). The switchboard keeps both: the
        rule is its ``user_has_room``, asked by the upgrade here and by the
        protocols' actions (``channels.UserRoom``, ``channels.ChannelLimit``)."""
        self.board.max_connections_per_user = limits.max_connections_per_user
        for registry in self.board.registries.values():
            registry.max_channels = limits.max_channels_per_connection

    def _too_many_for_user(self, mount: str, connection: str, user_id: str | None) -> bool:
        # The new connection is registered already: not counted against itself.
        return not self.board.user_has_room(mount, connection, user_id)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The timers, and the tasks they start, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.timers.run)
            task_status.started()
            await trio.sleep_forever()

    def _spawn(self, async_fn: Callable[[], Awaitable[None]]) -> None:
        if self._nursery is None:
            raise RuntimeError("SatchelApp.run is not running")
        try:
            self._nursery.start_soon(self._guarded, async_fn)
        except RuntimeError:
            # The server is shutting down (the nursery takes no new tasks):
            # what was to run in the background is dropped with it.
            log.debug("background task dropped at shutdown")

    @staticmethod
    async def _guarded(async_fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await async_fn()
        except Exception:
            log.exception("background task failed")

    # -- a mount's timer per connection ------------------------------------------

    def _watch(self, connection: str) -> None:
        """(Re)schedule ``connection``'s mount timer (``Switchboard.deadline_ms``)."""
        due = self.board.deadline_ms(connection)
        self.timers.schedule_ms(("mount", connection), due, self.board.env.now_ms(), self._timer_due)

    def _timer_due(self, key: Any) -> None:
        connection = key[1]

        async def fire() -> None:
            with self.runner.ticket() as ticket:
                events = await self.runner.run(self.board.on_timer(connection), ticket)
                self.bus.publish(events, ticket)
            if self.board.opened(connection) is not None:
                self._watch(connection)

        self._spawn(fire)

    # -- HTTP ------------------------------------------------------------------

    async def handle_http(self, request: HttpRequest) -> HttpResponse | FileResponse:
        if request.path in OPERATIONS_PATHS and self.operations is not None:
            return await self.operations.handle(request)
        start = perf_counter()
        engineio = self.board.engineio(request)
        try:
            if engineio is not None:
                response = await self.engineio.handle_http(request, *engineio)
                METRICS.request(engineio[0].name, request.method, response.status, perf_counter() - start)
                return response
            with self.runner.ticket() as ticket:
                outcome = await self.runner.run(self.board.handle_request(request), ticket)
                self.bus.publish(outcome.changes, ticket)
        except StoreUnavailable as error:
            response = self.unavailable(request, error)
        else:
            response = self._respond(request, outcome)
        self._count(request, response, start)
        return response

    def unavailable(self, request: HttpRequest, error: StoreUnavailable) -> HttpResponse:
        """The answer to ``request`` when the store cannot be reached: a 503
        in the format of the protocol that owns the path (the one place every
        protocol's HTTP answer to ``StoreUnavailable`` is made), which says
        to retry. Nothing was acknowledged; what was, stays stored."""
        log.warning("store unavailable answering %s %s: %s", request.method, request.loggable, error)
        response = self.board.error_response(request, 503, UNAVAILABLE)
        response.headers.append(("retry-after", "1"))
        return response

    def _count(self, request: HttpRequest, response: HttpResponse | FileResponse, start: float) -> None:
        """One answered request in the metrics, under its mount's name (bounded: never the path)."""
        mount = self.board.mount_for(request)
        METRICS.request(mount.name if mount is not None else "none", request.method, response.status,
                        perf_counter() - start)

    def route_of(self, request: HttpRequest) -> str:
        """The route a log line names for ``request`` (a request or an
        upgrade): the name of the mount serving it, as the metrics' route
        label - bounded, never the path."""
        if request.path in OPERATIONS_PATHS:
            return "operations"
        engineio = self.board.engineio(request)
        if engineio is not None:
            return engineio[0].name
        if request.header("upgrade") is not None:
            mount = self.board.mounts.for_upgrade(request)
            if mount is not None:
                return mount.name
        mount = self.board.mount_for(request)
        return mount.name if mount is not None else "none"

    def error_response(self, request: HttpRequest | None, status: int, message: str) -> HttpResponse:
        """The transport's own errors, in the format of the mount that claims the path."""
        return self.board.error_response(request, status, message)

    def _respond(self, request: HttpRequest, outcome: HttpOutcome) -> HttpResponse | FileResponse:
        if outcome.file is None or self.runner.files is None:
            return outcome.response
        path = self.runner.files.path(outcome.file.owner, outcome.file.file_id)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            log.error("upload %s/%s has a record but no file", outcome.file.owner, outcome.file.file_id)
            return self.board.error_response(request, 404, "file does not exist")
        response = outcome.response
        return FileResponse(response.status, response.headers, str(path), size)

    def body_sink(self, request: HttpRequest) -> BodySink | None:
        """Uploads stream to a staged file when the owning mount says so;
        every other body is buffered."""
        if self.runner.files is None or not self.board.streams_body(request):
            return None
        boundary = multipart_boundary(request.header("content-type"))
        if boundary is None:
            return None
        return MultipartSink(boundary, self.runner.files, self.max_upload_bytes)

    async def handle_http_streamed(self, request: HttpRequest, sink: BodySink) -> HttpResponse | FileResponse:
        assert isinstance(sink, MultipartSink)
        try:
            form = sink.form()
        except ValueError as error:
            return self.board.error_response(request, 400, f"Malformed multipart body: {error}")
        start = perf_counter()
        try:
            with self.runner.ticket() as ticket:
                outcome = await self.runner.run(self.board.handle_request(request, form), ticket)
                self.bus.publish(outcome.changes, ticket)
        except StoreUnavailable as error:
            return self.unavailable(request, error)
        response = self._respond(request, outcome)
        self._count(request, response, start)
        return response

    # -- datagrams ---------------------------------------------------------------

    async def handle_datagram(self, datagram: bytes, address: object) -> bytes | None:
        """Answer one datagram (``None``: drop it without an answer)."""
        with self.runner.ticket() as ticket:
            outcome = await self.runner.run(self.board.handle_datagram(datagram), ticket)
            self.bus.publish(outcome.changes, ticket)
        return outcome.answer

    async def handle_datagrams(self, batch: list[tuple[bytes, object]]) -> list[bytes | None]:
        """Answer datagrams read together (``serve_udp_batches``): one action,
        one store write for all, one answer (or ``None``) per datagram. With
        the store away none is answered: the datagram protocol's own way to
        say "not stored" (its client sends it again)."""
        try:
            with self.runner.ticket() as ticket:
                outcomes = await self.runner.run(self.board.handle_datagrams([datagram for datagram, _ in batch]), ticket)
                self.bus.publish([change for outcome in outcomes for change in outcome.changes], ticket)
        except StoreUnavailable as error:
            log.warning("store unavailable: %d datagrams left unanswered: %s", len(batch), error)
            METRICS.datagrams_unanswered += len(batch)
            return [None] * len(batch)
        answers = [outcome.answer for outcome in outcomes]
        METRICS.datagrams_accepted += len(answers)
        METRICS.datagrams_unanswered += answers.count(None)
        return answers

    # -- websockets ----------------------------------------------------------------

    def is_websocket_path(self, request: HttpRequest) -> bool:
        return self.board.engineio(request) is not None or self.board.wants_upgrade(request)

    async def accept_websocket(
        self, request: HttpRequest, connection: WebsocketConnection
    ) -> WebsocketAccept | HttpResponse:
        engineio = self.board.engineio(request)
        if engineio is not None:
            return await self.engineio.accept_websocket(request, connection, *engineio)
        with self.runner.ticket() as ticket:
            try:
                accepted = await self.runner.run(self.board.accept(request, connection.id), ticket)
            except StoreUnavailable as error:
                return self.unavailable(request, error)
            if isinstance(accepted, HttpResponse):
                return accepted
            opened = self.board.opened(connection.id)
            if opened is not None and self._too_many_for_user(opened.mount.name, connection.id, accepted.user_id):
                # Forgotten unannounced (its greeting was never sent).
                self.board.closed(connection.id)
                refusal = self.board.error_response(request, 429, "Too many connections for this user")
                refusal.headers.append(("retry-after", "1"))
                return refusal
            # The connection's record: which mount owns it, and its state there.
            connection.app_state = self.board.opened(connection.id)
            self.bus.publish(accepted.events, ticket, opening=True)
        self._watch(connection.id)
        return WebsocketAccept(subprotocol=accepted.subprotocol, headers=list(accepted.headers))

    async def on_websocket_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        state = connection.app_state
        if type(state) is EngineIoChannel:
            METRICS.message_in(state.mount.name)
            await self.engineio.on_websocket_message(connection, message)
            return
        if state is not None:
            METRICS.message_in(state.mount.name)
        with self.runner.ticket() as ticket:
            try:
                events = await self.runner.run(self.board.handle_message(connection.id, message), ticket)
            except StoreUnavailable as error:
                # The protocol's own 503-style frame; the connection stays open for a retry.
                log.warning("store unavailable answering a message of connection %s: %s", connection.id, error)
                payload = self.board.unavailable(connection.id, message)
                if payload is not None:
                    connection.send_text(payload)
                return
            except Exception:
                log.exception("websocket action failed on connection %s", connection.id)
                payload = self.board.internal_error(connection.id)
                if payload is not None:
                    connection.send_text(payload)
                return
            self.bus.publish(events, ticket)
        self._watch(connection.id)

    async def on_websocket_closed(self, connection: WebsocketConnection) -> None:
        if type(connection.app_state) is EngineIoChannel:
            await self.engineio.on_websocket_closed(connection)
            return
        self.timers.cancel(("mount", connection.id))
        closing = self._closing
        closing.append(connection.id)
        if len(closing) > 1:
            return  # the first connection that ended in this tick handles it
        # A mass disconnect (a client crash, a proxy restart) ends thousands
        # of connections in one scheduler tick. One checkpoint lets them all
        # get here; then they are forgotten together before any departure is
        # announced, so each announcement resolves the connections left once
        # and repeats of one user's departure are sent once (issue 14).
        try:
            await trio.lowlevel.checkpoint()
        finally:
            batch, self._closing = closing, []
            events: list[Any] = []
            for connection_id in batch:
                events.extend(self.board.closed(connection_id))
            self.bus.publish(_once(events))


def _once(events: list[Any]) -> list[Any]:
    """Departure notices (``Audience.if_user_left``) once each; the rest as they are."""
    seen: set[Any] = set()
    kept = []
    for event in events:
        audience = getattr(event, "audience", None)
        if audience is not None and getattr(audience, "if_user_left", None) is not None:
            if event in seen:
                continue
            seen.add(event)
        kept.append(event)
    return kept


async def serve_mounts(
    mounts: MountTable,
    host: str | None,
    port: int,
    *,
    store: Store,
    files: LocalFileStore | None = None,
    env: Environment | None = None,
    limits: ServerLimits = ServerLimits(),
    udp_port: int | None = -1,
    max_upload_bytes: int = 50 * 1024 * 1024,
    broker: Any = None,
    metrics_access: str = "admin",
    metrics_listen: tuple[str, int] | None = None,
    reuse_port: bool = False,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``mounts`` on ``host``:``port`` with the reference transport
    until cancelled - HTTP, websockets and Engine.IO on the port, and UDP
    datagrams on ``udp_port`` (``None``: the same number; -1: none) when a
    mount takes them. The stored permission rules are loaded into the
    switchboard before anything is served. ``task_status.started`` reports
    ``(port, udp_port)``. With ``broker`` (``brokers.open_broker``) the bus
    is a ``BrokerBus``: this process shares fan-out and revocations with the
    other processes on that broker, connected before anything is served.
    ``/health``, ``/ready`` and ``/metrics`` are answered on the port
    (``health.py``; ``metrics_access``: who may read ``/metrics`` there);
    with ``metrics_listen`` (host, port) the three are also served, without
    credentials, on a listener of their own, and the port's ``/metrics``
    answers 404. ``reuse_port``: the port and the datagram port are bound
    with ``SO_REUSEPORT``, beside the other workers of ``satchel serve
    --workers N``. ``satchel serve`` and the protocol example servers are
    built on this."""
    from .health import OperationsApp
    from .metrics import Watched
    from .server import DatagramGate, Server
    from .udp import serve_udp_batches

    hub = Hub()
    board = Switchboard(mounts, env if env is not None else system_environment())
    if broker is None:
        bus: LocalBus = LocalBus(hub, board)
    else:
        from .brokers import BrokerBus

        bus = BrokerBus(hub, board, broker)
    app = SatchelApp(Runner(store, files=files), bus, max_upload_bytes=max_upload_bytes)
    if broker is not None:
        app.runner.follow = bus.follow  # type: ignore[attr-defined]  # a subscribe's Follow waits for the broker
    app.limit(limits)
    if hasattr(store, "observe_batch"):
        store.observe_batch = METRICS.commit_batches.observe  # group-commit sizes, from its writer thread
    # The stored rules are in force before the first request is answered.
    await app.runner.run(board.load_rules())
    async with trio.open_nursery() as nursery:
        if broker is not None:
            await nursery.start(bus.run)  # type: ignore[attr-defined]
        await nursery.start(app.run)
        server = Server(app, limits=limits, hub=hub)
        gate = DatagramGate(limits)  # datagrams per source (issue 14)
        watched = Watched(board=board, hub=hub, server=server, gate=gate, broker=broker)
        app.operations = Operations(app.runner, board, watched, broker=broker, spawn=app._spawn,
                                    access="off" if metrics_listen is not None else metrics_access)
        bound = await nursery.start(partial(server.serve, host, port, reuse_port=reuse_port))
        if metrics_listen is not None:
            metrics_port = await nursery.start(Server(OperationsApp(app.operations), limits=limits).serve,
                                               *metrics_listen)
            log.info("Health and metrics on http://%s:%d/metrics", metrics_listen[0], metrics_port)
        datagrams = bound if udp_port is None else udp_port
        if datagrams >= 0 and board.takes_datagrams:
            datagrams = await nursery.start(partial(serve_udp_batches, app.handle_datagrams, host, datagrams,
                                                    admit=gate.admit, reuse_port=reuse_port))
        else:
            datagrams = -1
        task_status.started((bound, datagrams))
