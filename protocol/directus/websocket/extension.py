"""The ``directus-websocket-subscribe`` extension's protocol, both formats.

directus.md section 1 is the contract. Messages ``{type, collection?,
query?, data?, id?, ids?, uid?}`` with a case-insensitive ``type``:

- ``GET`` -> ``{"type":"RESPONSE","data":[items],"uid"?}`` (readByQuery);
- ``POST`` (``data`` an item or a list) -> the item(s) created, read with ``query``;
- ``PATCH`` (``id`` or ``ids``, ``data``) -> the item (``id``; the query is
  ignored, as in the original) or the items (``ids``, read with ``query``);
- ``DELETE`` (``id`` or ``ids``) -> ``data`` is the ``id`` / ``ids`` sent;
- ``SUBSCRIBE`` (``query``?) -> events ``{"type":"SUBSCRIPTION",...}`` re-read
  with the subscriber's rules and query (``delivery``);
- ``UNSUBSCRIBE`` (``uid``?) -> that uid's subscriptions, or all; no answer.

Where Satchel differs from the original, on purpose (issue 11 part 5):

- **Errors keep their own message and carry the uid**: ``{"type":"ERROR",
  "data":"You don't have permission to access this.","uid":"u1"}``. The
  latest original answered every handler failure with one generic "Invalid
  message type!" text and never a uid.
- **Subscribe is acknowledged only when it carries a uid**, and only in the
  latest format: ``{"type":"RESPONSE","data":{"subscribed":"articles"},
  "uid":"u1"}``. A client that pairs answers with requests by uid ignores
  it or finds it paired; a client that pairs them by order (and so sends
  no uid) gets no extra answer; v1 dropped the subscribe's uid, so its
  clients never see one. A subscribe that fails is always answered (ERROR).
- The early format's clients (v1, section 1a) are served in their format -
  events without ``type`` or uid, ``{"action","payload","key"|"keys",
  "collection"}``; error ``data`` an object ``{"status","code","message",
  "extensions":{}}`` (``message`` added); the type defaults to ``fetch``
  (invalid) and the collection is trimmed and lower-cased; the query keeps
  only the keys v1 kept. Unlike v1, parse errors are answered too (as
  ERROR), every answer carries the uid that was sent, ``UNSUBSCRIBE`` works,
  and events are permission-checked (v1 broadcast them to every subscriber).
- Collections are Satchel's: any collection name is one (an empty
  collection has no items), so "Collection does not exist in schema" is
  never said; a name that may not be a collection is ``FORBIDDEN``.
"""

from __future__ import annotations

from typing import Any

from ...environment import Environment
from ...errors import RemoteProtocolError
from ...operations import Action
from ...permissions import CurrentRules, RuleSet, read_query
from ...query import Query, parse_query
from .. import items
from ..config import DirectusConfig
from ..errors import invalid_payload
from .core import ORIGIN_WEBSOCKET, PROTOCOL, error_code, reply
from .frames import EXTENSION, EXTENSION_V1, extension_error, extension_response
from .state import CLOSED, EXTENSION_V1_OPEN, Connection
from .subscriptions import check_room, remove, replace, subscription

__all__ = ["TYPES", "V1_QUERY_KEYS", "handle", "truthy"]

#: The types the extension answers (upper-cased as the original does).
TYPES = ("GET", "POST", "PATCH", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE")
#: The query keys v1 kept (``parseGlobalParameters``); it dropped the others.
V1_QUERY_KEYS = ("fields", "sort", "filter", "limit", "offset", "page", "search", "group", "aggregate", "deep", "alias")
_INVALID_TYPE = "Invalid message type! Either get, post, patch, delete, subscribe or unsubscribe expected"


def truthy(value: Any) -> bool:
    """JavaScript's truthiness of a JSON value (``uid || false``): ``null``,
    ``false``, ``0`` and ``""`` are false; everything else, ``[]`` and
    ``{}`` included, is true."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    return True


def _query(message: dict[str, Any], v1: bool, config: DirectusConfig) -> Query:
    raw = message.get("query")
    if v1:
        raw = {key: raw[key] for key in V1_QUERY_KEYS if truthy(raw.get(key))} if isinstance(raw, dict) else {}
    return parse_query(raw, default_limit=config.query_limit_default)


def _key(value: Any, name: str) -> str:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise invalid_payload(f'"{name}" must be an item id')


def _batch(value: list[Any], config: DirectusConfig) -> list[Any]:
    if not value or len(value) > config.max_batch:
        raise invalid_payload(f"a request names 1 to {config.max_batch} items")
    return value


def _required(collection: str | None) -> str:
    if collection is None:
        raise invalid_payload("Collection is required")
    return collection


def _run(
    state: Connection, kind: str, collection: str | None, message: dict[str, Any], uid: Any, config: DirectusConfig,
    env: Environment,
) -> Action[list[Any]]:
    v1 = state.phase == EXTENSION_V1_OPEN
    if kind == "UNSUBSCRIBE":
        subs, hub = remove(PROTOCOL, state.id, state.subscriptions, uid)
        state.set_subscriptions(subs)
        return hub
    name = _required(collection)
    query = _query(message, v1, config)
    rules: RuleSet = yield CurrentRules()
    who, now, fields = state.who, env.now_ms(), state.user_fields
    changes: list[Any] = []
    if kind == "GET":
        result = yield from items.read_items(rules, who, name, query, now_ms=now, user_fields=fields)
        data: Any = result.records
    elif kind == "POST":
        body = message.get("data")
        one = not isinstance(body, list)
        records, changes = yield from items.create_items(
            rules, who, name, [body] if one else _batch(body, config), env, ORIGIN_WEBSOCKET
        )
        shown = items.read_back(rules, who, name, records, query, now_ms=now, user_fields=fields)
        data = None if shown is None else (shown[0] if shown else None) if one else shown
    elif kind == "PATCH":
        if truthy(message.get("ids")):
            keys = items.item_keys(message["ids"], config.max_batch)
            read_with, one = query, False
        elif truthy(message.get("id")):
            keys = [_key(message["id"], "id")]
            read_with, one = Query(), True  # the original read the item back without the query
        else:
            raise invalid_payload("Either 'ids' or 'id' is required for a PATCH request")
        records, changes = yield from items.update_items(rules, who, name, keys, message.get("data"), env,
                                                         ORIGIN_WEBSOCKET)
        shown = items.read_back(rules, who, name, records, read_with, now_ms=now, user_fields=fields)
        data = None if shown is None else (shown[0] if shown else None) if one else shown
    elif kind == "DELETE":
        if truthy(message.get("ids")):
            keys, data = items.item_keys(message["ids"], config.max_batch), message["ids"]
        elif truthy(message.get("id")):
            keys, data = [_key(message["id"], "id")], message["id"]
        else:
            raise invalid_payload("Either 'ids' or 'id' is required for a DELETE request")
        _, changes = yield from items.delete_items(rules, who, name, keys, env, ORIGIN_WEBSOCKET)
    else:  # SUBSCRIBE: the original's check was a read of one item with the query
        read_query(rules, who, items.check_collection(name), items.stored_query(query), now_ms=now)
        if state.phase == CLOSED:
            return []
        fmt = EXTENSION_V1 if v1 else EXTENSION
        yield from check_room(PROTOCOL, state.id, state.subscriptions, name, fmt, uid)
        new = subscription(name, fmt, None if v1 else uid, None if v1 else items.stored_query(query))
        subs, hub = replace(PROTOCOL, state.id, state.subscriptions, new)
        state.set_subscriptions(subs)
        if v1 or uid is None:
            return hub
        return [*hub, reply(state, extension_response({"subscribed": name}, uid))]
    return [*changes, reply(state, extension_response(data, uid))]


def _error(state: Connection, message: str, uid: Any = None, code: str = "INVALID_PAYLOAD", status: int = 400) -> Any:
    return reply(state, extension_error(message, uid, v1=state.phase == EXTENSION_V1_OPEN, code=code, status=status))


def handle(state: Connection, message: Any, config: DirectusConfig, env: Environment) -> Action[list[Any]]:
    """The answer to one decoded frame of an extension connection (``...``:
    the frame was not JSON)."""
    v1 = state.phase == EXTENSION_V1_OPEN
    if message is ...:
        return [_error(state, "Invalid message: it is not valid JSON")]
    if not isinstance(message, dict):
        return [_error(state, "Invalid message: a message is a JSON object")]
    uid = message.get("uid")
    uid = uid if truthy(uid) else None
    raw_type = message.get("type")
    if not truthy(raw_type):
        kind = "FETCH" if v1 else ""
    elif isinstance(raw_type, str):
        kind = raw_type.strip().upper()
    else:
        return [_error(state, '"type" must be a string', uid)]
    collection = message.get("collection")
    if v1:
        collection = collection if isinstance(collection, str) else ""
        collection = collection.strip().lower() or None
    elif not truthy(collection):
        collection = None
    elif not isinstance(collection, str):
        return [_error(state, "Collection is required", uid)]
    if kind not in TYPES:
        return [_error(state, _INVALID_TYPE, uid)]
    try:
        return (yield from _run(state, kind, collection, message, uid, config, env))
    except RemoteProtocolError as exc:
        return [_error(state, exc.message, uid, error_code(exc), exc.status)]
