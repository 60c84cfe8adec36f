"""Asnity's socket server on Satchel's Socket.IO layer (asnity.md section 5).

``AsnityNamespaces`` is the ``NamespaceHandler`` of every community
namespace, ``/socket/commu-<communityId>``: a CONNECT is admitted only with
a live access token (``auth.token``, or the ``token`` header of the
handshake, as the original reads it) of a member of the community - else
``connect_error`` with "Unauthorized", "Forbidden" or "Invalid namespace"
(bug 2: the original checked neither the community nor membership). Each
event is answered by ``socket_events.handle_event``, which authenticates the
token again first (bug 4) and always acks what acks (bug 3). The socket's
rooms are the hub channels of ``rooms``, so REST actions move sockets in and
out of them too (bug 5).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..channels import Channel
from ..environment import Environment
from ..http import HttpRequest
from ..operations import Action
from ..socketio.server import Admitted, NamespaceHandler, NamespaceSocket, Refused, Reply
from .rooms import PROTOCOL, community_of_namespace, namespace_channel, room_channel
from .socket_events import admit, handle_event, unavailable

__all__ = ["AsnityNamespaces", "NamespaceState"]


class NamespaceState(msgspec.Struct):
    """What a socket in a community namespace keeps: the token it
    authenticated with (checked again on every event) and its community."""

    token: str
    community_id: str


def _token(handshake: HttpRequest, auth: dict[str, Any] | None) -> str | None:
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        token = handshake.header("token")
    return token or None


class AsnityNamespaces(NamespaceHandler):
    """Every ``/socket/commu-<id>`` namespace."""

    protocol = PROTOCOL
    # The original reads the token from ``auth`` or this handshake header.
    handshake_headers = frozenset({"token"})

    def matches(self, nsp: str) -> bool:
        return community_of_namespace(nsp) is not None

    def namespace_channel(self, nsp: str) -> Channel:
        community_id = community_of_namespace(nsp)
        assert community_id is not None  # only matched namespaces get here
        return namespace_channel(community_id)

    def room_channel(self, nsp: str, room: str) -> Channel:
        community_id = community_of_namespace(nsp)
        assert community_id is not None
        return room_channel(community_id, room)

    def connect(self, handshake: HttpRequest, nsp: str, auth: dict[str, Any] | None, socket_id: str,
                connection: str, env: Environment) -> Action[Admitted | Refused]:
        token = _token(handshake, auth)
        admission = yield from admit(token, nsp, connection, env)
        if admission.error is not None or admission.user is None or admission.community_id is None:
            return Refused(admission.error or "Unauthorized")
        assert token is not None
        return Admitted(admission.user.id, NamespaceState(token, admission.community_id), events=admission.events)

    def event(self, socket: NamespaceSocket, name: str, args: list[Any], wants_ack: bool,
              env: Environment) -> Action[Reply]:
        state: NamespaceState = socket.state
        data = args[0] if args else None
        outcome = yield from handle_event(state.token, state.community_id, socket.connection, name, data, env)
        # An event without an ack value (join) still acks, with no arguments,
        # when the client asked for one: the original left such a client waiting.
        ack = [outcome.ack] if outcome.ack is not None else ([] if wants_ack else None)
        return Reply(ack=ack, emits=outcome.emits, events=outcome.events)

    def unavailable(self, socket: NamespaceSocket, name: str, wants_ack: bool, message: str) -> Reply:
        # The original's own failure: its ack (written/isSuccess false) and failed-to-send-message.
        outcome = unavailable(name, message)
        ack = [outcome.ack] if outcome.ack is not None else ([] if wants_ack else None)
        return Reply(ack=ack, emits=outcome.emits)
