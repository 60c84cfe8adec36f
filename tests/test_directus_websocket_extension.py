"""The directus-websocket-subscribe extension at ``/websocket``: its latest
format (``../shared/protocols/directus.md`` section 1b) and its early
clients, v1 (section 1a), message by message - and where Satchel differs on
purpose (errors keep their message and uid; subscribe acknowledged only
with a uid)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from satchel.protocol.directus import DirectusConfig
from satchel.protocol.permissions import RuleSet
from test_directus_websocket import DirectusCore

FORBIDDEN = "You don't have permission to access this."


@pytest.fixture
def core() -> DirectusCore:
    return DirectusCore()


def extension(core: DirectusCore, token: str | None = None, v1: bool = False) -> str:
    token = token or core.static_token(core.user())
    connection = core.connect(f"/websocket?{'api_token' if v1 else 'access_token'}={token}")
    assert isinstance(connection, str)
    return connection


def ask(core: DirectusCore, connection: str, message: dict[str, Any]) -> list[Any]:
    core.send(connection, message)
    return core.take(connection)


# -- the latest format ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["get", "Get", "GET", "  get "])
def test_types_are_case_insensitive(core: DirectusCore, kind: str) -> None:
    connection = extension(core)
    assert ask(core, connection, {"type": kind, "collection": "articles", "uid": "u"}) == [
        {"type": "RESPONSE", "data": [], "uid": "u"}]


def test_get_post_patch_delete(core: DirectusCore) -> None:
    connection = extension(core)
    [created] = ask(core, connection, {"type": "post", "collection": "articles", "data": {"title": "a", "n": 1},
                                       "query": {"fields": ["id", "title"]}, "uid": "p"})
    item = created["data"]
    assert created["type"] == "RESPONSE" and created["uid"] == "p" and set(item) == {"id", "title"}
    [many] = ask(core, connection, {"type": "POST", "collection": "articles", "data": [{"n": 2}, {"n": 3}],
                                    "query": {"fields": "n"}, "uid": 9})
    assert many == {"type": "RESPONSE", "data": [{"n": 2}, {"n": 3}], "uid": 9}
    [got] = ask(core, connection, {"type": "GET", "collection": "articles",
                                   "query": {"filter": {"n": {"_gte": 2}}, "sort": ["-n"], "fields": ["n"]}})
    assert got == {"type": "RESPONSE", "data": [{"n": 3}, {"n": 2}]}  # no uid sent: none echoed
    # PATCH id: the item, read back without the query (as the original did)
    [patched] = ask(core, connection, {"type": "PATCH", "collection": "articles", "id": item["id"],
                                       "data": {"title": "b"}, "query": {"fields": "title"}, "uid": "x"})
    assert patched["data"]["id"] == item["id"] and patched["data"]["title"] == "b" and "n" in patched["data"]
    keys = [i["id"] for i in ask(core, connection, {"type": "GET", "collection": "articles"})[0]["data"]]
    [patched] = ask(core, connection, {"type": "patch", "collection": "articles", "ids": keys, "data": {"seen": 1},
                                       "query": {"fields": "seen"}})
    assert patched["data"] == [{"seen": 1}] * 3
    assert ask(core, connection, {"type": "delete", "collection": "articles", "id": keys[0], "uid": "d"}) == [
        {"type": "RESPONSE", "data": keys[0], "uid": "d"}]  # the uid is kept on DELETE too
    assert ask(core, connection, {"type": "delete", "collection": "articles", "ids": keys[1:]}) == [
        {"type": "RESPONSE", "data": keys[1:]}]
    assert ask(core, connection, {"type": "get", "collection": "articles"})[0]["data"] == []


def test_errors_keep_their_message_and_carry_the_uid(core: DirectusCore) -> None:
    core.set_rules(RuleSet.from_json(json.dumps({"roles": {"reader": {"rules": [
        {"collection": "articles", "action": "read", "fields": ["title"]}]}}})))
    connection = extension(core, core.static_token(core.user(role="reader")))
    cases = [
        ({"type": "post", "collection": "articles", "data": {"title": "x"}, "uid": "1"}, FORBIDDEN),
        ({"type": "get", "collection": "secrets", "uid": "2"}, FORBIDDEN),
        ({"type": "get", "collection": "articles", "query": {"fields": "body"}, "uid": "3"},
         'You don\'t have permission to access field "body".'),
        ({"type": "get", "collection": "articles", "query": {"filter": {"title": {"_like": "x"}}}, "uid": "4"},
         'Invalid query. Unknown filter operator "_like"'),
        ({"type": "patch", "collection": "articles", "data": {}, "uid": "5"},
         "Invalid payload. Either 'ids' or 'id' is required for a PATCH request."),
        ({"type": "delete", "collection": "articles", "uid": "6"},
         "Invalid payload. Either 'ids' or 'id' is required for a DELETE request."),
        ({"type": "get", "uid": "7"}, "Invalid payload. Collection is required."),
        ({"type": "fly", "collection": "articles", "uid": "8"},
         "Invalid message type! Either get, post, patch, delete, subscribe or unsubscribe expected"),
        ({"collection": "articles", "uid": "9"},
         "Invalid message type! Either get, post, patch, delete, subscribe or unsubscribe expected"),
        ({"type": "get", "collection": 5, "uid": "10"}, "Collection is required"),
        ({"type": ["get"], "collection": "articles", "uid": "11"}, '"type" must be a string'),
    ]
    for message, text in cases:
        assert ask(core, connection, message) == [{"type": "ERROR", "data": text, "uid": message["uid"]}], message
    assert ask(core, connection, {"type": "get", "collection": "articles"}) == [{"type": "RESPONSE", "data": []}]


@pytest.mark.parametrize("uid, echoed", [("u", "u"), (7, 7), ({"n": 1}, {"n": 1}), ([], []),
                                         (0, None), ("", None), (False, None), (None, None)])
def test_a_truthy_uid_is_echoed_as_sent(core: DirectusCore, uid: Any, echoed: Any) -> None:
    connection = extension(core)
    [response] = ask(core, connection, {"type": "get", "collection": "a", "uid": uid})
    assert response.get("uid", None) == echoed and ("uid" in response) == (echoed is not None)


def test_parse_errors_are_answered(core: DirectusCore) -> None:
    connection = extension(core)
    assert ask(core, connection, "{oops") == [{"type": "ERROR", "data": "Invalid message: it is not valid JSON"}]
    assert ask(core, connection, "[]") == [{"type": "ERROR", "data": "Invalid message: a message is a JSON object"}]
    assert core.is_open(connection)


def test_subscribe_acknowledged_only_with_a_uid(core: DirectusCore) -> None:
    connection = extension(core)
    assert ask(core, connection, {"type": "subscribe", "collection": "articles", "uid": "s1"}) == [
        {"type": "RESPONSE", "data": {"subscribed": "articles"}, "uid": "s1"}]
    assert ask(core, connection, {"type": "subscribe", "collection": "articles"}) == []
    assert len(core.state(connection).subscriptions) == 2


def test_subscription_events_in_the_latest_format(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    reader, writer = extension(core, token), extension(core, token)
    ask(core, reader, {"type": "subscribe", "collection": "articles", "uid": "s",
                       "query": {"fields": ["id", "title"], "filter": {"status": {"_eq": "live"}}}})
    [created] = ask(core, writer, {"type": "post", "collection": "articles",
                                   "data": {"title": "t", "status": "live", "secret": 1}})
    key = created["data"]["id"]
    assert core.take(reader) == [{"type": "SUBSCRIPTION", "key": key, "action": "create", "collection": "articles",
                                  "payload": {"id": key, "title": "t"}, "uid": "s"}]
    ask(core, writer, {"type": "patch", "collection": "articles", "id": key, "data": {"title": "u"}})
    assert core.take(reader) == [{"type": "SUBSCRIPTION", "keys": [key], "action": "update",
                                  "collection": "articles", "payload": [{"id": key, "title": "u"}], "uid": "s"}]
    ask(core, writer, {"type": "post", "collection": "articles", "data": {"title": "d", "status": "draft"}})
    assert core.take(reader) == []  # not admitted by the subscription's filter: no event (payload empty)
    ask(core, writer, {"type": "delete", "collection": "articles", "id": key})
    assert core.take(reader) == [{"type": "SUBSCRIPTION", "action": "delete", "collection": "articles",
                                  "payload": [key], "uid": "s"}]


def test_the_same_uid_may_subscribe_twice(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    reader, writer = extension(core, token), extension(core, token)
    ask(core, reader, {"type": "subscribe", "collection": "a", "uid": "s", "query": {"fields": "n"}})
    ask(core, reader, {"type": "subscribe", "collection": "a", "uid": "s", "query": {"fields": "m"}})
    ask(core, writer, {"type": "post", "collection": "a", "data": {"n": 1, "m": 2}})
    assert sorted(json.dumps(m["payload"]) for m in core.take(reader)) == ['{"m": 2}', '{"n": 1}']


def test_unsubscribe_by_uid_or_all_without_answer(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    reader, writer = extension(core, token), extension(core, token)
    for uid in ("a", "b"):
        ask(core, reader, {"type": "subscribe", "collection": "c", "uid": uid})
    ask(core, reader, {"type": "subscribe", "collection": "c"})
    assert ask(core, reader, {"type": "unsubscribe", "uid": "a"}) == []
    ask(core, writer, {"type": "post", "collection": "c", "data": {}})
    assert sorted(str(m.get("uid")) for m in core.take(reader)) == ["None", "b"]
    assert ask(core, reader, {"type": "UNSUBSCRIBE"}) == []
    ask(core, writer, {"type": "post", "collection": "c", "data": {}})
    assert core.take(reader) == []


def test_an_expired_token_ends_an_extension_connection(core: DirectusCore) -> None:
    connection = extension(core, core.access_token(core.user(), ttl_ms=1000))
    core.tick(by_ms=1000)
    assert core.take(connection) == [{"type": "ERROR", "data": "Token expired."}]
    assert not core.is_open(connection)


def test_extension_writes_reach_core_subscribers_and_back(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    sdk, ext = core.sdk(token), extension(core, token)
    core.send(sdk, {"type": "subscribe", "collection": "notes", "uid": "1"})
    ask(core, ext, {"type": "subscribe", "collection": "notes", "uid": "e"})
    core.take(sdk)
    own_event, created = ask(core, ext, {"type": "post", "collection": "notes", "data": {"text": "from the extension"}})
    assert own_event["type"] == "SUBSCRIPTION" and created["type"] == "RESPONSE"  # its own subscription hears it too
    [event] = core.take(sdk)
    assert event["event"] == "create" and event["data"][0]["id"] == created["data"]["id"]
    core.send(sdk, {"type": "items", "collection": "notes", "action": "create", "data": {"text": "from the sdk"}})
    [event] = core.take(ext)
    assert event["type"] == "SUBSCRIPTION" and event["payload"]["text"] == "from the sdk"


# -- v1 -----------------------------------------------------------------------------------


def test_v1_is_told_apart_by_api_token_and_served_in_its_format(core: DirectusCore) -> None:
    token = core.static_token(core.user())
    v1, writer = extension(core, token, v1=True), extension(core, token)
    assert core.state(v1).phase == "extension-v1"
    # collection trimmed and lower-cased; unknown query keys dropped as v1 did
    [got] = ask(core, v1, {"type": "get", "collection": " Articles ", "query": {"fields": ["*"], "bogus": 1},
                           "uid": "g"})
    assert got == {"type": "RESPONSE", "data": [], "uid": "g"}
    # subscribe: no acknowledgement, even with a uid (v1 dropped it)
    assert ask(core, v1, {"type": "subscribe", "collection": "articles", "uid": "s"}) == []
    [created] = ask(core, writer, {"type": "post", "collection": "articles", "data": {"title": "t"}})
    item = created["data"]
    key = item["id"]
    assert core.take(v1) == [{"action": "create", "payload": item, "key": key, "collection": "articles"}]
    [patched] = ask(core, writer, {"type": "patch", "collection": "articles", "id": key, "data": {"title": "u"}})
    assert core.take(v1) == [{"action": "update", "payload": patched["data"], "keys": [key], "collection": "articles"}]
    ask(core, writer, {"type": "delete", "collection": "articles", "id": key})
    assert core.take(v1) == [{"action": "delete", "payload": [key], "collection": "articles"}]


def test_v1_errors_are_objects(core: DirectusCore) -> None:
    core.set_rules(RuleSet.from_json(json.dumps({"roles": {"reader": {"rules": [
        {"collection": "articles", "action": "read"}]}}})))
    v1 = extension(core, core.static_token(core.user(role="reader")), v1=True)
    assert ask(core, v1, {"type": "post", "collection": "articles", "data": {}, "uid": "p"}) == [
        {"type": "ERROR", "data": {"status": 403, "code": "FORBIDDEN", "message": FORBIDDEN, "extensions": {}},
         "uid": "p"}]
    # no type: v1's "fetch", an invalid type - answered (v1 only logged it)
    [error] = ask(core, v1, {"collection": "articles"})
    assert error["type"] == "ERROR" and error["data"]["code"] == "INVALID_PAYLOAD"
    assert error["data"]["message"].startswith("Invalid message type!")
    [error] = ask(core, v1, {"type": "get"})
    assert error["data"]["message"] == "Invalid payload. Collection is required."
    assert ask(core, v1, "nope")[0]["data"]["message"] == "Invalid message: it is not valid JSON"


def test_v1_subscribers_are_permission_checked(core: DirectusCore) -> None:
    core.set_rules(RuleSet.from_json(json.dumps({"roles": {"reader": {"rules": [
        {"collection": "articles", "action": "read", "filter": {"public": {"_eq": True}}, "fields": ["title"]}]}}})))
    v1 = extension(core, core.static_token(core.user(role="reader")), v1=True)
    ask(core, v1, {"type": "subscribe", "collection": "articles"})
    writer = extension(core)
    ask(core, writer, {"type": "post", "collection": "articles", "data": {"title": "secret", "public": False}})
    assert core.take(v1) == []  # v1 broadcast every event; Satchel does not
    [created] = ask(core, writer, {"type": "post", "collection": "articles", "data": {"title": "open", "public": True}})
    key = created["data"]["id"]
    assert core.take(v1) == [{"action": "create", "payload": {"id": key, "title": "open"}, "key": key,
                              "collection": "articles"}]


def test_the_v1_switch_serves_public_v1_clients() -> None:
    core = DirectusCore(DirectusConfig(websocket_public=True))
    connection = core.connect("/websocket?protocol=directus-extension-v1")
    assert core.state(connection).phase == "extension-v1"
    [error] = ask(core, connection, {"type": "get", "collection": "articles", "uid": 1})
    assert error == {"type": "ERROR", "data": {"status": 403, "code": "FORBIDDEN", "message": FORBIDDEN,
                                               "extensions": {}}, "uid": 1}
