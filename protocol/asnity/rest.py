"""Asnity's REST API under ``/api`` (asnity.md sections 1-3) as one pure action.

``handle_request`` routes a request the way the original Nest app does:
CORS preflight first; the body parsed before routing (a malformed JSON body
is 400 whatever the path); an unknown route or method 404 ``Cannot GET
/api/...``; then the JWT guard (here: a Bearer access token, ``satchel.protocol.tokens``),
401 ``{"statusCode":401,"message":"Unauthorized"}``; then the DTO's
validation (``validation``); then the route. The answer is wrapped in the
envelope, 201 for every POST (``nest``), and carries the ``Change`` of
every write the route made and the hub events that move sockets in and out
of rooms, in order - also when the route refused after writing something.

A route's input is the original's ``@ReceivedData()``: the body, the query
and the path parameters merged, except that here the path parameters win
over the query (the original let ``?channel_id=`` override the path); the
acting user always comes from the token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, split_path
from ..mounts import HttpOutcome
from ..operations import Action
from . import accounts, channels, chats, communities, users
from .model import ORIGIN_HTTP
from .nest import (
    NestError,
    cors_headers,
    guard_failure,
    json_body,
    ok,
    preflight,
    query_params,
    route_not_found,
)
from .store import Context
from ..tokens import bearer_user

__all__ = ["PREFIX", "ROUTES", "Route", "handle_request", "is_asnity_path"]

#: Every Asnity route is under this path (Nest's ``api`` prefixes).
PREFIX = "/api"

Handler = Callable[[Context, dict[str, Any]], Iterator[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One route: method, path pattern (``:name`` segments are parameters),
    its action, and whether it needs a Bearer access token."""

    method: str
    pattern: tuple[str, ...]
    handler: Handler
    guarded: bool = True


def _route(method: str, path: str, handler: Handler, guarded: bool = True) -> Route:
    return Route(method, tuple(path.strip("/").split("/")), handler, guarded)


#: Every route of the API, as the original's controllers declare them.
ROUTES: tuple[Route, ...] = (
    _route("POST", "api/user/auth/signup", accounts.signup, guarded=False),
    _route("POST", "api/user/auth/signin", accounts.signin, guarded=False),
    _route("POST", "api/user/auth/refresh", accounts.refresh, guarded=False),  # its guard is the cookie
    _route("GET", "api/user/auth/me", accounts.me),
    _route("POST", "api/user/auth/signout", accounts.signout),
    _route("POST", "api/community", communities.create),
    _route("GET", "api/communities", communities.list_mine),
    _route("POST", "api/communities/:community_id/users", communities.add_users),
    _route("DELETE", "api/communities/:community_id", communities.delete),
    _route("GET", "api/communities/:community_id/users", communities.users),
    _route("DELETE", "api/communities/:community_id/me", communities.leave),
    _route("PATCH", "api/communities/:community_id/settings", communities.settings),
    _route("POST", "api/channel", channels.create),
    _route("PATCH", "api/channels/:channel_id/settings", channels.settings),
    _route("DELETE", "api/channels/:channel_id/me", channels.leave),
    _route("GET", "api/channels/:channel_id", channels.get),
    _route("DELETE", "api/channels/:channel_id", channels.delete),
    _route("POST", "api/channels/:channel_id/users", channels.invite),
    _route("PATCH", "api/channels/:channel_id/lastRead", channels.last_read),
    _route("POST", "api/channels/:channel_id", channels.join),
    _route("POST", "api/channels/:channel_id/chat", chats.post_route),
    _route("GET", "api/channels/:channel_id/chat", chats.page_route),
    _route("GET", "api/channels/:channel_id/unread-chat", chats.unread_route),
    _route("PATCH", "api/channels/:channel_id/chats/:chat_id", chats.modify_route),
    _route("DELETE", "api/channels/:channel_id/chats/:chat_id", chats.delete_route),
    _route("POST", "api/user/following/:followId", users.follow),
    _route("GET", "api/user/followers", users.followers),
    _route("GET", "api/user/followings", users.followings),
    _route("PATCH", "api/user/settings", users.settings),
    _route("GET", "api/users", users.search),
)


def is_asnity_path(path: str) -> bool:
    """Whether a (normalized) path is Asnity's: ``/api`` or under it."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def _match(method: str, segments: list[str]) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method != method or len(route.pattern) != len(segments):
            continue
        params: dict[str, str] = {}
        for part, segment in zip(route.pattern, segments):
            if part.startswith(":"):
                params[part[1:]] = segment
            elif part != segment:
                break
        else:
            return route, params
    return None


def handle_request(request: HttpRequest, env: Environment) -> Action[HttpOutcome]:
    """Answer one request under ``/api``: the response and the events of its writes."""
    if request.method == "OPTIONS":
        return HttpOutcome(preflight(request))
    method = "GET" if request.method == "HEAD" else request.method
    ctx = Context(env, ORIGIN_HTTP, request=request)
    try:
        body = json_body(request)
        found = _match(method, split_path(request.path))
        if found is None:
            raise route_not_found(request.method, request.target)
        route, params = found
        if route.guarded:
            ctx.user = yield from bearer_user(request, env)
            if ctx.user is None:
                raise guard_failure()
        result = yield from route.handler(ctx, {**body, **query_params(request), **params})
        response = ok(method, result, ctx.headers)
    except NestError as refusal:
        response = refusal.response()
    except RemoteProtocolError as refusal:
        response = NestError(refusal.status, refusal.message).response()
    response.headers.extend(cors_headers(request))
    return HttpOutcome(response, ctx.events)
