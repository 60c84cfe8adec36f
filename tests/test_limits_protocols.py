"""The per-user and per-connection bounds (issue 14) as each protocol answers
them, through the switchboard with no I/O: the registry's room
(``ChannelLimit``), a Socket.IO namespace CONNECT past the user's bound
(``connect_error``), and a join past the channels bound in Backpack, Asnity
(over Socket.IO and its event layer) and both Directus websocket protocols -
each in its own error format, with nothing joined or written. The same
against the stock npm socket.io-client and a real server:
``test_asnity_socketio_client.py``; the websocket upgrade's 429:
``test_abuse.py``.
"""

from __future__ import annotations

import json
from typing import Any

from asnity_harness import Asnity
from core_harness import Core
from test_directus_websocket import DirectusCore

from satchel.protocol.asnity.rooms import PROTOCOL as ASNITY, namespace_of, room_channel
from satchel.protocol.channels import (
    TOO_MANY_CHANNELS,
    TOO_MANY_CONNECTIONS,
    Channel,
    ChannelLimit,
    ChannelRegistry,
    ChannelRoom,
    Subscribe,
    UserRoom,
)
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mounts import Accepted
from satchel.protocol.operations import run_sync
from satchel.protocol.socketio.packets import ConnectError, PacketDecoder

# -- the registry's room -------------------------------------------------------------


def test_the_registry_says_which_channels_fit_and_keeps_its_silent_guard() -> None:
    registry = ChannelRegistry()
    registry.max_channels = 2
    registry.add_connection("c", "u")
    a, b, c = Channel("t", "a"), Channel("t", "b"), Channel("t", "c")
    assert registry.room("c", (a, b, c, a)) == ChannelRoom(2, 0, (c,))
    registry.subscribe("c", a)
    registry.subscribe("c", b)
    room = registry.room("c", (a, c))
    assert room == ChannelRoom(2, 2, (c,)) and room.full()  # a held one always fits
    registry.subscribe("c", c)  # an action that did not ask: refused, counted
    assert registry.channel_count("c") == 2 and registry.refused == 1
    registry.max_channels = None
    assert registry.room("c", (c,)) == ChannelRoom(None, 2) and not registry.room("c").full()


# -- Socket.IO: the namespace CONNECT ------------------------------------------------


def _engineio(asnity: Asnity, connection: str) -> None:
    request = HttpRequest("GET", "/socket.io/?EIO=4&transport=websocket", [])
    found = asnity.board.engineio(request)
    assert found is not None
    accepted = asnity.run(asnity.board.accept(request, connection, found[0]))
    assert isinstance(accepted, Accepted)
    asnity.publish(accepted.events)


def _packets(asnity: Asnity, connection: str) -> list[Any]:
    return [PacketDecoder().receive(payload.decode()) for payload in asnity.received.pop(connection, [])]


def _namespace(asnity: Asnity, connection: str, token: str, community: str) -> Any:
    """CONNECT ``connection`` to the community's namespace; its one answer."""
    asnity.publish(asnity.run(asnity.board.handle_message(
        connection, f"0{namespace_of(community)},{json.dumps({'token': f'Bearer {token}'})}")))
    packets = _packets(asnity, connection)
    assert len(packets) == 1, packets
    return packets[0]


def _world() -> tuple[Asnity, Any, Any, str]:
    asnity = Asnity()
    alice, bob = asnity.account("alice@example.com"), asnity.account("bob@example.com")
    community = asnity.community(alice, members=(bob,))
    return asnity, alice, bob, community


def test_a_socketio_connect_past_the_users_bound_is_refused_with_connect_error() -> None:
    asnity, alice, bob, community = _world()
    asnity.board.max_connections_per_user = 2
    for connection in ("e1", "e2", "e3", "b1"):
        _engineio(asnity, connection)
    assert not isinstance(_namespace(asnity, "e1", alice.token, community), ConnectError)
    assert not isinstance(_namespace(asnity, "e2", alice.token, community), ConnectError)
    refused = _namespace(asnity, "e3", alice.token, community)
    assert isinstance(refused, ConnectError) and refused.nsp == namespace_of(community)
    assert refused.data == {"message": TOO_MANY_CONNECTIONS}
    registry = asnity.board.registries[ASNITY]
    assert registry.user_of("e3") is None and registry.channel_count("e3") == 0  # not the user's, in no channel
    assert not isinstance(_namespace(asnity, "b1", bob.token, community), ConnectError)  # another user
    # A second namespace of a connection that is the user's already is not one more connection.
    other = asnity.community(alice, name="second")
    assert not isinstance(_namespace(asnity, "e1", alice.token, other), ConnectError)
    # A connection gone makes room for the next one.
    asnity.publish(asnity.board.closed("e2"))
    assert not isinstance(_namespace(asnity, "e3", alice.token, community), ConnectError)


def test_two_sign_ins_of_one_user_whose_events_are_not_applied_yet_share_one_bound() -> None:
    """A CONNECT admitted by ``UserRoom`` counts at once, before its events
    are published (a publish may wait behind earlier writes, ordering.py):
    two connects of one user decided before either is applied must not both
    pass a bound of one."""
    asnity, alice, _, community = _world()
    asnity.board.max_connections_per_user = 1
    for connection in ("e1", "e2"):
        _engineio(asnity, connection)

    def connect(connection: str) -> list[Any]:
        return asnity.run(asnity.board.handle_message(
            connection, f"0{namespace_of(community)},{json.dumps({'token': f'Bearer {alice.token}'})}"))

    first, second = connect("e1"), connect("e2")  # both decided; neither published yet
    asnity.publish(first)
    asnity.publish(second)
    assert not isinstance(_packets(asnity, "e1")[0], ConnectError)
    refused = _packets(asnity, "e2")[0]
    assert isinstance(refused, ConnectError) and refused.data == {"message": TOO_MANY_CONNECTIONS}
    # The admitted one's hold ended with its sign-in; when it closes, room is made again.
    assert not asnity.board._room_held
    asnity.publish(asnity.board.closed("e1"))
    asnity.publish(connect("e2"))
    assert not isinstance(_packets(asnity, "e2")[0], ConnectError)


def test_the_bound_counts_every_protocol() -> None:
    asnity, alice, _, community = _world()
    asnity.board.max_connections_per_user = 1
    # Another protocol's connection of the same user id (a websocket upgrade).
    asnity.board.registries["backpack"].add_connection("w1", alice.id)
    assert asnity.board.user_has_room("backpack", "w1", alice.id)  # itself not counted
    assert not asnity.board.user_has_room(ASNITY, "e1", alice.id)
    _engineio(asnity, "e1")
    assert _namespace(asnity, "e1", alice.token, community).data == {"message": TOO_MANY_CONNECTIONS}
    asnity.board.max_connections_per_user = None
    assert asnity.run(_ask(UserRoom(ASNITY, "e1", alice.id)))


def _ask(operation: Any) -> Any:
    return (yield operation)


def test_a_socketio_connect_past_the_channels_bound_is_refused() -> None:
    asnity, alice, _, community = _world()
    asnity.board.registries[ASNITY].max_channels = 1
    _engineio(asnity, "e1")
    assert not isinstance(_namespace(asnity, "e1", alice.token, community), ConnectError)
    refused = _namespace(asnity, "e1", alice.token, asnity.community(alice, name="second"))
    assert refused.data == {"message": TOO_MANY_CHANNELS}


# -- Asnity's join ----------------------------------------------------------------------


def test_an_asnity_join_past_the_bound_joins_what_fits_and_says_failed_to_send_message() -> None:
    asnity, alice, _, community = _world()
    channels = [asnity.channel(alice, community, name=f"c{i}") for i in range(3)]
    asnity.board.registries[ASNITY].max_channels = 3  # the namespace and two rooms
    socket = asnity.connect(alice, community)
    assert not isinstance(socket, type(None)) and hasattr(socket, "connection")
    outcome = asnity.emit(socket, "join", {"channels": channels})
    assert outcome.emits == [("failed-to-send-message", [{"message": TOO_MANY_CHANNELS}])]
    assert [e.channel for e in outcome.events if isinstance(e, Subscribe)] == [
        room_channel(community, channels[0]), room_channel(community, channels[1])]
    registry = asnity.board.registries[ASNITY]
    assert registry.channel_count(socket.connection) == 3 and registry.refused == 0  # refused by the protocol
    # Joining again what it holds is no failure.
    assert asnity.emit(socket, "join", {"channels": channels[:2]}).emits == []
    # Unbounded: everything joins.
    registry.max_channels = None
    assert asnity.emit(socket, "join", {"channels": channels}).emits == []
    assert registry.channel_count(socket.connection) == 4


# -- Backpack ----------------------------------------------------------------------------


def _backpack(bound: int) -> tuple[Core, str, str]:
    core = Core()
    _, cookie = core.user("sally@example.com")
    connection = core.connect(cookie)
    assert isinstance(connection, str)
    core.take(connection)  # the greeting
    core.board.registries["backpack"].max_channels = bound
    return core, connection, cookie


def _join(core: Core, connection: str, channel_id: str) -> list[Any]:
    core.send(connection, {"action": "joinChannel", "usersInformationCollection": "usersmeta",
                           "channelType": "rooms", "channelId": channel_id})
    return core.take(connection)


def test_a_backpack_join_past_the_bound_is_an_error_frame_and_writes_nothing() -> None:
    core, connection, cookie = _backpack(2)
    assert _join(core, connection, "one")[0]["action"] == "joinChannel"
    assert _join(core, connection, "two")[0]["action"] == "joinChannel"
    refused = _join(core, connection, "three")
    too_many = f"{TOO_MANY_CHANNELS} (at most 2)"
    assert refused == [{"action": "error", "message": too_many, "failedAction": "joinChannel"}]
    assert _join(core, connection, "one")[0]["action"] == "joinChannel"  # held already: fits
    info = core.http("GET", "/usersmeta", cookie=cookie).json
    assert [c["channelId"] for c in info[0]["channels"]] == ["one", "two"]  # "three" never recorded
    # createChannel: refused before the channel is created.
    core.send(connection, {"action": "createChannel", "usersInformationCollection": "usersmeta",
                           "channelType": "rooms", "name": "new"})
    assert core.take(connection) == [
        {"action": "error", "message": f"{TOO_MANY_CHANNELS} (at most 2)", "failedAction": "createChannel"}]
    assert core.http("GET", "/rooms", cookie=cookie).json == []
    # joinUsersChannels on a fresh connection with a lower bound: what fits, the reply, then the error.
    other = core.connect(cookie)
    assert isinstance(other, str)
    core.take(other)
    core.board.registries["backpack"].max_channels = 1
    core.send(other, {"action": "joinUsersChannels", "usersInformationCollection": "usersmeta"})
    reply, error = core.take(other)
    assert reply["action"] == "joinUsersChannels" and len(reply["usersChannels"]) == 2
    assert error == {"action": "error", "message": f"{TOO_MANY_CHANNELS} (at most 1)",
                     "failedAction": "joinUsersChannels"}
    assert core.board.registries["backpack"].channel_count(other) == 1


def test_a_backpack_websocket_past_the_users_bound_is_answered_by_the_switchboards_rule() -> None:
    core = Core()
    core.board.max_connections_per_user = 1
    _, cookie = core.user("sally@example.com")
    first = core.connect(cookie)
    assert isinstance(first, str)
    # The upgrade is registered as it is accepted: the transport asks this, and answers 429.
    second = core.run(core.board.accept(HttpRequest("GET", "/", [("cookie", cookie)]), "c-next"))
    assert not isinstance(second, HttpResponse)
    user = core.board.registries["backpack"].user_of("c-next")
    assert user is not None and not core.board.user_has_room("backpack", "c-next", user)
    assert core.board.user_has_room("backpack", first, user) is False  # two open: both past a bound of 1
    core.board.closed("c-next")
    assert core.board.user_has_room("backpack", first, user)


# -- Directus ----------------------------------------------------------------------------


def test_a_directus_core_subscribe_past_the_bound_is_a_subscribe_error_with_its_uid() -> None:
    core = DirectusCore()
    connection = core.sdk(core.static_token(core.user()))
    core.board.registries["directus"].max_channels = 2
    for uid, collection in (("1", "articles"), ("2", "authors")):
        core.send(connection, {"type": "subscribe", "collection": collection, "uid": uid})
        assert core.take(connection)[0]["event"] == "init"
    core.send(connection, {"type": "subscribe", "collection": "comments", "uid": "3"})
    assert core.take(connection) == [{"type": "subscribe", "status": "error", "uid": "3", "error": {
        "code": "LIMIT_EXCEEDED", "message": f"{TOO_MANY_CHANNELS}: at most 2 subscriptions."}}]
    # Another subscription of a collection it listens to is one more subscription all the same.
    core.send(connection, {"type": "subscribe", "collection": "articles", "uid": 4})
    assert core.take(connection)[0]["error"]["code"] == "LIMIT_EXCEEDED"
    # The same uid replaces its subscription: no more than before.
    core.send(connection, {"type": "subscribe", "collection": "comments", "uid": "2"})
    assert core.take(connection)[0]["event"] == "init"
    assert [s.collection for s in core.state(connection).subscriptions] == ["articles", "comments"]


def test_a_directus_extension_subscribe_past_the_bound_is_an_error_frame_with_its_uid() -> None:
    core = DirectusCore()
    token = core.static_token(core.user())
    connection = core.connect(f"/websocket?access_token={token}")
    assert isinstance(connection, str)
    core.board.registries["directus"].max_channels = 1
    core.send(connection, {"type": "subscribe", "collection": "articles", "uid": "a"})
    assert core.take(connection) == [{"type": "RESPONSE", "data": {"subscribed": "articles"}, "uid": "a"}]
    core.send(connection, {"type": "subscribe", "collection": "authors", "uid": "b"})
    assert core.take(connection) == [{"type": "ERROR", "data": f"{TOO_MANY_CHANNELS}: at most 1 subscriptions.",
                                      "uid": "b"}]
    assert len(core.state(connection).subscriptions) == 1


def test_a_connection_the_switchboard_does_not_know_has_no_bound() -> None:
    asnity = Asnity()
    room = run_sync(_ask(ChannelLimit(ASNITY, "gone", (Channel("t", "x"),))), asnity.board.answer_limit)
    assert room == ChannelRoom()
