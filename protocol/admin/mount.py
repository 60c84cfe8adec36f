"""The administration API's mount: it claims ``/_/api`` (``api``) and
nothing else - no websocket, no rendering. It comes first in the mount
table, so no other protocol's path can shadow it."""

from __future__ import annotations

from ..environment import Environment
from ..http import HttpRequest, HttpResponse
from ..mounts import HttpOutcome, Mount, UploadForm
from ..operations import Action
from . import api

__all__ = ["AdminMount", "PROTOCOL"]

#: The mount's name.
PROTOCOL = "admin"


class AdminMount(Mount):
    """``/_/api``: the rule set, users' roles and static tokens (``api``)."""

    name = PROTOCOL
    paths = (("/_/api", "the administration REST API (admins' Bearer tokens)"),
             ("/_/api/live", "websocket: every change, for the console"))

    def claims_request(self, request: HttpRequest) -> bool:
        return api.is_admin_path(request.path)

    def handle_request(self, request: HttpRequest, env: Environment, form: UploadForm | None = None) -> Action[HttpOutcome]:
        return api.handle_request(request, env)

    def error_response(self, status: int, message: str) -> HttpResponse:
        return api.error_response(status, message)
