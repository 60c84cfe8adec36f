"""Satchel as an ASGI application (quart-trio), for embedding in an ASGI stack.

``create_asgi_app`` builds a ``QuartTrio`` app that serves every mount of the
same mount table as the reference server (Backpack's REST API, uploads
included, and its websocket; inbox documents over HTTP; ``/sdk.js``) through
the same ``Switchboard``: a Quart request is converted into the core's
``HttpRequest`` and the core's ``HttpResponse`` back, and nothing here names
a protocol or decides anything one specifies. Mount it under a prefix with
any ASGI router, or serve it with ``serve_asgi``.

Fan-out: the switchboard turns the events an action returns into
deliveries, in order, and each delivery's payload is decoded to text once
and queued, the same ``str``, to every recipient's bounded outbox, which a
writer task per connection drains with ``await websocket.send``. ASGI has no raw-bytes send, so unlike the reference
transport a frame cannot be encoded once and shared: the server frames (and,
when a browser negotiated permessage-deflate, compresses) every copy
(STACK.md: ~12k deliveries/s here against ~100k for the reference server).
A connection whose outbox is full is a slow consumer: it leaves the registry
at once (the others hear that its user left) and a 1008 close is attempted.
Hypercorn shields every socket write, so a writer stuck on a peer that never
reads cannot be cancelled; it holds one message until the peer goes away.

Operations: ``/health``, ``/ready`` and ``/metrics`` are answered as the
reference server answers them - by the same ``health.Operations``, before
any mount sees the request (``metrics_access``: who reads ``/metrics``,
an administrator's Bearer by default). The requests are counted in the same
``METRICS`` by mount name; the gauges are the connections per protocol
(hypercorn owns the sockets, so there are no outbox or TCP gauges). A
mount's connection timer (``Mount.deadline_ms``: the Directus websocket's
token expiry, the console stream's session re-check) runs in a task beside
each websocket.

``serve_asgi`` runs the app on hypercorn's trio worker with each connection in
a guard of its own. Hypercorn bug #225 (STACK.md) lets one request - an
``Upgrade: websocket`` with bytes after its head - raise out of a connection's
task, and ``hypercorn.trio.serve`` runs every connection in one nursery, so
that one error takes the whole server down. ``serve_asgi`` is the same worker
loop built from hypercorn's own parts (lifespan, worker context, per-connection
``TCPServer``) with a guard around every connection: the error is logged and
only that connection ends.
"""

from __future__ import annotations

import itertools
import logging
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any, Awaitable, Callable, Iterable

import trio

from .extras import require

require("asgi", "quart", "quart_trio", "hypercorn")

from quart import Response, request, websocket  # noqa: E402 - after the check for the extra
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from satchel.protocol import backpack, inbox
from satchel.protocol.channels import CloseConnection
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.mounts import Event, HttpOutcome, MountTable
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.base import Store, StoreUnavailable
from satchel.storage_backends.files import LocalFileStore

from .app import UNAVAILABLE
from .health import OPERATIONS_PATHS, Operations
from .metrics import METRICS, Watched
from .ordering import Sequencer, Ticket
from .runner import Runner
from .static import STATIC_FILES
from .system_environment import system_environment
from .uploads import MultipartSink, multipart_boundary

__all__ = ["create_asgi_app", "AsgiHub", "hypercorn_config", "serve_asgi"]

log = logging.getLogger("satchel.asgi")

#: Every method the core answers; OPTIONS is the core's (CORS preflight), not Quart's.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_SLOW_CONSUMER = 1008
_MESSAGE_TOO_BIG = 1009


class _Everything(BaseConverter):
    """Matches any path, slashes and doubled slashes included: the core
    normalizes paths itself (BRIEF: ``//register`` is ``/register``)."""

    regex = ".*"
    part_isolating = False


class _Outbox:
    """One websocket's bounded queue of messages, drained by its writer.

    ``close_with`` is set when the core asked to end the connection: the
    queue is closed behind it, the writer sends what came before, then the
    connection's handler closes it.
    """

    __slots__ = ("send_channel", "receive_channel", "overflowed", "close_with", "drained")

    def __init__(self, capacity: int) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[str | bytes](capacity)
        self.overflowed = trio.Event()
        self.close_with: CloseConnection | None = None
        self.drained = trio.Event()


class AsgiHub:
    """The live websockets of one ASGI app and the switchboard that routes to them.

    ``publish`` is synchronous, like the reference server's bus: the events of
    one action are applied in order and atomically with respect to other tasks,
    and - given the action's ``Ticket`` - in commit order
    (``satchel.transports.ordering``; ``create_app`` sets ``sequencer``).
    """

    sequencer: Sequencer | None = None

    def __init__(self, board: Switchboard, outbox_messages: int = 10_000) -> None:
        self.board = board
        self._outboxes: dict[str, _Outbox] = {}
        self._capacity = outbox_messages

    def __len__(self) -> int:
        return len(self._outboxes)

    def open(self, connection: str) -> _Outbox:
        """Give ``connection`` an outbox; deliveries to it queue there."""
        outbox = _Outbox(self._capacity)
        self._outboxes[connection] = outbox
        return outbox

    def close(self, connection: str) -> None:
        """Forget ``connection``'s outbox (idempotent)."""
        outbox = self._outboxes.pop(connection, None)
        if outbox is not None:
            outbox.send_channel.close()

    def publish(self, events: Iterable[Event], ticket: Ticket | None = None, *, opening: bool = False) -> None:
        """Apply ``events`` in order and queue what they deliver (in commit
        order, given the ticket of the action that returned them; ``opening``:
        the events of a connection's registration, ``Ticket.publish_opening``)."""
        if ticket is not None and opening:
            ticket.publish_opening(lambda: self._apply(events))
        elif ticket is not None:
            ticket.publish(lambda: self._apply(events))
        elif self.sequencer is not None:
            self.sequencer.publish(lambda: self._apply(events))
        else:
            self._apply(events)

    def _apply(self, events: Iterable[Event]) -> None:
        for payload, recipients in self.board.deliveries(events):
            kind = type(payload)
            if kind is CloseConnection:
                for connection in recipients:
                    outbox = self._outboxes.get(connection)
                    if outbox is not None:
                        outbox.close_with = payload  # type: ignore[assignment]
                        outbox.send_channel.close()  # the writer ends; the handler closes
                continue
            # Decoded once for all recipients: ASGI sends str (text) or bytes.
            message: str | bytes = payload.decode("utf-8") if kind is bytes else payload.data  # type: ignore[union-attr]
            for connection in recipients:
                outbox = self._outboxes.get(connection)
                if outbox is None:
                    continue
                try:
                    outbox.send_channel.send_nowait(message)
                except trio.WouldBlock:
                    outbox.overflowed.set()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass


def _core_request(method: str, scope: dict[str, Any], headers: Iterable[tuple[str, str]], body: bytes) -> HttpRequest:
    # The raw path, not Quart's decoded one: the core decodes segments itself.
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    target = raw_path.decode("latin-1")
    query = scope.get("query_string") or b""
    if query:
        target += "?" + query.decode("latin-1")
    return HttpRequest(method, target, [(name.lower(), value) for name, value in headers], body)


def _quart_response(response: HttpResponse) -> Response:
    quart_response = Response(response.body, status=response.status)
    # Content-Type and repeated Set-Cookie headers are the core's, as given.
    quart_response.headers.clear()
    for name, value in response.headers:
        quart_response.headers.add(name, value)
    quart_response.headers["content-length"] = str(len(response.body))
    return quart_response


def create_asgi_app(
    store: Store,
    config: backpack.BackpackConfig | None = None,
    env: Environment | None = None,
    *,
    mounts: MountTable | None = None,
    files: LocalFileStore | None = None,
    inbox_config: inbox.InboxConfig | None = None,
    runner: Runner | None = None,
    max_body_bytes: int = 1024 * 1024,
    max_upload_bytes: int = 50 * 1024 * 1024,
    max_message_bytes: int = 1024 * 1024,
    outbox_messages: int = 10_000,
    metrics_access: str = "admin",
    name: str = __name__,
) -> QuartTrio:
    """A quart-trio app serving what the reference server serves over HTTP.

    ``mounts`` is the mount table to serve; by default Satchel's own
    (``standard_mounts(config, inbox_config)`` behind ``/sdk.js``): Backpack's
    REST API and websocket, its file uploads (when ``files``, a
    ``LocalFileStore``, is given; otherwise ``/uploads`` answers an internal
    error as the core cannot keep bytes), and inbox documents (seed 001,
    HTTP only: datagrams need a UDP socket, which ASGI has not). ``store`` is
    any ``satchel.storage_backends`` store, already open; the app does not
    close it. ``env`` defaults to the system clock and entropy. The app's
    ``satchel_hub`` attribute is its ``AsgiHub``; serve it with
    ``serve_asgi`` (or any ASGI server that runs trio, keeping hypercorn bug
    #225 in mind). ``metrics_access`` (``"admin"`` or ``"public"``) says who
    may read ``/metrics``, as ``satchel serve --metrics-access``.
    """
    if mounts is None:
        if config is None:
            raise TypeError("create_asgi_app needs a BackpackConfig or a mount table")
        mounts = standard_mounts(config, inbox_config, first=[STATIC_FILES])
    environment = env if env is not None else system_environment()
    core_runner = runner if runner is not None else Runner(store, files=files)
    board = Switchboard(mounts, environment)
    hub = AsgiHub(board, outbox_messages)
    hub.sequencer = core_runner.sequencer
    connection_ids = itertools.count(1)

    # root_path: Quart looks for templates and static files beside the app's
    # module; Satchel serves neither, and ``satchel`` is a namespace package.
    app = QuartTrio(name, root_path=str(Path(__file__).parent))
    # Bodies are bounded here, per kind (uploads may be larger), not by Quart.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.url_map.converters["everything"] = _Everything
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.satchel_hub = hub  # type: ignore[attr-defined]

    def spawn(async_fn: Callable[[], Awaitable[None]]) -> None:
        # The app's nursery (quart-trio opens it at the lifespan startup).
        app.nursery.start_soon(async_fn)

    operations = Operations(core_runner, board, Watched(board=board), spawn=spawn, access=metrics_access)
    app.satchel_operations = operations  # type: ignore[attr-defined]

    @app.before_serving
    async def load_rules() -> None:
        # The stored permission rules are in force before the first request.
        await core_runner.run(board.load_rules())

    async def respond(core_request: HttpRequest, outcome: HttpOutcome, ticket: Ticket) -> Response:
        hub.publish(outcome.changes, ticket)
        if outcome.file is None or core_runner.files is None:
            return _quart_response(outcome.response)
        path = core_runner.files.path(outcome.file.owner, outcome.file.file_id)
        try:
            size = (await trio.Path(path).stat()).st_size
        except FileNotFoundError:
            log.error("upload %s/%s has a record but no file", outcome.file.owner, outcome.file.file_id)
            return _quart_response(board.error_response(core_request, 404, "file does not exist"))
        return _file_response(outcome.response, path, size)

    async def http_endpoint(path: str = "") -> Response:
        core_request = _core_request(request.method, request.scope, request.headers.items(), b"")
        if core_request.path in OPERATIONS_PATHS:
            return _quart_response(await operations.handle(core_request))
        start = perf_counter()
        response = await answer(core_request)
        mount = board.mount_for(core_request)
        METRICS.request(mount.name if mount is not None else "none", core_request.method, response.status_code,
                        perf_counter() - start)
        return response

    def unavailable(core_request: HttpRequest, error: StoreUnavailable) -> HttpResponse:
        # The owning protocol's 503, as SatchelApp.unavailable answers it.
        log.warning("store unavailable answering %s %s: %s", core_request.method, core_request.loggable, error)
        response = board.error_response(core_request, 503, UNAVAILABLE)
        response.headers.append(("retry-after", "1"))
        return response

    async def answer(core_request: HttpRequest) -> Response:
        with core_runner.ticket() as ticket:
            try:
                sink = _upload_sink(core_request, board, core_runner.files, max_upload_bytes)
                if sink is not None:
                    try:
                        form = await _read_form(sink, max_upload_bytes)
                        if isinstance(form, tuple):
                            return _quart_response(board.error_response(core_request, *form))
                        outcome = await core_runner.run(board.handle_request(core_request, form), ticket)
                    finally:
                        sink.close()
                    return await respond(core_request, outcome, ticket)
                body = await _read_body(max_body_bytes)
                if body is None:
                    return _quart_response(board.error_response(core_request, 413, "Request body too large"))
                core_request = HttpRequest(core_request.method, core_request.target, core_request.headers, body)
                outcome = await core_runner.run(board.handle_request(core_request), ticket)
            except StoreUnavailable as error:
                return _quart_response(unavailable(core_request, error))
            except Exception:
                log.exception("request %s %s failed", core_request.method, core_request.loggable)
                return _quart_response(board.error_response(core_request, 500, "Internal server error"))
            return await respond(core_request, outcome, ticket)

    app.add_url_rule(
        "/<everything:path>", "satchel_http", http_endpoint, methods=_METHODS, provide_automatic_options=False
    )

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        # Quart's own refusals (400 unreadable body...) in the owning
        # protocol's error format rather than as HTML.
        status = error.code or 500
        try:
            core_request: HttpRequest | None = _core_request(
                request.method, request.scope, request.headers.items(), b""
            )
        except Exception:  # noqa: BLE001 - outside a request: no path to go by
            core_request = None
        return _quart_response(board.error_response(core_request, status, error.description or error.name))

    async def websocket_endpoint(path: str = "") -> Response | None:
        connection = f"asgi-{next(connection_ids)}"
        core_request = _core_request("GET", websocket.scope, websocket.headers.items(), b"")
        upgrade = core_runner.ticket()  # released on every way out (ordering.py)
        try:
            accepted = await core_runner.run(board.accept(core_request, connection), upgrade)
        except BaseException as exc:
            upgrade.__exit__(None, None, None)
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, StoreUnavailable):
                return _quart_response(unavailable(core_request, exc))
            # Logged here, not by Quart, whose line would carry the path's tokens.
            log.exception("websocket upgrade %s failed", core_request.loggable)
            return _quart_response(board.error_response(core_request, 500, "Internal server error"))
        if isinstance(accepted, HttpResponse):
            upgrade.__exit__(None, None, None)
            # Sent as an HTTP response when the server supports ASGI's
            # websocket denial extension (hypercorn does); otherwise a close.
            return _quart_response(accepted)
        try:
            await websocket.accept(headers=Headers(accepted.headers), subprotocol=accepted.subprotocol)
        except BaseException:
            upgrade.__exit__(None, None, None)
            board.closed(connection)
            raise
        ws = websocket._get_current_object()
        outbox = hub.open(connection)
        try:
            hub.publish(accepted.events, upgrade, opening=True)
            # The writer runs in the app's nursery, not under this handler:
            # hypercorn shields every socket write, so a writer stuck on a
            # peer that does not read cannot be cancelled - and this handler
            # must still end, leave the registry and tell the others.
            background = getattr(app, "nursery", None)
            rescheduled = [trio.Event()]
            async with trio.open_nursery() as nursery:
                (background or nursery).start_soon(_write, ws, outbox)
                nursery.start_soon(_end_when_told, outbox, nursery.cancel_scope)
                nursery.start_soon(mount_timer, connection, rescheduled)
                while True:
                    message = await ws.receive()
                    if len(message) > max_message_bytes // 4 and _size(message) > max_message_bytes:
                        await ws.close(_MESSAGE_TOO_BIG, "message too big")
                        break
                    with core_runner.ticket() as ticket:
                        try:
                            events = await core_runner.run(board.handle_message(connection, message), ticket)
                        except StoreUnavailable as error:
                            # The protocol's own 503-style frame; the connection stays open for a retry.
                            log.warning("store unavailable answering a message of connection %s: %s", connection, error)
                            ticket.__exit__(None, None, None)
                            payload = board.unavailable(connection, message)
                            if payload is not None:
                                await ws.send(payload.decode("utf-8"))
                            continue
                        except Exception:
                            log.exception("websocket action failed on connection %s", connection)
                            ticket.__exit__(None, None, None)
                            payload = board.internal_error(connection)
                            if payload is not None:
                                await ws.send(payload.decode("utf-8"))
                            continue
                        hub.publish(events, ticket)
                    rescheduled[0].set()  # the deadline may have moved
                nursery.cancel_scope.cancel()
        finally:
            upgrade.__exit__(None, None, None)  # the upgrade's stamps, if nothing published them
            hub.close(connection)
            hub.publish(board.closed(connection))
        if outbox.overflowed.is_set():
            # A peer that does not read may never take the close frame either.
            with trio.move_on_after(1):
                await ws.close(_SLOW_CONSUMER, "slow consumer")
        elif outbox.close_with is not None:
            with trio.move_on_after(1):
                await ws.close(outbox.close_with.code, outbox.close_with.reason)
        return None

    async def mount_timer(connection: str, rescheduled: list[trio.Event]) -> None:
        """Run the connection's mount timer when due (``SatchelApp._watch``'s
        work, for one websocket): asked again after each message and timer."""
        while board.opened(connection) is not None:
            wake = rescheduled[0] = trio.Event()
            due = board.deadline_ms(connection)
            if due is None:
                await wake.wait()
                continue
            with trio.move_on_after(max(0, due - environment.now_ms()) / 1000):
                await wake.wait()
            if wake.is_set():
                continue
            with core_runner.ticket() as ticket:
                try:
                    events = await core_runner.run(board.on_timer(connection), ticket)
                except Exception:
                    log.exception("timer action failed on connection %s", connection)
                    ticket.__exit__(None, None, None)
                    events = None
                else:
                    hub.publish(events, ticket)
            if events is None:
                await trio.sleep(1)  # a store that fails: its deadline is still past, do not spin on it

    app.add_websocket("/<everything:path>", "satchel_websocket", websocket_endpoint)
    return app


def _upload_sink(
    core_request: HttpRequest, board: Switchboard, files: LocalFileStore | None, limit: int
) -> MultipartSink | None:
    """Uploads stream to a staged file when the owning mount says so, as in
    the reference server."""
    if files is None or not board.streams_body(core_request):
        return None
    boundary = multipart_boundary(core_request.header("content-type"))
    return None if boundary is None else MultipartSink(boundary, files, limit)


async def _read_form(sink: MultipartSink, limit: int) -> Any:
    """Stream the request body into ``sink``; the parsed form, or the error
    to answer as ``(status, message)``."""
    size = 0
    try:
        async for chunk in request.body:
            size += len(chunk)
            if size > limit:
                return 413, f"Uploads are limited to {limit} bytes"
            # The sink writes a staged file: a thread, so that a slow disk
            # does not stall every other connection.
            await trio.to_thread.run_sync(sink.write, chunk)
        return sink.form()
    except ValueError as error:
        return 400, f"Malformed multipart body: {error}"


async def _read_body(limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.body:
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _file_response(response: HttpResponse, path: Path, size: int) -> Response:
    async def chunks() -> Any:
        async with await trio.open_file(path, "rb") as handle:
            while chunk := await handle.read(64 * 1024):
                yield chunk

    quart_response = Response(chunks(), status=response.status)
    quart_response.headers.clear()
    for name, value in response.headers:
        quart_response.headers.add(name, value)
    quart_response.headers["content-length"] = str(size)
    return quart_response


def _size(message: str | bytes) -> int:
    return len(message.encode("utf-8", "surrogatepass")) if isinstance(message, str) else len(message)


async def _write(ws: Any, outbox: _Outbox) -> None:
    """Drain one connection's outbox, in order, until it is closed."""
    try:
        async with outbox.receive_channel:
            async for message in outbox.receive_channel:
                await ws.send(message)
    except Exception:  # noqa: BLE001 - the connection is gone; its handler cleans up
        pass
    finally:
        outbox.drained.set()


async def _end_when_told(outbox: _Outbox, scope: trio.CancelScope) -> None:
    """End the connection's handler when its outbox overflowed (a slow
    consumer: it leaves the registry at once, the close frame is attempted
    afterwards) or when the core asked to close it and what came before has
    been sent."""
    async with trio.open_nursery() as watchers:
        async def overflow() -> None:
            await outbox.overflowed.wait()
            watchers.cancel_scope.cancel()

        async def drained() -> None:
            await outbox.drained.wait()
            if outbox.close_with is not None:
                watchers.cancel_scope.cancel()

        watchers.start_soon(overflow)
        watchers.start_soon(drained)
    scope.cancel()


# -- serving -------------------------------------------------------------------


def hypercorn_config(host: str = "127.0.0.1", port: int = 8000, *, hard_message_bytes: int = 16 * 1024 * 1024) -> Any:
    """A hypercorn ``Config`` bound to ``host``:``port`` (0 picks a free port).

    The app itself closes a websocket with 1009 after a message over its
    ``max_message_bytes`` (1 MiB, as the reference server). Hypercorn's own
    bound, ``hard_message_bytes``, stays well above it: when hypercorn closes
    for size itself it can drop the client's close reply and leave the
    connection hanging (measured with hypercorn 0.18 and trio-websocket).
    """
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.websocket_max_message_size = hard_message_bytes
    config.accesslog = None
    return config


async def serve_asgi(
    app: Callable[..., Awaitable[None]],
    config: Any,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an ASGI ``app`` with hypercorn's trio worker, one guard per connection.

    Like ``hypercorn.trio.serve`` (lifespan events, graceful shutdown when
    ``shutdown_trigger`` returns), except that an exception escaping one
    connection - hypercorn bug #225, or any other - is logged and ends that
    connection only, instead of propagating into the server's nursery and
    taking every connection down. ``task_status.started`` reports the bound
    addresses as URLs (``http://127.0.0.1:PORT``). Cancel to stop at once.

    Plain HTTP only (no TLS, no QUIC): put TLS in front, or use hypercorn's
    own ``serve`` where its hazard is acceptable.
    """
    from hypercorn.trio.lifespan import Lifespan
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState
    from hypercorn.utils import repr_socket_addr, wrap_app

    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)

    async def connection(stream: trio.SocketStream) -> None:
        try:
            await TCPServer(wrapped, config, context, ConnectionState(lifespan_state.copy()), stream)
        except Exception as error:
            log.error("connection failed (contained): %r", error, exc_info=error)
        except BaseExceptionGroup as group:
            errors, others = group.split(Exception)
            if errors is not None:
                log.error("connection failed (contained): %r", errors, exc_info=errors)
            if others is not None:
                raise others from None
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            sockets = config.create_sockets()
            if sockets.secure_sockets or sockets.quic_sockets:
                raise ValueError("serve_asgi serves plain HTTP only; bind without certificates")
            listeners = []
            binds = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))
            try:
                async with trio.open_nursery() as accept_nursery:
                    accept_nursery.start_soon(
                        partial(trio.serve_listeners, connection, listeners, handler_nursery=server_nursery)
                    )
                    task_status.started(binds)
                    if shutdown_trigger is not None:
                        await shutdown_trigger()
                    else:
                        await trio.sleep_forever()
                    accept_nursery.cancel_scope.cancel()
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()

