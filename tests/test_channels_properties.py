"""Routing: a message reaches exactly the connections that should get it.

``ChannelRegistry.resolve`` is checked against a brute-force reading of the
``Audience`` definition, and Backpack's routing rule against seed 000's text;
a stateful machine checks the channel bookkeeping of the six channel actions
against a model of each user's channels and each connection's subscriptions.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core_harness import Core
from satchel.protocol.backpack.render import audience_for
from satchel.protocol.channels import Audience, Channel, ChannelRegistry

CONNECTIONS = [f"c{i}" for i in range(6)]
USERS = ["u1", "u2", "u3"]
CHANNELS = [Channel("rooms", "r1"), Channel("rooms", "r2"), Channel("games", "r1")]

maybe = lambda strategy: st.none() | strategy  # noqa: E731
audiences = st.builds(
    Audience,
    channel=maybe(st.sampled_from(CHANNELS)),
    user_id=maybe(st.sampled_from(USERS)),
    connection=maybe(st.sampled_from(CONNECTIONS + ["gone"])),
    exclude=maybe(st.sampled_from(CONNECTIONS)),
    include=maybe(st.sampled_from(CONNECTIONS + ["gone"])),
    connections=maybe(st.lists(st.sampled_from(CONNECTIONS + ["gone"]), max_size=8).map(tuple)),
)
layouts = st.lists(
    st.tuples(st.sampled_from(USERS), st.frozensets(st.sampled_from(CHANNELS))),
    min_size=len(CONNECTIONS),
    max_size=len(CONNECTIONS),
)


def build(layout: list) -> ChannelRegistry:
    registry = ChannelRegistry()
    for connection, (user, channels) in zip(CONNECTIONS, layout):
        registry.add_connection(connection, user)
        for channel in channels:
            registry.subscribe(connection, channel)
    return registry


def expected(layout: list, audience: Audience) -> set[str]:
    chosen = set()
    for connection, (user, channels) in zip(CONNECTIONS, layout):
        if audience.channel is not None and audience.channel not in channels:
            continue
        if audience.user_id is not None and audience.user_id != user:
            continue
        if audience.connection is not None and audience.connection != connection:
            continue
        if audience.connections is not None and connection not in audience.connections:
            continue
        chosen.add(connection)
    if audience.include in CONNECTIONS:
        chosen.add(audience.include)
    chosen.discard(audience.exclude)
    return chosen


@given(layouts, audiences)
def test_resolve_is_exactly_the_audience(layout: list, audience: Audience) -> None:
    recipients = build(layout).resolve(audience)
    assert len(recipients) == len(set(recipients)), "a connection would receive a message twice"
    assert set(recipients) == expected(layout, audience)


@given(layouts, st.sampled_from(CONNECTIONS))
def test_a_removed_connection_receives_nothing(layout: list, gone: str) -> None:
    registry = build(layout)
    registry.remove_connection(gone)
    for channel in CHANNELS:
        assert gone not in registry.resolve(Audience(channel=channel))
    assert gone not in registry.resolve(Audience()) and gone not in registry.resolve(Audience(include=gone))


objects = st.fixed_dictionaries(
    {},
    optional={
        "channelType": st.sampled_from(["rooms", 3, None]),
        "channelId": st.sampled_from(["r1", "r2", None]),
        "broadcast": st.sampled_from([True, False, "false", "true", None]),
    },
)


@given(objects, st.sampled_from(USERS))
def test_backpack_routing_rule(obj: dict, writer: str) -> None:
    audience = audience_for(obj, writer)
    if obj.get("broadcast") in (False, "false"):
        assert audience == Audience(user_id=writer)
    elif isinstance(obj.get("channelType"), str) and isinstance(obj.get("channelId"), str):
        assert audience == Audience(channel=Channel(obj["channelType"], obj["channelId"]))
    else:
        assert audience == Audience()


NO_CHANNEL = {"channelType": None, "channelId": None}


class ChannelBookkeeping(RuleBasedStateMachine):
    """Random join/leave/change/create/delete against a model of seed 000."""

    def __init__(self) -> None:
        super().__init__()
        self.core = Core()
        self.users = [self.core.user(f"user{i}@example.com") for i in range(2)]
        self.connections = [self.core.connect(cookie) for _, cookie in self.users for _ in range(2)]
        self.owner = {c: self.users[i // 2][0] for i, c in enumerate(self.connections)}
        self.channels: list[str] = []
        self.creator: dict[str, str] = {}
        self.model_channels: dict[str, list[str]] = {u: [] for u, _ in self.users}
        self.model_current: dict[str, str | None] = {u: None for u, _ in self.users}
        self.subscribed: dict[str, set[str]] = {c: set() for c in self.connections}
        for connection in self.connections:
            self.core.take(connection)

    def send(self, connection: str, message: dict) -> None:
        self.core.send(connection, {"usersInformationCollection": "meta", "channelType": "rooms", **message})
        for other in self.connections:
            self.core.take(other)

    @rule(who=st.integers(0, 3))
    def create_channel(self, who: int) -> None:
        connection = self.connections[who]
        self.core.send(connection, {"action": "createChannel", "usersInformationCollection": "meta",
                                    "channelType": "rooms", "name": "x"})
        channel_id = self.core.take(connection)[-1]["response"]["_id"]
        for other in self.connections:
            self.core.take(other)
        user = self.owner[connection]
        self.channels.append(channel_id)
        self.creator[channel_id] = user
        self.model_channels[user].append(channel_id)
        self.model_current[user] = channel_id
        self.subscribed[connection].add(channel_id)

    @precondition(lambda self: self.channels)
    @rule(who=st.integers(0, 3), which=st.integers(0, 20))
    def join(self, who: int, which: int) -> None:
        connection, channel_id = self.connections[who], self.channels[which % len(self.channels)]
        self.send(connection, {"action": "joinChannel", "channelId": channel_id})
        user = self.owner[connection]
        if channel_id not in self.model_channels[user]:
            self.model_channels[user].append(channel_id)
        self.model_current[user] = channel_id
        self.subscribed[connection].add(channel_id)

    @precondition(lambda self: self.channels)
    @rule(who=st.integers(0, 3), which=st.integers(0, 20))
    def leave(self, who: int, which: int) -> None:
        connection, channel_id = self.connections[who], self.channels[which % len(self.channels)]
        self.send(connection, {"action": "leaveChannel", "channelId": channel_id})
        user = self.owner[connection]
        self.model_channels[user] = [c for c in self.model_channels[user] if c != channel_id]
        self.model_current[user] = self.model_channels[user][0] if self.model_channels[user] else None
        self.subscribed[connection].discard(channel_id)

    @precondition(lambda self: self.channels)
    @rule(who=st.integers(0, 3), which=st.integers(0, 20))
    def change(self, who: int, which: int) -> None:
        connection, channel_id = self.connections[who], self.channels[which % len(self.channels)]
        self.send(connection, {"action": "changeChannel", "channelId": channel_id})
        self.model_current[self.owner[connection]] = channel_id

    @precondition(lambda self: self.channels)
    @rule(who=st.integers(0, 3), which=st.integers(0, 20))
    def delete(self, who: int, which: int) -> None:
        connection, channel_id = self.connections[who], self.channels[which % len(self.channels)]
        self.send(connection, {"action": "deleteChannel", "channelMessagesCollection": "chat", "channelId": channel_id})
        if self.creator[channel_id] != self.owner[connection]:
            return  # refused: only the creator deletes
        self.channels.remove(channel_id)
        for user, listed in self.model_channels.items():
            if channel_id in listed:
                listed.remove(channel_id)
                self.model_current[user] = listed[0] if listed else None
        for subscriptions in self.subscribed.values():
            subscriptions.discard(channel_id)

    @invariant()
    def documents_match_the_model(self) -> None:
        stored = {r["userId"]: r for r in self.core.store.execute_sync(_list("meta"))}
        for user, channel_ids in self.model_channels.items():
            if user not in stored:
                assert channel_ids == []
                continue
            entries = stored[user]["channels"]
            assert [e["channelId"] for e in entries] == channel_ids
            current = stored[user]["currentChannel"]
            expected_current = NO_CHANNEL if self.model_current[user] is None else {
                "channelType": "rooms", "channelId": self.model_current[user]}
            assert current == expected_current

    @invariant()
    def a_channel_message_reaches_exactly_its_subscribers(self) -> None:
        for channel_id in self.channels:
            self.core.send(self.connections[0], {"action": "broadcast", "channelType": "rooms", "channelId": channel_id})
            for connection in self.connections:
                got = self.core.take(connection)
                should = channel_id in self.subscribed[connection] or connection == self.connections[0]
                assert len(got) == (1 if should else 0), (connection, channel_id, got)


def _list(collection: str):
    from satchel.protocol.operations import ListRecords

    return ListRecords(collection)


TestChannelBookkeeping = ChannelBookkeeping.TestCase
TestChannelBookkeeping.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


def test_an_audience_joins_and_leaves_a_channel_together() -> None:
    from satchel.protocol.channels import SubscribeAudience, UnsubscribeAudience

    registry = ChannelRegistry()
    lobby, room = Channel("nsp", "/a"), Channel("room", "/a#1")
    for connection, user in (("c1", "u1"), ("c2", "u1"), ("c3", "u2"), ("c4", "u1")):
        registry.add_connection(connection, user)
    for connection in ("c1", "c2", "c3"):
        registry.subscribe(connection, lobby)  # c4 belongs to u1 but not to the namespace
    registry.apply(SubscribeAudience("p", Audience(channel=lobby, user_id="u1"), room))
    assert registry.members(room) == {"c1", "c2"}
    registry.subscribe("c3", room)
    registry.apply(UnsubscribeAudience("p", Audience(channel=room, user_id="u1"), room))
    assert registry.members(room) == {"c3"}
    assert registry.members(lobby) == {"c1", "c2", "c3"}
