"""Delivery re-checked per subscriber (issue 11 part 2) on the Directus
websockets: a change reaches a subscriber only if its read rule and its
subscription's query admit the item, with only the fields it may read, and
each distinct frame is encoded once for all of its recipients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from satchel.protocol.channels import Binary, CloseConnection
from satchel.protocol.permissions import RuleSet
from test_directus_websocket import DirectusCore

RULES = {
    "roles": {
        # everything
        "editor": {"rules": [{"collection": "*", "action": "*"}]},
        # published items only, two fields
        "reader": {"rules": [{"collection": "articles", "action": "read",
                              "filter": {"status": {"_eq": "published"}}, "fields": ["title", "status"]}]},
        # their own items only
        "author": {"rules": [{"collection": "articles", "action": "*", "filter": {"owner": {"_eq": "$CURRENT_USER"}}}]},
        # nothing in articles
        "outsider": {"rules": [{"collection": "other", "action": "read"}]},
    }
}


@pytest.fixture
def core() -> DirectusCore:
    return DirectusCore(rules=RuleSet.from_json(json.dumps(RULES)))


def subscriber(core: DirectusCore, role: str, query: dict[str, Any] | None = None, uid: str = "1") -> tuple[str, Any]:
    user = core.user(role=role)
    connection = core.sdk(core.static_token(user))
    message: dict[str, Any] = {"type": "subscribe", "collection": "articles", "uid": uid}
    if query is not None:
        message["query"] = query
    core.send(connection, message)
    [init] = core.take(connection)
    assert init["event"] == "init", init
    return connection, user


def write(core: DirectusCore, writer: str, action: str, **fields: Any) -> Any:
    core.send(writer, {"type": "items", "collection": "articles", "action": action, **fields})
    [reply] = core.take(writer)
    assert reply["type"] == "items", reply
    return reply["data"]


def _is_event(payload: Any) -> bool:
    if isinstance(payload, (Binary, CloseConnection)):
        return False
    message = json.loads(payload)
    return message.get("type") in ("subscription", "SUBSCRIPTION") or ("action" in message and "type" not in message)


def directus_deliveries(core: DirectusCore, start: int) -> list[tuple[Any, list[str]]]:
    """The subscription events since ``start`` that went to Directus connections."""
    directus = core.board.registries["directus"]
    return [(p, r) for p, r in core.deliveries[start:] if r and r[0] in directus and _is_event(p)]


def test_each_role_receives_what_its_rule_admits(core: DirectusCore) -> None:
    writer = core.sdk(core.static_token(core.user(role="editor")))
    editor, _ = subscriber(core, "editor")
    reader, _ = subscriber(core, "reader")
    # A role that may not read the collection cannot even subscribe.
    out = core.sdk(core.static_token(core.user(role="outsider")))
    core.send(out, {"type": "subscribe", "collection": "articles", "uid": "1"})
    assert core.take(out)[0]["error"]["code"] == "FORBIDDEN"

    draft = write(core, writer, "create", data={"title": "d", "status": "draft", "body": "secret"})
    assert [m["data"][0]["title"] for m in core.take(editor)] == ["d"]
    assert core.take(reader) == []  # the reader's rule does not admit a draft: never sent

    live = write(core, writer, "create", data={"title": "p", "status": "published", "body": "secret"})
    [event] = core.take(reader)
    assert event["data"] == [{"id": live["id"], "title": "p", "status": "published"}]  # body hidden
    core.take(editor)

    # An update that takes the item out of the reader's rule: no event for the reader.
    write(core, writer, "update", id=live["id"], data={"status": "draft"})
    assert core.take(reader) == []
    assert core.take(editor)[0]["event"] == "update"
    # A delete of an item the reader may not read (as it was): not sent either.
    write(core, writer, "delete", id=draft["id"])
    assert core.take(reader) == []
    assert core.take(editor) == [{"type": "subscription", "event": "delete", "data": [draft["id"]], "uid": "1"}]
    # A delete of one it could read is.
    again = write(core, writer, "create", data={"title": "q", "status": "published"})
    core.take(reader), core.take(editor)
    write(core, writer, "delete", id=again["id"])
    assert core.take(reader) == [{"type": "subscription", "event": "delete", "data": [again["id"]], "uid": "1"}]


def test_a_rule_on_the_current_user_decides_per_user(core: DirectusCore) -> None:
    alice_conn, alice = subscriber(core, "author")
    bob_conn, bob = subscriber(core, "author")
    writer = core.sdk(core.static_token(core.user(role="editor")))
    mine = write(core, writer, "create", data={"title": "a", "owner": alice.id})
    assert [m["data"][0]["id"] for m in core.take(alice_conn)] == [mine["id"]]
    assert core.take(bob_conn) == []
    write(core, writer, "create", data={"title": "b", "owner": bob.id})
    assert core.take(alice_conn) == []
    assert [m["data"][0]["title"] for m in core.take(bob_conn)] == ["b"]


def test_the_subscription_query_cuts_fields_and_filters(core: DirectusCore) -> None:
    writer = core.sdk(core.static_token(core.user(role="editor")))
    narrow, _ = subscriber(core, "editor", {"fields": "title", "filter": json.dumps({"n": {"_gt": 1}})})
    # A reader asking for a field its rule hides is refused at subscribe time.
    hidden = core.sdk(core.static_token(core.user(role="reader")))
    core.send(hidden, {"type": "subscribe", "collection": "articles", "uid": "1", "query": {"fields": "body"}})
    assert core.take(hidden)[0]["error"]["code"] == "FORBIDDEN"
    write(core, writer, "create", data={"title": "one", "n": 1})
    assert core.take(narrow) == []
    write(core, writer, "create", data={"title": "two", "n": 2})
    assert core.take(narrow) == [{"type": "subscription", "event": "create", "data": [{"title": "two"}], "uid": "1"}]


def test_a_thousand_sdk_subscribers_in_four_roles_cost_four_frames(core: DirectusCore) -> None:
    roles = ["editor", "reader", "author", "editor2"]
    rules = dict(RULES["roles"])
    rules["editor2"] = {"rules": [{"collection": "articles", "action": "read", "fields": ["title"]}]}
    core.set_rules(RuleSet.from_json(json.dumps({"roles": rules})))
    connections: dict[str, list[str]] = {role: [] for role in roles}
    for n in range(1000):
        role = roles[n % 4]
        connection, _ = subscriber(core, role)  # every SDK's first subscription is uid "1"
        connections[role].append(connection)
    writer = core.sdk(core.static_token(core.user(role="editor")))
    start = len(core.deliveries)
    write(core, writer, "create", data={"title": "t", "status": "published", "body": "b", "owner": "nobody"})
    frames = directus_deliveries(core, start)
    # editor: everything; reader: title+status; editor2: title; author: nothing (not the owner)
    assert len(frames) == 3
    by_recipients = {len(r): json.loads(p) for p, r in frames}
    assert set(by_recipients) == {250}
    seen = {}
    for payload, recipients in frames:
        role = next(role for role, conns in connections.items() if recipients[0] in conns)
        assert set(recipients) == set(connections[role])
        seen[role] = sorted(json.loads(payload)["data"][0])
    assert seen == {"editor": ["__v", "body", "createdAt", "id", "owner", "status", "title", "updatedAt"],
                    "reader": ["id", "status", "title"], "editor2": ["id", "title"]}
    for connection in connections["author"]:
        assert core.take(connection) == []


def test_subscribers_alike_share_one_frame_across_formats_and_uids(core: DirectusCore) -> None:
    token = core.static_token(core.user(role="editor"))
    sdk_one = [subscriber(core, "editor")[0] for _ in range(3)]
    sdk_two = [subscriber(core, "editor", uid="2")[0] for _ in range(2)]
    ext = core.connect(f"/websocket?access_token={token}")
    core.send(ext, {"type": "subscribe", "collection": "articles", "uid": "x"})
    v1 = core.connect(f"/websocket?api_token={token}")
    core.send(v1, {"type": "subscribe", "collection": "articles"})
    core.take(ext)
    writer = core.sdk(token)
    start = len(core.deliveries)
    write(core, writer, "create", data={"title": "t"})
    frames = directus_deliveries(core, start)
    assert sorted(len(r) for _, r in frames) == [1, 1, 2, 3]  # uid "1", uid "2", the extension, v1
    assert {tuple(sorted(r)) for _, r in frames} == {tuple(sorted(sdk_one)), tuple(sorted(sdk_two)), (ext,), (v1,)}


def test_rules_changed_at_runtime_apply_to_the_next_delivery(core: DirectusCore) -> None:
    writer = core.sdk(core.static_token(core.user(role="editor")))
    reader, _ = subscriber(core, "reader")
    write(core, writer, "create", data={"title": "d", "status": "draft"})
    assert core.take(reader) == []
    rules = dict(RULES["roles"])
    rules["reader"] = {"rules": [{"collection": "articles", "action": "read"}]}
    core.set_rules(RuleSet.from_json(json.dumps({"roles": rules})))
    write(core, writer, "create", data={"title": "d2", "status": "draft"})
    assert [m["data"][0]["title"] for m in core.take(reader)] == ["d2"]


def test_an_expired_subscriber_receives_as_public(core: DirectusCore) -> None:
    user = core.user(role="editor")
    connection = core.sdk(core.access_token(user, ttl_ms=10_000))
    core.send(connection, {"type": "subscribe", "collection": "articles", "uid": "1"})
    core.take(connection)
    core.tick(by_ms=10_000)
    assert core.take(connection)[0]["error"]["code"] == "TOKEN_EXPIRED"
    writer = core.sdk(core.static_token(core.user(role="editor")))
    write(core, writer, "create", data={"title": "t"})
    assert core.take(connection) == []  # public may read nothing
    core.send(connection, {"type": "auth", "access_token": core.access_token(user)})
    core.take(connection)
    write(core, writer, "create", data={"title": "u"})
    assert [m["data"][0]["title"] for m in core.take(connection)] == ["u"]


def test_backpack_rest_writes_are_checked_like_any_other(core: DirectusCore) -> None:
    reader, _ = subscriber(core, "reader")
    editor = core.user(role="editor", password="pw")
    cookie = core.backpack_login(editor.email)
    core.backpack_create("articles", {"title": "bp draft", "status": "draft"}, cookie)
    assert core.take(reader) == []
    record = core.backpack_create("articles", {"title": "bp live", "status": "published", "body": "x"}, cookie)
    assert core.take(reader) == [{"type": "subscription", "event": "create", "uid": "1",
                                  "data": [{"id": record["_id"], "title": "bp live", "status": "published"}]}]


def test_the_grouping_kept_between_changes_follows_every_change_of_the_subscribers(core: DirectusCore) -> None:
    # The renderer keeps its grouping of a collection's subscribers from one
    # change to the next; whatever changes who they are or what they asked
    # for must show in the very next event.
    writer = core.sdk(core.static_token(core.user(role="editor")))
    reader, reader_user = subscriber(core, "reader")
    write(core, writer, "create", data={"title": "a", "status": "published"})
    assert [m["data"][0]["title"] for m in core.take(reader)] == ["a"]
    # A new subscriber of the same collection, after a change was rendered.
    late, _ = subscriber(core, "editor")
    write(core, writer, "create", data={"title": "b", "status": "draft"})
    assert [m["data"][0]["title"] for m in core.take(late)] == ["b"]
    assert core.take(reader) == []
    # A second subscription on a connection (another uid, another query).
    core.send(late, {"type": "subscribe", "collection": "articles", "uid": "2", "query": {"fields": "title"}})
    core.take(late)
    write(core, writer, "create", data={"title": "c", "status": "draft"})
    assert sorted((m["uid"], sorted(m["data"][0])) for m in core.take(late)) == [
        ("1", ["__v", "createdAt", "id", "status", "title", "updatedAt"]), ("2", ["title"])]
    # Unsubscribed: nothing more.
    core.send(late, {"type": "unsubscribe"})
    core.take(late)
    write(core, writer, "create", data={"title": "d", "status": "published"})
    assert core.take(late) == []
    assert len(core.take(reader)) == 1
    # A subscription to one item only sees that item's changes.
    one = write(core, writer, "create", data={"title": "e", "status": "published"})
    core.take(reader)
    core.send(late, {"type": "subscribe", "collection": "articles", "uid": "3", "item": one["id"]})
    core.take(late)
    write(core, writer, "create", data={"title": "f", "status": "published"})
    assert core.take(late) == []
    write(core, writer, "update", id=one["id"], data={"title": "e2"})
    assert [(m["uid"], m["data"]["title"]) for m in core.take(late)] == [("3", "e2")]
    core.take(reader)
    # Signed in again as another role: decided by the new one at once.
    core.send(reader, {"type": "auth", "access_token": core.static_token(core.user(role="editor"))})
    core.take(reader)
    write(core, writer, "create", data={"title": "g", "status": "draft", "body": "x"})
    assert [m["data"][0]["body"] for m in core.take(reader)] == ["x"]
    # Closed: no longer a recipient.
    core.close(reader)
    start = len(core.deliveries)
    write(core, writer, "create", data={"title": "h", "status": "published"})
    assert all(reader not in recipients for _, recipients in core.deliveries[start:])
