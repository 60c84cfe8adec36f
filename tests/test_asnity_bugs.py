"""One test per bug of asnity.md section 7, each failing on the original's
behaviour (named in its docstring)."""

from __future__ import annotations

import pytest
from asnity_harness import Asnity, World, world
from satchel.protocol.asnity import chats, socket_events
from satchel.protocol.asnity.model import (
    CHANNELS,
    CHATS,
    COMMUNITIES,
    ORIGIN_HTTP,
    PROFILES,
)
from satchel.protocol.asnity.store import Context
from satchel.protocol.operations import GetRecord, GetUser, ListRecords

HOUR = 60 * 60 * 1000


@pytest.fixture
def w() -> World:
    return world()


def bad(message) -> dict:
    return {"statusCode": 400, "message": message, "error": "Bad Request"}


def events(asnity: Asnity, socket) -> list[tuple[str, object]]:
    return [(packet.name, packet.args[0]) for packet in asnity.take(socket)]


def test_bug_1_join_subscribes_only_this_socket_to_only_its_own_channels(w: World) -> None:
    """The original ran ``nsp.socketsJoin``: every socket of the namespace joined."""
    asnity = w.asnity
    alice, bob = asnity.connect(w.alice, w.community), asnity.connect(w.bob, w.community)
    outcome = asnity.emit(bob, "join", {"channels": [w.public, w.private]})
    # Bob is not in the private channel: skipped.
    assert [event.channel.id.rsplit("#", 1)[1] for event in outcome.events] == [w.public]
    asnity.post_chat(w.alice, w.public, "to the room")
    asnity.post_chat(w.alice, w.private, "secret")
    assert [name for name, _ in events(asnity, bob)] == ["new-chat"]
    assert events(asnity, alice) == []  # Alice never joined: Bob's join did not move her


def test_bug_2_a_socket_is_admitted_only_to_its_communities_and_writes_only_there(w: World) -> None:
    """The original admitted any token to any namespace and let ``chat`` name
    any channel of any community."""
    asnity = w.asnity
    refused = asnity.connect(w.carol, w.community)
    assert isinstance(refused, socket_events.Admission) and refused.error == "Forbidden"
    other = asnity.community(w.carol, "elsewhere")
    elsewhere = asnity.channel(w.carol, other, "theirs")
    bob = asnity.connect(w.bob, w.community)
    ack = asnity.emit(bob, "chat", {"chatType": "new", "channelId": elsewhere, "content": "sneaky"}).ack
    assert ack == {"written": False}
    # Nor a channel of this community he is not in.
    assert asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.private, "content": "sneaky"}).ack == {"written": False}
    assert len(asnity.store.execute_sync(ListRecords(CHATS, {"content": "sneaky"}))) == 0


@pytest.mark.parametrize(
    "name, data, ack",
    [
        ("chat", None, {"written": False}),
        ("chat", {"chatType": "shout", "channelId": "x", "content": "hi"}, {"written": False}),
        ("chat", {"chatType": "new", "channelId": "x"}, {"written": False}),
        ("chat", {"chatType": "modify", "channelId": "{public}", "content": None}, {"written": False}),
        ("invite-users-to-channel", None, {"isSuccess": False}),
        ("invite-users-to-channel", {"community_id": "{community}", "channel_id": "{public}"}, {"isSuccess": False}),
    ],
)
def test_bug_3_every_failure_is_acked_and_reported_to_the_sender(w: World, name: str, data, ack) -> None:
    """The original's exception filter emitted ``failed-to-send-message`` and never acked."""
    if isinstance(data, dict):
        data = {key: value.format(public=w.public, community=w.community) if isinstance(value, str) else value for key, value in data.items()}
    bob = w.asnity.connect(w.bob, w.community)
    outcome = w.asnity.emit(bob, name, data)
    assert outcome.ack == ack
    assert [emitted for emitted, _ in outcome.emits] == ["failed-to-send-message"]
    assert "message" in outcome.emits[0][1][0]


def test_bug_4_a_socket_whose_token_expired_can_no_longer_write(w: World) -> None:
    """The original checked the token at the handshake only and reused it."""
    asnity = w.asnity
    bob = asnity.connect(w.bob, w.community)
    assert asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "in time"}).ack["written"] is True
    asnity.clock.advance(HOUR)
    outcome = asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "too late"})
    assert outcome.ack == {"written": False}
    assert outcome.emits == [("failed-to-send-message", [{"message": "Unauthorized"}])]


@pytest.mark.parametrize("leave", ["channel", "community"])
def test_bug_5_leaving_over_rest_takes_the_users_sockets_out_of_the_rooms(w: World, leave: str) -> None:
    """The original never removed a socket from a room it had left over REST."""
    asnity = w.asnity
    first, second = asnity.connect(w.bob, w.community), asnity.connect(w.bob, w.community)
    for socket in (first, second):
        asnity.emit(socket, "join", {"channels": [w.public]})
    path = f"/api/channels/{w.public}/me" if leave == "channel" else f"/api/communities/{w.community}/me"
    assert asnity.http("DELETE", path, token=w.bob.token).status == 200
    asnity.post_chat(w.alice, w.public, "after")
    assert events(asnity, first) == [] and events(asnity, second) == []


def test_bug_6_reads_and_writes_check_membership(w: World) -> None:
    """The original let anyone read any channel and chat, post (even SYSTEM
    chats), invite, join private channels, and let any member add users."""
    asnity = w.asnity
    outsider = w.carol
    assert asnity.http("GET", f"/api/channels/{w.public}", token=outsider.token).json == bad("존재하지 않는 채널입니다.")
    assert asnity.http("GET", f"/api/channels/{w.public}/chat?prev=-1", token=outsider.token).json == bad("존재하지 않는 채널입니다.")
    assert asnity.post_chat(outsider, w.public).json == bad("존재하지 않는 채널입니다.")
    assert asnity.http(
        "POST", f"/api/channels/{w.public}/chat", {"type": "SYSTEM", "content": "official"}, token=w.bob.token
    ).status == 400
    # Bob is in the community, not in the private channel: he cannot see it, join it, read or invite to it.
    assert asnity.http("GET", f"/api/channels/{w.private}", token=w.bob.token).json == bad("존재하지 않는 채널입니다.")
    assert asnity.http("POST", f"/api/channels/{w.private}", {"community_id": w.community}, token=w.bob.token).json == bad(
        "존재하지 않는 채널입니다."
    )
    assert asnity.http("POST", f"/api/channels/{w.private}/users", {"community_id": w.community, "users": [w.bob.id]},
                       token=w.bob.token).json == bad("존재하지 않는 채널입니다.")
    assert asnity.http("GET", f"/api/channels/{w.private}/unread-chat", token=w.bob.token).status == 400
    assert asnity.http("POST", f"/api/communities/{w.community}/users", {"users": [outsider.id]}, token=w.bob.token).json == bad(
        "사용자의 커뮤니티 수정 권한이 없습니다."
    )
    # A public channel of one's community but not joined: visible, yet its chats are for its users.
    asnity.http("DELETE", f"/api/channels/{w.public}/me", token=w.bob.token)
    assert asnity.http("GET", f"/api/channels/{w.public}", token=w.bob.token).status == 200
    assert asnity.post_chat(w.bob, w.public).json == bad("사용자가 존재하는 채널이 아닙니다.")


def test_bug_6_user_search_needs_a_token_and_is_no_regular_expression(w: World) -> None:
    """The original's search was public and an unescaped regex."""
    asnity = w.asnity
    assert asnity.http("GET", "/api/users?search=a").status == 401
    for pattern in (".*", "^a", "a|b", "(", "[z-a]"):
        response = asnity.http("GET", f"/api/users?search={pattern}", token=w.bob.token)
        assert response.status == 200 and response.result == {"users": []}, pattern
    asnity.http("PATCH", "/api/user/settings", {"nickname": "a.*b"}, token=w.carol.token)
    found = asnity.http("GET", "/api/users?search=.*", token=w.bob.token).result["users"]
    assert [user["_id"] for user in found] == [w.carol.id]


@pytest.mark.parametrize("value", [True, False])
def test_bug_7_is_private_is_stored_as_sent_and_not_the_manager_is_403(w: World, value: bool) -> None:
    """The original's Transform made every present isPrivate false, and said 401."""
    asnity = w.asnity
    channel = w.private if value is False else w.public
    assert asnity.http("PATCH", f"/api/channels/{channel}/settings", {"isPrivate": value}, token=w.alice.token).status == 200
    assert asnity.http("GET", f"/api/channels/{channel}", token=w.alice.token).result["isPrivate"] is value
    assert asnity.http("PATCH", f"/api/channels/{w.public}/settings", {"isPrivate": value}, token=w.bob.token).status == 403


def test_bug_8_edit_and_delete_answer_the_chat_for_ids_of_100_and_more(w: World) -> None:
    """The original answered ``chat[+chat_id]`` of the list: nothing for ids >= 100."""
    asnity = w.asnity
    for n in range(150):
        asnity.post_chat(w.bob, w.public, f"chat {n}")
    edited = asnity.http("PATCH", f"/api/channels/{w.public}/chats/142", {"content": "edited"}, token=w.bob.token).result
    assert (edited["id"], edited["content"], edited["senderId"], edited["channelId"]) == (142, "edited", w.bob.id, w.public)
    deleted = asnity.http("DELETE", f"/api/channels/{w.public}/chats/101", token=w.bob.token).result
    assert deleted["id"] == 101 and "deletedAt" in deleted and deleted["communityId"] == w.community
    missing = asnity.http("PATCH", f"/api/channels/{w.public}/chats/151", {"content": "x"}, token=w.bob.token)
    assert missing.status == 404


def test_bug_9_interleaved_writers_never_share_a_chat_id(w: World) -> None:
    """The original read the count, then wrote: two writers got one id."""
    asnity = w.asnity
    writers = []
    for n in range(10):
        account = asnity.run(_user(w.bob.id if n % 2 else w.alice.id))
        ctx = Context(asnity.env, ORIGIN_HTTP, account)
        writers.append(chats.create_chat(ctx, w.public, "TEXT", f"racer {n}"))
    pending = [(writer, writer.send(None)) for writer in writers]  # every writer has read the channel
    results = []
    while pending:
        advanced = []
        for writer, operation in pending:
            try:
                advanced.append((writer, writer.send(asnity.execute(operation))))
            except StopIteration as done:
                results.append(done.value["id"])
        pending = advanced
    assert sorted(results) == list(range(1, 11))


def _user(user_id: str):
    user = yield GetUser(user_id)
    return user


def test_bug_10_unread_is_the_smallest_id_since_last_read_across_pages(w: World) -> None:
    """The original searched one chat list, found by a date fixed at process start."""
    asnity = w.asnity
    for _ in range(120):
        asnity.post_chat(w.alice, w.public)
    asnity.clock.advance(1000)
    asnity.http("PATCH", f"/api/channels/{w.public}/lastRead", {"community_id": w.community}, token=w.bob.token)
    asnity.clock.advance(1000)
    for _ in range(90):
        asnity.post_chat(w.alice, w.public)  # ids 121 .. 210, over two pages
    unread = asnity.http("GET", f"/api/channels/{w.public}/unread-chat", token=w.bob.token).result
    assert unread == {"unreadChatId": 121}


def test_bug_11_deleted_chats_come_back_marked_and_blank(w: World) -> None:
    """The original's filter was always true on Mongoose maps: deleted chats came back whole."""
    asnity = w.asnity
    secret = asnity.post_chat(w.bob, w.public, "regrettable").result
    asnity.http("DELETE", f"/api/channels/{w.public}/chats/{secret['id']}", token=w.bob.token)
    listed = asnity.http("GET", f"/api/channels/{w.public}/chat?prev=-1", token=w.alice.token).result["chat"]
    chat = next(c for c in listed if c["id"] == secret["id"])
    assert chat["content"] == "" and "deletedAt" in chat
    assert "regrettable" not in repr(asnity.store.__dict__)


def test_bug_12_last_read_is_keyed_by_the_channels_community(w: World) -> None:
    """The original trusted the body's community_id and then failed GET /api/communities for ever."""
    asnity = w.asnity
    other = asnity.community(w.bob, "mine")
    response = asnity.http("PATCH", f"/api/channels/{w.public}/lastRead", {"community_id": other}, token=w.bob.token)
    assert response.status == 200
    profile = asnity.store.execute_sync(GetRecord(PROFILES, w.bob.id)).record
    assert w.public in profile["communities"][w.community]["channels"]
    assert w.public not in profile["communities"][other]["channels"]
    assert asnity.http("GET", "/api/communities", token=w.bob.token).status == 200


def test_bug_13_signout_clears_the_refresh_cookie_where_it_lives(w: World) -> None:
    """The original cleared it on Path=/, leaving the one on the refresh path."""
    cookie = w.asnity.http("POST", "/api/user/auth/signout", {}, token=w.bob.token).header("set-cookie")
    assert "Path=/api/user/auth/refresh" in cookie and "Max-Age=0" in cookie


def test_bug_14_a_refresh_token_opens_no_route_and_no_socket(w: World) -> None:
    """The original signed both tokens alike, with no type: a refresh token passed the guard."""
    asnity = w.asnity
    assert asnity.http("GET", "/api/communities", token=w.bob.refresh).status == 401
    refused = asnity.connect(f"Bearer {w.bob.refresh}", w.community)
    assert isinstance(refused, socket_events.Admission) and refused.error == "Unauthorized"


def test_bug_15_every_write_is_done_when_the_answer_comes(w: World) -> None:
    """The original answered before its ``Promise.all(xs.map(x => { ... }))`` writes finished."""
    asnity = w.asnity
    dave = asnity.account("dave@example.com")
    asnity.http("POST", f"/api/communities/{w.community}/users", {"users": [dave.id]}, token=w.alice.token)
    community = asnity.store.execute_sync(GetRecord(COMMUNITIES, w.community)).record
    channel = asnity.store.execute_sync(GetRecord(CHANNELS, w.public)).record
    profile = asnity.store.execute_sync(GetRecord(PROFILES, dave.id)).record
    assert dave.id in community["users"] and dave.id in channel["users"]
    assert list(profile["communities"][w.community]["channels"]) == [w.public]


def test_bug_16_a_deleted_community_takes_its_channels_with_it(w: World) -> None:
    """The original left the channels live, and findById ignored deletedAt."""
    asnity = w.asnity
    asnity.http("DELETE", f"/api/communities/{w.community}", token=w.alice.token)
    for channel in (w.public, w.private):
        assert "deletedAt" in asnity.store.execute_sync(GetRecord(CHANNELS, channel)).record
        assert asnity.http("GET", f"/api/channels/{channel}", token=w.alice.token).json == bad("존재하지 않는 채널입니다.")
        assert asnity.post_chat(w.alice, channel).status == 400
        assert asnity.http("GET", f"/api/channels/{channel}/chat?prev=-1", token=w.alice.token).status == 400
    body = {"communityId": w.community, "name": "zombie", "isPrivate": False, "type": "Channel"}
    assert asnity.http("POST", "/api/channel", body, token=w.alice.token).json == bad("커뮤니티가 없습니다.")
    refused = asnity.connect(w.alice, w.community)
    assert isinstance(refused, socket_events.Admission) and refused.error == "Forbidden"


def test_bug_17_create_channel_ignores_a_body_users(w: World) -> None:
    """The original copied the body's users into the channel, behind those users' backs."""
    asnity = w.asnity
    body = {"communityId": w.community, "name": "mine", "isPrivate": True, "type": "Channel", "users": [w.bob.id, w.carol.id]}
    channel_id = asnity.http("POST", "/api/channel", body, token=w.alice.token).result["_id"]
    assert asnity.store.execute_sync(GetRecord(CHANNELS, channel_id)).record["users"] == [w.alice.id]
