"""Backpack under the one rule set (issue 11 part 2): its REST routes and
websocket actions obey the same rules as every other protocol, answer a
refusal in Backpack's own format, and cut what each user hears of a change
to what that user may read. Under the default rules nothing changes (the
rest of the Backpack suite runs under them)."""

from __future__ import annotations

from typing import Any

import pytest

from core_harness import Core
from satchel.protocol.operations import SetUserRole
from satchel.protocol.environment import Environment
from satchel.protocol.permissions import RoleChanged, RuleSet
from satchel.protocol.permissions.live import ROLE_CACHE_MS

GREETING = {"action": "connection", "response": "Websocket connection established"}

# Readers see published articles' titles and statuses, write only their
# own articles (and not their status); editors (the built-in
# ``authenticated`` role here) may do everything.
RULES = RuleSet.from_json(b"""{
  "version": 1,
  "roles": {
    "reader": {"rules": [
      {"collection": "articles", "action": "read",
       "filter": {"_or": [{"status": {"_eq": "published"}}, {"userId": {"_eq": "$CURRENT_USER"}}]},
       "fields": ["title", "status", "userId"]},
      {"collection": "articles", "action": ["create", "update", "delete"],
       "filter": {"userId": {"_eq": "$CURRENT_USER"}}, "fields": ["title", "body", "userId"]},
      {"collection": "meta", "action": "*", "filter": {"userId": {"_eq": "$CURRENT_USER"}}},
      {"collection": "rooms", "action": ["read", "create"], "filter": {"open": {"_eq": true}}},
      {"collection": "notes", "action": "*"}
    ]}
  }
}""")


class Newsroom:
    """An editor and two readers under ``RULES``, each with a websocket."""

    def __init__(self) -> None:
        self.core = Core()
        self.core.board.rules = RULES
        self.editor, self.editor_cookie = self.core.user("editor@example.com")
        self.alice, self.alice_cookie = self.core.user("alice@example.com")
        self.bob, self.bob_cookie = self.core.user("bob@example.com")
        for user in (self.alice, self.bob):
            assert self.core.execute(SetUserRole(user, "reader")) is True
        self.e = self.core.connect(self.editor_cookie)
        self.a = self.core.connect(self.alice_cookie)
        self.b = self.core.connect(self.bob_cookie)
        for connection in (self.e, self.a, self.b):
            assert self.core.take(connection) == [GREETING]

    def post(self, cookie: str, data: dict[str, Any]) -> Any:
        return self.core.http("POST", "/articles", data, cookie=cookie)

    def send(self, connection: str, message: dict[str, Any]) -> list[Any]:
        self.core.send(connection, message)
        return self.core.take(connection)


@pytest.fixture
def room() -> Newsroom:
    return Newsroom()


def test_rest_reads_show_only_what_the_rule_admits_cut_to_its_fields(room: Newsroom) -> None:
    core = room.core
    published = room.post(room.editor_cookie, {"title": "Out", "status": "published", "body": "b", "secret": 1}).json
    draft = room.post(room.editor_cookie, {"title": "Draft", "status": "draft"}).json
    listed = core.http("GET", "/articles", cookie=room.alice_cookie)
    assert listed.status == 200
    assert listed.json == [{"_id": published["_id"], "title": "Out", "status": "published"}]
    one = core.http("GET", f"/articles/{published['_id']}", cookie=room.alice_cookie)
    assert one.json == {"_id": published["_id"], "title": "Out", "status": "published"}
    hidden = core.http("GET", f"/articles/{draft['_id']}", cookie=room.alice_cookie)
    assert hidden.status == 404 and "message" in hidden.json  # not readable: as if absent
    # The editor (the default role) still sees everything.
    assert len(core.http("GET", "/articles", cookie=room.editor_cookie).json) == 2
    assert core.http("GET", f"/articles/{draft['_id']}", cookie=room.editor_cookie).json == draft


def test_rest_writes_are_decided_by_the_record_before_and_after(room: Newsroom) -> None:
    core = room.core
    # Backpack's create sets no userId by itself over REST: the rule wants it.
    refused = room.post(room.alice_cookie, {"title": "Mine?"})
    assert refused.status == 403 and refused.json == {"message": "Unauthorized"}  # Backpack's words
    mine = room.post(room.alice_cookie, {"title": "Mine", "userId": room.alice})
    assert mine.status == 200
    # Answered with what Alice may read of it.
    assert mine.json == {"_id": mine.json["_id"], "title": "Mine", "userId": room.alice}
    record_id = mine.json["_id"]
    assert room.post(room.alice_cookie, {"title": "x", "userId": room.alice, "status": "published"}).status == 403
    # Bob may not touch Alice's article, nor give his own away.
    assert core.http("PATCH", f"/articles/{record_id}", {"title": "Bob's"}, cookie=room.bob_cookie).status == 403
    assert core.http("DELETE", f"/articles/{record_id}", cookie=room.bob_cookie).status == 403
    assert core.http("PUT", f"/articles/{record_id}", {"userId": room.bob}, cookie=room.bob_cookie).status == 403
    assert core.http("PATCH", f"/articles/{record_id}", {"userId": room.bob}, cookie=room.alice_cookie).status == 403
    # A write that changes a field outside the rule's fields is refused.
    denied = core.http("PATCH", f"/articles/{record_id}", {"status": "published"}, cookie=room.alice_cookie)
    assert denied.status == 403 and denied.json == {"message": "Unauthorized"}
    # Nothing of that was written.
    stored = core.http("GET", f"/articles/{record_id}", cookie=room.editor_cookie).json
    assert stored["title"] == "Mine" and stored["userId"] == room.alice and "status" not in stored
    assert core.http("PATCH", f"/articles/{record_id}", {"title": "Mine, edited"}, cookie=room.alice_cookie).status == 200
    assert core.http("DELETE", f"/articles/{record_id}", cookie=room.alice_cookie).status == 200
    # Collections the rules do not name are closed to readers.
    assert core.http("GET", "/secrets", cookie=room.alice_cookie).status == 403
    assert core.http("POST", "/secrets", {"a": 1}, cookie=room.alice_cookie).status == 403


def test_each_socket_hears_a_change_as_its_user_may_read_it(room: Newsroom) -> None:
    core = room.core
    room.post(room.editor_cookie, {"title": "Draft", "status": "draft", "body": "b"})
    assert core.take(room.a) == [] and core.take(room.b) == []  # readers may not read drafts
    editor_copy = core.take(room.e)
    assert len(editor_copy) == 1 and editor_copy[0]["response"]["body"] == "b"
    published = room.post(room.editor_cookie, {"title": "Out", "status": "published", "body": "b"}).json
    for reader in (room.a, room.b):
        assert core.take(reader) == [{
            "action": "create", "collection": "articles", "httpRequest": True,
            "response": {"_id": published["_id"], "title": "Out", "status": "published"},
        }]
    assert core.take(room.e)[0]["response"] == published
    # A reader's own draft reaches that reader (by the rule's $CURRENT_USER
    # branch) and not the other reader.
    created = room.send(room.a, {"action": "create", "collection": "articles", "data": {"title": "Alice's"}})
    assert created[0]["response"]["userId"] == room.alice and "createdAt" not in created[0]["response"]
    assert core.take(room.b) == []
    assert core.take(room.e)[0]["response"]["title"] == "Alice's"


def test_websocket_reads_and_writes_obey_the_rules(room: Newsroom) -> None:
    core = room.core
    published = room.post(room.editor_cookie, {"title": "Out", "status": "published"}).json
    draft = room.post(room.editor_cookie, {"title": "Draft", "status": "draft"}).json
    for connection in (room.a, room.b, room.e):
        core.take(connection)
    shown = {"_id": published["_id"], "title": "Out", "status": "published"}
    assert room.send(room.a, {"action": "getAll", "collection": "articles"})[0]["response"] == [shown]
    assert room.send(room.a, {"action": "find", "collection": "articles", "query": {"title": "Out"}})[0]["response"] == [shown]
    assert room.send(room.a, {"action": "find", "collection": "articles", "query": {"title": "Draft"}})[0]["response"] == []
    refused = room.send(room.a, {"action": "find", "collection": "articles", "query": {"body": "x"}})
    assert refused[0] == {"action": "error", "message": "Unauthorized", "failedAction": "find"}  # a hidden field reveals nothing
    assert room.send(room.a, {"action": "getOne", "collection": "articles", "id": draft["_id"]})[0]["response"] is None
    assert room.send(room.a, {"action": "getOne", "collection": "articles", "id": published["_id"]})[0]["response"] == shown
    for action in ("patch", "update"):
        error = room.send(room.a, {"action": action, "collection": "articles", "id": published["_id"], "data": {"title": "Mine now"}})
        assert error == [{"action": "error", "message": "Unauthorized", "failedAction": action}]
    error = room.send(room.a, {"action": "delete", "collection": "articles", "id": published["_id"]})
    assert error[0]["action"] == "error" and error[0]["failedAction"] == "delete"
    assert core.take(room.e) == [] and core.take(room.b) == []  # nothing was written
    assert room.send(room.a, {"action": "create", "collection": "secrets", "data": {}})[0]["action"] == "error"


def test_channel_actions_obey_the_rules_of_the_collections_they_touch(room: Newsroom) -> None:
    core = room.core
    # A closed room: readers may not create it, nor read or join it.
    refused = room.send(room.a, {"action": "createChannel", "usersInformationCollection": "meta",
                                 "channelType": "rooms", "name": "closed"})
    assert refused[0]["action"] == "error"
    room.send(room.e, {"action": "createChannel", "usersInformationCollection": "meta", "channelType": "rooms", "name": "staff"})
    staff = room.send(room.e, {"action": "getAll", "collection": "rooms"})[0]["response"][0]
    assert core.take(room.a) == [] and core.take(room.b) == []  # readers never heard of it
    joined = room.send(room.a, {"action": "joinChannel", "usersInformationCollection": "meta",
                                "channelType": "rooms", "channelId": staff["_id"]})
    assert joined[0]["action"] == "error" and joined[0]["failedAction"] == "joinChannel"
    # Channel ids with no document are joined as before, into one's own meta.
    joined = room.send(room.a, {"action": "joinChannel", "usersInformationCollection": "meta",
                                "channelType": "lobby", "channelId": "general"})
    assert joined[-1]["action"] == "joinChannel" and joined[-1]["response"]["userId"] == room.alice


def test_a_sockets_actions_follow_its_users_new_role(room: Newsroom) -> None:
    """Given through the admin API (``RoleChanged``), a role applies at once;
    changed behind the server's back (another process writing the store),
    within ``ROLE_CACHE_MS`` - the roles it read are kept that long."""
    core = room.core
    draft = room.post(room.editor_cookie, {"title": "Draft", "status": "draft"}).json
    core.take(room.a)
    get_draft = {"action": "getOne", "collection": "articles", "id": draft["_id"]}
    assert room.send(room.a, get_draft)[0]["response"] is None
    core.execute(SetUserRole(room.alice, "authenticated"))
    core.publish([RoleChanged(room.alice, "authenticated")])
    assert room.send(room.a, get_draft)[0]["response"] == draft

    core.execute(SetUserRole(room.alice, "reader"))  # no RoleChanged: nobody told the server
    assert room.send(room.a, get_draft)[0]["response"] == draft  # the role it read is still fresh
    env, later = core.board.env, core.board.env.now_ms() + ROLE_CACHE_MS
    core.board.env = Environment(now_ms=lambda: later, new_id=env.new_id, new_token=env.new_token)
    assert room.send(room.a, get_draft)[0]["response"] is None
