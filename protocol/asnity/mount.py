"""Asnity's mount: the REST API under ``/api``, and chat changes rendered
to the sockets of the channel's room (asnity.md sections 1-5).

It claims every request whose path is ``/api`` or under it, and sits before
Backpack's catch-all in the mount table, and the Engine.IO endpoint
``/socket.io`` (long-polling and websocket, as the stock socket.io-client
asks), whose connections it hands to a ``SocketIoServer`` serving the
community namespaces (``sockets.AsnityNamespaces``). Transport-level errors
on its REST paths are in Nest's format.

``render``: a ``Change`` of a chat becomes one Socket.IO EVENT packet for
the community's namespace, ``["new-chat"|"modify-chat"|"delete-chat",
chatInfo]`` (the chatInfo the REST route answers), delivered to the room of
the chat's channel minus the socket that wrote it (``change.connection``;
a REST write has none, so every socket of the room hears it). A ``create``
is ``new-chat``, a ``patch`` of a chat with ``deletedAt`` (the soft delete)
is ``delete-chat`` and any other ``patch`` is ``modify-chat``. Nothing else
Asnity stores is pushed (the original pushed nothing else; its client polls).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..changes import Change, DocumentChange
from ..channels import Audience, Deliver
from ..environment import Environment
from ..http import HttpRequest, HttpResponse
from ..mounts import HttpOutcome, Mount, RenderContext, UploadForm
from ..operations import Action
from ..socketio.engineio_session import EngineIoConfig
from ..socketio.mount import claims_path
from ..socketio.packets import encode_event
from ..socketio.server import SocketIoConfig, SocketIoConnection, SocketIoServer
from .model import CHATS, chat_info
from .nest import cors_headers, error_response
from .rest import handle_request, is_asnity_path
from .rooms import PROTOCOL, namespace_of, room_channel
from .sockets import AsnityNamespaces

__all__ = ["AsnityMount", "chat_event", "render_change"]


def chat_event(change: Change) -> str | None:
    """The socket event a chat change is shown as, if any."""
    if change.collection != CHATS:
        return None
    if change.kind == "create":
        return "new-chat"
    if change.kind == "patch":
        return "delete-chat" if "deletedAt" in change.record else "modify-chat"
    return None  # chats are never removed outright


def render_change(change: Change) -> Deliver | None:
    """The delivery a chat change makes to its channel's room, if any."""
    name = chat_event(change)
    if name is None:
        return None
    record = change.record
    community_id, channel_id = record["communityId"], record["channelId"]
    # A chat carries no bytes, so its EVENT is one text packet.
    (packet,) = encode_event(name, [chat_info(record)], namespace_of(community_id))
    assert isinstance(packet, str)
    audience = Audience(channel=room_channel(community_id, channel_id), exclude=change.connection)
    return Deliver(PROTOCOL, packet.encode(), audience)


#: Where the stock socket.io-client connects (its default ``path``).
SOCKET_PATH = "/socket.io"


class AsnityMount(Mount):
    """Asnity (seed 002): its REST API, its socket server, and its chats
    rendered to rooms."""

    name = PROTOCOL
    paths = (("/api", "the chat's REST API"), (f"{SOCKET_PATH}/", "Socket.IO (long-polling, then websocket)"))

    def __init__(self, engineio: EngineIoConfig | None = None, socketio: SocketIoConfig | None = None) -> None:
        self.engineio = engineio or EngineIoConfig()
        self.sockets = SocketIoServer(PROTOCOL, [AsnityNamespaces()], socketio)

    # -- the socket server ---------------------------------------------------------

    def claims_engineio(self, request: HttpRequest) -> EngineIoConfig | None:
        return self.engineio if claims_path(request, SOCKET_PATH) else None

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Action[Any]:
        return self.sockets.accept(request, connection, env)
        yield  # an action is a generator

    def handle_message(self, state: SocketIoConnection, message: str | bytes, env: Environment) -> Action[list[Any]]:
        return self.sockets.handle_message(state, message, env)

    def closed(self, state: SocketIoConnection) -> list[Any]:
        return self.sockets.closed(state)

    def unavailable_events(self, state: SocketIoConnection, message: str | bytes) -> list[Any]:
        return self.sockets.unavailable(state, message)

    def deadline_ms(self, state: SocketIoConnection) -> int | None:
        return self.sockets.deadline_ms(state)

    def on_timer(self, state: SocketIoConnection, env: Environment) -> Action[list[Any]]:
        return self.sockets.on_timer(state, env)
        yield

    # -- REST ------------------------------------------------------------------------

    def claims_request(self, request: HttpRequest) -> bool:
        return is_asnity_path(request.path)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return handle_request(request, env)

    def error_response(self, status: int, message: str) -> HttpResponse:
        return error_response(status, message)

    def cors_headers(self, request: HttpRequest) -> list[tuple[str, str]]:
        return cors_headers(request)

    def render(self, change: Change | DocumentChange, context: RenderContext) -> Sequence[Deliver]:
        if type(change) is not Change:
            return ()
        delivery = render_change(change)
        return (delivery,) if delivery is not None else ()
