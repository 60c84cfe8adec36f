"""The conformance kit's Asnity part (``satchel.protocol.conformance.asnity``):
chat semantics over REST and Socket.IO.

It passes against the core in process and against the real ``satchel
serve`` at a URL (through the command line: Engine.IO over a websocket); it
finds bugs planted in a monkeypatched copy of the core - each reported as a
short script that fails when replayed and passes once the bug is undone;
and its parts (the model's rules, the packet codec) behave as documented.

The kit runs in child processes - this file, run as a script, is the probe
(``python tests/test_conformance_asnity.py core|planted BUG|url URL|cli ARG...|model``):
loading the kit's modules into the pytest process would change, through
Hypothesis's use of the constants of loaded modules, the sequences the
Backpack kit's seeded tests generate (files under ``tests/`` are not scanned).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

import conformance_probe as kit_probe

PROBE = Path(__file__)
BUGS = ["echo-to-sender", "whole-namespace", "join-any-room", "ids-skip", "ids-repeat", "private-readable",
        "write-without-membership"]


def probe(*args: str) -> tuple[dict[str, Any], str]:
    return kit_probe.probe(PROBE, *args)


def test_the_core_conforms_in_process() -> None:
    kit_probe.check_core(PROBE, examples=300)


@pytest.mark.parametrize("bug", BUGS)
def test_a_planted_bug_is_found_as_a_short_replayable_script(bug: str) -> None:
    kit_probe.check_planted(PROBE, bug, most=7)


def test_the_model_applies_the_rules() -> None:
    assert probe("model")[0] == {"ok": True}


def test_the_command_line_saves_and_replays_a_failing_script(tmp_path: Path) -> None:
    saved = str(tmp_path / "failure.json")
    out = kit_probe.check_save_and_replay(PROBE, saved, "echo-to-sender", "socketio", 300, "the Asnity model")
    assert json.loads(Path(saved).read_text())[-1]["do"] in ("sio-chat", "sio-connect", "sio-join"), out


def test_a_namespace_disconnect_leaves_the_rooms() -> None:
    """A socket that leaves a namespace leaves its rooms (socket.io's own rule):
    a chat to one of them must not reach it (the kit found this missing; the
    Socket.IO layer now leaves them by prefix, UnsubscribeMatching)."""
    result, out = probe("cli", "--in-process", "--protocol", "socketio", "--examples", "500", "--seed", "3")
    assert result["status"] == 0, out


def test_the_reference_server_conforms(server: Any) -> None:
    """``satchel conformance --protocol socketio`` against the real server process:
    REST over HTTP, Socket.IO over Engine.IO websockets (no API key needed)."""
    completed = kit_probe.conformance_at(server.url, "--protocol", "socketio", "--examples", "25", "--steps", "25",
                                         "--seed", "3")
    assert "conforms (Asnity over REST and Socket.IO): 25 generated sequences" in completed.stdout


# -- the probe (run in a child process) ----------------------------------------------------------


def plant(bug: str) -> Callable[[], None]:
    """Plant ``bug`` in the core; returns what undoes it."""
    import msgspec

    from satchel.protocol.asnity import chats, mount, rooms, socket_events, store
    from satchel.protocol.asnity.model import CHANNELS, CHATS, COMMUNITIES, chat_info, chat_key, chat_sequence
    from satchel.protocol.channels import Audience, Subscribe
    from satchel.protocol.operations import TakeNumber
    from satchel.protocol.records import new_record

    plants = kit_probe.Plants()
    patch = plants.patch

    if bug in ("echo-to-sender", "whole-namespace"):
        render = mount.render_change

        def render_change(change: Any) -> Any:
            delivery = render(change)
            if delivery is None:
                return None
            if bug == "echo-to-sender":  # the writing socket hears its own chat
                audience = msgspec.structs.replace(delivery.audience, exclude=None)
            else:  # every socket of the namespace hears it, in the room or not
                community = change.record["communityId"]
                audience = Audience(channel=rooms.namespace_channel(community), exclude=change.connection)
            return msgspec.structs.replace(delivery, audience=audience)

        patch(mount, "render_change", render_change)
    elif bug == "join-any-room":
        original_join = socket_events.join

        def join(user: Any, community_id: str, connection: str, data: Any, env: Any) -> Any:
            # ``join`` subscribes to every listed room, whoever is in the channel.
            listed = data.get("channels") if isinstance(data, dict) else None
            if not isinstance(listed, list):
                return (yield from original_join(user, community_id, connection, data, env))
            return socket_events.SocketOutcome(None, [Subscribe(rooms.PROTOCOL, connection,
                                                                rooms.room_channel(community_id, channel))
                                                      for channel in listed if isinstance(channel, str)])

        patch(socket_events, "join", join)
    elif bug in ("ids-skip", "ids-repeat"):
        def write_chat(ctx: Any, channel: dict[str, Any], sender_id: str, kind: str, content: str) -> Any:
            number = yield TakeNumber(chat_sequence(channel["_id"]))
            shown = number + 1 if bug == "ids-skip" else max(1, number - 1)  # a gap, or a repeat
            record = new_record({"id": shown, "type": kind, "content": content, "senderId": sender_id,
                                 "channelId": channel["_id"], "communityId": channel["communityId"]},
                                chat_key(channel["_id"], number), ctx.now())
            return (yield from store.insert(ctx, CHATS, record))

        patch(chats, "write_chat", write_chat)
    elif bug == "private-readable":
        page = chats.chat_page

        def chat_page(ctx: Any, channel_id: str, prev: Any, next: Any) -> Any:
            # Any member of the channel's community reads its chats, private or not.
            channel = yield from store.get_live(CHANNELS, channel_id)
            community = (yield from store.get_live(COMMUNITIES, channel["communityId"])) if channel else None
            if community is None or ctx.user_id not in community["users"]:
                raise chats.bad_request(store.NO_CHANNEL)
            member = store.channel_member

            def as_member(ctx: Any, channel_id: str) -> Any:
                return channel, community
                yield

            chats.channel_member = as_member
            try:
                return (yield from page(ctx, channel_id, prev, next))
            finally:
                chats.channel_member = member

        patch(chats, "chat_page", chat_page)
    elif bug == "write-without-membership":
        def create_chat(ctx: Any, channel_id: str, kind: str, content: str) -> Any:
            channel = yield from store.get_live(CHANNELS, channel_id)  # no check of who writes
            if channel is None:
                raise chats.bad_request(store.NO_CHANNEL)
            return chat_info((yield from chats.write_chat(ctx, channel, ctx.user_id, kind, content)))

        patch(chats, "create_chat", create_chat)
        patch(socket_events, "create_chat", create_chat)
    else:
        raise ValueError(f"no such bug: {bug}")

    return plants.undo


def _target() -> Any:
    from satchel.protocol.conformance import InProcessTarget
    from satchel.storage_backends.memory import MemoryStore

    return InProcessTarget(MemoryStore())


def core() -> dict[str, Any]:
    from satchel.protocol.conformance.asnity import check_asnity_target

    return kit_probe.core(check_asnity_target, _target(), examples=300, steps=30, seed=1)


def planted(bug: str) -> dict[str, Any]:
    from satchel.protocol.conformance import asnity as kit

    return kit_probe.planted(plant(bug), kit, kit.check_asnity_target, kit.AsnityMismatch, _target,
                             examples=500, steps=30, seed=0)


def model() -> dict[str, Any]:
    from satchel.protocol.conformance.asnity import AsnityModel
    from satchel.protocol.conformance.matching import Bindings, match

    users = ["a" * 24, "b" * 24, "c" * 24]
    m = AsnityModel(users)
    assert m.create_community(0, 0, "commu").status == 201
    assert m.add_members(1, 0, [2]).status == 400                   # only the manager adds members
    assert m.add_members(0, 0, [1]).status == 201
    assert m.add_members(0, 0, [1]).status == 400                   # already a member
    assert m.create_channel(0, 0, 0, False, "open").status == 201   # public: every member is in it
    assert m.create_channel(1, 0, 1, True, "secret").status == 201  # private: its creator only
    assert m.channels[0].users == [0, 1] and m.channels[1].users == [1]
    assert m.create_channel(2, 0, 2, False, "nope").status == 400   # not a member
    assert [m.read_chats(u, 1).status for u in range(3)] == [400, 200, 400]
    assert m.join_channel(0, 1).status == 400                       # a private channel is joined by invitation
    assert m.get_channel(0, 1).status == 400 and m.get_channel(0, 0).status == 200
    m.open(0), m.open(1), m.open(2)
    assert m.connect(2, 2, 0, True).packets[2][0].type == "connect_error"   # not a member
    assert m.connect(0, 0, 0, False).packets[0][0].data == {"message": "Unauthorized"}
    assert m.connect(0, 0, 0, True).packets[0][0].type == "connect"
    assert m.connect(1, 1, 0, True).packets[1][0].type == "connect"
    assert m.connect(0, 0, 0, True).packets == {}                   # a second CONNECT is ignored
    m.join(0, 0, [0, 1]), m.join(1, 0, [0, 1])
    assert m.conns[0].sockets[0] == {0} and m.conns[1].sockets[0] == {0, 1}   # only channels one is in
    written = m.socket_chat(1, 0, 7, "new", 0, None, "hi")
    assert [e.type for e in written.packets[1]] == ["ack"] and written.packets[1][0].ack == 7
    assert [e.data[0] for e in written.packets[0]] == ["new-chat"]  # the room minus the writing socket
    assert m.channels[0].chats[-1].id == 1                          # after the bot's chat 0
    rest = m.rest_chat(0, 0, "new", None, "over REST")
    assert set(rest.packets) == {0, 1} and rest.body["result"]["id"] == 2   # a REST write reaches the whole room
    assert m.rest_chat(1, 0, "modify", 2, "mine?").status == 400    # only the sender edits
    assert m.rest_chat(1, 0, "delete", 0, None).status == 400       # the bot's chat: managers only
    assert m.rest_chat(0, 0, "delete", 1, None).status == 200       # the community's manager deletes any
    assert m.rest_chat(0, 0, "delete", 1, None).status == 404       # once
    assert m.socket_chat(0, 0, 8, "new", 0, None, "x" * 301).packets[0][0].data == [{"written": False}]
    assert m.invite(1, 1, [0]).status == 201 and m.conns[0].sockets[0] == {0, 1}   # invitees' sockets join
    assert m.leave_channel(0, 1).status == 200 and m.conns[0].sockets[0] == {0}
    assert m.leave_community(0, 0).status == 400                    # a manager with members may not leave
    assert m.leave_community(1, 0).status == 200 and m.conns[1].sockets[0] == set()
    assert m.read_chats(0, 0).status == 200
    page = m.read_chats(0, 0).body
    bindings = Bindings()
    for sym in {chat.created for chat in m.channels[0].chats} | {chat.updated for chat in m.channels[0].chats}:
        bindings.bind(sym, "2020-04-21T17:39:12.829Z")
    assert [chat["id"] for chat in bindings.resolve(page["result"]["chat"])] == [0, 1, 2]  # deleted chats keep their id
    match(m.chat_info(0, m.channels[0].chats[1], page=True)["content"], "", bindings)   # ... with a blank content
    assert m.delete_community(0, 0).status == 200 and m.conns[0].sockets[0] == set()
    return {"ok": True}


def codec() -> dict[str, Any]:
    from satchel.protocol.conformance.asnity import decode_packet, encode_packet

    assert encode_packet(0, "/socket/commu-x", {"token": "Bearer t"}) == '0/socket/commu-x,{"token":"Bearer t"}'
    assert encode_packet(2, "/n", ["chat", {"a": 1}], 12) == '2/n,12["chat",{"a":1}]'
    assert encode_packet(1, "/n") == "1/n,"
    acked = {"type": "ack", "nsp": "/n", "id": 12, "data": [{"written": True}]}
    assert decode_packet('3/n,12[{"written":true}]') == acked
    assert decode_packet('4/n,{"message":"x"}')["type"] == "connect_error"
    assert decode_packet("2[\"e\"]") == {"type": "event", "nsp": "/", "id": None, "data": ["e"]}
    assert decode_packet("0/n")["nsp"] == "/n"
    assert decode_packet("x")["type"] == decode_packet("2/n,[")["type"] == "invalid"
    return {"ok": True}


def cli(*argv: str) -> dict[str, Any]:
    return kit_probe.cli(plant, list(argv))


def test_the_packets_the_kit_speaks() -> None:
    assert probe("codec")[0] == {"ok": True}


if __name__ == "__main__":
    kit_probe.serve({"core": core, "planted": planted, "model": model, "codec": codec, "cli": cli})
