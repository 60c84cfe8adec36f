"""A model of Backpack's observable behaviour, to check any server against.

``BackpackModel`` keeps what a client can know about a Backpack server -
accounts and which cookie jar holds whose session, the records of every
collection, the live websocket connections with their users and channel
subscriptions - and, given one step (an HTTP request, a websocket connect,
frame or disconnect), predicts the answer to the sender and every message
each live connection must receive. It is written from the protocol's
documents (BRIEF section 1, seed 000, ``satchel.protocol.backpack``'s
module docstrings), deliberately without calling the core: a model that
shared the core's code would share its bugs.

Values the server chooses are named by placeholders (``Sym``), bound when an
answer is first matched (``matching.py``); a missing record may answer 404
JSON or the original's 200 with an empty body (``OneOf``).

Why one file of ~750 lines: the model is one state machine - accounts,
records, connections, subscriptions - whose every rule reads and writes the
same state, in the order seed 000 states them (REST routes, the sixteen
websocket actions, the channel bookkeeping). Split by concern it would
scatter one protocol's specification over several files; the part every
protocol's model shares, matching, lives apart in ``matching.py``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote

from .matching import (
    ANY_STRING,
    EMPTY_BODY,
    Bindings,
    Check,
    Mismatch,
    OneOf,
    Partial,
    Sym,
    is_number,
    is_object_id,
    match,
    show,
)

__all__ = [
    "Sym",
    "ANY_STRING",
    "EMPTY_BODY",
    "OneOf",
    "Partial",
    "Check",
    "Bindings",
    "Mismatch",
    "match",
    "Account",
    "HttpExpectation",
    "Expectation",
    "BackpackModel",
    "GREETING",
    "is_object_id",
]

GREETING = {"action": "connection", "response": "Websocket connection established"}
RESERVED_FIELDS = frozenset({"_id", "createdAt", "updatedAt", "__v"})
HIDDEN_COLLECTIONS = frozenset({"users", "uploads", "sessions"})
_COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_MIN_PASSWORD = 8  # what the kit treats as weak is far below: 0-3 characters
_MAX_PASSWORD = 1024


# -- expectations -----------------------------------------------------------------


@dataclass
class Account:
    """A registered account the run set up: which cookie jar uses it."""

    actor: str
    email: str
    password: str
    user_id: str


@dataclass
class HttpExpectation:
    """Acceptable answers to a request: ``(status, body)`` pairs, where the
    body is a JSON expectation or ``EMPTY_BODY``."""

    options: list[tuple[int, Any]]

    def describe(self) -> str:
        """The acceptable answers, for a report."""
        return " or ".join(f"{status} {show(body)}" for status, body in self.options)


@dataclass
class Expectation:
    """What one step must produce.

    ``http``: the answer to an HTTP step. ``accepted``: for a connect step,
    whether the upgrade is accepted (else refused with ``refusal_status``).
    ``deliveries``: connection -> the messages it must receive, in order.
    """

    http: HttpExpectation | None = None
    accepted: bool | None = None
    refusal_status: int = 401
    deliveries: dict[str, list[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Audience:
    channel: tuple[str, Any] | None = None
    user: str | None = None
    connection: str | None = None
    exclude: str | None = None
    include: str | None = None


class _WsError(Exception):
    """A websocket action that must be answered with an error, and change nothing."""


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _message(status: int) -> tuple[int, Any]:
    return (status, {"message": ANY_STRING})


_MISSING_RECORD = [_message(404), (200, EMPTY_BODY)]
_WS_ERROR = Partial({"action": "error", "message": ANY_STRING})
_NO_CHANNEL = {"channelType": None, "channelId": None}

# Required (True) or optional fields of each websocket action, with the JSON
# types each accepts (seed 000; the SDK's src/ws.js sends these).
_STR, _OBJ, _OBJ_OR_NULL = (str,), (dict,), (dict, type(None))
_SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]] | None] = {
    "find": {"collection": (_STR, True), "query": (_OBJ_OR_NULL, False)},
    "getAll": {"collection": (_STR, True)},
    "getOne": {"collection": (_STR, True), "id": (_STR, True)},
    "create": {"collection": (_STR, True), "data": (_OBJ, True)},
    "update": {"collection": (_STR, True), "id": (_STR, True), "data": (_OBJ, True)},
    "patch": {"collection": (_STR, True), "id": (_STR, True), "data": (_OBJ, True)},
    "delete": {"collection": (_STR, True), "id": (_STR, True)},
    "broadcast": None,
    "open": None,
    "close": None,
    "joinUsersChannels": {"usersInformationCollection": (_STR, True)},
    "createChannel": {"usersInformationCollection": (_STR, True), "channelType": (_STR, True)},
    "joinChannel": {"usersInformationCollection": (_STR, True), "channelType": (_STR, True), "channelId": (_STR, True)},
    "leaveChannel": {"usersInformationCollection": (_STR, True), "channelType": (_STR, True), "channelId": (_STR, True)},
    "changeChannel": {"usersInformationCollection": (_STR, True), "channelType": (_STR, True), "channelId": (_STR, True)},
    "deleteChannel": {
        "usersInformationCollection": (_STR, True),
        "channelMessagesCollection": (_STR, True),
        "channelType": (_STR, True),
        "channelId": (_STR, True),
    },
}

#: The sixteen websocket actions of seed 000.
WEBSOCKET_ACTIONS = tuple(_SCHEMAS)


def _schema_ok(action: str, message: dict[str, Any]) -> bool:
    schema = _SCHEMAS[action]
    if schema is None:
        return True
    for name, (types, required) in schema.items():
        if name not in message:
            if required:
                return False
            continue
        value = message[name]
        if isinstance(value, bool) and bool not in types:
            return False
        if not isinstance(value, types):
            return False
    return True


def _user_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in RESERVED_FIELDS}


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


class BackpackModel:
    """The state a Backpack server must be in, and what each step must do.

    ``namespace`` prefixes every collection the run uses, so that one server
    can serve many runs: ``GET /collections`` is compared on the names with
    this prefix only. ``accounts`` are the run's accounts by actor (cookie
    jar); ``connections`` the connections already open (connection -> user
    id), such as the run's observer.
    """

    def __init__(
        self, namespace: str, accounts: dict[str, Account], connections: dict[str, str] | None = None
    ) -> None:
        self.namespace = namespace
        self.accounts = dict(accounts)
        self.emails = {account.email.strip().lower() for account in accounts.values()}
        #: cookie jar -> the user whose session it holds (None: none)
        self.sessions: dict[str, str | None] = {actor: account.user_id for actor, account in accounts.items()}
        #: collection -> records in creation order, by id
        self.collections: dict[str, dict[Sym, dict[str, Any]]] = {}
        #: live connection -> its user
        self.connections: dict[str, str] = dict(connections or {})
        #: live connection -> subscribed channels, as (type, id)
        self.subscriptions: dict[str, list[tuple[str, Any]]] = {name: [] for name in self.connections}
        self.bindings = Bindings()
        self._counters = {"id": 0, "ts": 0}
        self._out: dict[str, list[Any]] = {}

    # -- helpers the generator reads ------------------------------------------

    def id_count(self) -> int:
        """How many record ids the model has met (``Sym("id", 1..n)``)."""
        return self._counters["id"]

    def new_sym(self, kind: str) -> Sym:
        """A fresh placeholder for a value the server will choose."""
        self._counters[kind] += 1
        return Sym(kind, self._counters[kind])

    def resolved_records(self, collection: str) -> list[dict[str, Any]]:
        """The records of ``collection`` as far as their values are known."""
        return [self.bindings.resolve(record) for record in self.collections.get(collection, {}).values()]

    def known_ids(self, collection: str | None = None) -> list[str]:
        """Record ids already seen on the wire (of one collection, or all)."""
        names = [collection] if collection is not None else list(self.collections)
        found = []
        for name in names:
            for sym in self.collections.get(name, {}):
                value = self.bindings.values.get(sym)
                if isinstance(value, str):
                    found.append(value)
        return found

    def channel_ids(self) -> list[tuple[str, str]]:
        """``(channelType, channelId)`` of the channel documents seen so far."""
        found = []
        for name, records in self.collections.items():
            for sym, record in records.items():
                value = self.bindings.values.get(sym)
                if isinstance(value, str) and record.get("channelType") == name:
                    found.append((name, value))
        return found

    # -- records ----------------------------------------------------------------

    def _insert(self, collection: str, fields: dict[str, Any]) -> dict[str, Any]:
        record_id, now = self.new_sym("id"), self.new_sym("ts")
        record = {"_id": record_id, **_user_fields(fields), "createdAt": now, "updatedAt": now, "__v": 0}
        self.collections.setdefault(collection, {})[record_id] = record
        return record

    def _find(self, collection: str, record_id: str) -> Sym | None:
        sym = self.bindings.sym_of(record_id)
        if sym is not None and sym in self.collections.get(collection, {}):
            return sym
        return None

    def _rewrite(self, collection: str, sym: Sym, data: dict[str, Any], merge: bool) -> dict[str, Any]:
        old = self.collections[collection][sym]
        if merge:
            fields = _user_fields(old)
            for key, value in _user_fields(data).items():
                if value is None:
                    fields.pop(key, None)
                else:
                    fields[key] = value
        else:
            fields = _user_fields(data)
        record = {"_id": sym, **fields, "createdAt": old["createdAt"], "updatedAt": self.new_sym("ts"), "__v": old["__v"]}
        self.collections[collection][sym] = record
        return record

    def _delete(self, collection: str, sym: Sym) -> dict[str, Any]:
        records = self.collections[collection]
        record = records.pop(sym)
        if not records:
            del self.collections[collection]
        return record

    def _matches(self, record: dict[str, Any], query: dict[str, Any]) -> bool:
        resolved = self.bindings.resolve(record)
        for key, expected in query.items():
            value: Any = resolved
            for part in key.split("."):
                if isinstance(value, dict) and part in value:
                    value = value[part]
                else:
                    return False
            if value != expected:
                return False
            if type(value) is not type(expected) and not (is_number(value) and is_number(expected)):
                return False
        return True

    # -- routing (seed 000) -----------------------------------------------------

    def _same(self, a: Any, b: Any) -> bool:
        return self.bindings.resolve(a) == self.bindings.resolve(b)

    def _channel_of(self, obj: dict[str, Any]) -> tuple[str, Any] | None:
        channel_type, channel_id = obj.get("channelType"), obj.get("channelId")
        if isinstance(channel_type, str) and (isinstance(channel_id, str) or isinstance(channel_id, Sym)):
            return (channel_type, channel_id)
        return None

    def _audience_for(self, obj: dict[str, Any], writer: str | None, author: str | None) -> _Audience:
        flag = obj.get("broadcast")
        if (flag is False or flag == "false") and writer is not None:
            return _Audience(user=writer, include=author)
        channel = self._channel_of(obj)
        if channel is not None:
            return _Audience(channel=channel, include=author)
        return _Audience(include=author)

    def _subscribed(self, connection: str, channel: tuple[str, Any]) -> bool:
        return any(self._same(mine, channel) for mine in self.subscriptions.get(connection, ()))

    def _resolve(self, audience: _Audience) -> list[str]:
        recipients = []
        for connection, user in self.connections.items():
            if audience.connection is not None and connection != audience.connection:
                continue
            if audience.user is not None and user != audience.user:
                continue
            if audience.channel is not None and not self._subscribed(connection, audience.channel):
                continue
            if connection == audience.exclude:
                continue
            recipients.append(connection)
        extra = audience.include
        if extra is not None and extra != audience.exclude and extra in self.connections and extra not in recipients:
            recipients.append(extra)
        return recipients

    def _deliver(self, message: dict[str, Any], audience: _Audience) -> None:
        for connection in self._resolve(audience):
            self._out.setdefault(connection, []).append(copy.deepcopy(message))

    def _reply(self, connection: str, message: Any) -> None:
        self._out.setdefault(connection, []).append(copy.deepcopy(message))

    def _subscribe(self, connection: str, channel: tuple[str, Any]) -> None:
        if connection in self.connections and not self._subscribed(connection, channel):
            self.subscriptions.setdefault(connection, []).append(channel)

    def _unsubscribe(self, connection: str, channel: tuple[str, Any]) -> None:
        self.subscriptions[connection] = [c for c in self.subscriptions.get(connection, []) if not self._same(c, channel)]

    def _record_event(
        self, action: str, collection: str, record: dict[str, Any], writer: str | None, author: str | None, http: bool
    ) -> None:
        message: dict[str, Any] = {"action": action, "collection": collection}
        if http:
            message["httpRequest"] = True
        message["response"] = record
        self._deliver(message, self._audience_for(record, writer, author))

    def _collection(self, name: Any) -> str:
        if not isinstance(name, str) or not _COLLECTION.match(name) or name.lower() in HIDDEN_COLLECTIONS:
            raise _WsError()
        return name

    # -- steps --------------------------------------------------------------------

    def expect(self, step: dict[str, Any]) -> Expectation:
        """Apply one concrete step (placeholders already substituted) to the
        model and return what the server must do."""
        self._out = {}
        op = step["op"]
        expectation = Expectation()
        if op == "http":
            expectation.http = self._http(step)
        elif op == "connect":
            expectation.accepted = self._connect(step.get("actor"), step["conn"])
        elif op == "send":
            self._send(step)
        elif op == "disconnect":
            self._disconnect(step["conn"])
        else:
            raise ValueError(f"unknown step {op!r}")
        expectation.deliveries = self._out
        self._out = {}
        return expectation

    def _connect(self, actor: str | None, connection: str) -> bool:
        user = self.sessions.get(actor) if actor is not None else None
        if user is None:
            return False
        self.connections[connection] = user
        self.subscriptions[connection] = []
        self._reply(connection, GREETING)
        return True

    def _disconnect(self, connection: str) -> None:
        user = self.connections.pop(connection)
        self.subscriptions.pop(connection, None)
        # A user's departure is announced once, when its last connection goes
        # (a user's other tabs are still there: nobody is told anything).
        if user not in self.connections.values():
            self._deliver({"action": "close", "userId": user}, _Audience(exclude=connection))

    # -- websocket frames ---------------------------------------------------------

    def _send(self, step: dict[str, Any]) -> None:
        connection = step["conn"]
        user = self.connections[connection]
        message = _frame_value(step)
        try:
            if not isinstance(message, dict):
                raise _WsError()
            action = message.get("action")
            if not isinstance(action, str) or action not in _SCHEMAS or not _schema_ok(action, message):
                raise _WsError()
            self._ws_action(action, message, connection, user)
        except _WsError:
            self._reply(connection, _WS_ERROR)

    def _ws_action(self, action: str, msg: dict[str, Any], conn: str, user: str) -> None:
        if action in ("find", "getAll"):
            collection = self._collection(msg["collection"])
            query = msg.get("query") if action == "find" else None
            records = [r for r in self.collections.get(collection, {}).values() if not query or self._matches(r, query)]
            self._reply(conn, {"action": action, "collection": msg["collection"], "response": records})
        elif action == "getOne":
            reply = {"action": "getOne", "collection": msg["collection"], "response": None}
            if not is_object_id(msg["id"]):
                try:
                    self._collection(msg["collection"])
                except _WsError:
                    # An id that cannot exist: the record is missing whatever
                    # the collection; a server may also reject the name.
                    self._reply(conn, OneOf((reply, _WS_ERROR)))
                    return
                self._reply(conn, reply)
                return
            collection = self._collection(msg["collection"])
            sym = self._find(collection, msg["id"])
            if sym is not None:
                reply["response"] = self.collections[collection][sym]
            self._reply(conn, reply)
        elif action == "create":
            collection = self._collection(msg["collection"])
            # Seed 000: the server records the author, whatever the client says.
            record = self._insert(collection, {**msg["data"], "userId": user})
            self._record_event("create", collection, record, user, conn, http=False)
        elif action in ("update", "patch", "delete"):
            collection = self._collection(msg["collection"])
            sym = self._find(collection, msg["id"]) if is_object_id(msg["id"]) else None
            if sym is None:
                raise _WsError()
            if action == "delete":
                record = self._delete(collection, sym)
            else:
                record = self._rewrite(collection, sym, msg["data"], merge=action == "patch")
            self._record_event(action, collection, record, user, conn, http=False)
        elif action in ("broadcast", "open", "close"):
            body = {**msg, "action": action, "userId": user}
            self._deliver(body, self._audience_for(body, None, conn))
        else:
            self._channel_action(action, msg, conn, user)

    # -- channels (seed 000, "Websocket Channels") ----------------------------------

    def _info(self, collection: str, user: str) -> Sym:
        """The user's users-information document: the first record of the
        collection whose ``userId`` is the user, created if there is none."""
        for sym, record in self.collections.get(collection, {}).items():
            if record.get("userId") == user and isinstance(record.get("userId"), str):
                return sym
        fields = {"userId": user, "channels": [], "currentChannel": dict(_NO_CHANNEL), "broadcast": False}
        return self._insert(collection, fields)["_id"]

    def _update_info(self, collection: str, user: str, update: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        sym = self._info(collection, user)
        return self._rewrite(collection, sym, update(self.collections[collection][sym]), merge=True)

    def _same_channel(self, entry: Any, channel: tuple[str, Any]) -> bool:
        return (
            isinstance(entry, dict)
            and self._same(entry.get("channelType"), channel[0])
            and self._same(entry.get("channelId"), channel[1])
        )

    def _joined(self, channel: tuple[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def update(info: dict[str, Any]) -> dict[str, Any]:
            channels = _listed(info.get("channels"))
            if not any(self._same_channel(entry, channel) for entry in channels):
                channels.append({"channelType": channel[0], "channelId": channel[1]})
            return {"channels": channels, "currentChannel": {"channelType": channel[0], "channelId": channel[1]}}

        return update

    def _left(self, channel: tuple[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def update(info: dict[str, Any]) -> dict[str, Any]:
            channels = [entry for entry in _listed(info.get("channels")) if not self._same_channel(entry, channel)]
            # Seed 000: the current channel becomes the first one left, or none.
            first = next((entry for entry in channels if isinstance(entry, dict)), None)
            current = (
                {"channelType": first.get("channelType"), "channelId": first.get("channelId")}
                if first is not None
                else dict(_NO_CHANNEL)
            )
            return {"channels": channels, "currentChannel": current}

        return update

    def _notice(self, action: str, user: str, channel: tuple[str, Any]) -> dict[str, Any]:
        return {"action": action, "userId": user, "channelType": channel[0], "channelId": channel[1]}

    def _channel_action(self, action: str, msg: dict[str, Any], conn: str, user: str) -> None:
        if action == "joinUsersChannels":
            users = self._collection(msg["usersInformationCollection"])
            sym = self._info(users, user)
            info = self.collections[users][sym]
            channels = _listed(info.get("channels"))
            for entry in channels:
                if isinstance(entry, dict):
                    channel = self._channel_of(entry)
                    if channel is not None:
                        self._subscribe(conn, channel)
            self._reply(conn, {"action": "joinUsersChannels", "usersChannels": channels})
        elif action == "createChannel":
            users = self._collection(msg["usersInformationCollection"])
            channel_type = self._collection(msg["channelType"])
            document = self._insert(channel_type, {"channelType": channel_type, "name": msg.get("name"), "userId": user})
            channel = (channel_type, document["_id"])
            info = self._update_info(users, user, self._joined(channel))
            self._deliver({"action": "createChannel", "response": document}, _Audience(exclude=conn))
            self._subscribe(conn, channel)
            self._reply(conn, {
                "action": "createChannel",
                "response": document,
                "usersChannels": info.get("channels"),
                "usersCurrentChannel": info.get("currentChannel"),
            })
        elif action in ("joinChannel", "leaveChannel", "changeChannel"):
            channel = (self._collection(msg["channelType"]), msg["channelId"])
            users = self._collection(msg["usersInformationCollection"])
            notice = self._notice(action, user, channel)
            if action == "joinChannel":
                info = self._update_info(users, user, self._joined(channel))
                self._deliver(notice, _Audience(channel=channel, exclude=conn))
                self._subscribe(conn, channel)
            elif action == "leaveChannel":
                info = self._update_info(users, user, self._left(channel))
                self._unsubscribe(conn, channel)
                self._deliver(notice, _Audience(channel=channel, exclude=conn))
            else:
                current = {"channelType": channel[0], "channelId": channel[1]}
                info = self._update_info(users, user, lambda _info: {"currentChannel": current})
            self._reply(conn, {**notice, "response": info})
        elif action == "deleteChannel":
            self._delete_channel(msg, conn, user)

    def _delete_channel(self, msg: dict[str, Any], conn: str, user: str) -> None:
        users = self._collection(msg["usersInformationCollection"])
        messages = self._collection(msg["channelMessagesCollection"])
        channel = (self._collection(msg["channelType"]), msg["channelId"])
        document = self._find(channel[0], channel[1]) if is_object_id(channel[1]) else None
        if document is not None:
            owner = self.collections[channel[0]][document].get("userId")
            if owner is not None and owner != user:
                raise _WsError()  # only its creator may delete a channel
        # Its messages and the channel document go (seed 000); nobody is sent
        # those deletions, the notices below say it all.
        query = {"channelType": channel[0], "channelId": channel[1]}
        for sym, record in list(self.collections.get(messages, {}).items()):
            if self._matches(record, query):
                self._delete(messages, sym)
        if is_object_id(channel[1]):
            document = self._find(channel[0], channel[1])
            if document is not None:
                self._delete(channel[0], document)
        caller_info = None
        for info in [copy.deepcopy(r) for r in self.collections.get(users, {}).values()]:
            if not any(self._same_channel(entry, channel) for entry in _listed(info.get("channels"))):
                continue
            member = info.get("userId")
            if not isinstance(member, str):
                continue
            updated = self._update_info(users, member, self._left(channel))
            if member == user:
                caller_info = updated
            notice = {**self._notice("deleteChannel", user, channel), "response": updated}
            self._deliver(notice, _Audience(channel=channel, user=member, exclude=conn))
        if caller_info is None:
            sym = self._info(users, user)
            caller_info = self.collections[users][sym]
        for connection in self.subscriptions:
            self._unsubscribe(connection, channel)
        self._reply(conn, {**self._notice("deleteChannel", user, channel), "response": caller_info})

    # -- HTTP -------------------------------------------------------------------------

    def _http(self, step: dict[str, Any]) -> HttpExpectation:
        try:
            return HttpExpectation([self._route(step)])
        except _Missing:
            return HttpExpectation(list(_MISSING_RECORD))
        except _HttpError as error:
            return HttpExpectation([_message(error.status)])

    def _route(self, step: dict[str, Any]) -> tuple[int, Any]:
        if step.get("key", "good") != "good":
            return (401, {"message": "Check your auth tokens"})
        method = step["method"]
        segments = _segments(step["path"])
        actor = step.get("actor")
        if segments in (["register"], ["login"], ["logout"]):
            if method != "POST":
                raise _HttpError(405)
            return self._account(segments[0], step, actor)
        if segments == ["collections"]:
            if method == "GET":
                names = sorted(name for name in self.collections if name.startswith(self.namespace))
                return (200, Check(self._names_check(names), f"a list of names whose {self.namespace}* ones are {names}"))
            if method == "POST":
                body = _object_body(step)
                name = body.get("collectionName")
                self._http_collection(name)
                return (200, name)
            raise _HttpError(405)
        if len(segments) not in (1, 2):
            raise _HttpError(404)
        user = self.sessions.get(actor) if actor is not None else None
        if user is None:
            return (403, {"message": "Unauthorized"})
        collection = self._http_collection(segments[0])
        if len(segments) == 1:
            if method == "GET":
                return (200, list(self.collections.get(collection, {}).values()))
            if method == "POST":
                record = self._insert(collection, _object_body(step))
                self._record_event("create", collection, record, user, None, http=True)
                return (200, record)
            raise _HttpError(405)
        if method not in ("GET", "PUT", "PATCH", "DELETE"):
            raise _HttpError(405)
        record_id = segments[1]
        if not is_object_id(record_id):
            return _missing()
        body = _object_body(step) if method in ("PUT", "PATCH") else {}
        sym = self._find(collection, record_id)
        if sym is None:
            return _missing()
        if method == "GET":
            return (200, self.collections[collection][sym])
        if method == "DELETE":
            record = self._delete(collection, sym)
            action = "delete"
        else:
            record = self._rewrite(collection, sym, body, merge=method == "PATCH")
            action = "patch" if method == "PATCH" else "update"
        self._record_event(action, collection, record, user, None, http=True)
        return (200, record)

    def _names_check(self, names: list[str]) -> Callable[[Any], bool]:
        def check(actual: Any) -> bool:
            if not isinstance(actual, list) or not all(isinstance(name, str) for name in actual):
                return False
            if any(name.lower() in HIDDEN_COLLECTIONS or name.startswith("_") for name in actual):
                return False  # the account store, uploads and other protocols' data are never listed
            return sorted(name for name in actual if name.startswith(self.namespace)) == names

        return check

    def _http_collection(self, name: Any) -> str:
        if not isinstance(name, str) or not _COLLECTION.match(name):
            raise _HttpError(400)
        if name.lower() in HIDDEN_COLLECTIONS:
            raise _HttpError(403)
        return name

    def _account(self, name: str, step: dict[str, Any], actor: str | None) -> tuple[int, Any]:
        if name == "logout":
            if actor is not None:
                self.sessions[actor] = None
            return (200, {"message": "OK"})
        body = _json_body(step)
        if not isinstance(body, dict):
            raise _HttpError(422)
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or len(password) > _MAX_PASSWORD:
            raise _HttpError(422)
        email = email.strip().lower()
        if name == "register":
            if len(email) > 254 or not _EMAIL.match(email) or len(password) < _MIN_PASSWORD or email in self.emails:
                raise _HttpError(422)
            self.emails.add(email)
            return (200, {"id": ANY_STRING})
        account = next((a for a in self.accounts.values() if a.email.strip().lower() == email), None)
        if account is None or account.password != password:
            return (401, {"message": ANY_STRING})
        if actor is not None:
            self.sessions[actor] = account.user_id
        return (200, {"id": account.user_id})


class _Missing(_HttpError):
    """No such record: Satchel answers 404 JSON, the original 200 with no body."""

    def __init__(self) -> None:
        super().__init__(404)


def _missing() -> tuple[int, Any]:
    raise _Missing()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    """Strict JSON, as servers decode it (no NaN or Infinity)."""
    return json.loads(text, parse_constant=_no_constants)


def _segments(path: str) -> list[str]:
    path = path.split("?", 1)[0]
    return [unquote(segment) for segment in path.split("/") if segment]


def _json_body(step: dict[str, Any]) -> Any:
    if "raw" in step:
        text = step["raw"]
        if not text.strip():
            return {}
        try:
            return _loads(text)
        except ValueError:
            raise _HttpError(400) from None
    return step.get("json", {}) if step.get("json") is not None else {}


def _object_body(step: dict[str, Any]) -> dict[str, Any]:
    body = _json_body(step)
    if not isinstance(body, dict):
        raise _HttpError(400)
    return body


def _frame_value(step: dict[str, Any]) -> Any:
    """What a websocket step's frame decodes to (``_INVALID`` if it is not JSON)."""
    if "message" in step:
        return step["message"]
    raw = step.get("text")
    if raw is None:
        try:
            raw = bytes.fromhex(step["binary"]).decode("utf-8")
        except (ValueError, KeyError):
            return _INVALID
    try:
        return _loads(raw)
    except ValueError:
        return _INVALID


_INVALID = object()
