"""The administration API: the one rule set, the users' roles, static tokens.

Issue 11 part 1: the rules are "changed at runtime through an admin-only
REST API". Everything lives under ``/_/api`` (no Backpack collection can
start with ``_``, so the path can never shadow one), answers JSON in the
``{"data": ...}`` envelope, and fails in the items API's shape
(``{"errors": [{"message", "extensions": {"code"}}]}``, ``directus.errors``)::

    GET    /_/api/me                              -> {data: {id, email, role, created_at, admin}}
    GET    /_/api/me/tokens                       -> {data: [{id, user}]}        your static tokens
    POST   /_/api/me/tokens                       -> 201 {data: {id, user, token}} (the token shown once)
    DELETE /_/api/me/tokens/{token}               -> 204 | 404
    GET    /_/api/rules                           -> {data: {revision, rules, roles}}
    PUT    /_/api/rules {revision, rules}         -> {data: {revision, rules, roles}} | 409 | 400
    GET    /_/api/roles                           -> {data: [{name, admin, builtin}]}
    GET    /_/api/users?email=E                   -> {data: [user]} (empty: no such account)
    GET    /_/api/users/{id}                      -> {data: user} | 404
    PUT    /_/api/users/{id}/role {role}          -> {data: user} | 404 | 400
    GET    /_/api/users/{id}/tokens               -> {data: [{id, user}]}
    POST   /_/api/users/{id}/tokens               -> 201 {data: {id, user, token}} | 404
    DELETE /_/api/users/{id}/tokens/{token}       -> 204 | 404

The console's routes (issue 16 part 2; ``users``, ``data``, ``setup``, ``live``)::

    GET    /_/api/setup                           -> {data: {open}}        no token needed
    POST   /_/api/setup {token, email, password}  -> 201 {data: user} | 403 | 400   no token needed
    GET    /_/api/stats                           -> {data: {connections: {mount: n}, rules_revision}}
    GET    /_/api/users?search=&offset=&limit=    -> {data: [user], meta: {offset, limit}}
    POST   /_/api/users {email, password, role?}  -> 201 {data: user} | 400 | 409
    PUT    /_/api/users/{id}/password {password}  -> {data: user}          every token revoked
    PUT    /_/api/users/{id}/disabled {disabled}  -> {data: user}          disabling revokes every token
    GET    /_/api/collections                     -> {data: [{name, writable}]}
    GET    /_/api/collections/{c}/records?search=&offset=&limit= -> {data: [record], meta: {total_count, filter_count}}
    POST   /_/api/collections/{c}/records {...}   -> 201 {data: record}
    GET|PATCH|PUT|DELETE /_/api/collections/{c}/records/{id}     -> {data: record} | 404
    GET    /_/api/files?search=&offset=&limit=    -> {data: [file], meta}
    GET    /_/api/files/{id}                      -> {data: file};  .../content -> the bytes
    DELETE /_/api/files/{id}                      -> {data: file}
    GET    /_/api/documents?offset=&limit=        -> {data: [{read_token, revision, bytes, inbox, messages}]}
    GET    /_/api/documents/{read_token}          -> {data: {..., content}}
    GET    /_/api/entries/{kvStore|liveConfig}?organization=&project=&prefix=&after=&limit=
                                                  -> {data: {entries: [{id, value, version, user}], next}}
    PUT    /_/api/entries/{space}/{id}?organization=&project=  (a JSON value) -> {data: entry}
    DELETE /_/api/entries/{space}/{id}?organization=&project=  -> {data: entry} | 404

A user is shown as ``{id, email, role, created_at, disabled}`` - never its
password hash. Every write goes through the action any client's write of
that kind goes through (``data``), so it makes the same change event and
reaches every subscriber that may see it.

Who may: every route needs a Bearer (``tokens.authenticate``: an access
token of ``POST /auth/login``, or a static token) - 401
``INVALID_CREDENTIALS`` without a valid one. ``/_/api/me...`` is open to
every signed-in user (a user makes and revokes its own static tokens); the
rest needs the role ``admin`` - 403 ``FORBIDDEN`` otherwise. An admin's own
role cannot be redefined by the rules (``permissions.rules``), so a rule
change can never lock the admins out.

The rules: ``GET`` answers the stored rule file (``rules``: built-in roles
not repeated) and its ``revision``; ``PUT`` replaces it by compare-and-swap
on that revision - 409 ``CONFLICT`` (with the current ``revision`` in the
error's ``extensions``) when someone else replaced it first - after
validating it as ``RuleSet.from_json`` does (400 ``INVALID_PAYLOAD``). A
replacement answers a ``RulesChanged`` event, so the switchboard applies it
before the next request it routes. A user's role must be one the stored
rules define (``permissions.set_role``; never ``public``); the change
answers a ``RoleChanged`` event, so the user's open connections take the
new role at once (what they are sent, and may do, from then on).

Other codes: 404 ``NOT_FOUND`` (no such user or token), 404
``ROUTE_NOT_FOUND``, 400 ``INVALID_PAYLOAD`` (a body that is not what the
route takes, including bad JSON).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import msgspec

from ..directus.errors import DirectusError, error_body, error_for, invalid_credentials, invalid_payload, route_not_found
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, json_response, split_path
from ..mounts import HttpOutcome
from ..operations import Action, GetRecord, GetSetting, GetUser, GetUserByEmail, StoredRecord, User
from . import data, setup, users
from .live import ConnectionCounts, close_connections
from ..permissions import (
    ADMIN,
    AUTHENTICATED,
    PUBLIC,
    RULES_SETTING,
    InvalidRules,
    RoleChanged,
    RulesChanged,
    RuleSet,
    load_rules,
    save_rules,
    set_role,
)
from ..tokens import Bearer, StaticToken, authenticate, issue_static_token, list_static_tokens, revoke_static_token

__all__ = ["ADMIN_PATH", "is_admin_path", "handle_request", "error_response"]

#: Where the administration API lives.
ADMIN_PATH = "/_/api"
_PREFIX = ("_", "api")
_BUILT_IN = frozenset((PUBLIC, AUTHENTICATED, ADMIN))
_decode = msgspec.json.Decoder().decode


def is_admin_path(path: str) -> bool:
    """Whether ``path`` (normalized) is under ``/_/api``."""
    return path == ADMIN_PATH or path.startswith(ADMIN_PATH + "/")


def error_response(status: int, message: str) -> HttpResponse:
    """A transport-level error on an admin path, in the API's shape."""
    return error_for(RemoteProtocolError(message, status))


def _not_found(what: str) -> DirectusError:
    return DirectusError("NOT_FOUND", f"{what} does not exist.", 404)


def _data(value: Any, status: int = 200) -> HttpOutcome:
    return HttpOutcome(json_response(status, {"data": value}))


def _no_content() -> HttpOutcome:
    return HttpOutcome(HttpResponse(204, []))


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = _decode(request.body) if request.body.strip() else None
    except (msgspec.DecodeError, RecursionError):
        raise invalid_payload("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid_payload("the body must be a JSON object")
    return body


_user = users.user_view


def _token(token: StaticToken) -> dict[str, Any]:
    return {"id": token.id, "user": token.user_id}


def handle_request(request: HttpRequest, env: Environment) -> Action[HttpOutcome]:
    """Answer one request under ``/_/api``."""
    try:
        return (yield from _route(request, env))
    except RemoteProtocolError as exc:
        return HttpOutcome(error_for(exc))


def _route(request: HttpRequest, env: Environment) -> Action[HttpOutcome]:
    segments = split_path(request.path)[len(_PREFIX):]
    method = request.method
    if segments == ["setup"]:
        return (yield from _setup(method, request, env))
    bearer: Bearer | None = yield from authenticate(request, env)
    if bearer is None:
        raise invalid_credentials()
    if segments[:1] == ["me"]:
        return (yield from _me(method, segments[1:], request, bearer, env))
    if bearer.user.role != ADMIN:
        raise DirectusError("FORBIDDEN", "You don't have permission to access this.", 403)
    if segments == ["rules"]:
        if method == "GET":
            return (yield from _rules())
        if method == "PUT":
            return (yield from _replace_rules(_body(request)))
    elif segments == ["roles"] and method == "GET":
        rules, _ = yield from load_rules()
        return _data(_roles(rules))
    elif segments[:1] == ["users"]:
        return (yield from _users(method, segments[1:], request, bearer, env))
    elif segments == ["stats"] and method == "GET":
        counts: dict[str, int] = yield ConnectionCounts()
        rules, revision = yield from load_rules()
        return _data({"connections": counts, "rules_revision": revision})
    elif segments[:1] == ["collections"]:
        return (yield from _collections(method, segments[1:], request, bearer, env))
    elif segments[:1] == ["files"]:
        return (yield from _files(method, segments[1:], request, bearer))
    elif segments[:1] == ["documents"] and method == "GET":
        if not segments[1:]:
            return _data((yield from data.documents(data.page_of(request.query))))
        if len(segments) == 2:
            return _data((yield from data.document(segments[1])))
    elif segments[:1] == ["entries"]:
        return (yield from _entries(method, segments[1:], request, bearer, env))
    raise route_not_found(request.path)


# -- /setup: the first administrator ------------------------------------------------------


def _setup(method: str, request: HttpRequest, env: Environment) -> Action[HttpOutcome]:
    if method == "GET":
        return _data({"open": (yield from setup.setup_open())})
    if method == "POST":
        body = _body(request)
        account = yield from setup.complete_setup(body.get("token"), body.get("email"), body.get("password"), env)
        return _data({**_user(account.user), "created": account.created}, 201)
    raise route_not_found(request.path)


# -- the data model: collections, files, documents, entries ---------------------------------


def _page(values: list[Any], page: data.Page, meta: dict[str, Any] | None = None) -> HttpOutcome:
    return HttpOutcome(json_response(200, {"data": values, "meta": {**(meta or {}), "offset": page.offset,
                                                                     "limit": page.limit}}))


def _json(request: HttpRequest) -> Any:
    try:
        return _decode(request.body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise invalid_payload("the body is not valid JSON") from None


def _collections(method: str, segments: list[str], request: HttpRequest, bearer: Bearer,
                 env: Environment) -> Action[HttpOutcome]:
    if not segments:
        if method == "GET":
            return _data((yield from data.collections()))
        raise route_not_found(request.path)
    if segments[1:2] != ["records"] or len(segments) > 4:
        raise route_not_found(request.path)
    collection, rest, admin = segments[0], segments[2:], bearer.user.id
    if not rest:
        if method == "GET":
            page = data.page_of(request.query)
            result = yield from data.records(collection, page)
            meta = {"total_count": result.total_count, "filter_count": result.filter_count}
            return _page(result.records, page, meta)
        if method == "POST":
            record, change = yield from data.create_record(collection, _json(request), admin, env)
            return HttpOutcome(json_response(201, {"data": record}), [change])
        raise route_not_found(request.path)
    record_id = rest[0]
    if method == "GET":
        found = yield from _record(collection, record_id)
        return _data(found)
    if method in ("PATCH", "PUT"):
        write = data.update_record if method == "PATCH" else data.replace_record
        record, change = yield from write(collection, record_id, _json(request), admin, env)
        return HttpOutcome(json_response(200, {"data": record}), [change])
    if method == "DELETE":
        record, change = yield from data.delete_record(collection, record_id, admin, env)
        return HttpOutcome(json_response(200, {"data": record}), [change])
    raise route_not_found(request.path)


def _record(collection: str, record_id: str) -> Action[dict[str, Any]]:
    stored: StoredRecord | None = yield GetRecord(collection, record_id)
    if stored is None:
        raise _not_found("The record")
    return stored.record


def _files(method: str, segments: list[str], request: HttpRequest, bearer: Bearer) -> Action[HttpOutcome]:
    if not segments and method == "GET":
        page = data.page_of(request.query)
        result = yield from data.files(page)
        return _page(result.records, page, {"total_count": result.total_count, "filter_count": result.filter_count})
    if len(segments) == 1 and method == "GET":
        return _data((yield from data.file_record(segments[0])))
    if segments[1:] == ["content"] and method in ("GET", "HEAD"):
        response, body = yield from data.file_download(segments[0])
        return HttpOutcome(response, file=body)
    if len(segments) == 1 and method == "DELETE":
        record, changes = yield from data.delete_file(segments[0], bearer.user.id)
        return HttpOutcome(json_response(200, {"data": record}), changes)
    raise route_not_found(request.path)


def _entries(method: str, segments: list[str], request: HttpRequest, bearer: Bearer,
             env: Environment) -> Action[HttpOutcome]:
    if len(segments) == 1 and method == "GET":
        return _data((yield from data.list_entries(segments[0], request.query)))
    if len(segments) == 2 and method == "PUT":
        entry, change = yield from data.put_entry(segments[0], segments[1], request.query, request.body,
                                                  bearer.user.id, env)
        return HttpOutcome(json_response(200, {"data": entry}), [change])
    if len(segments) == 2 and method == "DELETE":
        entry, change = yield from data.delete_entry(segments[0], segments[1], request.query, bearer.user.id, env)
        return HttpOutcome(json_response(200, {"data": entry}), [change])
    raise route_not_found(request.path)


# -- /me ------------------------------------------------------------------------------


def _me(method: str, segments: list[str], request: HttpRequest, bearer: Bearer, env: Environment) -> Action[HttpOutcome]:
    if not segments and method == "GET":
        return _data({**_user(bearer.user), "admin": bearer.user.role == ADMIN})
    if segments[:1] == ["tokens"]:
        return (yield from _tokens(method, segments[1:], request, bearer.user, env))
    raise route_not_found(request.path)


def _tokens(method: str, segments: list[str], request: HttpRequest, user: User, env: Environment) -> Action[HttpOutcome]:
    if not segments:
        if method == "GET":
            return _data([_token(token) for token in (yield from list_static_tokens(user.id))])
        if method == "POST":
            token, secret = yield from issue_static_token(user.id, env)
            return _data({**_token(token), "token": secret}, 201)
    elif len(segments) == 1 and method == "DELETE":
        if not (yield from revoke_static_token(user.id, segments[0])):
            raise _not_found("The token")
        return _no_content()
    raise route_not_found(request.path)


# -- /rules, /roles ---------------------------------------------------------------------


def _roles(rules: RuleSet) -> list[dict[str, Any]]:
    roles = []
    for name in rules.roles:
        role = rules.role(name)
        assert role is not None
        roles.append({"name": name, "admin": role.admin, "builtin": name in _BUILT_IN})
    return roles


def _rules_data(rules: RuleSet, revision: int) -> dict[str, Any]:
    return {"revision": revision, "rules": _decode(rules.to_json()), "roles": _roles(rules)}


def _rules() -> Action[HttpOutcome]:
    rules, revision = yield from load_rules()
    return _data(_rules_data(rules, revision))


def _replace_rules(body: dict[str, Any]) -> Action[HttpOutcome]:
    revision = body.get("revision")
    if type(revision) is not int or revision < 0:
        raise invalid_payload('"revision" must be the revision the rules replace (GET /_/api/rules; 0: none stored)')
    if not isinstance(body.get("rules"), dict):
        raise invalid_payload('"rules" must be a rule file (an object)')
    try:
        rules = RuleSet.from_json(msgspec.json.encode(body["rules"]))
    except InvalidRules as exc:
        raise invalid_payload(exc.message) from None
    try:
        saved = yield from save_rules(rules, revision)
    except InvalidRules as exc:  # a role some users still hold
        raise invalid_payload(exc.message) from None
    if not saved:
        stored = yield GetSetting(RULES_SETTING)
        current = stored.revision if stored is not None else 0
        conflict = error_body("CONFLICT", f"The rules are at revision {current}, not {revision}: read them again.")
        conflict["errors"][0]["extensions"]["revision"] = current
        return HttpOutcome(json_response(409, conflict))
    return HttpOutcome(json_response(200, {"data": _rules_data(rules, revision + 1)}),
                       [RulesChanged(rules.to_json(), revision + 1)])


# -- /users -----------------------------------------------------------------------------


def _users(method: str, segments: list[str], request: HttpRequest, bearer: Bearer,
           env: Environment) -> Action[HttpOutcome]:
    if not segments:
        if method == "POST":
            body = _body(request)
            made = yield from users.create_user(body.get("email"), body.get("password"), body.get("role"), env)
            return _data(_user(made), 201)
        if method != "GET":
            raise route_not_found(request.path)
        email = parse_qs(request.query).get("email", [None])[0]
        if email is not None:
            if not email.strip():
                raise invalid_payload("find a user by ?email=, or list them by ?search=")
            found: User | None = yield GetUserByEmail(email.strip())
            return _data([_user(found)] if found is not None else [])
        page = data.page_of(request.query)
        listed = yield from users.list_users(page.search, page.offset, page.limit)
        return _page([_user(user) for user in listed], page)
    user: User | None = yield GetUser(segments[0])
    if user is None:
        raise _not_found("The user")
    rest = segments[1:]
    if not rest and method == "GET":
        return _data(_user(user))
    if rest == ["role"] and method == "PUT":
        role = _body(request).get("role")
        if not isinstance(role, str):
            raise invalid_payload('"role" must be the name of a role')
        rules, _ = yield from load_rules()
        try:
            done = yield from set_role(rules, user.id, role)
        except InvalidRules as exc:
            raise invalid_payload(exc.message) from None
        if not done:
            raise _not_found("The user")
        # The user's open connections take the new role at once.
        return HttpOutcome(json_response(200, {"data": _user(msgspec.structs.replace(user, role=role))}),
                           [RoleChanged(user.id, role)])
    if rest == ["password"] and method == "PUT":
        reset = yield from users.reset_password(user, _body(request).get("password"))
        # Signed out everywhere: its open websockets too.
        closed = yield from close_connections(user.id, "password reset")
        return HttpOutcome(json_response(200, {"data": _user(reset)}), closed)
    if rest == ["disabled"] and method == "PUT":
        disabled = _body(request).get("disabled")
        if not isinstance(disabled, bool):
            raise invalid_payload('"disabled" must be true or false')
        if disabled and user.id == bearer.user.id:
            raise invalid_payload("an administrator cannot disable its own account")
        changed = yield from users.set_disabled(user, disabled)
        closed = (yield from close_connections(user.id, "account disabled")) if disabled else []
        return HttpOutcome(json_response(200, {"data": _user(changed)}), closed)
    if rest[:1] == ["tokens"]:
        return (yield from _tokens(method, rest[1:], request, user, env))
    raise route_not_found(request.path)
