"""The inbox documents' mount: ``/backend/documents`` and the UDP datagrams.

No API key on these paths: the tokens are the authorization. The mount
takes no websocket upgrades and renders no changes yet: the resource
subscriptions of seed 004 will show documents live.
"""

from __future__ import annotations

from typing import Sequence

from ..environment import Environment
from ..http import HttpRequest
from ..mounts import DatagramOutcome, HttpOutcome, Mount, UploadForm
from ..operations import Action
from .config import InboxConfig

from .datagrams import handle_datagram, handle_datagrams, new_replay_guard
from .replay import ReplayGuard
from .rest import cors_headers, handle_request, is_inbox_path

__all__ = ["InboxMount", "PROTOCOL"]

#: The name the inbox mount is registered under.
PROTOCOL = "inbox"


class InboxMount(Mount):
    """Inbox documents (seed 001) over HTTP and UDP."""

    name = PROTOCOL
    handles_datagrams = True
    paths = (("/backend/documents/{token}", "token-addressed documents and inbox messages"),
             ("udp (the same port)", "inbox messages as authenticated datagrams"))

    def __init__(self, config: InboxConfig | None = None) -> None:
        self.config = config or InboxConfig()

    def claims_request(self, request: HttpRequest) -> bool:
        return is_inbox_path(request.path)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return handle_request(request, self.config, env)

    def cors_headers(self, request: HttpRequest) -> list[tuple[str, str]]:
        return cors_headers(request, self.config)

    def datagram_state(self, start_ms: int) -> ReplayGuard:
        # One replay memory per server, from its start: a datagram older than
        # the server is refused (replay.py).
        return new_replay_guard(self.config, start_ms)

    def handle_datagram(self, state: ReplayGuard, datagram: bytes, env: Environment) -> Action[DatagramOutcome]:
        return handle_datagram(datagram, state, self.config, env)

    def handle_datagrams(self, state: ReplayGuard, datagrams: Sequence[bytes], env: Environment) -> Action[list[DatagramOutcome]]:
        return handle_datagrams(datagrams, state, self.config, env)
