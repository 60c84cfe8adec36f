"""Backpack's websocket actions, driven through the pure core (seed 000)."""

from __future__ import annotations

import pytest

from core_harness import Core

GREETING = {"action": "connection", "response": "Websocket connection established"}


class Room:
    """Two users, Sally (two tabs) and George, connected and greeted."""

    def __init__(self) -> None:
        self.core = Core()
        self.sally, self.sally_cookie = self.core.user("sally@example.com")
        self.george, self.george_cookie = self.core.user("george@example.com")
        self.s1 = self.core.connect(self.sally_cookie)
        self.s2 = self.core.connect(self.sally_cookie)
        self.g = self.core.connect(self.george_cookie)
        for connection in (self.s1, self.s2, self.g):
            assert self.core.take(connection) == [GREETING]

    def send(self, connection: str, message: object) -> None:
        self.core.send(connection, message)

    def take(self, connection: str) -> list:
        return self.core.take(connection)

    def channel(self, connection: str, name: str = "Mountain Bikers") -> str:
        self.send(connection, {"action": "createChannel", "usersInformationCollection": "usersmeta",
                               "channelType": "rooms", "name": name})
        reply = self.take(connection)[-1]
        for other in (self.s1, self.s2, self.g):
            self.take(other)
        return reply["response"]["_id"]


@pytest.fixture
def room() -> Room:
    return Room()


def test_a_websocket_needs_a_logged_in_session() -> None:
    core = Core()
    refused = core.connect(None)
    assert refused.status == 401
    assert core.connect("_redis=forged").status == 401


# -- data actions ------------------------------------------------------------


def test_create_broadcasts_to_everyone_including_the_sender(room: Room) -> None:
    room.send(room.s1, {"action": "create", "collection": "messages", "data": {"text": "First message!"}})
    sent = room.take(room.s1)
    assert len(sent) == 1 and sent[0]["action"] == "create" and sent[0]["collection"] == "messages"
    record = sent[0]["response"]
    assert record["text"] == "First message!" and record["userId"] == room.sally
    assert "httpRequest" not in sent[0]
    assert room.take(room.s2) == sent and room.take(room.g) == sent


def test_the_author_is_the_session_user_not_what_the_client_says(room: Room) -> None:
    room.send(room.g, {"action": "create", "collection": "messages", "data": {"userId": room.sally}})
    assert room.take(room.g)[0]["response"]["userId"] == room.george


def test_find_getAll_getOne(room: Room) -> None:
    for text, name in [("a", "Sally"), ("b", "George"), ("c", "Sally")]:
        room.send(room.s1, {"action": "create", "collection": "messages", "data": {"text": text, "userName": name}})
    created = [m["response"] for m in room.take(room.s1)]
    room.send(room.g, {"action": "find", "collection": "messages", "query": {"userName": "Sally"}})
    assert room.take(room.g)[-1] == {"action": "find", "collection": "messages", "response": [created[0], created[2]]}
    room.send(room.g, {"action": "getAll", "collection": "messages"})
    assert room.take(room.g) == [{"action": "getAll", "collection": "messages", "response": created}]
    room.send(room.g, {"action": "getOne", "collection": "messages", "id": created[1]["_id"]})
    assert room.take(room.g) == [{"action": "getOne", "collection": "messages", "response": created[1]}]
    room.send(room.g, {"action": "getOne", "collection": "messages", "id": "0" * 24})
    assert room.take(room.g) == [{"action": "getOne", "collection": "messages", "response": None}]
    assert room.take(room.s1) == []


def test_update_overwrites_patch_merges_delete_removes(room: Room) -> None:
    room.send(room.s1, {"action": "create", "collection": "messages", "data": {"text": "1st", "keep": True}})
    record = room.take(room.s1)[0]["response"]
    room.take(room.g)
    room.send(room.s1, {"action": "patch", "collection": "messages", "id": record["_id"], "data": {"text": "2nd", "keep": None}})
    patched = room.take(room.g)[0]
    assert patched["action"] == "patch" and patched["response"]["text"] == "2nd" and "keep" not in patched["response"]
    room.send(room.s1, {"action": "update", "collection": "messages", "id": record["_id"], "data": {"only": 1}})
    updated = room.take(room.g)[0]
    assert updated["action"] == "update"
    assert set(updated["response"]) == {"_id", "only", "createdAt", "updatedAt", "__v"}
    room.send(room.s1, {"action": "delete", "collection": "messages", "id": record["_id"]})
    deleted = room.take(room.g)[0]
    assert deleted == {"action": "delete", "collection": "messages", "response": updated["response"]}
    room.take(room.s1)
    room.send(room.s1, {"action": "delete", "collection": "messages", "id": record["_id"]})
    assert room.take(room.s1)[0]["action"] == "error"
    assert room.take(room.g) == []


def test_a_record_in_a_channel_goes_to_its_members_and_the_author(room: Room) -> None:
    channel_id = room.channel(room.g)  # George is in the channel; Sally is not
    room.send(room.s1, {"action": "create", "collection": "messages",
                        "data": {"text": "hi", "channelType": "rooms", "channelId": channel_id}})
    assert [m["action"] for m in room.take(room.s1)] == ["create"]  # the author
    assert room.take(room.s2) == []  # Sally's other tab is not in the channel
    assert [m["response"]["text"] for m in room.take(room.g)] == ["hi"]


@pytest.mark.parametrize("flag", [False, "false"])
def test_broadcast_false_goes_only_to_the_writers_connections(room: Room, flag: object) -> None:
    room.send(room.s1, {"action": "create", "collection": "usersmeta", "data": {"broadcast": flag}})
    assert len(room.take(room.s1)) == 1 and len(room.take(room.s2)) == 1
    assert room.take(room.g) == []


# -- relayed messages -------------------------------------------------------


@pytest.mark.parametrize("action", ["broadcast", "open", "close"])
def test_relays_add_the_user_id_and_reach_everyone(room: Room, action: str) -> None:
    room.send(room.s1, {"action": action, "customAction": "userTyping"})
    expected = {"action": action, "customAction": "userTyping", "userId": room.sally}
    assert room.take(room.s1) == [expected] and room.take(room.s2) == [expected] and room.take(room.g) == [expected]


def test_a_relay_naming_a_channel_reaches_its_members_only(room: Room) -> None:
    channel_id = room.channel(room.g)
    room.send(room.g, {"action": "broadcast", "text": "psst", "channelType": "rooms", "channelId": channel_id})
    assert [m["text"] for m in room.take(room.g)] == ["psst"]
    assert room.take(room.s1) == [] and room.take(room.s2) == []


def test_a_user_is_announced_gone_once_when_the_last_socket_closes(room: Room) -> None:
    # Sally keeps a tab open: she has not left, and nobody is told she has.
    room.core.close(room.s2)
    assert room.take(room.s1) == [] and room.take(room.g) == []
    room.core.close(room.s1)
    assert room.take(room.g) == [{"action": "close", "userId": room.sally}]


# -- channels ---------------------------------------------------------------


def test_createChannel_tells_the_others_and_answers_the_creator(room: Room) -> None:
    room.send(room.s1, {"action": "createChannel", "usersInformationCollection": "usersmeta",
                        "channelType": "rooms", "name": "Burlington, VT Mountain Bikers"})
    [reply] = room.take(room.s1)
    channel_doc = reply["response"]
    assert channel_doc["channelType"] == "rooms" and channel_doc["name"] == "Burlington, VT Mountain Bikers"
    assert channel_doc["userId"] == room.sally
    entry = {"channelType": "rooms", "channelId": channel_doc["_id"]}
    assert reply["usersChannels"] == [entry] and reply["usersCurrentChannel"] == entry
    others = {"action": "createChannel", "response": channel_doc}
    assert room.take(room.s2) == [others] and room.take(room.g) == [others]


def test_join_change_and_leave_keep_the_users_information_document(room: Room) -> None:
    first = room.channel(room.g, "first")
    second = room.channel(room.g, "second")
    a, b = ({"channelType": "rooms", "channelId": c} for c in (first, second))

    room.send(room.s1, {"action": "joinChannel", "usersInformationCollection": "usersmeta",
                        "channelType": "rooms", "channelId": first})
    [reply] = room.take(room.s1)
    assert reply["action"] == "joinChannel" and reply["userId"] == room.sally
    assert reply["response"]["channels"] == [a] and reply["response"]["currentChannel"] == a
    assert reply["response"]["userId"] == room.sally and reply["response"]["broadcast"] is False
    assert room.take(room.g) == [{"action": "joinChannel", "userId": room.sally, "channelType": "rooms", "channelId": first}]
    assert room.take(room.s2) == []

    room.send(room.s1, {"action": "joinChannel", "usersInformationCollection": "usersmeta",
                        "channelType": "rooms", "channelId": second})
    room.send(room.s1, {"action": "joinChannel", "usersInformationCollection": "usersmeta",
                        "channelType": "rooms", "channelId": second})  # twice: listed once
    assert room.take(room.s1)[-1]["response"]["channels"] == [a, b]
    room.take(room.g)

    room.send(room.s1, {"action": "changeChannel", "usersInformationCollection": "usersmeta",
                        "channelType": "rooms", "channelId": first})
    [changed] = room.take(room.s1)
    assert changed["response"]["currentChannel"] == a and changed["channelId"] == first
    assert room.take(room.g) == []

    room.send(room.s1, {"action": "leaveChannel", "usersInformationCollection": "usersmeta",
                        "channelType": "rooms", "channelId": first})
    [left] = room.take(room.s1)
    assert left["response"]["channels"] == [b] and left["response"]["currentChannel"] == b
    assert room.take(room.g) == [{"action": "leaveChannel", "userId": room.sally, "channelType": "rooms", "channelId": first}]

    # Left: no longer hears the channel.
    room.send(room.g, {"action": "broadcast", "channelType": "rooms", "channelId": first})
    assert room.take(room.s1) == []

    room.send(room.s1, {"action": "leaveChannel", "usersInformationCollection": "usersmeta",
                        "channelType": "rooms", "channelId": second})
    assert room.take(room.s1)[0]["response"]["currentChannel"] == {"channelType": None, "channelId": None}


def test_joinUsersChannels_subscribes_a_new_connection(room: Room) -> None:
    channel_id = room.channel(room.s1)
    s3 = room.core.connect(room.sally_cookie)
    room.take(s3)
    room.send(s3, {"action": "joinUsersChannels", "usersInformationCollection": "usersmeta"})
    assert room.take(s3) == [{"action": "joinUsersChannels", "usersChannels": [{"channelType": "rooms", "channelId": channel_id}]}]
    room.send(room.g, {"action": "broadcast", "channelType": "rooms", "channelId": channel_id, "n": 1})
    assert [m.get("n") for m in room.take(s3)] == [1]
    assert room.take(room.s2) == []  # subscriptions are per connection


def test_deleteChannel_removes_messages_channel_and_memberships(room: Room) -> None:
    channel_id = room.channel(room.s1)
    other_id = room.channel(room.s1, "other")
    room.send(room.g, {"action": "joinChannel", "usersInformationCollection": "usersmeta",
                       "channelType": "rooms", "channelId": channel_id})
    room.send(room.s1, {"action": "create", "collection": "chat",
                        "data": {"text": "bye", "channelType": "rooms", "channelId": channel_id}})
    room.send(room.s1, {"action": "create", "collection": "chat",
                        "data": {"text": "stay", "channelType": "rooms", "channelId": other_id}})
    for connection in (room.s1, room.s2, room.g):
        room.take(connection)

    room.send(room.s1, {"action": "deleteChannel", "usersInformationCollection": "usersmeta",
                        "channelMessagesCollection": "chat", "channelType": "rooms", "channelId": channel_id})
    [george_hears] = room.take(room.g)
    assert george_hears["action"] == "deleteChannel" and george_hears["userId"] == room.sally
    assert george_hears["response"]["userId"] == room.george
    assert george_hears["response"]["channels"] == []
    assert george_hears["response"]["currentChannel"] == {"channelType": None, "channelId": None}
    [reply] = room.take(room.s1)
    assert reply["response"]["channels"] == [{"channelType": "rooms", "channelId": other_id}]
    assert room.take(room.s2) == []

    room.send(room.g, {"action": "getAll", "collection": "chat"})
    assert [m["text"] for m in room.take(room.g)[0]["response"]] == ["stay"]
    room.send(room.g, {"action": "getOne", "collection": "rooms", "id": channel_id})
    assert room.take(room.g)[0]["response"] is None
    room.send(room.s1, {"action": "broadcast", "channelType": "rooms", "channelId": channel_id})
    room.take(room.s1)
    assert room.take(room.g) == []  # nobody is subscribed any more


def test_only_the_creator_may_delete_a_channel(room: Room) -> None:
    channel_id = room.channel(room.s1)
    room.send(room.g, {"action": "deleteChannel", "usersInformationCollection": "usersmeta",
                       "channelMessagesCollection": "chat", "channelType": "rooms", "channelId": channel_id})
    [error] = room.take(room.g)
    assert error["action"] == "error" and error["failedAction"] == "deleteChannel"
    room.send(room.g, {"action": "getOne", "collection": "rooms", "id": channel_id})
    assert room.take(room.g)[0]["response"]["_id"] == channel_id


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, message_part",
    [
        ("{not json", "Invalid JSON"),
        ("[1,2]", "JSON object"),
        ('"create"', "JSON object"),
        ("{}", "Unknown action"),
        ('{"action":"fly"}', "Unknown action 'fly'"),
        ('{"action":5}', "Unknown action"),
        ('{"action":"create","collection":"messages"}', "Invalid create message"),
        ('{"action":"create","collection":"messages","data":[1]}', "Invalid create message"),
        ('{"action":"getOne","collection":7,"id":"x"}', "Invalid getOne message"),
        ('{"action":"getAll","collection":"users"}', "reserved"),
        ('{"action":"find","collection":"../etc"}', "collection names"),
        ('{"action":"joinChannel","usersInformationCollection":"usersmeta","channelType":"rooms"}', "Invalid joinChannel"),
        (b"\xff\xfe", "Invalid JSON"),
    ],
)
def test_bad_frames_get_an_error_to_the_sender_only(room: Room, frame: str | bytes, message_part: str) -> None:
    room.send(room.s1, frame)
    [error] = room.take(room.s1)
    assert error["action"] == "error" and message_part in error["message"]
    assert room.take(room.s2) == [] and room.take(room.g) == []
