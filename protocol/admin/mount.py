"""The administration mount: it claims ``/_/api`` (``api``) and the change
stream's websocket at ``/_/api/live`` (``live``), and renders every change
for that stream. It comes first in the mount table, so no other
protocol's path can shadow it."""

from __future__ import annotations

from typing import Any, Sequence

from ..changes import Change, DocumentChange, EntryChange
from ..channels import Deliver
from ..environment import Environment
from ..http import HttpRequest, HttpResponse
from ..mounts import Accepted, Event, HttpOutcome, Mount, RenderContext, UploadForm
from ..operations import Action
from . import api, live

__all__ = ["AdminMount", "PROTOCOL"]

#: The mount's name.
PROTOCOL = "admin"


class AdminMount(Mount):
    """``/_/api``: the rule set, users, roles, static tokens and the data
    model as an administrator sees it (``api``); ``/_/api/live``: every
    change, for the console (``live``)."""

    name = PROTOCOL
    paths = (("/_/api", "the administration REST API (admins' Bearer tokens)"),
             (f"{live.LIVE_PATH} (websocket)", "every change and the connections, for the console"))

    def claims_request(self, request: HttpRequest) -> bool:
        return api.is_admin_path(request.path)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return api.handle_request(request, env)

    def error_response(self, status: int, message: str) -> HttpResponse:
        return api.error_response(status, message)

    # -- the change stream ------------------------------------------------------------

    def claims_upgrade(self, request: HttpRequest) -> bool:
        return request.path == live.LIVE_PATH

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Action[Accepted]:
        return Accepted(live.accept(connection), None)
        yield  # an action is a generator

    def handle_message(self, state: Any, message: str | bytes, env: Environment) -> Action[list[Event]]:
        return (yield from live.handle_message(PROTOCOL, state, message, env))

    def role_changed(self, state: Any, role: str) -> Any:
        return live.role_changed(state, role)

    def deadline_ms(self, state: Any) -> int | None:
        return live.deadline_ms(state)

    def on_timer(self, state: Any, env: Environment) -> Action[list[Event]]:
        return (yield from live.on_timer(PROTOCOL, state, env))

    def render(self, change: Change | DocumentChange | EntryChange, context: RenderContext) -> Sequence[Deliver]:
        return live.render(PROTOCOL, change, context)
