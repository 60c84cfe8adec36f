"""The Directus mount: the items REST API and auth routes, and the websocket
protocols at ``/websocket`` (directus.md sections 1-3).

The REST side is ``rest`` (``/items``, ``/auth``); the websocket side is
``websocket`` (the extension's early and latest formats and Directus core's
realtime protocol, told apart per connection). This file only wires them to
the seam (``satchel.protocol.mounts``).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..changes import Change, DocumentChange
from ..channels import Deliver
from ..environment import Environment
from ..http import HttpRequest, HttpResponse
from ..mounts import Accepted, HttpOutcome, Mount, RenderContext, UploadForm
from ..operations import Action
from ..permissions import Accountability
from . import rest, websocket
from .config import DirectusConfig

__all__ = ["DirectusMount", "PROTOCOL"]

#: The name the Directus connections are registered under in the hub.
PROTOCOL = "directus"


class DirectusMount(Mount):
    """Directus (seed 003): items over REST and over the websocket, under the
    one rule set (``satchel.protocol.permissions``)."""

    name = PROTOCOL

    def __init__(self, config: DirectusConfig | None = None) -> None:
        self.config = config or DirectusConfig()
        self.paths = (("/auth/login, /users/me", "sign-in and tokens"), ("/items/{collection}", "items REST"),
                      (f"{self.config.websocket_path} (websocket)", "subscriptions: the extension's and core's protocols"))

    # -- REST ------------------------------------------------------------------

    def claims_request(self, request: HttpRequest) -> bool:
        return rest.is_directus_segments(request.segments)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return rest.handle_request(request, self.config, env)

    def error_response(self, status: int, message: str) -> HttpResponse:
        return rest.error_response(status, message)

    def cors_headers(self, request: HttpRequest) -> list[tuple[str, str]]:
        return rest._cors(request)

    # -- the websocket -------------------------------------------------------------

    def claims_upgrade(self, request: HttpRequest) -> bool:
        return request.path == self.config.websocket_path

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Action[Accepted | HttpResponse]:
        return websocket.accept(request, connection, self.config, env)

    def handle_message(self, state: Any, message: str | bytes, env: Environment) -> Action[list[Any]]:
        return websocket.handle_message(state, message, self.config, env)

    def closed(self, state: Any) -> list[Any]:
        return websocket.closed(state)

    def role_changed(self, state: Any, role: str) -> Any:
        # Its reads, writes and deliveries follow the user's new role at once.
        if state.who.user is not None:
            state.sign_in(Accountability(state.who.user, role), state.expires_ms)
        return state

    def deadline_ms(self, state: Any) -> int | None:
        return websocket.deadline_ms(state, self.config)

    def on_timer(self, state: Any, env: Environment) -> Action[list[Any]]:
        return websocket.on_timer(state, self.config, env)

    def internal_error(self, state: Any) -> bytes | None:
        return websocket.internal_error(state)

    def unavailable(self, state: Any, message: str | bytes) -> bytes | None:
        return websocket.unavailable(state, message)

    def render(self, change: Change | DocumentChange, context: RenderContext) -> Sequence[Deliver]:
        if type(change) is not Change:
            return ()
        return websocket.render(change, context, self.config)
