"""Inbox documents (seed 001): token-addressed JSON documents over HTTP, and
the messages of inbox documents over HTTP and UDP, as pure actions.

- ``InboxMount`` is the protocol's mount (``satchel.protocol.mounts``).
- ``handle_request(request, config, env) -> Action[HttpOutcome]`` answers
  every request under ``/backend/documents`` (``is_inbox_path``).
- ``handle_datagram(datagram, guard, config, env) -> Action[DatagramOutcome]``
  answers one UDP datagram (layout in ``datagrams``); ``guard`` comes from
  ``new_replay_guard(config, start_ms)``, once per server;
  ``handle_datagrams(datagrams, guard, config, env)`` answers a batch read
  together, with one store write.
- ``merge`` holds the message merge rule as pure functions.

Both actions return the ``DocumentChange`` of each write they made.
"""

from . import datagrams, merge, replay, tokens
from .config import MAX_MESSAGE_BYTES, MAX_REVISION, InboxConfig
from .datagrams import ORIGIN_UDP, decode_answer, encode_request, handle_datagram, handle_datagrams, new_replay_guard
from .documents import MESSAGES_KEY, is_inbox
from .replay import ReplayGuard
from .mount import PROTOCOL, InboxMount
from .rest import ORIGIN_HTTP, PATH, cors_headers, handle_request, is_inbox_path

__all__ = [
    "datagrams",
    "merge",
    "replay",
    "tokens",
    "InboxConfig",
    "MAX_MESSAGE_BYTES",
    "MAX_REVISION",
    "MESSAGES_KEY",
    "is_inbox",
    "PATH",
    "ORIGIN_HTTP",
    "ORIGIN_UDP",
    "InboxMount",
    "PROTOCOL",
    "is_inbox_path",
    "cors_headers",
    "handle_request",
    "ReplayGuard",
    "new_replay_guard",
    "handle_datagram",
    "handle_datagrams",
    "encode_request",
    "decode_answer",
]
