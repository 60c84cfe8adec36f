"""The Directus REST API that ``@directus/sdk``'s ``rest()`` and
``authentication('json')`` speak (``../shared/protocols/directus.md``
section 3; docs.directus.io, Reference > Items and Authentication).

Routes (every answer JSON; success in the ``{"data": ...}`` envelope,
failure as ``{"errors": [{"message", "extensions": {"code"}}]}``)::

    POST   /auth/login    {email, password, mode?: "json", otp?}   -> {data: {access_token, expires, refresh_token}}
    POST   /auth/refresh  {refresh_token, mode?: "json"}           -> the same (the refresh token rotates)
    POST   /auth/logout   {refresh_token, mode?: "json"}           -> 204 (revokes it)
    GET    /users/me      ?fields=                                  -> {data: {id, email, role}}
    GET    /items/{c}     ?fields&filter&search&sort&limit&offset&page&meta -> {data: [...], meta?}
    POST   /items/{c}     {..} | [{..}, ...]                        -> {data: item | [items]}
    PATCH  /items/{c}     {keys, data} | [{id, ..}, ...] | {query, data} -> {data: [items]}
    DELETE /items/{c}     [keys] | {keys} | {query}                 -> 204
    GET    /items/{c}/{id}                                          -> {data: item}
    PATCH  /items/{c}/{id} {..}                                     -> {data: item}
    DELETE /items/{c}/{id}                                          -> 204

Who is asking: the Bearer of ``satchel.protocol.tokens.authenticate`` - an
access token of ``/auth/login`` (or of Asnity's signin) or a static token,
in ``Authorization: Bearer``, ``?access_token=`` or ``?api_token=``. No
token is the ``public`` role; a token that is not valid is 401
``INVALID_CREDENTIALS`` (Directus does not fall back to public either).
Every read goes through ``permissions.read_query`` and every write through
``permissions.check_write`` (``items``); as in Directus, a write whose
result the user may not read answers 204 with no body.

Query parameters are read as Directus reads them (its ``qs`` parser and
``sanitizeQuery``): ``fields=id,title`` or ``fields[]=id&fields[]=title``,
``filter`` as JSON or as brackets (``filter[title][_eq]=hi`` - bracket
values stay strings; send JSON for numbers and booleans), ``sort=-date``,
``limit``, ``offset``, ``page``, ``search``, ``meta=total_count``; any other
parameter (``access_token``...) is ignored. A query Satchel cannot run is
400 ``INVALID_QUERY``; an unknown route or method 404 ``ROUTE_NOT_FOUND``.

Paths. Backpack answers every path the mounts before it leave, so the
Directus mount claims only its own: ``/auth/login|refresh|logout``,
``/users/me`` and ``/items/...`` - except ``/items/<24 hex digits>``, which
is a record of a Backpack collection named ``items`` (a Directus collection
is never named like a record id). ``/items`` itself stays Backpack's.

CORS: a request with an ``Origin`` has it echoed (no credentials: Bearer
tokens are not ambient), and preflights are answered, so a page on another
origin can use the SDK.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec

from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, json_response, split_path
from ..mounts import HttpOutcome
from ..operations import Action
from ..permissions import Accountability, CurrentRules, RuleSet
from ..query import InvalidQuery, Query, parse_fields, parse_query
from ..records import is_object_id
from ..tokens import Bearer, authenticate, presented_token, request_token
from . import auth, items
from .config import DirectusConfig
from .errors import error_for, invalid_credentials, invalid_payload, route_not_found
from .errors import error_response as _error_response

__all__ = ["is_directus_path", "handle_request", "error_response", "query_params", "QUERY_PARAMETERS"]

_decode = msgspec.json.Decoder().decode

#: The query parameters Directus reads (``sanitizeQuery``); others are ignored.
QUERY_PARAMETERS = frozenset((
    "fields", "filter", "search", "sort", "limit", "offset", "page", "meta",
    "deep", "alias", "aggregate", "groupBy", "group", "export", "version", "versionRaw", "backlink",
))
# Parameters that may repeat (``fields=a&fields=b``), as lists.
_LISTS = frozenset(("fields", "sort", "meta"))
_MAX_PARAMETERS = 1000
_MAX_BRACKETS = 10
_AUTH_ROUTES = frozenset(("login", "refresh", "logout"))
_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"


def is_directus_path(path: str) -> bool:
    """Whether ``path`` (normalized) is one of the Directus routes (see the module docstring)."""
    return is_directus_segments(split_path(path))


def is_directus_segments(segments: list[str]) -> bool:
    """``is_directus_path`` of a path split already (``HttpRequest.segments``)."""
    if len(segments) < 2:
        return False
    head = segments[0]
    if head == "items":
        return len(segments) > 2 or not is_object_id(segments[1])
    if head == "auth":
        return len(segments) == 2 and segments[1] in _AUTH_ROUTES
    return head == "users" and segments[1] == "me" and len(segments) == 2


def error_response(status: int, message: str) -> HttpResponse:
    """A transport-level error (a body too large...) in Directus's shape."""
    return _error_response(status, message)


# -- the query string ----------------------------------------------------------------


def _place(node: Any, segments: list[str], value: str, name: str) -> Any:
    """Put ``value`` at ``segments`` below ``node`` (``qs``'s bracket syntax:
    ``''`` and digits index a list, anything else keys an object)."""
    segment, rest = segments[0], segments[1:]

    def fresh() -> Any:
        if not rest:
            return value
        return [] if rest[0] == "" or rest[0].isdigit() else {}

    if isinstance(node, list):
        if segment != "" and not segment.isdigit():
            raise InvalidQuery(f'"{name}" mixes a list and an object')
        index = len(node) if segment == "" else int(segment)
        if index >= len(node):
            node.append(fresh())
            index = len(node) - 1
    elif isinstance(node, dict):
        if segment not in node:
            node[segment] = fresh()
        index = segment  # type: ignore[assignment]
    else:
        raise InvalidQuery(f'"{name}" is given twice')
    if not rest:
        if node[index] is not value:
            raise InvalidQuery(f'"{name}" is given twice')
        return node
    node[index] = _place(node[index], rest, value, name)
    return node


def query_params(query: str) -> dict[str, Any]:
    """The Directus query parameters of a URL's query string, as
    ``parse_query`` takes them; ``INVALID_QUERY`` for a malformed one."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=_MAX_PARAMETERS)
    except ValueError:
        raise InvalidQuery(f"the query string has more than {_MAX_PARAMETERS} parameters") from None
    params: dict[str, Any] = {}
    for key, value in pairs:
        name, bracket, tail = key.partition("[")
        if name not in QUERY_PARAMETERS:
            continue
        if not bracket:
            if name not in params:
                params[name] = value
            elif name in _LISTS and isinstance(params[name], (str, list)):
                params[name] = [*params[name], value] if isinstance(params[name], list) else [params[name], value]
            else:
                raise InvalidQuery(f'"{name}" is given twice')
            continue
        if not tail.endswith("]"):
            raise InvalidQuery(f'"{key[:64]}" is not a query parameter')
        segments = tail[:-1].split("][")
        if len(segments) > _MAX_BRACKETS or any("[" in s or "]" in s for s in segments):
            raise InvalidQuery(f'"{key[:64]}" is nested too deeply or malformed')
        if name not in params:
            params[name] = [] if segments[0] == "" or segments[0].isdigit() else {}
        params[name] = _place(params[name], segments, value, name)
    return params


# -- requests ------------------------------------------------------------------------


def _cors(request: HttpRequest) -> list[tuple[str, str]]:
    origin = request.header("origin")
    if origin is None:
        return []
    return [("access-control-allow-origin", origin), ("vary", "Origin")]


def _preflight(request: HttpRequest) -> HttpResponse:
    headers = _cors(request)
    if headers:
        asked = request.header("access-control-request-headers") or "authorization, content-type"
        headers += [
            ("access-control-allow-methods", _METHODS),
            ("access-control-allow-headers", asked),
            ("access-control-max-age", "600"),
        ]
    return HttpResponse(204, headers)


def _body(request: HttpRequest) -> Any:
    """The JSON body (``None`` when empty), or ``INVALID_PAYLOAD``."""
    if not request.body.strip():
        return None
    try:
        return _decode(request.body)
    except (msgspec.DecodeError, RecursionError):
        raise invalid_payload("the body is not valid JSON") from None


def _data(value: Any, meta: dict[str, Any] | None = None) -> HttpResponse:
    body: dict[str, Any] = {"data": value}
    if meta:
        body["meta"] = meta
    return json_response(200, body)


def _empty() -> HttpResponse:
    return HttpResponse(204, [])


def handle_request(request: HttpRequest, config: DirectusConfig, env: Environment) -> Action[HttpOutcome]:
    """Answer one request on a Directus path (``is_directus_path``)."""
    if request.method == "OPTIONS":
        return HttpOutcome(_preflight(request))
    try:
        outcome = yield from _route(request, config, env)
    except RemoteProtocolError as exc:
        outcome = HttpOutcome(error_for(exc))
    outcome.response.headers.extend(_cors(request))
    return outcome


def _route(request: HttpRequest, config: DirectusConfig, env: Environment) -> Action[HttpOutcome]:
    segments = request.segments
    method = "GET" if request.method == "HEAD" else request.method
    if segments[0] == "auth":
        return (yield from _auth(segments[1], method, request, config, env))
    bearer = yield from _bearer(request, env)
    if segments[0] == "users":
        if method != "GET":
            raise route_not_found(request.path)
        return HttpOutcome(_me(bearer, query_params(request.query)))
    rules: RuleSet = yield CurrentRules()
    context = _Context(rules, bearer, env.now_ms())
    if len(segments) == 2:
        return (yield from _collection(method, segments[1], request, context, config, env))
    if len(segments) == 3:
        return (yield from _item(method, segments[1], segments[2], request, context, config, env))
    raise route_not_found(request.path)


def _bearer(request: HttpRequest, env: Environment) -> Action[Bearer | None]:
    """The request's Bearer; ``None`` for no token; 401 for a bad one."""
    if presented_token(request) is None:
        return None
    bearer = yield from authenticate(request, env)
    if bearer is None:
        raise invalid_credentials()
    return bearer


class _Context:
    """What every items route needs: the rules, who asks, the clock reading."""

    __slots__ = ("rules", "who", "now_ms", "user_fields")

    def __init__(self, rules: RuleSet, bearer: Bearer | None, now_ms: int) -> None:
        self.rules = rules
        self.who = bearer.accountability if bearer is not None else Accountability()
        self.now_ms = now_ms
        # $CURRENT_USER.<field> in a client's query: the account's own fields.
        self.user_fields = _user(bearer) if bearer is not None else None


def _user(bearer: Bearer) -> dict[str, Any]:
    user = bearer.user
    return {"id": user.id, "email": user.email, "role": user.role}


# -- /auth, /users/me ----------------------------------------------------------------


def _auth(name: str, method: str, request: HttpRequest, config: DirectusConfig, env: Environment) -> Action[HttpOutcome]:
    # The SDK's auth calls carry no Bearer to check; logout revokes the one it has.
    if method != "POST":
        raise route_not_found(request.path)
    body = _body(request)
    if name == "login":
        email, password = auth.login_body(body)
        tokens = yield from auth.login(email, password, config, env)
        return HttpOutcome(_data(tokens.data()))
    refresh_token = auth.refresh_body(body)
    if name == "refresh":
        tokens = yield from auth.refresh(refresh_token, config, env)
        return HttpOutcome(_data(tokens.data()))
    yield from auth.logout(refresh_token, request_token(request))
    return HttpOutcome(_empty())


def _me(bearer: Bearer | None, params: dict[str, Any]) -> HttpResponse:
    if bearer is None:
        raise invalid_credentials()
    me = _user(bearer)
    if "fields" in params:
        fields = parse_fields(params["fields"])
        if ("*",) not in fields:
            wanted = {path[0] for path in fields}
            me = {name: value for name, value in me.items() if name in wanted}
    return _data(me)


# -- /items ---------------------------------------------------------------------------


def _query(request: HttpRequest, config: DirectusConfig, *, paged: bool) -> Query:
    return parse_query(query_params(request.query), default_limit=config.query_limit_default if paged else None)


def _written(
    context: _Context, collection: str, records: list[dict[str, Any]], query: Query, one: bool
) -> HttpResponse:
    shown = items.read_back(context.rules, context.who, collection, records, query, now_ms=context.now_ms,
                            user_fields=context.user_fields)
    if shown is None or (one and not shown):
        return _empty()
    return _data(shown[0] if one else shown)


def _batch(value: Any, config: DirectusConfig) -> list[Any]:
    if len(value) > config.max_batch:
        raise invalid_payload(f"a request may name at most {config.max_batch} items")
    return value


def _collection(
    method: str, collection: str, request: HttpRequest, context: _Context, config: DirectusConfig, env: Environment
) -> Action[HttpOutcome]:
    rules, who = context.rules, context.who
    if method == "GET":
        query = _query(request, config, paged=True)
        result = yield from items.read_items(rules, who, collection, query, now_ms=context.now_ms,
                                             user_fields=context.user_fields)
        meta = {name: getattr(result, name) for name in query.meta}
        return HttpOutcome(_data(result.records, meta))
    if method not in ("POST", "PATCH", "DELETE"):
        raise route_not_found(request.path)
    query = _query(request, config, paged=False)
    body = _body(request)
    if method == "POST":
        one = not isinstance(body, list)
        payloads = [body if body is not None else {}] if one else _batch(body, config)
        records, changes = yield from items.create_items(rules, who, collection, payloads, env)
        return HttpOutcome(_written(context, collection, records, query, one), list(changes))
    if method == "PATCH":
        if isinstance(body, list):
            records, changes = yield from items.update_batch(rules, who, collection, _batch(body, config), env)
        else:
            if isinstance(body, dict) and ("keys" in body or "query" in body) and "data" not in body:
                raise invalid_payload('"data" is required: the fields to update')
            keys = yield from _keys(body, collection, context, config, verb="update")
            records, changes = yield from items.update_items(rules, who, collection, keys, body["data"], env)
        return HttpOutcome(_written(context, collection, records, query, False), list(changes))
    keys = yield from _keys(body, collection, context, config, verb="delete")
    _, changes = yield from items.delete_items(rules, who, collection, keys, env)
    return HttpOutcome(_empty(), list(changes))


def _keys(body: Any, collection: str, context: _Context, config: DirectusConfig, *, verb: str) -> Action[list[str]]:
    """The keys a batch update or delete names: a list, ``{keys}`` or ``{query}``."""
    if isinstance(body, list) and verb == "delete":
        return items.item_keys(body, config.max_batch)
    if isinstance(body, dict) and "keys" in body:
        return items.item_keys(body["keys"], config.max_batch)
    if isinstance(body, dict) and "query" in body:
        query = parse_query(body["query"], default_limit=None)
        return (yield from items.query_keys(context.rules, context.who, collection, query, now_ms=context.now_ms,
                                            max_batch=config.max_batch, user_fields=context.user_fields))
    shape = "a list of ids, " if verb == "delete" else "a list of items, "
    raise invalid_payload(f'to {verb} items, send {shape}{{"keys": [...]}} or {{"query": {{...}}}}')


def _item(
    method: str, collection: str, key: str, request: HttpRequest, context: _Context, config: DirectusConfig,
    env: Environment,
) -> Action[HttpOutcome]:
    rules, who = context.rules, context.who
    if method == "GET":
        query = _query(request, config, paged=False)
        item = yield from items.read_item(rules, who, collection, key, query, now_ms=context.now_ms,
                                          user_fields=context.user_fields)
        return HttpOutcome(_data(item))
    if method == "PATCH":
        query = _query(request, config, paged=False)
        body = _body(request)
        records, changes = yield from items.update_items(rules, who, collection, [key], body if body is not None else {},
                                                         env)
        return HttpOutcome(_written(context, collection, records, query, True), list(changes))
    if method == "DELETE":
        _, changes = yield from items.delete_items(rules, who, collection, [key], env)
        return HttpOutcome(_empty(), list(changes))
    raise route_not_found(request.path)
