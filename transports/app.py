"""The reference server's application: the core, a store and the bus, wired
to the transport's ``Application`` seam.

Nothing here decides anything a protocol specifies: requests go to the
core's actions, the runner executes what they yield, and the events they
return go to the bus. What it does own is operational: a failing store is
logged and answered as an internal error instead of killing a connection.
"""

from __future__ import annotations

import logging
import os

from satchel.protocol import backpack, inbox
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse, json_response, split_path

from .bus import LocalBus
from .interfaces import BodySink, FileResponse, WebsocketAccept
from .runner import Runner
from .static import static_response
from .uploads import MultipartSink, multipart_boundary
from .websocket.connection import WebsocketConnection

__all__ = ["SatchelApp"]

log = logging.getLogger("satchel")

_INTERNAL_ERROR = backpack.render.encode({"action": "error", "message": "Internal server error"})


class SatchelApp:
    """Serves Backpack (REST and websocket) and inbox documents (HTTP and
    UDP datagrams) from one store."""

    def __init__(
        self,
        runner: Runner,
        bus: LocalBus,
        config: backpack.BackpackConfig,
        env: Environment,
        inbox_config: inbox.InboxConfig | None = None,
        max_upload_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.runner = runner
        self.max_upload_bytes = max_upload_bytes
        self.bus = bus
        self.config = config
        self.env = env
        self.inbox_config = inbox_config or inbox.InboxConfig()
        # One replay memory per server, starting at its start time: a
        # datagram older than the server is refused (protocol/inbox/replay.py).
        self._replay_guard = inbox.new_replay_guard(self.inbox_config, env.now_ms())
        self._backpack_connections = bus.registries[backpack.PROTOCOL]

    async def handle_http(self, request: HttpRequest) -> HttpResponse | FileResponse:
        asset = static_response(request)
        if asset is not None:
            return asset
        if inbox.is_inbox_path(request.path):
            # Tokens authorize inbox documents; there is no API key there.
            documents = await self.runner.run(inbox.handle_request(request, self.inbox_config, self.env))
            self.bus.publish(documents.changes)
            return documents.response
        outcome = await self.runner.run(backpack.handle_request(request, self.config, self.env))
        self.bus.publish(outcome.changes)
        return self._respond(outcome)

    def _respond(self, outcome: backpack.HttpOutcome) -> HttpResponse | FileResponse:
        if outcome.file is None or self.runner.files is None:
            return outcome.response
        path = self.runner.files.path(outcome.file.owner, outcome.file.file_id)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            log.error("upload %s/%s has a record but no file", outcome.file.owner, outcome.file.file_id)
            return json_response(404, {"message": "file does not exist"})
        response = outcome.response
        return FileResponse(response.status, response.headers, str(path), size)

    def body_sink(self, request: HttpRequest) -> BodySink | None:
        """Uploads stream to a staged file; every other body is buffered.

        Only a request with the API key may stream to disk; without it the
        body is buffered under the ordinary limit and answered 401.
        """
        if self.runner.files is None or request.method not in ("POST", "PUT", "PATCH"):
            return None
        segments = split_path(request.path)
        if not segments or segments[0] != "uploads" or not backpack.auth.api_key_matches(request, self.config):
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
            return json_response(400, {"message": f"Malformed multipart body: {error}"})
        outcome = await self.runner.run(backpack.handle_request(request, self.config, self.env, form))
        self.bus.publish(outcome.changes)
        return self._respond(outcome)

    async def handle_datagram(self, datagram: bytes, address: object) -> bytes | None:
        """Answer one inbox datagram (``None``: drop it without an answer)."""
        outcome = await self.runner.run(
            inbox.handle_datagram(datagram, self._replay_guard, self.inbox_config, self.env)
        )
        self.bus.publish(outcome.changes)
        return outcome.answer

    def is_websocket_path(self, request: HttpRequest) -> bool:
        # The SDK opens the API's base URL; the original accepted any path.
        return True

    async def accept_websocket(
        self, request: HttpRequest, connection: WebsocketConnection
    ) -> WebsocketAccept | HttpResponse:
        accepted = await self.runner.run(backpack.accept(request, connection.id, self.config, self.env))
        if isinstance(accepted, HttpResponse):
            return accepted
        connection.app_state = accepted
        self._backpack_connections.add_connection(connection.id, accepted.user_id)
        self.bus.publish(backpack.greeting(accepted))
        return WebsocketAccept()

    async def on_websocket_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        try:
            events = await self.runner.run(backpack.handle_message(connection.app_state, message, self.env))
        except Exception:
            log.exception("websocket action failed on connection %s", connection.id)
            connection.send_text(_INTERNAL_ERROR)
            return
        self.bus.publish(events)

    async def on_websocket_closed(self, connection: WebsocketConnection) -> None:
        socket = connection.app_state
        if isinstance(socket, backpack.Socket):
            self._backpack_connections.remove_connection(connection.id)
            self.bus.publish(backpack.socket_closed(socket))
