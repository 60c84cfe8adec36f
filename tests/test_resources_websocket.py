"""The resource websocket at ``/realtime`` (seed 004, issue 12 part 2)
through the pure core: the upgrade and its base58 headers, subscribe and
unsubscribe, updates of kv and live-config entries, collections (the one
data model, under the rules, encoded once per rendering) and inbox
documents (over HTTP and datagrams)."""

from __future__ import annotations

import json
import secrets
import msgspec
import pytest

from resources_harness import UPGRADE, ResourcesCore
from satchel.protocol.channels import Deliver
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.inbox import encode_request
from satchel.protocol.records import format_timestamp

KEY = "World:kvstoreClient:testKey"
SCOPE = {"x-m2-organization": "testOrg", "x-m2-project": "testProj"}


@pytest.fixture
def core() -> ResourcesCore:
    return ResourcesCore()


def kv(entry_id: str, type: str = "kvStore") -> dict[str, str]:
    return {"type": type, "id": entry_id}


def test_the_upgrade_echoes_the_offered_subprotocol_and_takes_its_headers(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(SCOPE, token=alice.access)
    assert isinstance(connection, str)
    accepted = core.accepted[connection]
    offered = dict(UPGRADE + [("sec-websocket-protocol", accepted.subprotocol)])
    assert accepted.subprotocol == offered["sec-websocket-protocol"]
    assert accepted.user_id == alice.id
    state = accepted.state
    assert (state.scope.organization, state.scope.project) == ("testOrg", "testProj")
    assert state.who.user == alice.id


def test_authorization_from_real_headers_and_the_query(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    by_header = core.open(SCOPE, real=[("authorization", f"Bearer {alice.access}")])
    by_query = core.open(target=f"/realtime?access_token={alice.access}")
    _, static = core.static_token(alice.id)
    by_static = core.open(token=static)
    for connection in (by_header, by_query, by_static):
        assert core.accepted[connection].user_id == alice.id
    # Real scope headers count when the encoded ones do not name them.
    real_scope = core.open({"x-m2-project": "p"}, real=[("x-m2-organization", "o"), ("x-m2-project", "ignored")])
    scope = core.accepted[real_scope].state.scope
    assert (scope.organization, scope.project) == ("o", "p")
    assert core.accepted[core.open()].user_id is None  # no token: the public role


@pytest.mark.parametrize("token_header", ["Bearer forged", "Bearer ", "Basic abc"])
def test_a_bad_token_is_refused_with_401(core: ResourcesCore, token_header: str) -> None:
    refused = core.open({"authorization": token_header})
    assert not isinstance(refused, str) and refused.status == 401
    assert refused.json["code"] == "unauthorized"
    refused = core.open(real=[("authorization", "Bearer forged")])
    assert refused.status == 401  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol, reason", [
    ("0OIl", "not base58"),
    ("2NEpo7TZRRrLZSi2U", "has no ':'"),  # "Hello World!"
])
def test_malformed_headers_refuse_the_upgrade_with_400(core: ResourcesCore, protocol: str, reason: str) -> None:
    refused = core.open(protocol=protocol)
    assert not isinstance(refused, str) and refused.status == 400
    assert refused.json["error"] == "Invalid headers" and reason in refused.json["message"]
    assert core.rest("GET", "/realtime/status").json["connections"] == 0


def test_kv_updates_reach_subscribers_of_their_scope_only(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    here = core.open(SCOPE, token=alice.access)
    elsewhere = core.open({"x-m2-organization": "otherOrg", "x-m2-project": "testProj"}, token=alice.access)
    default = core.open(token=alice.access)
    for connection in (here, elsewhere, default):
        [warning] = core.subscribe(connection, "kvStore", KEY)
        assert warning == {"warning": "resource_not_found", "resource": kv(KEY),
                           "message": "kvStore resource doesn't currently exist, subscription was still made successfully"}
    put = core.rest("PUT", f"/realtime/kv/{KEY}", {"a": 1}, token=alice.access, scope=("testOrg", "testProj"))
    update = {"userId": alice.id, "resource": kv(KEY), "data": {"a": 1}, "version": put.json["version"]}
    assert core.take(here) == [update]
    assert core.take(elsewhere) == [] and core.take(default) == []
    # A late subscriber gets the current value at once.
    late = core.open(SCOPE, token=alice.access)
    assert core.subscribe(late, "kvStore", KEY) == [update]


def test_a_deleted_resource_keeps_its_listeners(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    core.rest("PUT", "/realtime/kv/k", 1, token=alice.access)
    assert core.subscribe(connection, "kvStore", "k")[0]["data"] == 1
    core.clock.advance(1)
    core.rest("DELETE", "/realtime/kv/k", token=alice.access)
    core.clock.advance(1)
    core.rest("PUT", "/realtime/kv/k", 2, token=alice.access)
    deleted, recreated = core.take(connection)
    assert deleted == {"userId": alice.id, "resource": kv("k"), "data": None, "deleted": True,
                       "version": format_timestamp(core.clock.now - 1)}
    assert recreated["data"] == 2 and recreated["version"] > deleted["version"]
    # unsubscribe stops them; unsubscribing again is silent.
    assert core.subscribe(connection, "kvStore", "k", action="unsubscribe") == []
    assert core.subscribe(connection, "kvStore", "k", action="unsubscribe") == []
    core.rest("PUT", "/realtime/kv/k", 3, token=alice.access)
    assert core.take(connection) == []


def test_live_config_updates(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(SCOPE, token=alice.access)
    [warning] = core.subscribe(connection, "liveConfig", "game")
    assert warning["message"].startswith("liveConfig resource doesn't currently exist")
    core.rest("PUT", "/realtime/kv/game", 1, token=alice.access, scope=("testOrg", "testProj"))  # kv is apart
    core.rest("PUT", "/realtime/live-config/game", {"max": 4}, token=alice.access, scope=("testOrg", "testProj"))
    [update] = core.take(connection)
    assert update["resource"] == kv("game", "liveConfig") and update["data"] == {"max": 4}


def test_versions_increase_per_resource(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    core.subscribe(connection, "kvStore", "k")
    core.subscribe(connection, "collection", "notes")
    core.take(connection)
    for n in range(4):  # the clock stands still
        core.rest("PUT", "/realtime/kv/k", n, token=alice.access)
        core.http("POST", "/notes", {"n": n}, cookie=alice.cookie)
    updates = core.take(connection)
    for type in ("kvStore", "collection"):
        versions = [u["version"] for u in updates if u["resource"]["type"] == type]
        assert len(versions) == 4 and versions == sorted(set(versions))


def test_the_public_role_and_the_rules_decide_subscriptions(core: ResourcesCore) -> None:
    nobody = core.open()
    [error] = core.subscribe(nobody, "kvStore", "k")
    assert error == {"error": "Forbidden", "code": "forbidden", "resource": kv("k"),
                     "message": "You don't have permission to access this."}
    assert core.rest("GET", "/realtime/status").json["subscriptions"] == 0
    [error] = core.subscribe(nobody, "collection", "notes")
    assert error["code"] == "forbidden"


def test_kv_deliveries_are_rechecked_per_subscriber(core: ResourcesCore) -> None:
    core.set_rules({"version": 1, "roles": {"reader": {"rules": [
        {"collection": "kvStore", "action": "read", "filter": {"id": {"_starts_with": "public:"}}}]}}})
    alice = core.account("alice@example.com")
    reader = core.account("reader@example.com", role="reader")
    connections = {name: core.open(token=account.access) for name, account in (("alice", alice), ("reader", reader))}
    for connection in connections.values():
        core.subscribe(connection, "kvStore", "public:a")
        core.subscribe(connection, "kvStore", "secret")
        core.take(connection)
    core.rest("PUT", "/realtime/kv/public:a", 1, token=alice.access)
    core.rest("PUT", "/realtime/kv/secret", 2, token=alice.access)
    assert [u["resource"]["id"] for u in core.take(connections["alice"])] == ["public:a", "secret"]
    assert [u["resource"]["id"] for u in core.take(connections["reader"])] == ["public:a"]
    # At subscribe time the hidden entry is as if absent.
    [warning] = core.subscribe(connections["reader"], "kvStore", "secret")
    assert warning["warning"] == "resource_not_found"


def test_collection_resources_are_the_one_data_model(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    core.subscribe(connection, "collection", "articles")
    core.take(connection)
    created = core.http("POST", "/articles", {"title": "from Backpack"}, cookie=alice.cookie).json
    [update] = core.take(connection)
    assert update["userId"] == alice.id and update["resource"] == {"type": "collection", "id": "articles"}
    assert update["data"] == {"action": "create", "record": created}
    core.api("POST", "/items/articles", {"title": "from Directus"}, token=alice.access)
    core.http("PATCH", f"/articles/{created['_id']}", {"title": "edited"}, cookie=alice.cookie)
    core.api("DELETE", f"/items/articles/{created['_id']}", token=alice.access)
    actions = [(u["data"]["action"], u["data"]["record"]["title"]) for u in core.take(connection)]
    assert actions == [("create", "from Directus"), ("update", "edited"), ("delete", "edited")]
    # Subscribing to a collection that has records answers nothing; another collection's writes never arrive.
    assert core.subscribe(connection, "collection", "articles") == []
    core.http("POST", "/other", {"x": 1}, cookie=alice.cookie)
    assert core.take(connection) == []


def test_collection_deliveries_obey_the_rules_and_are_encoded_once_per_rendering(core: ResourcesCore) -> None:
    core.set_rules({"version": 1, "roles": {
        "reader": {"rules": [{"collection": "articles", "action": "read", "fields": ["title"],
                              "filter": {"status": {"_eq": "published"}}}]},
        "nobody": {"rules": [{"collection": "articles", "action": "read", "filter": {"status": {"_eq": "never"}}}]},
    }})
    alice = core.account("alice@example.com")
    readers = [core.account(f"reader{n}@example.com", role="reader") for n in range(3)]
    nobody = core.account("nobody@example.com", role="nobody")
    everyone = [alice, *readers, nobody]
    connections = [core.open(token=account.access) for account in everyone for _ in range(2)]
    for connection in connections:
        core.subscribe(connection, "collection", "articles")
        core.take(connection)
    response = core.api("POST", "/items/articles", {"title": "T", "status": "published", "secret": "s"},
                        token=alice.access)
    assert response.status == 200
    deliveries = [event for event in core.board.mounts.hub_events(core.last_changes, core.board._context)
                  if isinstance(event, Deliver) and event.protocol == "resources"]
    assert len(deliveries) == 2  # alice's rendering and the readers', whatever their number
    received = [core.take(connection) for connection in connections]
    assert [len(frames) for frames in received] == [1] * 8 + [0, 0]
    assert received[0] == received[1] and received[0][0]["data"]["record"]["secret"] == "s"
    assert all(frames == received[2] for frames in received[2:8])
    assert set(received[2][0]["data"]["record"]) == {"_id", "title"}
    core.api("POST", "/items/articles", {"title": "draft", "status": "draft"}, token=alice.access)
    assert [core.take(c) for c in connections[2:8]] == [[]] * 6


def test_big_records_are_sent_as_their_key(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    core.subscribe(connection, "collection", "blobs")
    core.take(connection)
    created = core.http("POST", "/blobs", {"text": "x" * 70_000}, cookie=alice.cookie).json
    [update] = core.take(connection)
    assert update["data"] == {"action": "create", "record": {"_id": created["_id"]}, "truncated": True}


def test_other_protocols_data_is_no_collection_resource(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    for name in ["_asnity.chats", "users", "sessions", "kvStore", "", "a" * 65, "../x", "\u2603"]:
        [error] = core.subscribe(connection, "collection", name)
        assert error["error"] == "Invalid message format", (name, error)
    assert core.rest("GET", "/realtime/status").json["subscriptions"] == 0


def _inbox(core: ResourcesCore) -> tuple[str, str]:
    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    response = core.rest("PUT", f"/backend/documents/{read_token}", {"#messages": {}, "title": "t"},
                         headers=[("write-token", write_token), ("derived-from", "0"), ("revision", "1")])
    assert response.status == 200, response.json
    return read_token, write_token


def test_documents_by_read_token_need_no_account(core: ResourcesCore) -> None:
    connection = core.open()
    missing = secrets.token_hex(16)
    [warning] = core.subscribe(connection, "document", missing)
    assert warning["warning"] == "resource_not_found"
    read_token, write_token = _inbox(core)
    [current] = core.subscribe(connection, "document", read_token)
    assert current["data"] == {"revision": 1, "content": {"#messages": {}, "title": "t"}} and current["userId"] is None
    core.rest("POST", f"/backend/documents/{write_token}/messages/00000000000000a1", {"#": 1, "v": 21.5})
    [update] = core.take(connection)
    assert update["resource"] == {"type": "document", "id": read_token}
    assert update["data"]["content"]["#messages"] == {"00000000000000a1": {"#": 1, "v": 21.5}}
    assert update["data"]["revision"] > 1 and update["version"] > current["version"]
    # A datagram's merge reaches the subscriber too.
    datagram = encode_request(write_token, "00000000000000b2", {"#": 2, "v": 1}, timestamp_ms=core.clock.now,
                              nonce=b"\x01" * 8)
    outcome = core.run(core.board.handle_datagram(datagram))
    assert outcome.answer is not None
    core.publish(outcome.changes)
    [from_udp] = core.take(connection)
    assert "00000000000000b2" in from_udp["data"]["content"]["#messages"]
    for bad in ["", read_token.upper(), read_token[:-1], write_token + "0"]:
        [error] = core.subscribe(connection, "document", bad)
        assert error["error"] == "Invalid message format"


def test_subscriptions_are_bounded_per_connection(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    limit = core.resources().config.max_subscriptions
    for n in range(limit):
        core.subscribe(connection, "kvStore", f"k{n}")
    core.take(connection)
    [error] = core.subscribe(connection, "kvStore", "one-too-many")
    assert error["error"] == "Too many subscriptions" and error["code"] == "subscription_limit"
    assert str(limit) in error["message"]
    assert core.subscribe(connection, "kvStore", "k0")[0]["warning"] == "resource_not_found"  # held ones still answer
    core.subscribe(connection, "kvStore", "k0", action="unsubscribe")
    assert core.subscribe(connection, "kvStore", "one-too-many")[0]["warning"] == "resource_not_found"
    assert core.rest("GET", "/realtime/status").json["subscriptions"] == limit


def test_an_unknown_upgrade_path_is_not_ours(core: ResourcesCore) -> None:
    accepted = core.run(core.board.accept(HttpRequest("GET", "/realtime/other", list(UPGRADE)), "x1"))
    # Backpack's catch-all takes it (and refuses it in its own words: no session).
    assert isinstance(accepted, HttpResponse) and json.loads(accepted.body) == {"message": "Log in before opening a websocket"}


def test_frames_are_json_objects(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    events = core.run(core.board.handle_message(connection, json.dumps({"action": "subscribe", "resource": kv("k")})))
    payloads = [event.payload for event in events if isinstance(event, Deliver)]
    assert [msgspec.json.decode(payload)["warning"] for payload in payloads] == ["resource_not_found"]
    assert all(isinstance(payload, bytes) for payload in payloads)


def test_a_rule_that_depends_on_the_user_is_decided_per_user(core: ResourcesCore) -> None:
    core.set_rules({"version": 1, "roles": {"owner": {"rules": [
        {"collection": "kvStore", "action": "read", "filter": {"id": {"_eq": "$CURRENT_USER"}}}]}}})
    alice = core.account("alice@example.com")
    owners = [core.account(f"owner{n}@example.com", role="owner") for n in range(2)]
    connections = [core.open(token=owner.access) for owner in owners]
    for owner, connection in zip(owners, connections):
        core.subscribe(connection, "kvStore", owners[0].id)
    core.rest("PUT", f"/realtime/kv/{owners[0].id}", "mine", token=alice.access)
    assert [frame["data"] for frame in core.take(connections[0])] == ["mine"]
    assert core.take(connections[1]) == []


def test_entry_changes_travel_as_data() -> None:
    from satchel.protocol.changes import EntryChange

    change = EntryChange("kvStore", "org", "proj", "a:b", "put", b'{"x":1}', 1_700_000_000_001, "u1", "resources-http")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(change), type=EntryChange) == change


def test_overlapping_subscribes_of_one_connection_count_once(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    message = json.dumps({"action": "subscribe", "resource": kv("k")})
    first, second = core.board.handle_message(connection, message), core.board.handle_message(connection, message)
    # Interleave: both read before either registers.
    first_op, second_op = next(first), next(second)
    events = []
    for action, operation in ((first, first_op), (second, second_op)):
        try:
            while True:
                operation = action.send(core.execute(operation))
        except StopIteration as done:
            events.extend(done.value)
    core.publish(events)
    assert sum(1 for event in events if type(event).__name__ == "Subscribe") == 1
    assert core.rest("GET", "/realtime/status").json["subscriptions"] == 1


def test_a_connection_ends_when_its_access_token_expires(core: ResourcesCore) -> None:
    from satchel.protocol.channels import CloseConnection

    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    _, static = core.static_token(alice.id)
    forever = core.open(token=static)
    deadline = core.board.deadline_ms(connection)
    assert deadline is not None and deadline > core.clock.now
    assert core.board.deadline_ms(forever) is None and core.board.deadline_ms(core.open()) is None
    core.subscribe(connection, "kvStore", "k")
    core.clock.advance(deadline - core.clock.now)
    core.publish(core.run(core.board.on_timer(connection)))
    error, close = core.received[connection]
    assert error["code"] == "token_expired" and isinstance(close, CloseConnection) and close.code == 1008
    assert core.board.opened(connection) is None
    assert core.rest("GET", "/realtime/status").json == {"status": "ok", "connections": 2, "subscriptions": 0}
    # Without a timer, the next message after the expiry ends it just the same.
    late = core.open(token=core.login("alice@example.com")["access_token"])
    core.clock.advance(core.board.deadline_ms(late) - core.clock.now)  # type: ignore[operator]
    answers = core.subscribe(late, "kvStore", "k")
    assert answers[0]["code"] == "token_expired" and isinstance(answers[1], CloseConnection)
