"""Directus core's realtime protocol - what ``@directus/sdk`` ``realtime()`` speaks.

directus.md section 2 is the contract, section 3 what the SDK v26 needs:

- ``{"type":"auth", "access_token"|"email"+"password"|"refresh_token", "uid"?}``
  signs in (``sign_in``): ``{"type":"auth","status":"ok"[,"refresh_token"][,"uid"]}``,
  or ``AUTH_FAILED``. In handshake mode it must be the first frame, and
  its answer is the first frame the server sends (``connection``).
- ``{"type":"subscribe","collection","query"?,"event"?,"item"?,"uid"?}`` ->
  ``{"type":"subscription","event":"init","data":[...],"uid"}`` (no
  ``data`` with ``event``; the item with ``item``; ``meta`` when the query
  asks). A uid already in use on the connection replaces that subscription.
  Events follow (``delivery``).
- ``{"type":"unsubscribe","uid"?}`` -> ``{"type":"subscription","event":
  "unsubscribe","uid"?}`` (no uid: all of the connection's subscriptions).
- ``{"type":"items","collection","action":"create"|"read"|"update"|"delete",
  "data"?,"id"?,"ids"?,"query"?,"uid"?}`` -> ``{"type":"items","data"[,"meta"],"uid"?}``
  (Directus's ItemsService, via ``satchel.protocol.directus.items``, the same
  functions the items REST API answers with).
- ``{"type":"ping","uid"?}`` -> ``{"type":"pong","uid"?}``; ``pong`` is
  the answer to the server's heartbeat; other types are ignored.
- Errors: ``{"type":"<items|subscribe|auth|server>","status":"error",
  "error":{"code","message"},"uid"?}`` with the error's own code
  (``FORBIDDEN``, ``INVALID_PAYLOAD``, ``INVALID_QUERY``...). A frame that
  is not JSON, or not an object with a string ``type``, is a ``server``
  ``INVALID_PAYLOAD``.

Directus's uids are strings or numbers: the answer to a message echoes its
uid as sent; subscriptions, their events and ``unsubscribe`` use
``String(uid)``, as the SDK compares them with ``===``.

One trap of the SDK shapes this module: it listens for one frame at a time
and loses the second of two frames that arrive in one read. Nothing is
sent unsolicited after auth-ok (the heartbeat's first ping is a whole
period later), and an ``items`` write's answer to a connection that is
itself subscribed to the collection waits ``DirectusConfig.reply_gap_ms``
after the event it causes (``defer``; released by the connection's timer,
or before the answer to its next message, whichever comes first).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...channels import Audience, Deliver, IdentifyConnection
from ...environment import Environment
from ...errors import RemoteProtocolError
from ...operations import Action
from ...permissions import Accountability, CurrentRules, RuleSet, read_query
from ...query import And, Compare, Query, QueryResult, parse_query
from ...tokens import authenticate
from .. import auth, items
from ..config import DirectusConfig
from ..errors import code_for_status, invalid_credentials, invalid_payload
from .frames import CORE, core_auth_ok, core_error, core_event, core_frame
from .state import CORE_OPEN, PUBLIC_MODE, Connection
from .subscriptions import check_room, remove, replace, subscription

__all__ = [
    "PROTOCOL",
    "ORIGIN_WEBSOCKET",
    "SignedIn",
    "sign_in",
    "error_code",
    "echoed_uid",
    "reply",
    "handle",
    "defer",
    "signed_in_events",
    "fall_back_to_public",
    "auth_ok",
    "auth_error",
    "is_public_mode",
]

#: The name the Directus connections are registered under (``mount.PROTOCOL``).
PROTOCOL = "directus"
#: ``Change.origin`` of writes made over the Directus websockets.
ORIGIN_WEBSOCKET = "directus-ws"

_EVENTS = ("create", "update", "delete")
_ACTIONS = ("create", "read", "update", "delete")


class SignedIn(msgspec.Struct, frozen=True):
    """Who an ``auth`` message (or an upgrade's token) signed in: ``who``,
    when its token expires (``None``: never, a static token), the refresh
    token to hand back (after a login or a refresh) and the account's
    fields for a query's ``$CURRENT_USER.<field>``."""

    who: Accountability
    expires_ms: int | None = None
    refresh_token: str | None = None
    user_fields: dict[str, Any] | None = None


def _user_fields(user: Any) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "role": user.role}


def sign_in(message: dict[str, Any], config: DirectusConfig, env: Environment) -> Action[SignedIn]:
    """The account an ``auth`` message names; ``INVALID_CREDENTIALS`` (or
    ``INVALID_PAYLOAD`` for a malformed one) when it names none."""
    if "access_token" in message:
        token = message["access_token"]
        if not isinstance(token, str) or not token:
            raise invalid_credentials()
        bearer = yield from authenticate(token, env)
        if bearer is None:
            raise invalid_credentials()
        return SignedIn(bearer.accountability, bearer.expires_ms, None, _user_fields(bearer.user))
    if "email" in message or "password" in message:
        tokens = yield from auth.login(message.get("email"), message.get("password"), config, env)  # type: ignore[arg-type]
    elif "refresh_token" in message:
        tokens = yield from auth.refresh(message["refresh_token"], config, env)
    else:
        raise invalid_payload("an auth message carries an access_token, an email and a password, or a refresh_token")
    user = tokens.user
    return SignedIn(Accountability(user.id, user.role), tokens.expires_at, tokens.refresh_token, _user_fields(user))


def error_code(exc: RemoteProtocolError) -> str:
    """The Directus code of a peer error: its own, else its status's."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else code_for_status(exc.status)


def reply(state: Connection, payload: bytes) -> Deliver:
    """``payload`` to ``state``'s connection alone."""
    return Deliver(PROTOCOL, payload, Audience(connection=state.id))


def _uid(message: dict[str, Any]) -> Any:
    """A message's uid as sent (a string or a number; ``None``: absent)."""
    uid = message.get("uid")
    if uid is None or isinstance(uid, str) or (isinstance(uid, (int, float)) and not isinstance(uid, bool)):
        return uid
    raise invalid_payload('"uid" must be a string or a number')


def echoed_uid(message: Any) -> Any:
    """The uid an answer to ``message`` echoes: its uid if it is a string or
    a number (what Directus accepts), else none."""
    uid = message.get("uid") if isinstance(message, dict) else None
    if isinstance(uid, str) or (isinstance(uid, (int, float)) and not isinstance(uid, bool)):
        return uid
    return None


def _subscription_uid(uid: Any) -> str | None:
    """``String(uid)``, as Directus keys subscriptions (``1`` and ``"1"`` alike)."""
    if uid is None:
        return None
    if isinstance(uid, float) and uid.is_integer():
        uid = int(uid)
    return str(uid)


def _key(value: Any, name: str = "id") -> str:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise invalid_payload(f'"{name}" must be a string or a number')


def _collection(message: dict[str, Any]) -> str:
    collection = message.get("collection")
    if not isinstance(collection, str) or not collection:
        raise invalid_payload('"collection" is required and must be a string')
    return collection


def _query(message: dict[str, Any], config: DirectusConfig) -> Query | None:
    raw = message.get("query")
    return None if raw is None else parse_query(raw, default_limit=config.query_limit_default)


def _meta(result: QueryResult, query: Query) -> dict[str, Any] | None:
    if not query.meta:
        return None
    meta: dict[str, Any] = {}
    if result.total_count is not None:
        meta["total_count"] = result.total_count
    if result.filter_count is not None:
        meta["filter_count"] = result.filter_count
    return meta


def _with_keys(query: Query, keys: list[str]) -> Query:
    # readMany: the given items, with the query's filter and fields, unpaged.
    by_keys = Compare((items.KEY,), "in", tuple(keys))
    return msgspec.structs.replace(query, filter=And((query.filter, by_keys)), limit=None, offset=0)


def _batch(value: list[Any], config: DirectusConfig) -> list[Any]:
    if not value or len(value) > config.max_batch:
        raise invalid_payload(f"a request names 1 to {config.max_batch} items")
    return value


# -- subscribe / unsubscribe -----------------------------------------------------------


def _subscribe(state: Connection, message: dict[str, Any], config: DirectusConfig, env: Environment) -> Action[list[Any]]:
    uid = _subscription_uid(_uid(message))
    collection = _collection(message)
    event = message.get("event")
    if event is not None and event not in _EVENTS:
        raise invalid_payload('"event" must be "create", "update" or "delete"')
    item = message.get("item")
    item = None if item is None else _key(item, "item")
    query = _query(message, config) or parse_query(None, default_limit=config.query_limit_default)
    # Refused before anything is read (the registry's silent refusal is the last guard).
    yield from check_room(PROTOCOL, state.id, state.subscriptions, collection, CORE, uid)
    rules: RuleSet = yield CurrentRules()
    who, now = state.who, env.now_ms()
    data: Any = ...
    meta = None
    if event is not None:
        # No init data, but the same check: may it read the collection with this query?
        read_query(rules, who, items.check_collection(collection), items.stored_query(query), now_ms=now)
    elif item is not None:
        data = yield from items.read_item(rules, who, collection, item, query, now_ms=now, user_fields=state.user_fields)
    else:
        result = yield from items.read_items(rules, who, collection, query, now_ms=now, user_fields=state.user_fields)
        data, meta = result.records, _meta(result, query)
    if state.phase != CORE_OPEN:
        return []  # closed by a timer while the init data was read
    new = subscription(collection, CORE, uid, items.stored_query(query), event, item)  # type: ignore[arg-type]
    subs, hub = replace(PROTOCOL, state.id, state.subscriptions, new)
    state.set_subscriptions(subs)
    init: dict[str, Any] = {"event": "init"}
    if data is not ...:
        init["data"] = data
    if meta is not None:
        init["meta"] = meta
    return [*hub, reply(state, core_frame("subscription", init, uid))]


def _unsubscribe(state: Connection, message: dict[str, Any]) -> list[Any]:
    uid = _subscription_uid(_uid(message))
    subs, hub = remove(PROTOCOL, state.id, state.subscriptions, uid)
    state.set_subscriptions(subs)
    return [*hub, reply(state, core_event("unsubscribe", ..., uid))]


# -- items ------------------------------------------------------------------------------


def _items(state: Connection, message: dict[str, Any], config: DirectusConfig, env: Environment) -> Action[list[Any]]:
    uid = _uid(message)
    collection = _collection(message)
    action = message.get("action")
    if action not in _ACTIONS:
        raise invalid_payload('"action" must be "create", "read", "update" or "delete"')
    query = _query(message, config)
    rules: RuleSet = yield CurrentRules()
    who, now, fields = state.who, env.now_ms(), state.user_fields
    changes: list[Any] = []
    answer: dict[str, Any] = {}

    def shown(records: list[dict[str, Any]], one: bool) -> Any:
        visible = items.read_back(rules, who, collection, records, query or Query(), now_ms=now, user_fields=fields)
        if visible is None:
            return None  # written, but not readable by its author: nothing to show
        return (visible[0] if visible else None) if one else visible

    if action == "create":
        data = message.get("data")
        one = not isinstance(data, list)
        payloads = [data] if one else _batch(data, config)
        records, changes = yield from items.create_items(rules, who, collection, payloads, env, ORIGIN_WEBSOCKET)
        answer["data"] = shown(records, one)
    elif action == "read":
        if message.get("id") is not None:
            answer["data"] = yield from items.read_item(rules, who, collection, _key(message["id"]), query or Query(),
                                                        now_ms=now, user_fields=fields)
        elif message.get("ids") is not None:
            keys = items.item_keys(message["ids"], config.max_batch)
            result = yield from items.read_items(rules, who, collection, _with_keys(query or Query(), keys),
                                                 now_ms=now, user_fields=fields)
            answer["data"] = result.records
        else:
            query = query or parse_query(None, default_limit=config.query_limit_default)
            result = yield from items.read_items(rules, who, collection, query, now_ms=now, user_fields=fields)
            answer["data"] = result.records
            meta = _meta(result, query)
            if meta is not None:
                answer["meta"] = meta
    elif action == "update":
        data = message.get("data")
        if message.get("id") is not None:
            records, changes = yield from items.update_items(rules, who, collection, [_key(message["id"])], data, env,
                                                             ORIGIN_WEBSOCKET)
            answer["data"] = shown(records, True)
        else:
            if message.get("ids") is not None:
                keys = items.item_keys(message["ids"], config.max_batch)
                records, changes = yield from items.update_items(rules, who, collection, keys, data, env,
                                                                 ORIGIN_WEBSOCKET)
            elif isinstance(data, list):
                records, changes = yield from items.update_batch(rules, who, collection, _batch(data, config), env,
                                                                 ORIGIN_WEBSOCKET)
            else:
                selector = query or parse_query(None, default_limit=config.query_limit_default)
                keys = yield from items.query_keys(rules, who, collection, selector, now_ms=now,
                                                   max_batch=config.max_batch, user_fields=fields)
                records, changes = yield from items.update_items(rules, who, collection, keys, data, env,
                                                                 ORIGIN_WEBSOCKET)
            answer["data"] = shown(records, False)
    else:  # delete
        if message.get("id") is not None:
            keys = [_key(message["id"])]
            result_data: Any = message["id"]
        elif message.get("ids") is not None:
            keys = items.item_keys(message["ids"], config.max_batch)
            result_data = message["ids"]
        elif query is not None:
            keys = yield from items.query_keys(rules, who, collection, query, now_ms=now, max_batch=config.max_batch,
                                               user_fields=fields)
            result_data = keys
        else:
            raise invalid_payload("Either 'ids', 'id' or 'query' is required for a DELETE request")
        _, changes = yield from items.delete_items(rules, who, collection, keys, env, ORIGIN_WEBSOCKET)
        answer["data"] = result_data
    frame = core_frame("items", answer, uid)
    if changes and collection in state.by_collection and config.reply_gap_ms > 0:
        return [*changes, *defer(state, frame, env.now_ms(), config.reply_gap_ms)]
    return [*changes, reply(state, frame)]


def defer(state: Connection, frame: bytes, now_ms: int, gap_ms: int) -> list[Any]:
    """Hold ``frame`` back ``gap_ms`` (after any frame held already), for
    ``on_timer`` to send; nothing to publish now."""
    due = now_ms + gap_ms
    if state.pending:
        due = max(due, state.pending[-1][0] + gap_ms)
    state.pending.append((due, frame))
    return []


# -- one message ------------------------------------------------------------------------

_ERROR_TYPE = {"subscribe": "subscribe", "unsubscribe": "unsubscribe", "items": "items"}


def handle(state: Connection, message: Any, config: DirectusConfig, env: Environment) -> Action[list[Any]]:
    """The answer to one decoded frame of an open core connection (not an
    ``auth``, which ``connection`` handles). ``message`` is ``...`` when the
    frame was not JSON."""
    if message is ...:
        return [reply(state, core_error("server", "INVALID_PAYLOAD", "Unable to parse the incoming message."))]
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return [reply(state, core_error("server", "INVALID_PAYLOAD",
                                        'Invalid payload. A message is a JSON object with a string "type".'))]
    kind = message["type"]
    error_type = _ERROR_TYPE.get(kind, "server")
    try:
        if kind == "ping":
            return [reply(state, core_frame("pong", {}, _uid(message)))]
        if kind == "pong":
            return []
        if kind == "subscribe":
            return (yield from _subscribe(state, message, config, env))
        if kind == "unsubscribe":
            return _unsubscribe(state, message)
        if kind == "items":
            return (yield from _items(state, message, config, env))
        return []  # unknown types are ignored, as Directus does
    except RemoteProtocolError as exc:
        uid = echoed_uid(message)
        if error_type == "subscribe" and uid is not None:
            uid = _subscription_uid(uid)
        return [reply(state, core_error(error_type, error_code(exc), exc.message, uid))]


def signed_in_events(state: Connection, signed: SignedIn, config: DirectusConfig, now_ms: int) -> list[Any]:
    """Make ``state`` ``signed``'s (the last stretch of a sign-in) and the
    hub events that follow: the registry learns the connection's user."""
    previous = state.user_id
    state.sign_in(signed.who, signed.expires_ms)
    state.user_fields = signed.user_fields
    state.auth_deadline_ms = None
    return [IdentifyConnection(PROTOCOL, state.id, state.user_id)] if state.user_id != previous else []


def fall_back_to_public(state: Connection) -> list[Any]:
    """The connection is nobody's any more (a failed sign-in, an expired token)."""
    previous = state.user_id
    state.sign_in(Accountability(), None)
    state.user_fields = None
    return [IdentifyConnection(PROTOCOL, state.id, None)] if previous is not None else []


def auth_ok(state: Connection, signed: SignedIn, uid: Any) -> Deliver:
    """``{"type":"auth","status":"ok",...}`` for ``state``."""
    return reply(state, core_auth_ok(uid, signed.refresh_token))


def auth_error(state: Connection, code: str, message: str, uid: Any = None) -> Deliver:
    """``{"type":"auth","status":"error","error":{code,message}}`` for ``state``."""
    return reply(state, core_error("auth", code, message, uid))


def is_public_mode(state: Connection) -> bool:
    """Whether a failed or expired sign-in leaves the connection open (as public)."""
    return state.mode == PUBLIC_MODE
