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

from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mounts import HttpOutcome

from .bus import LocalBus
from .interfaces import BodySink, FileResponse, WebsocketAccept
from .runner import Runner
from .uploads import MultipartSink, multipart_boundary
from .websocket.connection import WebsocketConnection

__all__ = ["SatchelApp"]

log = logging.getLogger("satchel")


class SatchelApp:
    """Serves every mount of ``bus.board`` over HTTP, websockets and (through
    ``handle_datagram``) UDP, from one store."""

    def __init__(self, runner: Runner, bus: LocalBus, *, max_upload_bytes: int = 50 * 1024 * 1024) -> None:
        self.runner = runner
        self.bus = bus
        self.board = bus.board
        self.max_upload_bytes = max_upload_bytes

    # -- HTTP ------------------------------------------------------------------

    async def handle_http(self, request: HttpRequest) -> HttpResponse | FileResponse:
        outcome = await self.runner.run(self.board.handle_request(request))
        self.bus.publish(outcome.changes)
        return self._respond(request, outcome)

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
        outcome = await self.runner.run(self.board.handle_request(request, form))
        self.bus.publish(outcome.changes)
        return self._respond(request, outcome)

    # -- datagrams ---------------------------------------------------------------

    async def handle_datagram(self, datagram: bytes, address: object) -> bytes | None:
        """Answer one datagram (``None``: drop it without an answer)."""
        outcome = await self.runner.run(self.board.handle_datagram(datagram))
        self.bus.publish(outcome.changes)
        return outcome.answer

    # -- websockets ----------------------------------------------------------------

    def is_websocket_path(self, request: HttpRequest) -> bool:
        return self.board.wants_upgrade(request)

    async def accept_websocket(
        self, request: HttpRequest, connection: WebsocketConnection
    ) -> WebsocketAccept | HttpResponse:
        accepted = await self.runner.run(self.board.accept(request, connection.id))
        if isinstance(accepted, HttpResponse):
            return accepted
        # The connection's record: which mount owns it, and its state there.
        connection.app_state = self.board.opened(connection.id)
        self.bus.publish(accepted.events)
        return WebsocketAccept(subprotocol=accepted.subprotocol, headers=list(accepted.headers))

    async def on_websocket_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        try:
            events = await self.runner.run(self.board.handle_message(connection.id, message))
        except Exception:
            log.exception("websocket action failed on connection %s", connection.id)
            payload = self.board.internal_error(connection.id)
            if payload is not None:
                connection.send_text(payload)
            return
        self.bus.publish(events)

    async def on_websocket_closed(self, connection: WebsocketConnection) -> None:
        self.bus.publish(self.board.closed(connection.id))
