"""The resource subscriptions' mount (seed 004): ``/realtime`` and under it.

``rest`` answers the REST API (entries and the status), ``websocket`` the
websocket at ``/realtime`` and the rendering of every change - records,
entries and inbox documents - for its subscribers. This file wires them to
the seam (``satchel.protocol.mounts``).

Besides configuration the mount keeps three things that are not per
connection: the ``Stats`` the status reports, the ``VersionClock`` of the
resources without a stored version (collections, documents) and the
``History`` of every resource's last updates, for resume after reconnect.
All belong to this process, like the hub's registries.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..changes import Change, DocumentChange, EntryChange
from ..channels import Deliver
from ..environment import Environment
from ..http import HttpRequest, HttpResponse
from ..mounts import Accepted, HttpOutcome, Mount, RenderContext, UploadForm
from ..operations import Action
from ..permissions import Accountability
from . import rest, websocket
from .config import ResourcesConfig
from .frames import error_frame
from .history import History
from .versions import VersionClock

__all__ = ["ResourcesMount", "PROTOCOL"]

PROTOCOL = websocket.PROTOCOL


class ResourcesMount(Mount):
    """Resource subscriptions (seed 004): entries over REST, and the websocket
    on which kvStore, liveConfig, collection and document resources are
    subscribed to."""

    name = PROTOCOL
    paths = ((f"{rest.PATH} (websocket)", "resource subscriptions"),
             (f"{rest.PATH}/kv, {rest.PATH}/live-config", "key-value store and live config REST"),
             (f"{rest.PATH}/status", "service health"))

    def __init__(self, config: ResourcesConfig | None = None) -> None:
        self.config = config or ResourcesConfig()
        self.stats = websocket.Stats()
        self.versions = VersionClock()
        self.history = History(self.config.history_size, self.config.history_bytes, self.config.history_resources)

    def claims_request(self, request: HttpRequest) -> bool:
        return rest.is_resources_path(request.path)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return rest.handle_request(request, self.config, self.stats, env)

    def error_response(self, status: int, message: str) -> HttpResponse:
        return rest.error_response(status, message)

    def claims_upgrade(self, request: HttpRequest) -> bool:
        return request.path == rest.PATH

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Action[Accepted | HttpResponse]:
        return websocket.accept(request, connection, self.config, self.stats, env)

    def handle_message(self, state: Any, message: str | bytes, env: Environment) -> Action[list[Any]]:
        return websocket.handle_message(state, message, self.config, self.stats, self.versions, self.history, env)

    def closed(self, state: Any) -> list[Any]:
        return websocket.closed(state, self.stats)

    def role_changed(self, state: Any, role: str) -> Any:
        # Its subscribes and every update it is sent follow the new role at once.
        if state.who.user is not None:
            state.who = Accountability(state.who.user, role)
        return state

    def deadline_ms(self, state: Any) -> int | None:
        return websocket.deadline_ms(state)

    def on_timer(self, state: Any, env: Environment) -> Action[list[Any]]:
        return websocket.expired(state, env.now_ms())
        yield  # an action is a generator

    def internal_error(self, state: Any) -> bytes | None:
        return error_frame("Internal error", "internal_error", "the server failed to answer this message")

    def unavailable(self, state: Any, message: str | bytes) -> bytes | None:
        # The code its REST answer (503) has: a client retries either the same way.
        return error_frame("Service unavailable", "unavailable", "the store cannot be reached now; try again")

    def render(self, change: Change | DocumentChange | EntryChange, context: RenderContext) -> Sequence[Deliver]:
        return websocket.render(change, context, self.config, self.versions, self.history)
