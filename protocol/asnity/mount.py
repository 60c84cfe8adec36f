"""Asnity's mount: the REST API under ``/api``, and chat changes rendered
to the sockets of the channel's room (asnity.md sections 1-5).

It claims every request whose path is ``/api`` or under it, and sits before
Backpack's catch-all in the mount table. It takes no websocket upgrades
yet: the Socket.IO layer (``satchel.protocol.socketio``) will claim
``/socket.io/`` and call ``socket_events``. Transport-level errors on its
paths are in Nest's format.

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

from ..changes import Change, DocumentChange
from ..channels import Audience, Deliver
from ..environment import Environment
from ..http import HttpRequest, HttpResponse
from ..mounts import HttpOutcome, Mount, UploadForm
from ..operations import Action
from ..socketio.packets import encode_event
from .model import CHATS, chat_info
from .nest import error_response
from .rest import handle_request, is_asnity_path
from .rooms import PROTOCOL, namespace_of, room_channel

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


class AsnityMount(Mount):
    """Asnity (seed 002): its REST API, and its chats rendered to rooms."""

    name = PROTOCOL

    def claims_request(self, request: HttpRequest) -> bool:
        return is_asnity_path(request.path)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return handle_request(request, env)

    def error_response(self, status: int, message: str) -> HttpResponse:
        return error_response(status, message)

    def render(self, change: Change | DocumentChange) -> Sequence[Deliver]:
        if type(change) is not Change:
            return ()
        delivery = render_change(change)
        return (delivery,) if delivery is not None else ()
