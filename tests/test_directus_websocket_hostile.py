"""Hostile input on both Directus websocket protocols: bad JSON, wrong
types, unknown types, huge queries, filter operators that do not exist,
deep nesting. Each gets a clear error in its protocol's format (or, for
core's unknown types, nothing), the connection stays usable, and its
neighbours are unaffected. A Hypothesis sweep feeds arbitrary JSON to every
kind of connection: nothing ever escapes the core but answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from satchel.protocol.directus import DirectusConfig
from test_directus_websocket import DirectusCore

DEEP = 100_000


@pytest.fixture
def core() -> DirectusCore:
    return DirectusCore(DirectusConfig(max_message_bytes=256 * 1024))


class Room:
    """A hostile connection of each kind, and a well-behaved neighbour of
    each protocol subscribed to ``articles``."""

    def __init__(self, core: DirectusCore) -> None:
        self.core = core
        token = core.static_token(core.user())
        self.token = token
        self.sdk = core.sdk(token)
        self.extension = core.connect(f"/websocket?access_token={token}")
        self.v1 = core.connect(f"/websocket?api_token={token}")
        self.neighbour = core.sdk(token)
        core.send(self.neighbour, {"type": "subscribe", "collection": "articles", "uid": "1"})
        self.ext_neighbour = core.connect(f"/websocket?access_token={token}")
        core.send(self.ext_neighbour, {"type": "subscribe", "collection": "articles", "uid": "n"})
        core.take(self.neighbour), core.take(self.ext_neighbour)
        self.writes = 0

    def neighbours_still_served(self) -> None:
        core = self.core
        self.writes += 1
        core.send(self.sdk, {"type": "items", "collection": "articles", "action": "create",
                             "data": {"n": self.writes}, "uid": "w"})
        # A hostile frame may have subscribed the SDK connection itself to
        # articles: then its reply waits reply_gap_ms behind the event (core.defer).
        core.tick(by_ms=core.config.reply_gap_ms)
        replies = core.take(self.sdk)
        assert any(m.get("type") == "items" and m.get("uid") == "w" for m in replies), replies
        [event] = core.take(self.neighbour)
        assert event["event"] == "create" and event["data"][0]["n"] == self.writes
        [event] = core.take(self.ext_neighbour)
        assert event["type"] == "SUBSCRIPTION" and event["payload"]["n"] == self.writes


HOSTILE = [
    "{",
    "\x00\xff",
    b"\xff\xfe\x00binary",
    "[" * DEEP + "]" * DEEP,
    '{"type":' * 5000 + '"get"' + "}" * 5000,
    "null",
    "12",
    '"a string"',
    "[]",
    json.dumps({"type": None}),
    json.dumps({"type": 5, "collection": "articles"}),
    json.dumps({"type": "subscribe", "collection": 12}),
    json.dumps({"type": "subscribe", "collection": "articles", "query": "not a query"}),
    json.dumps({"type": "subscribe", "collection": "articles", "query": {"filter": {"n": {"_nope": 1}}}}),
    json.dumps({"type": "subscribe", "collection": "articles", "query": {"filter": {"n": {"_regex": ".*"}}}}),
    json.dumps({"type": "get", "collection": "articles", "query": {"filter": {"n": {"_nope": 1}}}}),
    json.dumps({"type": "get", "collection": "articles", "query": {"limit": "lots"}}),
    json.dumps({"type": "get", "collection": "articles", "query": {"fields": ["a"] * 5000}}),
    json.dumps({"type": "get", "collection": "articles",
                "query": {"filter": {"_or": [{"n": {"_eq": i}} for i in range(5000)]}}}),
    json.dumps({"type": "get", "collection": "articles",
                "query": {"filter": json.loads('{"a":' * 50 + '{"_eq":1}' + "}" * 50)}}),
    json.dumps({"type": "items", "collection": "articles", "action": "create", "data": [{}] * 5000}),
    json.dumps({"type": "items", "collection": "articles", "action": "read", "ids": list(range(5000))}),
    json.dumps({"type": "items", "collection": "articles", "action": "update", "id": {"$ne": 1}, "data": {}}),
    json.dumps({"type": "items", "collection": "../etc/passwd", "action": "read"}),
    json.dumps({"type": "items", "collection": "sessions", "action": "read"}),
    json.dumps({"type": "post", "collection": "articles", "data": "text"}),
    json.dumps({"type": "patch", "collection": "articles", "id": [1], "data": {}}),
    json.dumps({"type": "delete", "collection": "articles", "ids": "all"}),
    json.dumps({"type": "ping", "uid": {"a": 1}}),
    json.dumps({"type": "unsubscribe", "uid": [1, 2]}),
    json.dumps({"type": "auth", "access_token": 12}),
    json.dumps({"type": "auth"}),
    json.dumps({"type": "teleport"}),
    json.dumps({"type": "get", "collection": "articles", "padding": "x" * 300_000}),
]


@pytest.mark.parametrize("frame", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_frames_are_answered_and_harm_nobody(core: DirectusCore, frame: str | bytes) -> None:
    room = Room(core)
    for connection in (room.sdk, room.extension, room.v1):
        core.send(connection, frame)
        answers = core.take(connection)
        fmt = core.state(connection).format if core.is_open(connection) else None
        for answer in answers:
            if fmt == "core" or fmt is None:
                assert answer.get("type") in ("server", "items", "subscribe", "subscription", "pong", "auth",
                                              "unsubscribe"), answer
                if answer.get("status") == "error":
                    assert set(answer["error"]) == {"code", "message"} and answer["error"]["message"]
            else:
                assert answer["type"] in ("ERROR", "RESPONSE"), answer
                if answer["type"] == "ERROR":
                    assert answer["data"]
    # The SDK connection may only be closed by a failed re-auth (as Directus does).
    assert core.is_open(room.extension) and core.is_open(room.v1)
    if not core.is_open(room.sdk):
        assert json.loads(frame)["type"] == "auth"
        room.sdk = core.sdk(room.token)
    room.neighbours_still_served()


def test_errors_say_what_was_wrong(core: DirectusCore) -> None:
    room = Room(core)
    core.send(room.sdk, {"type": "subscribe", "collection": "articles", "uid": "1",
                         "query": {"filter": {"n": {"_nope": 1}}}})
    assert core.take(room.sdk) == [{"type": "subscribe", "status": "error", "uid": "1", "error": {
        "code": "INVALID_QUERY", "message": 'Invalid query. Unknown filter operator "_nope"'}}]
    core.send(room.extension, {"type": "get", "collection": "articles", "uid": "g",
                               "query": {"filter": json.loads('{"a":' * 50 + '{"_eq":1}' + "}" * 50)}})
    [error] = core.take(room.extension)
    assert error["uid"] == "g" and "nested more than" in error["data"]
    core.send(room.sdk, {"type": "items", "collection": "articles", "action": "create", "data": [{}] * 5000,
                         "uid": "b"})
    [error] = core.take(room.sdk)
    assert error["error"] == {"code": "INVALID_PAYLOAD", "message": "Invalid payload. A request names 1 to 1000 items."}
    core.send(room.sdk, "x" * 300_000)
    [error] = core.take(room.sdk)
    assert error["type"] == "server" and "at most 262144 bytes" in error["error"]["message"]


def test_a_hostile_first_frame_fails_only_its_own_handshake(core: DirectusCore) -> None:
    room = Room(core)
    for frame in ("[" * DEEP, "{}", json.dumps({"type": "AUTH", "access_token": room.token})):
        connection = core.connect()
        core.send(connection, frame)
        [answer] = core.take(connection)
        assert answer["type"] == "ERROR" and answer["data"].startswith("Unauthorized")
        assert not core.is_open(connection)
        connection = core.connect("/websocket?protocol=directus-core")
        core.send(connection, frame)
        assert core.take(connection)[0]["error"]["code"] == "AUTH_FAILED"
    room.neighbours_still_served()


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(["type", "collection", "query", "data", "id", "ids", "uid", "action", "event", "item",
                         "access_token", "email", "password", "refresh_token"])
_types = st.sampled_from(["get", "GET", "post", "patch", "delete", "subscribe", "SUBSCRIBE", "unsubscribe", "items",
                          "ping", "pong", "auth", "fetch", "x"])
_values = {
    "type": _types | _json,
    "collection": st.sampled_from(["articles", "notes", "users", "_x", "directus_users", ""]) | _json,
    "action": st.sampled_from(["create", "read", "update", "delete"]) | _json,
    "query": st.fixed_dictionaries({}, optional={
        "fields": st.sampled_from(["*", "id,n", ["n"], "a.b"]) | _json,
        "filter": st.sampled_from([{"n": {"_eq": 1}}, '{"n":{"_gt":0}}', {"_or": []}, {"n": {"_bogus": 1}}]) | _json,
        "limit": st.sampled_from(["5", 3, -1, "x"]) | _json,
        "sort": st.sampled_from(["-n", ["n"]]) | _json,
    }) | _json,
}
_messages = st.dictionaries(_keys, _json, max_size=7).flatmap(
    lambda base: st.fixed_dictionaries({k: _values.get(k, st.just(v)) for k, v in base.items()})
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_messages | _json.map(lambda v: v), min_size=1, max_size=6))
def test_no_input_escapes_the_core(frames: list[Any]) -> None:
    core = DirectusCore()
    room = Room(core)
    for frame in frames:
        for connection in (room.sdk, room.extension, room.v1):
            if core.is_open(connection):
                core.send(connection, json.dumps(frame))
    # Whatever happened, the neighbours are served (unless a frame closed the SDK connection).
    if not core.is_open(room.sdk):
        room.sdk = core.sdk(room.token)
    for connection in (room.neighbour, room.ext_neighbour):
        core.take(connection)
    room.neighbours_still_served()
