"""Asnity's socket events (asnity.md section 5) as the Socket.IO layer will
call them, and the rendering of chat changes to rooms."""

from __future__ import annotations

import msgspec
import pytest
from asnity_harness import Asnity, World, world
from satchel.protocol.mounts import NO_CONTEXT
from satchel.protocol.asnity import rooms, socket_events
from satchel.protocol.asnity.model import CHATS, PROFILES
from satchel.protocol.asnity.mount import AsnityMount, render_change
from satchel.protocol.changes import Change
from satchel.protocol.channels import Audience, Subscribe
from satchel.protocol.socketio.packets import Event, PacketDecoder


@pytest.fixture
def w() -> World:
    return world()


def received(asnity: Asnity, socket) -> list[tuple[str, dict, str]]:
    return [(packet.name, packet.args[0], packet.nsp) for packet in asnity.take(socket)]


def joined(w: World, account, channels=None):
    socket = w.asnity.connect(account, w.community)
    assert not isinstance(socket, socket_events.Admission), socket
    w.asnity.emit(socket, "join", {"channels": channels if channels is not None else [w.public, w.private]})
    return socket


# -- names --------------------------------------------------------------------------


def test_the_names_of_namespaces_and_rooms() -> None:
    assert rooms.namespace_of("abc") == "/socket/commu-abc"
    assert rooms.community_of_namespace("/socket/commu-abc") == "abc"
    for invalid in ("/", "/socket/commu-", "/socket/commu-a/b", "/other/socket/commu-abc", "/socket/community-abc"):
        assert rooms.community_of_namespace(invalid) is None
    assert rooms.room_channel("c", "x") != rooms.room_channel("d", "x")
    assert rooms.namespace_channel("c") != rooms.room_channel("c", "c")
    assert rooms.user_in_namespace("c", "u") == Audience(channel=rooms.namespace_channel("c"), user_id="u")


# -- connecting ---------------------------------------------------------------------


def test_admit_a_member_with_a_live_token(w: World) -> None:
    admission = w.asnity.run(socket_events.admit(f"Bearer {w.bob.token}", rooms.namespace_of(w.community), "s9", w.asnity.env))
    assert admission.error is None
    assert (admission.user.id, admission.user.nickname, admission.community_id) == (w.bob.id, "bob", w.community)
    assert admission.events == [Subscribe(rooms.PROTOCOL, "s9", rooms.namespace_channel(w.community))]


@pytest.mark.parametrize(
    "token, namespace, error",
    [
        ("Bearer nope", "/socket/commu-{community}", "Unauthorized"),
        (None, "/socket/commu-{community}", "Unauthorized"),
        ("Bearer {bob}", "/chat", "Invalid namespace"),
        ("Bearer {bob}", "/socket/commu-5e9f2fc00fb8899611d642a4", "Forbidden"),
        ("Bearer {carol}", "/socket/commu-{community}", "Forbidden"),
    ],
)
def test_admit_refuses(w: World, token, namespace: str, error: str) -> None:
    fill = lambda text: text.format(community=w.community, bob=w.bob.token, carol=w.carol.token)
    admission = w.asnity.run(socket_events.admit(fill(token) if token else None, fill(namespace), "s9", w.asnity.env))
    assert (admission.error, admission.user, admission.events) == (error, None, [])


# -- join -----------------------------------------------------------------------------


def test_join_skips_what_is_not_the_users_or_not_this_communitys(w: World) -> None:
    asnity = w.asnity
    other = asnity.community(w.bob, "other")
    elsewhere = asnity.channel(w.bob, other, "elsewhere")
    socket = asnity.connect(w.bob, w.community)
    outcome = asnity.emit(socket, "join", {"channels": [w.public, w.private, elsewhere, "junk", 5, w.public]})
    assert outcome.ack is None and outcome.emits == []
    assert outcome.events == [Subscribe(rooms.PROTOCOL, socket.connection, rooms.room_channel(w.community, w.public))]


@pytest.mark.parametrize("data", [None, {}, {"channels": "all"}, [1]])
def test_join_with_a_bad_payload_reports_it(w: World, data) -> None:
    socket = w.asnity.connect(w.bob, w.community)
    outcome = w.asnity.emit(socket, "join", data)
    assert outcome.events == [] and [name for name, _ in outcome.emits] == ["failed-to-send-message"]


# -- chat -----------------------------------------------------------------------------


def test_a_new_chat_is_acked_and_reaches_the_room_minus_the_sender(w: World) -> None:
    asnity = w.asnity
    alice, bob, bob_again = joined(w, w.alice), joined(w, w.bob), joined(w, w.bob)
    outcome = asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "hi all"})
    info = outcome.ack["chatInfo"]
    assert outcome.ack["written"] is True and outcome.emits == []
    assert (info["content"], info["senderId"], info["id"], info["type"]) == ("hi all", w.bob.id, 1, "TEXT")
    namespace = rooms.namespace_of(w.community)
    assert received(asnity, alice) == [("new-chat", info, namespace)]
    assert received(asnity, bob_again) == [("new-chat", info, namespace)]  # another socket of the sender hears it
    assert received(asnity, bob) == []
    # The same chat over REST: the answer is the same shape.
    rest = asnity.http("GET", f"/api/channels/{w.public}/chat?prev=-1", token=w.alice.token).result["chat"][-1]
    assert rest["id"] == info["id"] and rest["content"] == info["content"]


def test_modify_and_delete_over_the_socket(w: World) -> None:
    asnity = w.asnity
    alice, bob = joined(w, w.alice), joined(w, w.bob)
    chat_id = asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "v1"}).ack["chatInfo"]["id"]
    received(asnity, alice)
    asnity.clock.advance(10)
    modified = asnity.emit(bob, "chat", {"chatType": "modify", "channelId": w.public, "chatId": chat_id, "content": "v2"}).ack
    assert modified["written"] is True and modified["chatInfo"]["content"] == "v2"
    assert modified["chatInfo"]["updatedAt"] != modified["chatInfo"]["createdAt"]
    asnity.clock.advance(10)
    deleted = asnity.emit(bob, "chat", {"chatType": "delete", "channelId": w.public, "chatId": str(chat_id)}).ack
    assert deleted["written"] is True and deleted["chatInfo"]["deletedAt"] == deleted["chatInfo"]["updatedAt"]
    assert [(name, data["id"]) for name, data, _ in received(asnity, alice)] == [("modify-chat", chat_id), ("delete-chat", chat_id)]
    again = asnity.emit(bob, "chat", {"chatType": "delete", "channelId": w.public, "chatId": chat_id})
    assert again.ack == {"written": False}
    assert again.emits == [("failed-to-send-message", [{"message": "존재하지 않는 채팅입니다."}])]


def test_content_over_300_characters_is_refused_without_a_write(w: World) -> None:
    asnity = w.asnity
    alice, bob = joined(w, w.alice), joined(w, w.bob)
    outcome = asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "x" * 301})
    assert (outcome.ack, outcome.events, outcome.emits) == ({"written": False}, [], [])
    assert asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "x" * 300}).ack["written"] is True
    assert len(received(asnity, alice)) == 1
    # Counted as JavaScript counts (UTF-16 units), as the original's client does:
    # 150 emoji are 300 units, 151 are too many.
    assert asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "🚲" * 150}).ack["written"] is True
    assert asnity.emit(bob, "chat", {"chatType": "new", "channelId": w.public, "content": "🚲" * 151}).ack == {
        "written": False
    }


def test_a_chat_written_over_rest_reaches_every_socket_of_the_room(w: World) -> None:
    asnity = w.asnity
    alice, bob = joined(w, w.alice), joined(w, w.bob)
    info = asnity.post_chat(w.bob, w.public, "from http").result
    assert received(asnity, alice) == received(asnity, bob) == [("new-chat", info, rooms.namespace_of(w.community))]


def test_rooms_of_other_channels_and_namespaces_hear_nothing(w: World) -> None:
    asnity = w.asnity
    other = asnity.community(w.alice, "other", (w.bob,))
    other_channel = asnity.channel(w.alice, other, "theirs")
    there = asnity.connect(w.bob, other)
    asnity.emit(there, "join", {"channels": [other_channel]})
    alice_private = joined(w, w.alice, [w.private])
    asnity.post_chat(w.bob, w.public, "only general")
    assert received(asnity, there) == [] and received(asnity, alice_private) == []


# -- invite ---------------------------------------------------------------------------


def test_invite_over_the_socket_moves_the_invitees_sockets_into_the_room(w: World) -> None:
    asnity = w.asnity
    alice = joined(w, w.alice)
    bob = asnity.connect(w.bob, w.community)
    outcome = asnity.emit(alice, "invite-users-to-channel", {"community_id": w.community, "channel_id": w.private, "users": [w.bob.id]})
    assert outcome.ack == {"isSuccess": True} and outcome.emits == []
    invited = received(asnity, bob)
    assert [(name, nsp) for name, _, nsp in invited] == [("invited-to-channel", rooms.namespace_of(w.community))]
    channel = invited[0][1]
    assert channel["_id"] == w.private and channel["existUnreadChat"] is False and w.bob.id in channel["users"]
    assert received(asnity, alice) == []
    asnity.post_chat(w.alice, w.private, "welcome")
    assert [name for name, _, _ in received(asnity, bob)] == ["new-chat"]


@pytest.mark.parametrize("field, value", [("community_id", "5e9f2fc00fb8899611d642a4"), ("users", ["5e9f2fc00fb8899611d642a4"]), ("users", "x")])
def test_a_failed_invite_is_acked_false(w: World, field: str, value) -> None:
    alice = joined(w, w.alice)
    data = {"community_id": w.community, "channel_id": w.private, "users": [w.bob.id], field: value}
    outcome = w.asnity.emit(alice, "invite-users-to-channel", data)
    assert outcome.ack == {"isSuccess": False} and [name for name, _ in outcome.emits] == ["failed-to-send-message"]


def test_unknown_events_are_ignored(w: World) -> None:
    socket = w.asnity.connect(w.bob, w.community)
    assert w.asnity.emit(socket, "leaveChannel", {"channelId": w.public}) == socket_events.SocketOutcome()


def test_deleting_a_channel_closes_its_room(w: World) -> None:
    asnity = w.asnity
    bob = joined(w, w.bob)
    asnity.http("DELETE", f"/api/channels/{w.public}", token=w.alice.token)
    registry = asnity.board.registries[rooms.PROTOCOL]
    assert registry.members(rooms.room_channel(w.community, w.public)) == frozenset()
    assert bob.connection in registry.members(rooms.namespace_channel(w.community))


def test_rest_membership_changes_move_sockets(w: World) -> None:
    asnity = w.asnity
    dave = asnity.account("dave@example.com")
    asnity.http("POST", f"/api/communities/{w.community}/users", {"users": [dave.id]}, token=w.alice.token)
    dave_socket = asnity.connect(dave, w.community)
    # A new public channel: every member's sockets join its room at once.
    news = asnity.channel(w.alice, w.community, "news")
    asnity.post_chat(w.alice, news, "fresh")
    assert [name for name, _, _ in received(asnity, dave_socket)] == ["new-chat"]
    # Joining over REST too.
    asnity.http("DELETE", f"/api/channels/{news}/me", token=dave.token)
    asnity.http("POST", f"/api/channels/{news}", {"community_id": w.community}, token=dave.token)
    asnity.post_chat(w.alice, news, "again")
    assert [name for name, _, _ in received(asnity, dave_socket)] == ["new-chat"]


# -- rendering ------------------------------------------------------------------------


def _chat_record(**changes) -> dict:
    record = {
        "_id": "c1:000000000007", "id": 7, "type": "TEXT", "content": "hello", "senderId": "u1",
        "channelId": "c1", "communityId": "k1", "createdAt": "2022-12-07T06:04:05.000Z",
        "updatedAt": "2022-12-07T06:04:05.000Z", "__v": 0,
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    "kind, changes, name",
    [
        ("create", {}, "new-chat"),
        ("patch", {"content": "edited", "updatedAt": "2022-12-07T06:05:00.000Z"}, "modify-chat"),
        ("patch", {"content": "", "deletedAt": "2022-12-07T06:05:00.000Z", "updatedAt": "2022-12-07T06:05:00.000Z"}, "delete-chat"),
    ],
)
def test_a_chat_change_renders_as_one_socketio_event_for_the_namespace(kind: str, changes: dict, name: str) -> None:
    record = _chat_record(**changes)
    change = Change(CHATS, kind, record, "u1", "asnity-socket", "s7")
    (delivery,) = AsnityMount().render(change, NO_CONTEXT)
    assert delivery.protocol == rooms.PROTOCOL
    assert delivery.audience == Audience(channel=rooms.room_channel("k1", "c1"), exclude="s7")
    packet = PacketDecoder().receive(delivery.payload.decode())
    expected = {k: v for k, v in record.items() if k not in ("_id", "__v")}
    assert packet == Event(name, [expected], "/socket/commu-k1")
    assert delivery.payload.startswith(b'2/socket/commu-k1,["' + name.encode())


def test_a_rest_chat_change_excludes_nobody() -> None:
    delivery = render_change(Change(CHATS, "create", _chat_record(), "u1", "asnity-http"))
    assert delivery.audience == Audience(channel=rooms.room_channel("k1", "c1"))


@pytest.mark.parametrize(
    "change",
    [
        Change(PROFILES, "patch", {"_id": "u1", "nickname": "x"}, "u1", "asnity-http"),
        Change("messages", "create", {"_id": "m", "channelId": "c1", "communityId": "k1"}, "u1", "backpack-http"),
        Change(CHATS, "delete", _chat_record(), "u1", "asnity-http"),
    ],
)
def test_nothing_else_is_rendered(change: Change) -> None:
    assert AsnityMount().render(change, NO_CONTEXT) == ()


def test_every_chat_write_produces_exactly_one_change(w: World) -> None:
    asnity = w.asnity
    asnity.post_chat(w.bob, w.public)
    assert [(c.collection, c.kind) for c in asnity.last_changes if isinstance(c, Change) and c.collection == CHATS] == [(CHATS, "create")]
    socket = joined(w, w.bob)
    outcome = asnity.emit(socket, "chat", {"chatType": "modify", "channelId": w.public, "chatId": 1, "content": "v2"})
    chat_changes = [event for event in outcome.events if isinstance(event, Change)]
    assert [(c.collection, c.kind, c.connection, c.origin) for c in chat_changes] == [(CHATS, "patch", socket.connection, "asnity-socket")]
    record = chat_changes[0].record
    assert (record["communityId"], record["channelId"], record["id"], record["content"]) == (w.community, w.public, 1, "v2")
    assert msgspec.json.decode(msgspec.json.encode(record)) == record


def test_one_payload_for_the_whole_room(w: World) -> None:
    asnity = w.asnity
    sockets = [joined(w, w.alice) for _ in range(3)] + [joined(w, w.bob) for _ in range(3)]
    info = asnity.post_chat(w.bob, w.public).result
    change = next(c for c in asnity.last_changes if isinstance(c, Change) and c.collection == CHATS)
    deliveries = list(asnity.board.deliveries([change]))
    assert len(deliveries) == 1 and sorted(deliveries[0][1]) == sorted(s.connection for s in sockets)
    assert all(received(asnity, s) == [("new-chat", info, rooms.namespace_of(w.community))] for s in sockets)


def test_backpack_sockets_do_not_receive_asnity_data(w: World) -> None:
    """Asnity's collections are Backpack's to neither read nor hear about:
    Backpack's renderer skips the reserved ``_`` collections."""
    from satchel.protocol.backpack.render import render_change as backpack_render

    change = Change(CHATS, "create", _chat_record(), "u1", "asnity-http")
    assert backpack_render(change) == []

