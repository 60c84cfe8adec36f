"""Backpack's REST API (seed 000, BRIEF section 1) as one pure action.

``handle_request`` takes a parsed request and returns the response plus the
``Change``s its writes produced (the hub delivers those to websockets as
``{"action","collection","httpRequest":true,"response"}``).

Order of checks, as the original server's middleware ran them: CORS
preflight first (browsers send it without credentials), then the API key,
then the route. Collections need only the key; records need a logged-in
session (403 ``{"message":"Unauthorized"}``).

Departures from the original, each because its clients still behave and the
original's answer was a fault: a missing or malformed record id answers 404
``{"message":...}`` instead of 200 with an empty body or a 500;
``POST /collections`` answers the name as a JSON string (the SDK calls
``.json()`` on it); unknown routes answer 404 JSON.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec

from .. import collections as data
from ..changes import Change
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, json_response
from ..mounts import HttpOutcome
from ..operations import Action, GetRecord, ListCollections, ListRecords, StoredJson, StoredRecord
from ..permissions import Forbidden
from ..records import is_object_id
from . import auth, permits
from .config import BackpackConfig
from .render import ORIGIN_HTTP
from .uploads import UploadForm, handle_uploads

__all__ = ["handle_request", "cors_headers"]

_decode = msgspec.json.Decoder().decode
_JSON_TYPE = ("content-type", "application/json; charset=utf-8")  # as json_response says it
_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def cors_headers(request: HttpRequest, config: BackpackConfig) -> list[tuple[str, str]]:
    """CORS headers for an allowed ``Origin``: it is echoed with credentials
    allowed, since the SDK sends ``credentials: 'include'``."""
    origin = request.header("origin")
    if origin is None or (config.allowed_origins is not None and origin not in config.allowed_origins):
        return []
    return [
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("vary", "Origin"),
    ]


def _preflight(request: HttpRequest, config: BackpackConfig) -> HttpResponse:
    headers = cors_headers(request, config)
    if headers:
        asked = request.header("access-control-request-headers") or "authorization, content-type"
        headers += [
            ("access-control-allow-methods", _METHODS),
            ("access-control-allow-headers", asked),
            ("access-control-max-age", "600"),
        ]
    return HttpResponse(204, headers)


def _message(status: int, message: str) -> HttpResponse:
    return json_response(status, {"message": message})


def _json_body(request: HttpRequest) -> Any:
    if not request.body.strip():
        return {}
    content_type = (request.header("content-type") or "application/json").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise RemoteProtocolError("The form body is not valid UTF-8", 400) from None
    try:
        return _decode(request.body)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"The request body is not valid JSON: {exc}", 400) from None


def _object_body(request: HttpRequest) -> dict[str, Any]:
    body = _json_body(request)
    if not isinstance(body, dict):
        raise RemoteProtocolError("The request body must be a JSON object", 400)
    return body


def handle_request(
    request: HttpRequest, config: BackpackConfig, env: Environment, form: UploadForm | None = None
) -> Action[HttpOutcome]:
    """Answer one Backpack HTTP request.

    ``form`` is a multipart body the transport parsed and streamed (uploads);
    every other body arrives whole in ``request.body``.
    """
    if request.method == "OPTIONS":
        return HttpOutcome(_preflight(request, config))
    cors = cors_headers(request, config)
    if not auth.api_key_matches(request, config):
        outcome = HttpOutcome(_message(401, "Check your auth tokens"))
    else:
        try:
            outcome = yield from _route(request, config, env, form)
        except Forbidden:
            # What the rules deny, in the original's words for a refusal.
            outcome = HttpOutcome(_message(403, "Unauthorized"))
        except RemoteProtocolError as exc:
            outcome = HttpOutcome(_message(exc.status, exc.message))
        except auth.AuthFailure as exc:
            outcome = HttpOutcome(_message(exc.status, exc.message))
    outcome.response.headers.extend(cors)
    return outcome


def _route(
    request: HttpRequest, config: BackpackConfig, env: Environment, form: UploadForm | None
) -> Action[HttpOutcome]:
    segments = request.segments
    method = "GET" if request.method == "HEAD" else request.method
    if segments and segments[0] == "uploads":
        return (yield from _uploads(method, segments[1:], request, config, env, form))
    if len(segments) == 1 and segments[0] in ("register", "login", "logout"):
        if method != "POST":
            return HttpOutcome(_method_not_allowed("POST"))
        return (yield from _account(segments[0], request, config, env))
    if segments == ["collections"]:
        return (yield from _collections(method, request))
    if len(segments) in (1, 2):
        user_id = yield from auth.current_user(request, config, env)
        if user_id is None:
            return HttpOutcome(_message(403, "Unauthorized"))
        collection = data.validate_collection_name(segments[0])
        if len(segments) == 1:
            return (yield from _collection_route(method, collection, request, user_id, env))
        return (yield from _record_route(method, collection, segments[1], request, user_id, env))
    return HttpOutcome(_message(404, "Not found"))


def _uploads(
    method: str, segments: list[str], request: HttpRequest, config: BackpackConfig, env: Environment,
    form: UploadForm | None,
) -> Action[HttpOutcome]:
    # Downloads need only the API key, as in the original (it served them as
    # static files); everything else needs a session.
    user_id = yield from auth.current_user(request, config, env)
    if user_id is None and not (method == "GET" and len(segments) == 2):
        return HttpOutcome(_message(403, "Unauthorized"))
    outcome = yield from handle_uploads(method, segments, form, user_id or "", env)
    return HttpOutcome(outcome.response, outcome.changes, outcome.file)


def _method_not_allowed(allowed: str) -> HttpResponse:
    response = _message(405, "Method not allowed")
    response.headers.append(("allow", allowed))
    return response


def _account(name: str, request: HttpRequest, config: BackpackConfig, env: Environment) -> Action[HttpOutcome]:
    if name == "register":
        user_id = yield from auth.register(_json_body(request), config, env)
        return HttpOutcome(json_response(200, {"id": user_id}))
    if name == "login":
        user_id, token = yield from auth.login(_json_body(request), config, env)
        return HttpOutcome(json_response(200, {"id": user_id}, [("set-cookie", auth.session_cookie(token, config))]))
    yield from auth.logout(request, config)
    return HttpOutcome(json_response(200, {"message": "OK"}, [("set-cookie", auth.expired_cookie(config))]))


def _collections(method: str, request: HttpRequest) -> Action[HttpOutcome]:
    if method == "GET":
        names = yield ListCollections()
        return HttpOutcome(json_response(200, [n for n in names if not data.is_hidden_collection(n)]))
    if method == "POST":
        # Seed 000: the collection comes into being with its first record.
        name = data.validate_collection_name(_object_body(request).get("collectionName"))
        return HttpOutcome(json_response(200, name))
    return HttpOutcome(_method_not_allowed("GET, POST"))


def _collection_route(
    method: str, collection: str, request: HttpRequest, user_id: str, env: Environment
) -> Action[HttpOutcome]:
    if method == "GET":
        permit = yield from permits.permit(user_id, collection, env, "read")
        if permit is None:
            records = yield ListRecords(collection)
        else:
            records = (yield permit.list_all()).records
        return HttpOutcome(json_response(200, records))
    if method == "POST":
        body = _object_body(request)
        permit = yield from permits.permit(user_id, collection, env, "create", "read")
        record, change = yield from data.create(
            collection, body, user_id, ORIGIN_HTTP, env, permits.guard_of(permit)
        )
        return HttpOutcome(json_response(200, _written(permit, record)), [change])
    return HttpOutcome(_method_not_allowed("GET, POST"))


def _written(permit: permits.Permit | None, record: dict[str, Any]) -> dict[str, Any]:
    # A write is answered with what the writer may read of the record; one
    # it may not read at all is answered with its id, so it can refer to it.
    return permits.shown(permit, record) or {"_id": record["_id"]}


_WRITE_ACTION = {"PUT": "update", "PATCH": "update", "DELETE": "delete"}


def _record_route(
    method: str, collection: str, record_id: str, request: HttpRequest, user_id: str, env: Environment
) -> Action[HttpOutcome]:
    if method not in ("GET", "PUT", "PATCH", "DELETE"):
        return HttpOutcome(_method_not_allowed("GET, PUT, PATCH, DELETE"))
    if not is_object_id(record_id):
        return _missing(collection, record_id)
    record: dict[str, Any] | None
    change: Change | None
    if method == "GET":
        permit = yield from permits.permit(user_id, collection, env, "read")
        stored: StoredJson | StoredRecord | None = yield GetRecord(collection, record_id, as_json=True)
        if stored is None:
            return _missing(collection, record_id)
        if type(stored) is StoredJson:
            # When the answer is the stored record whole - the rules admit
            # every record with every field, or this record with every field
            # (decoded only to be checked) - its stored JSON goes out as it is.
            if permit is None:
                return HttpOutcome(HttpResponse(200, [_JSON_TYPE], stored.json))
            record = _decode(stored.json)
            if permit.shows_whole(record):
                return HttpOutcome(HttpResponse(200, [_JSON_TYPE], stored.json))
        else:
            record = stored.record  # type: ignore[union-attr]
        # A record the user may not read is, to it, not there.
        found = permits.shown(permit, record)
        return HttpOutcome(json_response(200, found)) if found is not None else _missing(collection, record_id)
    body = _object_body(request) if method != "DELETE" else None
    permit = yield from permits.permit(user_id, collection, env, _WRITE_ACTION[method], "read")
    guard = permits.guard_of(permit)
    if method == "DELETE":
        record, change = yield from data.delete(collection, record_id, user_id, ORIGIN_HTTP, guard)
    elif method == "PATCH":
        record, change = yield from data.patch(collection, record_id, body, user_id, ORIGIN_HTTP, env, guard)
    else:
        record, change = yield from data.overwrite(collection, record_id, body, user_id, ORIGIN_HTTP, env, guard)
    if record is None or change is None:
        return _missing(collection, record_id)
    return HttpOutcome(json_response(200, _written(permit, record)), [change])


def _missing(collection: str, record_id: str) -> HttpOutcome:
    # Made only when the answer is a 404: a get that finds its record (the
    # usual case) no longer encodes a 404 body it then drops.
    return HttpOutcome(_message(404, f"No record {record_id!r} in '{collection}'"))
