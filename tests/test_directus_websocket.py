"""The Directus websockets at ``/websocket``, through the switchboard: telling
the two protocols apart, and Directus core realtime message by message
(``../shared/protocols/directus.md`` sections 2 and 3).

``DirectusCore`` (below) drives the standard mount table the way a server
does - a ``Switchboard``, a ``MemoryStore``, a clock the test moves - and
records every frame each connection receives. The other
``test_directus_websocket_*`` files use it: ``..._extension`` (the
extension's formats), ``..._delivery`` (permissions on delivery and
grouping), ``..._hostile`` (bad input).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import msgspec
import pytest
from satchel.protocol import backpack
from satchel.protocol.channels import Binary, CloseConnection
from satchel.protocol.directus import DirectusConfig
from satchel.protocol.directus import websocket as ws
from satchel.protocol.directus.mount import PROTOCOL as MOUNT_PROTOCOL
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.operations import (
    ACCESS_TOKEN,
    HashPassword,
    InsertUser,
    Operation,
    SetUserRole,
    User,
    VerifyPassword,
    run_sync,
)
from satchel.protocol.permissions import RuleSet
from satchel.protocol.permissions.live import RulesChanged
from satchel.protocol.records import object_id
from satchel.protocol.tokens import issue_static_token, issue_token
from satchel.storage_backends.memory import MemoryStore

API_KEY = "test-api-key"
START_MS = 1_700_000_000_000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class DirectusCore:
    """The core of a server with the standard mounts, driven synchronously."""

    def __init__(self, config: DirectusConfig | None = None, rules: RuleSet | None = None) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        ids = itertools.count(1)
        tokens = itertools.count(1)
        self.env = Environment(
            now_ms=self.clock,
            new_id=lambda: object_id(START_MS // 1000, b"\x00" * 5, next(ids)),
            new_token=lambda: f"tok{next(tokens):040d}",
        )
        self.config = config or DirectusConfig()
        mounts = standard_mounts(backpack.BackpackConfig(api_key=API_KEY), directus=self.config)
        from satchel.protocol.switchboard import Switchboard

        self.board = Switchboard(mounts, self.env)
        if rules is not None:
            self.board.rules = rules
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.closed_with: dict[str, CloseConnection] = {}
        #: every (payload, recipients) the switchboard produced, in order
        self.deliveries: list[tuple[Any, list[str]]] = []
        self._connection_ids = itertools.count(1)
        self._users = itertools.count(1)

    # -- running actions ------------------------------------------------------

    def execute(self, operation: Operation) -> Any:
        if isinstance(operation, HashPassword):
            return "fake$" + operation.password
        if isinstance(operation, VerifyPassword):
            return bool(operation.password_hash) and operation.password_hash == "fake$" + operation.password
        return self.store.execute_sync(operation)

    def run(self, action: Any) -> Any:
        return run_sync(action, self.execute)

    def publish(self, events: Any) -> None:
        for payload, recipients in self.board.deliveries(events):
            self.deliveries.append((payload, list(recipients)))
            if isinstance(payload, CloseConnection):
                for connection in recipients:
                    self.closed_with[connection] = payload
                    self.publish(self.board.closed(connection))
                continue
            message = payload if isinstance(payload, Binary) else json.loads(payload)
            for connection in recipients:
                self.received[connection].append(message)

    def set_rules(self, rules: RuleSet) -> None:
        self.publish([RulesChanged(rules.to_json(), self.board.rules_revision + 1)])

    # -- accounts and tokens --------------------------------------------------

    def user(self, email: str | None = None, role: str = "authenticated", password: str = "pw") -> User:
        n = next(self._users)
        user = User(f"user{n:04d}", email or f"user{n}@example.com", "fake$" + password, "2020-01-01T00:00:00.000Z")
        assert self.run(_one(InsertUser(user)))
        if role != "authenticated":
            assert self.run(_one(SetUserRole(user.id, role)))
        return User(user.id, user.email, user.password_hash, user.created_at, role)

    def static_token(self, user: User) -> str:
        _, token = self.run(issue_static_token(user.id, self.env))
        return token

    def access_token(self, user: User, ttl_ms: int = 60_000) -> str:
        return self.run(issue_token(user.id, ACCESS_TOKEN, self.env, ttl_ms))

    # -- HTTP (Backpack and Directus REST) --------------------------------------

    def http(self, method: str, target: str, body: Any = None, *, headers: list[tuple[str, str]] | None = None) -> Any:
        payload = b"" if body is None else json.dumps(body).encode()
        sent = list(headers or [])
        if payload:
            sent.append(("content-type", "application/json"))
        outcome = self.run(self.board.handle_request(HttpRequest(method, target, sent, payload)))
        self.publish(outcome.changes)
        return outcome.response

    def backpack_create(self, collection: str, data: dict[str, Any], cookie: str) -> dict[str, Any]:
        response = self.http("POST", f"/{collection}", data,
                             headers=[("authorization", f"key {API_KEY}"), ("cookie", cookie)])
        assert response.status == 200, response.body
        return json.loads(response.body)

    def backpack_login(self, email: str, password: str = "pw") -> str:
        headers = [("authorization", f"key {API_KEY}")]
        response = self.http("POST", "/login", {"email": email, "password": password}, headers=headers)
        assert response.status == 200, response.body
        cookie = next(v for k, v in response.headers if k == "set-cookie")
        return cookie.split(";")[0]

    # -- websockets -----------------------------------------------------------

    def connect(self, target: str = "/websocket", headers: list[tuple[str, str]] | None = None) -> str | HttpResponse:
        connection = f"d{next(self._connection_ids)}"
        accepted = self.run(self.board.accept(HttpRequest("GET", target, list(headers or [])), connection))
        if isinstance(accepted, HttpResponse):
            return accepted
        self.publish(accepted.events)
        return connection

    def send(self, connection: str, message: Any) -> None:
        frame = message if isinstance(message, (str, bytes)) else json.dumps(message)
        assert self.board.opened(connection) is not None, f"{connection} is not open"
        self.publish(self.run(self.board.handle_message(connection, frame)))

    def tick(self, to_ms: int | None = None, *, by_ms: int | None = None) -> None:
        """Move the clock and fire every timer that is due, as a server would."""
        self.clock.now = to_ms if to_ms is not None else self.clock.now + (by_ms or 0)
        fired = True
        while fired:
            fired = False
            for connection in list(self.board._connections):
                due = self.board.deadline_ms(connection)
                if due is not None and due <= self.clock.now:
                    self.publish(self.run(self.board.on_timer(connection)))
                    fired = True

    def close(self, connection: str) -> None:
        self.publish(self.board.closed(connection))

    def take(self, connection: str) -> list[Any]:
        return self.received.pop(connection, [])

    def is_open(self, connection: str) -> bool:
        return self.board.opened(connection) is not None

    def state(self, connection: str) -> ws.Connection:
        opened = self.board.opened(connection)
        assert opened is not None
        return opened.state

    # -- the SDK's way in -----------------------------------------------------

    def sdk(self, token: str) -> str:
        """A connection as @directus/sdk opens it in handshake mode: the
        default URL, then ``{"access_token", "type": "auth"}``."""
        connection = self.connect()
        assert isinstance(connection, str)
        self.send(connection, {"access_token": token, "type": "auth"})
        assert self.take(connection) == [{"type": "auth", "status": "ok"}]
        return connection


def _one(operation: Operation) -> Any:
    return (yield operation)


@pytest.fixture
def core() -> DirectusCore:
    return DirectusCore()


def test_the_mount_and_the_websocket_agree_on_the_protocol_name() -> None:
    assert ws.PROTOCOL == MOUNT_PROTOCOL


# -- telling the protocols apart -------------------------------------------------------


def test_an_sdk_handshake_is_answered_first_and_alone(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    connection = core.connect()
    assert isinstance(connection, str)
    assert core.take(connection) == []  # nothing before the client's auth
    assert core.state(connection).phase == "undecided"
    core.send(connection, {"access_token": token, "type": "auth"})
    assert core.take(connection) == [{"type": "auth", "status": "ok"}]
    assert core.state(connection).phase == "core"
    # Nothing unsolicited follows auth-ok: the first ping is a whole period later.
    core.tick(by_ms=core.config.heartbeat_ms - 1)
    assert core.take(connection) == []


def test_auth_ok_echoes_the_uid(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    connection = core.connect()
    core.send(connection, {"type": "auth", "access_token": token, "uid": "a1"})
    assert core.take(connection) == [{"type": "auth", "status": "ok", "uid": "a1"}]


@pytest.mark.parametrize("target, headers, phase", [
    ("/websocket?access_token={t}", [], "extension"),
    ("/websocket", [("authorization", "Bearer {t}")], "extension"),
    ("/websocket?api_token={t}", [], "extension-v1"),
    ("/websocket?protocol=directus-core&access_token={t}", [], "core"),
    ("/websocket?protocol=directus-extension-v1", [("authorization", "Bearer {t}")], "extension-v1"),
    ("/websocket?protocol=directus-extension&api_token={t}", [], "extension"),
    ("/websocket?protocol=directus-core", [], "handshake"),
    ("/websocket", [], "undecided"),
])
def test_the_upgrade_decides_what_it_can(core: DirectusCore, target: str, headers: list[tuple[str, str]],
                                         phase: str) -> None:
    token = core.static_token(core.user())
    connection = core.connect(target.format(t=token), [(k, v.format(t=token)) for k, v in headers])
    assert isinstance(connection, str), connection
    assert core.state(connection).phase == phase
    assert core.take(connection) == []


@pytest.mark.parametrize("target, headers", [
    ("/websocket?access_token=nope", []),
    ("/websocket", [("authorization", "Bearer nope")]),
    ("/websocket?api_token=nope", []),
    ("/websocket?protocol=directus-core&access_token=nope", []),
    ("/websocket?protocol=directus-extension", []),  # no token and not public
    ("/websocket?protocol=directus-extension-v1", []),
])
def test_refused_upgrades_get_401(core: DirectusCore, target: str, headers: list[tuple[str, str]]) -> None:
    refused = core.connect(target, headers)
    assert isinstance(refused, HttpResponse)
    assert refused.status == 401
    assert json.loads(refused.body)["errors"][0]["extensions"]["code"] == "INVALID_CREDENTIALS"


def test_an_unknown_protocol_switch_is_a_400(core: DirectusCore) -> None:
    refused = core.connect("/websocket?protocol=socket.io")
    assert isinstance(refused, HttpResponse) and refused.status == 400


def test_a_refresh_token_is_no_upgrade_token(core: DirectusCore) -> None:
    user = core.user(password="secret")
    login = core.http("POST", "/auth/login", {"email": user.email, "password": "secret"})
    refresh_token = json.loads(login.body)["data"]["refresh_token"]
    refused = core.connect(f"/websocket?access_token={refresh_token}")
    assert isinstance(refused, HttpResponse) and refused.status == 401


def test_an_undecided_connection_that_is_not_auth_is_refused_unless_public(core: DirectusCore) -> None:
    connection = core.connect()
    core.send(connection, {"type": "GET", "collection": "articles", "uid": "g"})
    [error] = core.take(connection)
    assert error["type"] == "ERROR" and error["uid"] == "g" and error["data"].startswith("Unauthorized")
    assert not core.is_open(connection)
    assert core.closed_with[connection].code == 1008


def test_websocket_public_serves_tokenless_extension_clients() -> None:
    core = DirectusCore(DirectusConfig(websocket_public=True),
                        RuleSet.from_json(json.dumps({"roles": {"public": {"rules": [
                            {"collection": "articles", "action": "read"}]}}})))
    writer = core.sdk(core.static_token(core.user()))
    core.send(writer, {"type": "items", "collection": "articles", "action": "create", "data": {"title": "hi"}})
    core.take(writer)
    connection = core.connect()
    core.send(connection, {"type": "get", "collection": "articles", "uid": 7})
    [response] = core.take(connection)
    assert response["type"] == "RESPONSE" and response["uid"] == 7
    assert [item["title"] for item in response["data"]] == ["hi"]
    # ...and the public role may not write.
    core.send(connection, {"type": "post", "collection": "articles", "data": {"title": "x"}, "uid": "p"})
    assert core.take(connection) == [{"type": "ERROR", "data": "You don't have permission to access this.", "uid": "p"}]
    # The explicit switch: tokenless extension upgrades are accepted too.
    assert isinstance(core.connect("/websocket?protocol=directus-extension"), str)


def test_core_public_mode_with_the_switch() -> None:
    core = DirectusCore(DirectusConfig(websocket_public=True))
    connection = core.connect("/websocket?protocol=directus-core")
    assert core.state(connection).phase == "core" and core.state(connection).who.user is None
    core.send(connection, {"type": "ping", "uid": 1})
    assert core.take(connection) == [{"type": "pong", "uid": 1}]
    # A failed auth in public mode is told, and the connection stays (as public).
    core.send(connection, {"type": "auth", "access_token": "nope", "uid": "x"})
    assert core.take(connection) == [
        {"type": "auth", "status": "error", "error": {"code": "AUTH_FAILED", "message": "Authentication failed."},
         "uid": "x"}]
    assert core.is_open(connection)
    # No auth deadline in public mode.
    core.tick(by_ms=core.config.auth_timeout_ms * 3)
    assert core.is_open(connection)


# -- the handshake ----------------------------------------------------------------------


def test_a_bad_handshake_fails_and_closes(core: DirectusCore) -> None:
    connection = core.connect()
    core.send(connection, {"type": "auth", "access_token": "wrong"})
    assert core.take(connection) == [{"type": "auth", "status": "error", "error": {
        "code": "AUTH_FAILED", "message": "Authentication handshake failed."}}]
    assert not core.is_open(connection)


def test_the_first_frame_of_a_handshake_must_be_auth(core: DirectusCore) -> None:
    connection = core.connect("/websocket?protocol=directus-core")
    core.send(connection, {"type": "subscribe", "collection": "articles"})
    assert core.take(connection)[0]["error"]["code"] == "AUTH_FAILED"
    assert not core.is_open(connection)
    connection = core.connect("/websocket?protocol=directus-core")
    core.send(connection, "not json")
    assert core.take(connection)[0]["error"]["code"] == "AUTH_FAILED"
    assert not core.is_open(connection)


@pytest.mark.parametrize("target", ["/websocket", "/websocket?protocol=directus-core"])
def test_no_auth_in_time_is_an_auth_timeout(core: DirectusCore, target: str) -> None:
    connection = core.connect(target)
    core.tick(by_ms=core.config.auth_timeout_ms - 1)
    assert core.is_open(connection) and core.take(connection) == []
    core.tick(by_ms=1)
    assert core.take(connection) == [{"type": "auth", "status": "error", "error": {
        "code": "AUTH_TIMEOUT", "message": "Authentication timed out."}}]
    assert not core.is_open(connection)


def test_login_over_the_websocket_hands_back_a_refresh_token(core: DirectusCore) -> None:
    user = core.user(password="secret")
    connection = core.connect()
    core.send(connection, {"type": "auth", "email": user.email, "password": "secret", "uid": "l"})
    [ok] = core.take(connection)
    assert ok["type"] == "auth" and ok["status"] == "ok" and ok["uid"] == "l"
    refresh_token = ok["refresh_token"]
    assert core.state(connection).who.user == user.id
    # The refresh token signs in again (and rotates).
    other = core.connect()
    core.send(other, {"type": "auth", "refresh_token": refresh_token})
    [ok2] = core.take(other)
    assert ok2["status"] == "ok" and ok2["refresh_token"] != refresh_token
    third = core.connect()
    core.send(third, {"type": "auth", "refresh_token": refresh_token})  # used up
    assert core.take(third)[0]["error"]["code"] == "AUTH_FAILED"
    # A wrong password fails the handshake.
    fourth = core.connect()
    core.send(fourth, {"type": "auth", "email": user.email, "password": "wrong"})
    assert core.take(fourth)[0]["error"]["code"] == "AUTH_FAILED" and not core.is_open(fourth)


def test_an_rest_login_token_opens_the_websocket(core: DirectusCore) -> None:
    user = core.user(password="secret")
    login = core.http("POST", "/auth/login", {"email": user.email, "password": "secret", "mode": "json"})
    access_token = json.loads(login.body)["data"]["access_token"]
    connection = core.sdk(access_token)
    assert core.state(connection).who.user == user.id


def test_reauth_changes_who_the_connection_is(core: DirectusCore) -> None:
    alice, bob = core.user(), core.user()
    connection = core.sdk(core.static_token(alice))
    core.send(connection, {"type": "auth", "access_token": core.static_token(bob), "uid": "r"})
    assert core.take(connection) == [{"type": "auth", "status": "ok", "uid": "r"}]
    assert core.state(connection).who.user == bob.id
    # A failed re-auth (not public): told, then closed.
    core.send(connection, {"type": "auth", "access_token": "nope"})
    assert core.take(connection)[0]["error"] == {"code": "AUTH_FAILED", "message": "Authentication failed."}
    assert not core.is_open(connection)


def test_an_expired_token_is_told_and_may_be_renewed(core: DirectusCore) -> None:
    user = core.user()
    connection = core.sdk(core.access_token(user, ttl_ms=60_000))
    core.tick(by_ms=59_999)
    # (a heartbeat ping came at 30 s: answered)
    assert core.take(connection) == [{"type": "ping"}]
    core.send(connection, {"type": "pong"})
    core.tick(by_ms=1)
    assert core.take(connection) == [{"type": "auth", "status": "error", "error": {
        "code": "TOKEN_EXPIRED", "message": "Token expired."}}]
    assert core.state(connection).who.user is None  # public until it signs in again
    # The SDK answers TOKEN_EXPIRED with a fresh token.
    core.send(connection, {"type": "auth", "access_token": core.access_token(user)})
    assert core.take(connection) == [{"type": "auth", "status": "ok"}]
    assert core.state(connection).who.user == user.id


def test_an_expired_token_not_renewed_in_time_ends_the_connection(core: DirectusCore) -> None:
    connection = core.sdk(core.access_token(core.user(), ttl_ms=5_000))
    core.tick(by_ms=5_000)
    assert core.take(connection)[0]["error"]["code"] == "TOKEN_EXPIRED"
    core.tick(by_ms=core.config.auth_timeout_ms)
    assert core.take(connection)[0]["error"]["code"] == "AUTH_TIMEOUT"
    assert not core.is_open(connection)


def test_a_static_token_never_expires(core: DirectusCore) -> None:
    connection = core.sdk(core.static_token(core.user()))
    assert core.state(connection).expires_ms is None


# -- heartbeat ----------------------------------------------------------------------------


def test_the_server_pings_every_period_and_closes_the_silent(core: DirectusCore) -> None:
    period = core.config.heartbeat_ms
    connection = core.sdk(core.static_token(core.user()))
    core.tick(by_ms=period)
    assert core.take(connection) == [{"type": "ping"}]
    core.send(connection, {"type": "pong"})  # the SDK's answer, without uid
    assert core.take(connection) == []
    core.tick(by_ms=period)
    assert core.take(connection) == [{"type": "ping"}]
    assert core.is_open(connection)
    # No answer within the next period: closed.
    core.tick(by_ms=period)
    assert core.take(connection) == []
    assert not core.is_open(connection)


def test_any_message_but_auth_answers_the_heartbeat(core: DirectusCore) -> None:
    period = core.config.heartbeat_ms
    token = core.static_token(core.user())
    connection = core.sdk(token)
    core.tick(by_ms=period)
    core.send(connection, {"type": "ping"})  # a client ping counts
    core.tick(by_ms=period)
    assert core.is_open(connection)
    core.take(connection)
    core.send(connection, {"type": "auth", "access_token": token})  # auth does not
    core.tick(by_ms=period)
    assert not core.is_open(connection)


def test_the_heartbeat_can_be_turned_off() -> None:
    core = DirectusCore(DirectusConfig(heartbeat_ms=0))
    connection = core.sdk(core.static_token(core.user()))
    core.tick(by_ms=10 * 30_000)
    assert core.is_open(connection) and core.take(connection) == []


def test_a_client_ping_gets_a_pong(core: DirectusCore) -> None:
    connection = core.sdk(core.static_token(core.user()))
    core.send(connection, {"type": "ping"})
    core.send(connection, {"type": "ping", "uid": "p1"})
    assert core.take(connection) == [{"type": "pong"}, {"type": "pong", "uid": "p1"}]


def test_extension_connections_get_no_heartbeat(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    connection = core.connect(f"/websocket?access_token={token}")
    core.tick(by_ms=10 * core.config.heartbeat_ms)
    assert core.is_open(connection) and core.take(connection) == []


# -- subscribe / events / unsubscribe ----------------------------------------------------


def _create(core: DirectusCore, writer: str, collection: str, data: dict[str, Any]) -> dict[str, Any]:
    core.send(writer, {"type": "items", "collection": collection, "action": "create", "data": data, "uid": "w"})
    [reply] = core.take(writer)
    assert reply["type"] == "items", reply
    return reply["data"]


def test_subscribe_answers_init_with_the_current_items(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    writer, reader = core.sdk(token), core.sdk(token)
    first = _create(core, writer, "articles", {"title": "one", "status": "published"})
    _create(core, writer, "articles", {"title": "two", "status": "draft"})
    # The SDK v26 sends the query as REST-style strings.
    core.send(reader, {"query": {"fields": "id,title", "filter": json.dumps({"status": {"_eq": "published"}})},
                       "uid": "1", "collection": "articles", "type": "subscribe"})
    assert core.take(reader) == [{"type": "subscription", "event": "init",
                                  "data": [{"id": first["id"], "title": "one"}], "uid": "1"}]


def test_events_carry_data_arrays_and_follow_the_query(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    writer, reader = core.sdk(token), core.sdk(token)
    core.send(reader, {"type": "subscribe", "collection": "articles", "uid": "1",
                       "query": {"fields": ["id", "title"], "filter": {"status": {"_eq": "published"}}}})
    assert core.take(reader)[0]["event"] == "init"
    item = _create(core, writer, "articles", {"title": "a", "status": "published", "body": "..."})
    assert core.take(reader) == [{"type": "subscription", "event": "create",
                                  "data": [{"id": item["id"], "title": "a"}], "uid": "1"}]
    _create(core, writer, "articles", {"title": "hidden", "status": "draft"})
    assert core.take(reader) == []  # the query's filter does not admit it: no event
    core.send(writer, {"type": "items", "collection": "articles", "action": "update", "id": item["id"],
                       "data": {"title": "b"}})
    core.take(writer)
    assert core.take(reader) == [{"type": "subscription", "event": "update",
                                  "data": [{"id": item["id"], "title": "b"}], "uid": "1"}]
    core.send(writer, {"type": "items", "collection": "articles", "action": "delete", "id": item["id"]})
    assert core.take(writer) == [{"type": "items", "data": item["id"]}]
    assert core.take(reader) == [{"type": "subscription", "event": "delete", "data": [item["id"]], "uid": "1"}]


def test_event_and_item_filters(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    writer, reader = core.sdk(token), core.sdk(token)
    one = _create(core, writer, "articles", {"title": "one"})
    two = _create(core, writer, "articles", {"title": "two"})
    core.send(reader, {"type": "subscribe", "collection": "articles", "event": "update", "uid": "u"})
    assert core.take(reader) == [{"type": "subscription", "event": "init", "uid": "u"}]  # no data with event
    core.send(reader, {"type": "subscribe", "collection": "articles", "item": one["id"], "uid": "i"})
    [init] = core.take(reader)
    assert init["data"]["id"] == one["id"]  # the item itself, not a list
    _create(core, writer, "articles", {"title": "three"})
    assert core.take(reader) == []  # neither subscription wants a create of another item
    core.send(writer, {"type": "items", "collection": "articles", "action": "update", "id": two["id"],
                       "data": {"title": "2"}})
    got = core.take(reader)
    assert [m["uid"] for m in got] == ["u"] and got[0]["data"][0]["title"] == "2"
    core.send(writer, {"type": "items", "collection": "articles", "action": "update", "id": one["id"],
                       "data": {"title": "1"}})
    got = sorted(core.take(reader), key=lambda m: m["uid"])
    assert got[0]["uid"] == "i" and got[0]["data"]["title"] == "1"  # an object, with item
    assert got[1]["uid"] == "u" and got[1]["data"][0]["title"] == "1"
    core.send(writer, {"type": "items", "collection": "articles", "action": "delete", "id": one["id"]})
    assert core.take(reader) == [{"type": "subscription", "event": "delete", "data": one["id"], "uid": "i"}]


def test_a_uid_in_use_is_replaced_on_resubscribe(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    writer, reader = core.sdk(token), core.sdk(token)
    core.send(reader, {"type": "subscribe", "collection": "articles", "uid": "1",
                       "query": {"filter": {"n": {"_eq": 1}}}})
    core.send(reader, {"type": "subscribe", "collection": "articles", "uid": 1,  # a number: String(uid)
                       "query": {"filter": {"n": {"_eq": 2}}}})
    assert [m["event"] for m in core.take(reader)] == ["init", "init"]
    assert len(core.state(reader).subscriptions) == 1
    _create(core, writer, "articles", {"n": 1})
    assert core.take(reader) == []  # the first subscription is gone
    _create(core, writer, "articles", {"n": 2})
    [event] = core.take(reader)
    assert event["uid"] == "1" and event["data"][0]["n"] == 2


def test_unsubscribe_by_uid_and_all(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    writer, reader = core.sdk(token), core.sdk(token)
    for uid in ("1", "2", "3"):
        core.send(reader, {"type": "subscribe", "collection": "articles", "uid": uid, "event": "create"})
    core.take(reader)
    core.send(reader, {"uid": "1", "type": "unsubscribe"})
    assert core.take(reader) == [{"type": "subscription", "event": "unsubscribe", "uid": "1"}]
    _create(core, writer, "articles", {"n": 1})
    assert sorted(m["uid"] for m in core.take(reader)) == ["2", "3"]
    core.send(reader, {"type": "unsubscribe"})
    assert core.take(reader) == [{"type": "subscription", "event": "unsubscribe"}]
    _create(core, writer, "articles", {"n": 2})
    assert core.take(reader) == []
    assert core.board.registries["directus"].members(ws.subscriptions.collection_channel("articles")) == frozenset()


def test_a_forbidden_subscribe_is_a_subscribe_error(core: DirectusCore) -> None:
    rules = RuleSet.from_json(json.dumps({"roles": {"reader": {"rules": [
        {"collection": "articles", "action": "read"}]}}}))
    core.set_rules(rules)
    connection = core.sdk(core.static_token(core.user(role="reader")))
    core.send(connection, {"type": "subscribe", "collection": "secrets", "uid": "9"})
    assert core.take(connection) == [{"type": "subscribe", "status": "error", "error": {
        "code": "FORBIDDEN", "message": "You don't have permission to access this."}, "uid": "9"}]
    assert core.state(connection).subscriptions == []


def test_init_with_meta(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    writer, reader = core.sdk(token), core.sdk(token)
    for n in range(3):
        _create(core, writer, "articles", {"n": n})
    core.send(reader, {"type": "subscribe", "collection": "articles", "uid": "1",
                       "query": {"limit": "2", "meta": "total_count", "sort": "-n", "fields": "n"}})
    assert core.take(reader) == [{"type": "subscription", "event": "init", "data": [{"n": 2}, {"n": 1}],
                                  "meta": {"total_count": 3}, "uid": "1"}]


# -- items -------------------------------------------------------------------------------


def test_items_crud(core: DirectusCore) -> None:
    connection = core.sdk(core.static_token(core.user()))

    def items(message: dict[str, Any]) -> dict[str, Any]:
        core.send(connection, {"type": "items", "collection": "notes", "uid": "x", **message})
        [reply] = core.take(connection)
        return reply

    created = items({"action": "create", "data": {"text": "a", "id": "ignored"}})
    assert created["type"] == "items" and created["uid"] == "x"
    note = created["data"]
    assert note["text"] == "a" and len(note["id"]) == 24 and "_id" not in note
    many = items({"action": "create", "data": [{"text": "b"}, {"text": "c"}], "query": {"fields": ["text"]}})
    assert many["data"] == [{"text": "b"}, {"text": "c"}]
    assert items({"action": "read", "id": note["id"], "query": {"fields": "text"}})["data"] == {"text": "a"}
    listed = items({"action": "read", "query": {"sort": "text", "fields": "text", "meta": "*"}})
    assert listed["data"] == [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert listed["meta"] == {"total_count": 3, "filter_count": 3}
    assert items({"action": "read", "query": {"filter": {"text": {"_in": ["a", "c"]}}, "fields": "text"}})["data"] \
        == [{"text": "a"}, {"text": "c"}]
    updated = items({"action": "update", "id": note["id"], "data": {"text": "A"}})
    assert updated["data"]["text"] == "A" and updated["data"]["id"] == note["id"]
    keys = [item["id"] for item in items({"action": "read"})["data"]]
    assert [i["text"] for i in items({"action": "read", "ids": keys[1:], "query": {"fields": "text"}})["data"]] \
        == ["b", "c"]
    by_ids = items({"action": "update", "ids": keys[1:], "data": {"seen": True}, "query": {"fields": "seen"}})
    assert by_ids["data"] == [{"seen": True}, {"seen": True}]
    batch = items({"action": "update", "data": [{"id": keys[0], "text": "α"}, {"id": keys[1], "text": "β"}],
                   "query": {"fields": "text"}})
    assert batch["data"] == [{"text": "α"}, {"text": "β"}]
    by_query = items({"action": "update", "query": {"filter": {"seen": {"_eq": True}}}, "data": {"done": 1}})
    assert sorted(i["text"] for i in by_query["data"]) == ["c", "β"]
    assert items({"action": "delete", "ids": keys[:1]})["data"] == keys[:1]
    assert items({"action": "delete", "query": {"filter": {"done": {"_eq": 1}}}})["data"] == keys[1:]
    assert items({"action": "read"})["data"] == []
    error = items({"action": "delete"})
    assert error == {"type": "items", "status": "error", "error": {
        "code": "INVALID_PAYLOAD",
        "message": "Invalid payload. Either 'ids', 'id' or 'query' is required for a DELETE request."}, "uid": "x"}


def test_items_errors_keep_their_code_and_uid(core: DirectusCore) -> None:
    connection = core.sdk(core.static_token(core.user()))
    cases = [
        ({"type": "items", "collection": "notes", "action": "read", "id": "0" * 24, "uid": 5}, "FORBIDDEN", 5),
        ({"type": "items", "collection": "users", "action": "read", "uid": "u"}, "FORBIDDEN", "u"),
        ({"type": "items", "collection": "notes", "action": "fly", "uid": "f"}, "INVALID_PAYLOAD", "f"),
        ({"type": "items", "action": "read"}, "INVALID_PAYLOAD", None),
        ({"type": "items", "collection": "notes", "action": "read", "query": {"filter": {"a": {"_regex": "x"}}}},
         "INVALID_QUERY", None),
        ({"type": "items", "collection": "notes", "action": "create", "data": "text"}, "INVALID_PAYLOAD", None),
    ]
    for message, code, uid in cases:
        core.send(connection, message)
        [error] = core.take(connection)
        assert error["type"] == "items" and error["status"] == "error" and error["error"]["code"] == code, error
        assert error.get("uid") == uid


def test_an_items_reply_waits_a_little_after_its_own_event(core: DirectusCore) -> None:
    """The SDK loses the second of two frames read together: a connection
    subscribed to the collection it writes gets the event first, then the
    answer ``reply_gap_ms`` later."""
    connection = core.sdk(core.static_token(core.user()))
    core.send(connection, {"type": "subscribe", "collection": "notes", "uid": "1"})
    core.take(connection)
    core.send(connection, {"type": "items", "collection": "notes", "action": "create", "data": {"t": 1}, "uid": "2"})
    assert [m["event"] for m in core.take(connection)] == ["create"]
    core.tick(by_ms=core.config.reply_gap_ms - 1)
    assert core.take(connection) == []
    core.tick(by_ms=1)
    [reply] = core.take(connection)
    assert reply["type"] == "items" and reply["uid"] == "2" and reply["data"]["t"] == 1
    # The next message releases what is still held, first (in order, and
    # whether or not the runner drives the connection's timer).
    core.send(connection, {"type": "items", "collection": "notes", "action": "create", "data": {"t": 2}, "uid": "3"})
    core.send(connection, {"type": "ping", "uid": "4"})
    assert [(m["type"], m.get("uid")) for m in core.take(connection)] == [
        ("subscription", "1"), ("items", "3"), ("pong", "4")]
    core.tick(by_ms=1000)
    assert core.take(connection) == []
    # A read is never held back, nor is a write to a collection it does not subscribe to.
    core.send(connection, {"type": "items", "collection": "notes", "action": "read", "uid": "5"})
    core.send(connection, {"type": "items", "collection": "other", "action": "create", "data": {}, "uid": "6"})
    assert [m["uid"] for m in core.take(connection)] == ["5", "6"]


def test_unknown_types_are_ignored_and_bad_frames_are_server_errors(core: DirectusCore) -> None:
    connection = core.sdk(core.static_token(core.user()))
    core.send(connection, {"type": "teleport", "uid": "t"})
    assert core.take(connection) == []
    core.send(connection, "{not json")
    assert core.take(connection) == [{"type": "server", "status": "error", "error": {
        "code": "INVALID_PAYLOAD", "message": "Unable to parse the incoming message."}}]
    for frame in ("[1, 2]", '"auth"', '{"uid": "x"}', '{"type": 5}'):
        core.send(connection, frame)
        [error] = core.take(connection)
        assert error["type"] == "server" and error["error"]["code"] == "INVALID_PAYLOAD"
    assert core.is_open(connection)


def test_a_write_over_backpack_rest_reaches_a_core_subscriber(core: DirectusCore) -> None:
    user = core.user(password="pw")
    cookie = core.backpack_login(user.email)
    reader = core.sdk(core.static_token(user))
    core.send(reader, {"type": "subscribe", "collection": "articles", "uid": "1"})
    core.take(reader)
    record = core.backpack_create("articles", {"title": "from backpack"}, cookie)
    [event] = core.take(reader)
    assert event["event"] == "create" and event["uid"] == "1"
    [item] = event["data"]
    assert item["id"] == record["_id"] and item["title"] == "from backpack" and "_id" not in item


def test_closing_forgets_the_subscriptions(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    writer, reader = core.sdk(token), core.sdk(token)
    core.send(reader, {"type": "subscribe", "collection": "articles", "uid": "1"})
    core.close(reader)
    _create(core, writer, "articles", {"n": 1})
    assert core.take(reader) == [{"type": "subscription", "event": "init", "data": [], "uid": "1"}]


def test_every_transition_leads_where_the_table_says() -> None:
    phases = {"undecided", "handshake", "core", "extension", "extension-v1", "closed"}
    for (phase, event), (handler, allowed) in ws.TRANSITIONS.items():
        assert phase in phases and allowed <= phases and callable(handler)
        assert event in {"auth", "message", "auth-timeout", "token-expired", "heartbeat", "release"}
    assert not any(phase == "closed" for phase, _ in ws.TRANSITIONS)


def test_internal_errors_are_worded_per_format(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    sdk = core.sdk(token)
    assert msgspec.json.decode(core.board.internal_error(sdk)) == {
        "type": "server", "status": "error", "error": {"code": "INTERNAL", "message": "An unexpected error occurred."}}
    extension = core.connect(f"/websocket?access_token={token}")
    assert msgspec.json.decode(core.board.internal_error(extension)) == {"type": "ERROR", "data": "Internal server error"}
