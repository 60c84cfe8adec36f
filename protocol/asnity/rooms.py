"""The names Asnity's sockets are addressed by (asnity.md section 5).

One place for them, so that the REST actions (which move a user's sockets in
and out of rooms), the socket events and the renderer of chat changes all
say the same thing:

- ``PROTOCOL``: the name Asnity's connections are registered under in the
  hub (``Deliver.protocol``, ``Subscribe.protocol``, ...).
- A community is a Socket.IO namespace, ``/socket/commu-<communityId>``
  (``namespace_of``). Every socket admitted to a namespace is subscribed to
  its ``namespace_channel``, so "the sockets of user U in namespace N" is the
  audience ``Audience(channel=namespace_channel(N), user_id=U)``.
- A channel is a room of its community's namespace (``room_channel``): the
  sockets that receive ``new-chat``, ``modify-chat`` and ``delete-chat``.
"""

from __future__ import annotations

import re

from ..channels import Audience, Channel

__all__ = [
    "NAMESPACE_PREFIX",
    "PROTOCOL",
    "community_of_namespace",
    "namespace_channel",
    "namespace_of",
    "room_channel",
    "user_in_namespace",
]

#: The name Asnity's connections are registered under in the hub.
PROTOCOL = "asnity"

#: What every community namespace starts with.
NAMESPACE_PREFIX = "/socket/commu-"

# The original's namespace regex, /\/socket\/commu-.+/, is unanchored; here
# the whole namespace must be the prefix and one id (checked by the caller).
_NAMESPACE = re.compile(r"/socket/commu-([^/?#]+)\Z")

# Channel types of the hub: a namespace's members, and a room in a namespace.
_NAMESPACE_TYPE = "asnity-namespace"
_ROOM_TYPE = "asnity-room"


def namespace_of(community_id: str) -> str:
    """The Socket.IO namespace of a community: ``/socket/commu-<id>``."""
    return NAMESPACE_PREFIX + community_id


def community_of_namespace(namespace: str) -> str | None:
    """The community id a namespace names, or ``None`` if it names none
    (the socket layer answers CONNECT_ERROR ``{"message":"Invalid namespace"}``)."""
    match = _NAMESPACE.match(namespace)
    return match.group(1) if match else None


def namespace_channel(community_id: str) -> Channel:
    """The hub channel every socket admitted to the community's namespace
    is subscribed to."""
    return Channel(_NAMESPACE_TYPE, namespace_of(community_id))


def room_channel(community_id: str, channel_id: str) -> Channel:
    """The hub channel of an Asnity channel's room in its community's namespace."""
    return Channel(_ROOM_TYPE, f"{namespace_of(community_id)}#{channel_id}")


def user_in_namespace(community_id: str, user_id: str) -> Audience:
    """Every socket of ``user_id`` in the community's namespace."""
    return Audience(channel=namespace_channel(community_id), user_id=user_id)
