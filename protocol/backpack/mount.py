"""Backpack's mount: the catch-all of the mount table.

The original Backpack server answered every path and took a websocket
upgrade on any of them (its SDK opens the API's base URL), so this mount
claims every request and every upgrade that the mounts before it left, and
must stay last in the table. Uploads (``POST|PUT|PATCH /uploads...``) stream
to disk, but only for a request carrying the API key: without it the body is
buffered under the ordinary limit and answered 401.
"""

from __future__ import annotations

from typing import Any, Sequence

import msgspec

from ..changes import Change, DocumentChange
from ..channels import Deliver
from ..environment import Environment
from ..http import HttpRequest
from ..mounts import Accepted, HttpOutcome, Mount, RenderContext, UploadForm
from ..operations import Action
from . import auth, websocket
from .config import BackpackConfig
from .render import PROTOCOL, encode, render_change
from .rest import cors_headers, handle_request

__all__ = ["BackpackMount"]

_INTERNAL_ERROR = encode({"action": "error", "message": "Internal server error"})
#: The store is away (``StoreUnavailable``): Backpack's error frame, with the
#: status its REST answer would have, so a client can tell it from a refusal.
_UNAVAILABLE = {"action": "error", "status": 503, "message": "Service unavailable: try again"}
_STREAMED_METHODS = frozenset(("POST", "PUT", "PATCH"))


class BackpackMount(Mount):
    """Backpack (seed 000): REST, uploads, and the websocket with channels."""

    name = PROTOCOL
    paths = (("/register, /login, /logout", "accounts (a session cookie)"),
             ("/collections, /{collection}[/{id}]", "records (the API key on every request)"),
             ("/uploads", "files"), ("/ (websocket)", "actions and channels"))

    def __init__(self, config: BackpackConfig) -> None:
        self.config = config

    def claims_request(self, request: HttpRequest) -> bool:
        return True

    def streams_body(self, request: HttpRequest) -> bool:
        if request.method not in _STREAMED_METHODS:
            return False
        segments = request.segments
        return bool(segments) and segments[0] == "uploads" and auth.api_key_matches(request, self.config)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return handle_request(request, self.config, env, form)

    def cors_headers(self, request: HttpRequest) -> list[tuple[str, str]]:
        return cors_headers(request, self.config)

    def claims_upgrade(self, request: HttpRequest) -> bool:
        return True

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Action[Accepted | Any]:
        socket = yield from websocket.accept(request, connection, self.config, env)
        if not isinstance(socket, websocket.Socket):
            return socket
        return Accepted(socket, socket.user_id, websocket.greeting(socket))

    def handle_message(self, state: websocket.Socket, message: str | bytes, env: Environment) -> Action[list[Any]]:
        return websocket.handle_message(state, message, env)

    def closed(self, state: websocket.Socket) -> list[Any]:
        return websocket.socket_closed(state)

    def role_changed(self, state: websocket.Socket, role: str) -> websocket.Socket:
        # The changes it is sent are redacted for the user's new role from now on.
        return msgspec.structs.replace(state, role=role)

    def internal_error(self, state: websocket.Socket) -> bytes:
        return _INTERNAL_ERROR

    def unavailable(self, state: websocket.Socket, message: str | bytes) -> bytes:
        # Named by the action it answers, as Backpack's other errors are (failedAction).
        try:
            action = msgspec.json.decode(message).get("action")
        except (msgspec.DecodeError, AttributeError, TypeError):
            action = None
        return encode({**_UNAVAILABLE, "failedAction": action} if isinstance(action, str) else _UNAVAILABLE)

    def render(self, change: Change | DocumentChange, context: RenderContext) -> Sequence[Deliver]:
        # Token documents are not records of a collection: Backpack never shows them.
        if type(change) is not Change:
            return ()
        return render_change(change, context)
