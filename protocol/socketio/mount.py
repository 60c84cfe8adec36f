"""A mount that speaks Socket.IO: an Engine.IO endpoint and its namespaces.

``SocketIoMount`` claims one Engine.IO path (``/socket.io`` by default, as
the stock client expects) and delegates every connection it is handed to a
``SocketIoServer`` configured with namespace handlers. A protocol with a
Socket.IO face and more besides (Asnity: REST under ``/api`` too) embeds a
``SocketIoServer`` the same way instead of subclassing this.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..changes import Change, DocumentChange
from ..channels import Deliver
from ..environment import Environment
from ..http import HttpRequest, HttpResponse, json_response
from ..mounts import Accepted, Mount, RenderContext
from ..operations import Action
from .engineio_requests import BAD_REQUEST
from .engineio_session import EngineIoConfig
from .server import NamespaceHandler, SocketIoConfig, SocketIoConnection, SocketIoServer

__all__ = ["SocketIoMount", "claims_path"]


def claims_path(request: HttpRequest, path: str) -> bool:
    """Whether ``request`` is for the Engine.IO endpoint at ``path`` (the
    stock client asks for ``/socket.io/?EIO=4&...``; the path is normalized)."""
    return request.path == path


class SocketIoMount(Mount):
    """Socket.IO at ``path``: namespaces served by ``handlers``, in order."""

    def __init__(
        self,
        name: str,
        handlers: Sequence[NamespaceHandler],
        *,
        path: str = "/socket.io",
        engineio: EngineIoConfig | None = None,
        socketio: SocketIoConfig | None = None,
    ) -> None:
        self.name = name
        self.path = path.rstrip("/") or "/"
        self.engineio = engineio or EngineIoConfig()
        self.server = SocketIoServer(name, handlers, socketio)

    def claims_engineio(self, request: HttpRequest) -> EngineIoConfig | None:
        return self.engineio if claims_path(request, self.path) else None

    def error_response(self, status: int, message: str) -> HttpResponse:
        # engine.io's error body (engineio_requests), for the transport's own refusals.
        return json_response(status, {"code": BAD_REQUEST, "message": message})

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Action[Accepted]:
        return self.server.accept(request, connection, env)
        yield  # an action is a generator

    def handle_message(self, state: SocketIoConnection, message: str | bytes, env: Environment) -> Action[list[Any]]:
        return self.server.handle_message(state, message, env)

    def closed(self, state: SocketIoConnection) -> list[Any]:
        return self.server.closed(state)

    def unavailable_events(self, state: SocketIoConnection, message: str | bytes) -> list[Any]:
        return self.server.unavailable(state, message)

    def deadline_ms(self, state: SocketIoConnection) -> int | None:
        return self.server.deadline_ms(state)

    def on_timer(self, state: SocketIoConnection, env: Environment) -> Action[list[Any]]:
        return self.server.on_timer(state, env)
        yield

    def render(self, change: Change | DocumentChange, context: RenderContext) -> Sequence[Deliver]:
        rendered: list[Deliver] = []
        for handler in self.server.handlers:
            render = getattr(handler, "render", None)
            if render is not None:
                rendered.extend(render(change, context))
        return rendered
