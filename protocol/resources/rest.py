"""The resource protocol's REST API (seed 004, issue 12 part 1).

| request | answer |
|---|---|
| ``PUT /realtime/kv/{id}`` (body: any JSON value) | 200 ``{"id","data","version"}`` |
| ``GET /realtime/kv/{id}`` | 200 ``{"id","data","version"}``, 404 when absent |
| ``DELETE /realtime/kv/{id}`` | 200 ``{"id","data","version"}`` (the value deleted, the deletion's version), 404 |
| ``GET /realtime/kv?prefix=P&after=ID&limit=N`` | 200 ``{"entries":[{"id","data","version"}], "next": ID or null}`` |
| ``PUT /realtime/live-config/{id}``, ``GET /realtime/live-config/{id}`` | as for ``kv`` |
| ``GET /realtime/status`` | 200 ``{"status":"ok","connections","subscriptions"}`` |

``{id}`` is the rest of the path, percent-decoded: ``/realtime/kv/World:
kvstoreClient:testKey`` and ``/realtime/kv/a/b`` (id ``a/b``) both work;
an id with doubled or trailing slashes, ``?`` or ``#`` needs them as
``%2F``, ``%3F``, ``%23``. Scope: the ``x-m2-organization`` /
``x-m2-project`` headers (``entries``). Authorization: ``Authorization:
Bearer <token>`` or ``?access_token=`` (``tokens.authenticate``: access
tokens of ``/auth/login`` and of Asnity's signin, static tokens); no token
is the public role, which the default rules allow nothing; a token that is
not valid answers 401.

Errors are ``{"error": title, "code", "message"}`` (``frames.error_body``):
400 ``invalid_request`` (not JSON, a bad id, a bad header), 401
``unauthorized``, 403 ``forbidden`` (the rules), 404 ``not_found``, 405
``method_not_allowed``, 409 ``conflict``, 413 ``too_large`` (a value over
``max_value_bytes``, a body over the server's limit), 426
``upgrade_required`` (``/realtime`` without a websocket upgrade).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec

from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, json_response
from ..mounts import HttpOutcome
from ..operations import Action, Entry, GetEntry
from ..permissions import Accountability, CurrentRules, RuleSet
from ..tokens import authenticate, presented_token
from .config import KV_STORE, LIVE_CONFIG, ResourcesConfig
from .entries import (
    ResourceError,
    check_value,
    delete_entry,
    invalid,
    list_entries,
    put_entry,
    read_entry,
    scope_of,
    validate_entry_id,
)
from .frames import error_body
from .versions import format_version
from .websocket import Stats

__all__ = ["PATH", "is_resources_path", "handle_request", "error_response"]

#: Where the protocol lives: the websocket, and the REST API under it.
PATH = "/realtime"
_SPACES = {"kv": KV_STORE, "live-config": LIVE_CONFIG}
_TITLES = {400: ("Invalid request", "invalid_request"), 401: ("Unauthorized", "unauthorized"),
           403: ("Forbidden", "forbidden"), 404: ("Not found", "not_found"),
           405: ("Method not allowed", "method_not_allowed"), 409: ("Conflict", "conflict"),
           413: ("Payload too large", "too_large"), 426: ("Upgrade required", "upgrade_required"),
           431: ("Headers too large", "too_large"), 503: ("Service unavailable", "unavailable")}


def is_resources_path(path: str) -> bool:
    """Whether ``path`` (normalized) is this protocol's."""
    return path == PATH or path.startswith(PATH + "/")


def error_response(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    """An error in this protocol's shape."""
    title, code = _TITLES.get(status, ("Error", "internal_error" if status >= 500 else "error"))
    return json_response(status, error_body(title, code, message), headers)


def _method_not_allowed(allowed: str) -> HttpOutcome:
    return HttpOutcome(error_response(405, f"use {allowed}", [("allow", allowed)]))


def _shown(entry: Entry) -> dict[str, Any]:
    return {"id": entry.id, "data": msgspec.Raw(entry.value if entry.value is not None else b"null"),
            "version": format_version(entry.version)}


def _who(request: HttpRequest, env: Environment) -> Action[Accountability]:
    if presented_token(request) is None:
        return Accountability()
    bearer = yield from authenticate(request, env)
    if bearer is None:
        raise ResourceError(401, "Unauthorized", "unauthorized", "Invalid, expired or revoked token")
    return bearer.accountability


def _params(query: str) -> dict[str, str]:
    return dict(reversed(parse_qsl(query, keep_blank_values=True)))  # the first of each name wins


def handle_request(request: HttpRequest, config: ResourcesConfig, stats: Stats,
                   env: Environment) -> Action[HttpOutcome]:
    """Answer a request under ``/realtime`` (the table in the module docstring)."""
    try:
        return (yield from _route(request, config, stats, env))
    except ResourceError as exc:
        return HttpOutcome(json_response(exc.status, error_body(exc.title, exc.code, exc.message)))
    except RemoteProtocolError as exc:  # permissions.Forbidden
        return HttpOutcome(error_response(exc.status, exc.message))


def _route(request: HttpRequest, config: ResourcesConfig, stats: Stats, env: Environment) -> Action[HttpOutcome]:
    path = request.path
    method = request.method
    if path == PATH:
        return HttpOutcome(error_response(426, "/realtime is a websocket: connect with a websocket client",
                                          [("upgrade", "websocket")]))
    rest = path[len(PATH) + 1:]
    if rest == "status":
        if method not in ("GET", "HEAD"):
            return _method_not_allowed("GET")
        # A point read proves the store answers.
        yield GetEntry(KV_STORE, "", "", "status")
        return HttpOutcome(json_response(200, {"status": "ok", "connections": stats.connections,
                                               "subscriptions": stats.subscriptions}))
    area, slash, raw_id = rest.partition("/")
    space = _SPACES.get(area)
    if space is None:
        return HttpOutcome(error_response(404, "no such route: /realtime/kv/{id}, /realtime/live-config/{id}, "
                                               "/realtime/status"))
    scope = scope_of(request.header, config)
    if not slash:
        if space != KV_STORE:
            return HttpOutcome(error_response(404, "live config is read and written by id: /realtime/live-config/{id}"))
        if method != "GET":
            return _method_not_allowed("GET")
        return (yield from _list(request, scope, config, env))
    try:
        decoded_id = unquote(raw_id, errors="strict")
    except UnicodeDecodeError:
        raise invalid("the id is not percent-encoded UTF-8") from None
    entry_id = validate_entry_id(decoded_id, config)
    allowed = "GET, PUT, DELETE" if space == KV_STORE else "GET, PUT"
    if method not in allowed.split(", "):
        return _method_not_allowed(allowed)
    who = yield from _who(request, env)
    rules: RuleSet = yield CurrentRules()
    if method == "GET":
        entry = yield from read_entry(space, scope, entry_id, who, rules, env)
        if entry is None:
            return HttpOutcome(error_response(404, f"no {space} entry {entry_id[:64]!r}"))
        return HttpOutcome(json_response(200, _shown(entry)))
    if method == "PUT":
        if not request.body:
            raise invalid("the body is the value: one JSON value")
        value = check_value(request.body, config)
        entry, change = yield from put_entry(space, scope, entry_id, value, who, rules, env)
        return HttpOutcome(json_response(200, _shown(entry)), [change])
    deleted = yield from delete_entry(space, scope, entry_id, who, rules, env)
    if deleted is None:
        return HttpOutcome(error_response(404, f"no {space} entry {entry_id[:64]!r}"))
    before, change = deleted
    return HttpOutcome(json_response(200, {**_shown(before), "version": format_version(change.version)}), [change])


def _list(request: HttpRequest, scope: Any, config: ResourcesConfig, env: Environment) -> Action[HttpOutcome]:
    params = _params(request.query)
    prefix = params.get("prefix", "")
    after = params.get("after", "")
    if len(prefix) > config.max_id_chars or len(after) > config.max_id_chars:
        raise invalid(f"prefix and after are at most {config.max_id_chars} characters")
    try:
        limit = int(params.get("limit", config.list_limit))
    except ValueError:
        raise invalid("limit is a number") from None
    if not 1 <= limit <= config.max_list_limit:
        raise invalid(f"limit is 1 to {config.max_list_limit}")
    who = yield from _who(request, env)
    rules: RuleSet = yield CurrentRules()
    page, following = yield from list_entries(KV_STORE, scope, prefix, after, limit, who, rules, env,
                                              config.max_list_bytes)
    return HttpOutcome(json_response(200, {"entries": [_shown(entry) for entry in page], "next": following}))
