"""Invariants of Asnity, by Hypothesis: chat ids per channel are 0..n-1
whatever the interleaving of their writers (bug 9), and no user reads a
channel or a chat they may not (bugs 6 and 16), checked against a model
of who is in what."""

from __future__ import annotations

from typing import Any

from asnity_harness import Asnity, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from satchel.protocol.asnity import socket_events
from satchel.protocol.asnity.model import CHATS, chat_range
from satchel.protocol.http import HttpRequest
from satchel.protocol.operations import ListRecordRange

# -- chat ids under interleaved writers --------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writers=st.lists(st.sampled_from(["rest-alice", "rest-bob", "socket-bob"]), min_size=1, max_size=12),
    schedule=st.lists(st.integers(min_value=0, max_value=11), max_size=400),
)
def test_chat_ids_are_0_to_n_minus_1_whatever_the_interleaving(writers: list[str], schedule: list[int]) -> None:
    w = world()
    asnity = w.asnity
    socket = asnity.connect(w.bob, w.community)
    actions = []
    for n, writer in enumerate(writers):
        if writer == "socket-bob":
            data = {"chatType": "new", "channelId": w.public, "content": f"chat {n}"}
            actions.append(socket_events.handle_event(socket.token, w.community, socket.connection, "chat", data, asnity.env))
        else:
            token = (w.alice if writer == "rest-alice" else w.bob).token
            body = f'{{"type": "TEXT", "content": "chat {n}"}}'.encode()
            headers = [("authorization", f"Bearer {token}"), ("content-type", "application/json")]
            actions.append(asnity.board.handle_request(HttpRequest("POST", f"/api/channels/{w.public}/chat", headers, body)))
    pending = [(action, action.send(None)) for action in actions]
    answered: list[int] = []
    steps = iter(schedule)
    while pending:
        index = next(steps, 0) % len(pending)
        action, operation = pending[index]
        try:
            pending[index] = (action, action.send(asnity.execute(operation)))
        except StopIteration as done:
            del pending[index]
            outcome = done.value
            if isinstance(outcome, socket_events.SocketOutcome):
                answered.append(outcome.ack["chatInfo"]["id"])
            else:
                assert outcome.response.status == 201
                answered.append(__import__("json").loads(outcome.response.body)["result"]["id"])
    stored = asnity.store.execute_sync(ListRecordRange(CHATS, *chat_range(w.public)))
    assert [chat["id"] for chat in stored] == list(range(len(writers) + 1))  # 0 is the bot's
    assert sorted(answered) == list(range(1, len(writers) + 1))


# -- who sees what, against a model ------------------------------------------------------


class Visibility(RuleBasedStateMachine):
    """Random community and channel membership changes over REST; after each,
    every user's view of every channel matches the model."""

    def __init__(self) -> None:
        super().__init__()
        self.asnity = Asnity()
        self.users = [self.asnity.account(f"user{n}@example.com", f"user{n}") for n in range(3)]
        #: community id -> {"manager", "members", "live", "channels"}
        self.communities: dict[str, dict[str, Any]] = {}
        #: channel id -> {"community", "manager", "private", "users", "live"}
        self.channels: dict[str, dict[str, Any]] = {}

    # -- the model's rules ------------------------------------------------------------

    def visible(self, user: int, channel_id: str) -> bool:
        channel = self.channels[channel_id]
        community = self.communities[channel["community"]]
        return (
            channel["live"] and community["live"] and user in community["members"]
            and (not channel["private"] or user in channel["users"])
        )

    def http(self, user: int, method: str, path: str, body: Any = None):
        return self.asnity.http(method, path, body, token=self.users[user].token)

    def uid(self, user: int) -> str:
        return self.users[user].id

    def _delete_channel(self, channel_id: str) -> None:
        channel = self.channels[channel_id]
        channel["live"] = False
        community = self.communities[channel["community"]]
        if channel_id in community["channels"]:
            community["channels"].remove(channel_id)

    # -- rules ------------------------------------------------------------------------

    @initialize()
    def a_community_with_two_members_and_two_channels(self) -> None:
        self.create_community(0)
        community_id = next(iter(self.communities))
        self._add(community_id, 0, 1)
        for private in (False, True):
            self._create_channel(community_id, 0, private)

    @rule(user=st.integers(0, 2))
    def create_community(self, user: int) -> None:
        response = self.http(user, "POST", "/api/community", {"name": "commu"})
        assert response.status == 201
        self.communities[response.result["_id"]] = {"manager": user, "members": {user}, "live": True, "channels": []}

    @rule(data=st.data(), actor=st.integers(0, 2), invitee=st.integers(0, 2))
    def add_member(self, data: st.DataObject, actor: int, invitee: int) -> None:
        self._add(data.draw(st.sampled_from(sorted(self.communities))), actor, invitee)

    def _add(self, community_id: str, actor: int, invitee: int) -> None:
        community = self.communities[community_id]
        ok = community["live"] and actor == community["manager"] and actor in community["members"] and invitee not in community["members"]
        response = self.http(actor, "POST", f"/api/communities/{community_id}/users", {"users": [self.uid(invitee)]})
        assert (response.status == 201) == ok, response
        if ok:
            community["members"].add(invitee)
            for channel_id in community["channels"]:
                channel = self.channels[channel_id]
                if channel["live"] and not channel["private"]:
                    channel["users"].add(invitee)

    @rule(data=st.data(), user=st.integers(0, 2), private=st.booleans())
    def create_channel(self, data: st.DataObject, user: int, private: bool) -> None:
        self._create_channel(data.draw(st.sampled_from(sorted(self.communities))), user, private)

    def _create_channel(self, community_id: str, user: int, private: bool) -> None:
        community = self.communities[community_id]
        ok = community["live"] and user in community["members"]
        body = {"communityId": community_id, "name": "chan", "isPrivate": private, "type": "Channel"}
        response = self.http(user, "POST", "/api/channel", body)
        assert (response.status == 201) == ok, response
        if ok:
            channel_id = response.result["_id"]
            users = {user} if private else set(community["members"])
            self.channels[channel_id] = {"community": community_id, "manager": user, "private": private, "users": users, "live": True}
            community["channels"].append(channel_id)

    def _channel(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.channels)))

    @rule(data=st.data(), user=st.integers(0, 2))
    def join(self, data: st.DataObject, user: int) -> None:
        channel_id = self._channel(data)
        channel = self.channels[channel_id]
        ok = self.visible(user, channel_id)
        response = self.http(user, "POST", f"/api/channels/{channel_id}", {"community_id": channel["community"]})
        assert (response.status == 201) == ok, response
        if ok:
            channel["users"].add(user)

    @rule(data=st.data(), actor=st.integers(0, 2), invitee=st.integers(0, 2))
    def invite(self, data: st.DataObject, actor: int, invitee: int) -> None:
        channel_id = self._channel(data)
        channel = self.channels[channel_id]
        community = self.communities[channel["community"]]
        ok = self.visible(actor, channel_id) and actor in channel["users"] and invitee in community["members"]
        body = {"community_id": channel["community"], "users": [self.uid(invitee)]}
        response = self.http(actor, "POST", f"/api/channels/{channel_id}/users", body)
        assert (response.status == 201) == ok, response
        if ok:
            channel["users"].add(invitee)

    @rule(data=st.data(), user=st.integers(0, 2))
    def leave_channel(self, data: st.DataObject, user: int) -> None:
        channel_id = self._channel(data)
        channel = self.channels[channel_id]
        member = self.visible(user, channel_id) and user in channel["users"]
        blocked = member and channel["manager"] == user and len(channel["users"]) > 1
        response = self.http(user, "DELETE", f"/api/channels/{channel_id}/me")
        assert (response.status == 200) == (member and not blocked), response
        if member and not blocked:
            if channel["manager"] == user:
                self._delete_channel(channel_id)
            channel["users"].discard(user)

    @rule(data=st.data(), user=st.integers(0, 2))
    def delete_channel(self, data: st.DataObject, user: int) -> None:
        channel_id = self._channel(data)
        ok = self.visible(user, channel_id) and self.channels[channel_id]["manager"] == user
        response = self.http(user, "DELETE", f"/api/channels/{channel_id}")
        assert (response.status == 200) == ok, response
        if ok:
            self._delete_channel(channel_id)

    @rule(data=st.data(), user=st.integers(0, 2))
    def leave_community(self, data: st.DataObject, user: int) -> None:
        community_id = data.draw(st.sampled_from(sorted(self.communities)))
        community = self.communities[community_id]
        member = community["live"] and user in community["members"]
        manager = community["manager"] == user
        blocked = member and manager and len(community["members"]) > 1
        response = self.http(user, "DELETE", f"/api/communities/{community_id}/me")
        assert (response.status == 200) == (member and not blocked), response
        if member and not blocked:
            if manager:
                self._delete_community(community_id)
            else:
                community["members"].discard(user)
                for channel_id in community["channels"]:
                    self.channels[channel_id]["users"].discard(user)

    def _delete_community(self, community_id: str) -> None:
        community = self.communities[community_id]
        community["live"] = False
        for channel_id in community["channels"]:
            self.channels[channel_id]["live"] = False

    @rule(data=st.data(), user=st.integers(0, 2))
    def delete_community(self, data: st.DataObject, user: int) -> None:
        community_id = data.draw(st.sampled_from(sorted(self.communities)))
        community = self.communities[community_id]
        ok = community["live"] and user in community["members"] and community["manager"] == user
        response = self.http(user, "DELETE", f"/api/communities/{community_id}")
        assert (response.status == 200) == ok, response
        if ok:
            self._delete_community(community_id)

    # -- the invariant ----------------------------------------------------------------

    @invariant()
    def everyone_sees_exactly_what_the_model_allows(self) -> None:
        for user in range(3):
            for channel_id, channel in self.channels.items():
                visible = self.visible(user, channel_id)
                in_channel = visible and user in channel["users"]
                assert (self.http(user, "GET", f"/api/channels/{channel_id}").status == 200) == visible
                assert (self.http(user, "GET", f"/api/channels/{channel_id}/chat?prev=-1").status == 200) == in_channel
                assert (self.http(user, "POST", f"/api/channels/{channel_id}/chat", {"type": "TEXT", "content": "x"}).status == 201) == in_channel
            listed = self.http(user, "GET", "/api/communities").result["communities"]
            expected = {
                community_id: sorted(
                    channel_id for channel_id in community["channels"]
                    if self.channels[channel_id]["live"] and user in self.channels[channel_id]["users"]
                )
                for community_id, community in self.communities.items()
                if community["live"] and user in community["members"]
            }
            assert {c["_id"]: sorted(ch["_id"] for ch in c["channels"]) for c in listed} == expected


TestVisibility = Visibility.TestCase
TestVisibility.settings = settings(max_examples=80, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
