"""Resume after reconnect (issue 12 part 3) through the pure core: a
subscribe with ``since`` - the last version its client saw - receives what
it missed from the per-resource history, in order and exactly as it would
have been delivered live, or ``{"warning": "history_lost"}`` followed by
the current state; never a silent gap. Wire shapes first, then a stateful
Hypothesis machine (random writes, disconnects, reconnects, server
restarts, history sizes and writes racing the subscribe's reads)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from resources_harness import ResourcesCore
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.resources import ResourcesConfig, ResourcesMount
from satchel.protocol.resources.history import History, Item
from satchel.protocol.switchboard import Switchboard

KEY = "World:kvstoreClient:testKey"


def core_with(history_size: int = 100, **limits: int) -> ResourcesCore:
    """A core whose resource mount has these history limits."""
    core = ResourcesCore()
    _remount(core, ResourcesConfig(history_size=history_size, **limits))
    return core


def _remount(core: ResourcesCore, config: ResourcesConfig) -> None:
    """A new switchboard on the same store and clock: a server restart
    (every connection gone, the history empty)."""
    mounts = standard_mounts(core.config, directus=core.directus)
    for mount in mounts:
        if isinstance(mount, ResourcesMount):
            mount.config = config
            mount.history = History(config.history_size, config.history_bytes, config.history_resources)
    core.board = Switchboard(mounts, core.env)


def resume(core: ResourcesCore, connection: str, type: str, id: str, since: Any) -> list[Any]:
    return core.exchange(connection, {"action": "subscribe", "resource": {"type": type, "id": id}, "since": since})


@pytest.fixture
def core() -> ResourcesCore:
    return core_with()


def put(core: ResourcesCore, token: str, value: Any) -> dict[str, Any]:
    core.clock.advance(1)
    response = core.rest("PUT", f"/realtime/kv/{KEY}", value, token=token)
    assert response.status == 200, response.json
    return response.json


# -- wire shapes -----------------------------------------------------------------------


def test_a_resume_receives_the_missed_entry_updates_in_order_then_live(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    first = core.open(token=alice.access)
    [current] = core.subscribe(first, "kvStore", KEY)
    assert current["warning"] == "resource_not_found"
    seen = put(core, alice.access, 1)
    [update] = core.take(first)
    assert update["version"] == seen["version"]
    core.close(first)
    missed = [put(core, alice.access, n) for n in (2, 3)]
    second = core.open(token=alice.access)
    replay = resume(core, second, "kvStore", KEY, seen["version"])
    assert [(u["data"], u["version"]) for u in replay] == [(2, missed[0]["version"]), (3, missed[1]["version"])]
    assert replay[0] == {"userId": alice.id, "resource": {"type": "kvStore", "id": KEY}, "data": 2,
                         "version": missed[0]["version"]}
    put(core, alice.access, 4)
    [live] = core.take(second)
    assert live["data"] == 4 and live["version"] > replay[-1]["version"]
    # Nothing missed: nothing sent (not even the current value).
    third = core.open(token=alice.access)
    assert resume(core, third, "kvStore", KEY, live["version"]) == []
    # A delete is replayed as it was delivered.
    core.close(third)
    core.clock.advance(1)
    assert core.rest("DELETE", f"/realtime/kv/{KEY}", token=alice.access).status in (200, 204)
    fourth = core.open(token=alice.access)
    [deleted] = resume(core, fourth, "kvStore", KEY, live["version"])
    assert deleted["data"] is None and deleted["deleted"] is True


def test_a_resume_the_history_cannot_vouch_for_says_history_lost_then_the_state(core: ResourcesCore) -> None:
    core = core_with(history_size=2)
    alice = core.account("alice@example.com")
    seen = put(core, alice.access, 1)
    for n in (2, 3, 4):
        put(core, alice.access, n)
    connection = core.open(token=alice.access)
    lost, state = resume(core, connection, "kvStore", KEY, seen["version"])
    assert lost == {"warning": "history_lost", "resource": {"type": "kvStore", "id": KEY},
                    "message": "updates since that version are no longer known here: reload the resource"}
    assert state["data"] == 4
    # Newer than anything known, or never given: the same.
    for since in ("2099-01-01T00:00:00.000Z", "2000-01-01T00:00:00.000Z"):
        other = core.open(token=alice.access)
        assert [m.get("warning") or m["data"] for m in resume(core, other, "kvStore", KEY, since)] == \
            ["history_lost", 4]


@pytest.mark.parametrize("since", [5, "", "yesterday", "2026-12-01T12:00:00Z", "2026-12-01T12:00:00.123+00:00",
                                   "2026-13-01T12:00:00.123Z", ["2026-12-01T12:00:00.123Z"]])
def test_a_malformed_since_is_an_invalid_message_and_subscribes_nothing(core: ResourcesCore, since: Any) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    [error] = resume(core, connection, "kvStore", KEY, since)
    assert error["error"] == "Invalid message format" and error["code"] == "invalid_message"
    put(core, alice.access, 1)
    assert core.take(connection) == []
    # since belongs to a subscribe only.
    [error] = core.exchange(connection, {"action": "unsubscribe", "resource": {"type": "kvStore", "id": KEY},
                                         "since": "2026-12-01T12:00:00.123Z"})
    assert error["code"] == "invalid_message"


def test_after_a_restart_an_entry_resumes_by_its_stored_version_a_collection_reloads(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    connection = core.open(token=alice.access)
    core.subscribe(connection, "collection", "notes")
    seen = put(core, alice.access, 1)
    core.clock.advance(1)
    core.http("POST", "/notes", {"n": 1}, cookie=alice.cookie)
    note = core.take(connection)[-1]
    core.clock.advance(5000)
    _remount(core, ResourcesConfig())
    fresh = core.open(token=alice.access)
    assert resume(core, fresh, "kvStore", KEY, seen["version"]) == []  # the stored version tells
    [lost] = resume(core, fresh, "collection", "notes", note["version"])  # a collection cannot tell
    assert lost["warning"] == "history_lost"
    put(core, alice.access, 2)
    core.clock.advance(1)
    core.http("POST", "/notes", {"n": 2}, cookie=alice.cookie)
    assert [m["resource"]["type"] for m in core.take(fresh)] == ["kvStore", "collection"]
    # The resume above made the stored version known: what came after it is held.
    other = core.open(token=alice.access)
    [update] = resume(core, other, "kvStore", KEY, seen["version"])
    assert update["data"] == 2


def test_collection_replays_are_rendered_for_each_subscriber_by_the_rules(core: ResourcesCore) -> None:
    core.set_rules({"roles": {
        "reader": {"rules": [{"collection": "articles", "action": "read", "fields": ["_id", "title"],
                              "filter": {"status": {"_eq": "published"}}}]}}})
    alice = core.account("alice@example.com")
    reader = core.account("reader@example.com", role="reader")
    accounts = {"alice": alice, "reader": reader}
    watchers = {name: core.open(token=who.access) for name, who in accounts.items()}
    core.http("POST", "/articles", {"title": "first", "status": "published"}, cookie=alice.cookie)
    for who, connection in watchers.items():
        core.subscribe(connection, "collection", "articles")
    core.clock.advance(1)
    core.api("POST", "/items/articles", {"title": "seen", "status": "published", "secret": "s"}, token=alice.access)
    seen = {who: core.take(c)[-1]["version"] for who, c in watchers.items()}
    live: dict[Any, list[Any]] = {who: [] for who in watchers}
    for n, status in enumerate(["draft", "published", "published"]):
        core.clock.advance(1)
        core.api("POST", "/items/articles", {"title": f"t{n}", "status": status, "secret": "s"}, token=alice.access)
    for who, connection in watchers.items():
        live[who] = core.take(connection)
        core.close(connection)
    for who in watchers:
        again = core.open(token=accounts[who].access)
        assert resume(core, again, "collection", "articles", seen[who]) == live[who]
    assert [m["data"]["record"].get("secret") for m in live["reader"]] == [None, None]
    assert len(live["alice"]) == 3 and live["alice"][0]["data"]["record"]["secret"] == "s"


def test_documents_resume_by_the_versions_their_updates_had(core: ResourcesCore) -> None:
    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    watcher = core.open()
    core.subscribe(watcher, "document", read_token)
    core.rest("PUT", f"/backend/documents/{read_token}", {"#messages": {}, "title": "t"},
              headers=[("write-token", write_token), ("derived-from", "0"), ("revision", "1")])
    [first] = core.take(watcher)
    core.close(watcher)
    for n in (1, 2):
        core.clock.advance(1)
        core.rest("POST", f"/backend/documents/{write_token}/messages/00000000000000a{n}", {"#": n})
    again = core.open()
    replay = resume(core, again, "document", read_token, first["version"])
    revisions = [m["data"]["revision"] for m in replay]
    assert len(revisions) == 2 and first["data"]["revision"] < revisions[0] < revisions[1]
    assert "00000000000000a2" in replay[-1]["data"]["content"]["#messages"]
    # A plain subscribe answers the current revision at a version of its own, which a resume knows.
    plain = core.open()
    [current] = core.subscribe(plain, "document", read_token)
    assert current["data"] == replay[-1]["data"] and current["version"] > replay[-1]["version"]
    core.close(plain)
    assert resume(core, core.open(), "document", read_token, current["version"]) == []


def test_a_write_racing_a_plain_subscribe_is_not_lost(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    put(core, alice.access, 1)
    connection = core.open(token=alice.access)
    received = subscribe_racing(core, connection, {"action": "subscribe", "resource": {"type": "kvStore", "id": KEY}},
                                lambda: put(core, alice.access, 2))
    assert [m["data"] for m in received] == [1, 2]


# -- the history alone -----------------------------------------------------------------


def test_the_history_evicts_the_least_recently_written_resource_first() -> None:
    history = History(per_resource=3, max_bytes=10 * 300, max_resources=2)
    for version in (1, 2, 3, 4):
        history.record("a", Item(version, None, 100))
    assert [i.version for i in history.items("a")] == [2, 3, 4] and history.knows("a", 1)
    assert history.after("a", 0) is None and history.after("a", 3) == history.items("a")[2:]
    for version in (1, 2, 3, 4):
        history.record("b", Item(version, None, 100))  # 6 items of 300 bytes: within 3,000
    history.record("c", Item(1, None, 100))  # a third resource: "a" (written least recently) goes
    assert len(history) == 2 and history.after("a", 4) is None
    history.record("c", Item(2, None, 2000))  # 3,400 bytes: "b" loses its oldest updates until within
    assert history.bytes == 2800 and [i.version for i in history.items("b")] == [4] and history.knows("b", 3)
    history.record("c", Item(3, None, 2500))  # "b" loses all and is forgotten, then "c" its oldest
    assert len(history) == 1 and history.after("b", 4) is None and history.knows("c", 2)
    history.mark("d", 7)
    assert history.after("d", 7) == [] and history.after("d", 6) is None
    assert History(per_resource=0).after("x", 1) is None


# -- the property ----------------------------------------------------------------------


def subscribe_racing(core: ResourcesCore, connection: str, message: Any, *writes: Any) -> list[Any]:
    """Send ``message``, running ``writes`` (published at once) after the
    store answers each of the subscribe's operations and before the action
    hears the answer: what lands between a read and the registration."""
    pending = list(writes)
    action = core.board.handle_message(connection, json.dumps(message))
    try:
        operation = next(action)
        while True:
            result = core.execute(operation)
            if pending:
                pending.pop(0)()
            operation = action.send(result)
    except StopIteration as done:
        events = done.value
    while pending:  # fewer operations than writes: the rest after
        core.publish(events)
        events = []
        pending.pop(0)()
    core.publish(events)
    return core.take(connection)


RESOURCES = (("kvStore", KEY), ("collection", "notes"))


class Resume(RuleBasedStateMachine):
    """An observer subscribed throughout sees every update: the truth. A
    client comes and goes, resuming from the last version it saw. Each time
    it (re)subscribes, what it receives per resource is the exact sequence
    of the updates it missed, or a ``history_lost`` marker and then the
    state; the marker only when the history could not hold what it missed;
    and while connected its state is the truth."""

    @initialize(size=st.integers(1, 6))
    def start(self, size: int) -> None:
        self.size = size
        self.core = core_with(history_size=size)
        self.alice = self.core.account("alice@example.com")
        self.lifetime = 0
        #: per resource: every update, in order (frames as delivered)
        self.truth: dict[str, list[dict[str, Any]]] = {t: [] for t, _ in RESOURCES}
        self.observer = ""
        self.connect_observer()
        self.client: str | None = None
        #: per resource: the client's last update (its version, the lifetime it came in, the truth index)
        self.seen: dict[str, tuple[str, int, int] | None] = {t: None for t, _ in RESOURCES}
        #: the client's state per resource (kv: the value; collection: records by id)
        self.state: dict[str, Any] = {"kvStore": None, "collection": {}}
        self.records: list[str] = []

    def connect_observer(self) -> None:
        self.observer = self.core.open(token=self.alice.access)  # type: ignore[assignment]
        for type, id in RESOURCES:
            for message in self.core.subscribe(self.observer, type, id):
                if "version" in message:
                    self.observe(message)

    def observe(self, message: dict[str, Any]) -> None:
        known = self.truth[message["resource"]["type"]]
        if known and known[-1]["version"] >= message["version"]:
            assert known[-1] == message  # an observer's resubscribe answers what it had
            return
        known.append(message)

    def settle(self, racing: bool = False) -> None:
        for message in self.core.take(self.observer):
            self.observe(message)
        if self.client is not None and not racing:
            for message in self.core.take(self.client):
                self.follow(message)

    def follow(self, message: dict[str, Any]) -> None:
        """A live update of the connected client: the next of the truth."""
        type = message["resource"]["type"]
        seen = self.seen[type]
        index = seen[2] + 1 if seen is not None else None
        truth = self.truth[type]
        if index is None:
            index = truth.index(message)
        assert truth[index] == message, (type, index)
        self.apply(type, message, index)

    def apply(self, type: str, message: dict[str, Any], index: int) -> None:
        self.seen[type] = (message["version"], self.lifetime, index)
        if type == "kvStore":
            self.state[type] = message["data"]
        else:
            record = message["data"]["record"]
            if message["data"]["action"] == "delete":
                self.state[type].pop(record["_id"], None)
            else:
                self.state[type][record["_id"]] = record

    # -- writes ---------------------------------------------------------------------

    def write(self, what: int, value: int) -> None:
        self.core.clock.advance(value % 3)
        core, alice = self.core, self.alice
        if what == 0:
            core.rest("PUT", f"/realtime/kv/{KEY}", value, token=alice.access)
        elif what == 1:
            core.rest("DELETE", f"/realtime/kv/{KEY}", token=alice.access)
        elif what == 2 or not self.records:
            self.records.append(core.http("POST", "/notes", {"n": value}, cookie=alice.cookie).json["_id"])
        elif what == 3:
            core.http("PATCH", f"/notes/{self.records[value % len(self.records)]}", {"n": value}, cookie=alice.cookie)
        else:
            core.http("DELETE", f"/notes/{self.records.pop(value % len(self.records))}", cookie=alice.cookie)

    @rule(what=st.integers(0, 4), value=st.integers(0, 99))
    def a_write(self, what: int, value: int) -> None:
        self.write(what, value)
        self.settle()

    @precondition(lambda self: self.client is not None)
    @rule()
    def disconnect(self) -> None:
        self.core.close(self.client)  # type: ignore[arg-type]
        self.client = None

    @rule()
    def restart(self) -> None:
        self.settle()
        self.core.clock.advance(1000)  # a restart takes a while: the clock moves past every version given
        _remount(self.core, ResourcesConfig(history_size=self.size))
        self.lifetime += 1
        self.client = None
        self.connect_observer()

    @precondition(lambda self: self.client is None)
    @rule(racing=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 99)), max_size=3))
    def reconnect(self, racing: list[tuple[int, int]]) -> None:
        core = self.core
        self.client = core.open(token=self.alice.access)  # type: ignore[assignment]
        for type, id in RESOURCES:
            seen = self.seen[type]
            message: dict[str, Any] = {"action": "subscribe", "resource": {"type": type, "id": id}}
            if seen is not None:
                message["since"] = seen[0]
            writes = [lambda w=w: (self.write(*w), self.settle(racing=True)) for w in racing]
            racing = []
            received = subscribe_racing(core, self.client, message, *writes)  # type: ignore[arg-type]
            self.settle(racing=True)
            self.check_resume(type, seen, received)

    def check_resume(self, type: str, seen: tuple[str, int, int] | None, received: list[dict[str, Any]]) -> None:
        truth = self.truth[type]
        missed = len(truth) - 1 - seen[2] if seen is not None else None
        lost = bool(received) and received[0].get("warning") == "history_lost"
        if seen is not None and not lost:
            # The exact sequence after what it saw.
            assert received == truth[seen[2] + 1:], (type, seen, received)
            for index, message in enumerate(received, start=seen[2] + 1):
                self.apply(type, message, index)
            return
        if seen is not None:
            stored_tells = type == "kvStore" and missed == 0
            assert seen[1] != self.lifetime and not stored_tells or missed is not None and missed > self.size, \
                ("history_lost without cause", type, seen, missed, self.size)
            received = received[1:]
        # A reload: the state, then the updates after it, up to the last.
        if type == "collection":
            self.state[type] = self.collection_now()
            assert all("warning" in m for m in received)  # a collection sends no state: it is read over REST
            self.seen[type] = None  # a reload carries no version: the next resume starts from the next update
            return
        updates = [m for m in received if "version" in m]
        if not updates:
            assert [m.get("warning") for m in received] == ["resource_not_found"]
            self.state[type] = None
            self.seen[type] = None
            return
        start = truth.index(updates[0])
        assert updates == truth[start:] and start >= len(truth) - 1 - len(updates) + 1
        for index, message in enumerate(updates, start=start):
            self.apply(type, message, index)

    def collection_now(self) -> dict[str, Any]:
        """The collection as a reload reads it (the records, by id)."""
        records: dict[str, Any] = {}
        for message in self.truth["collection"]:
            record = message["data"]["record"]
            if message["data"]["action"] == "delete":
                records.pop(record["_id"], None)
            else:
                records[record["_id"]] = record
        return records

    @invariant()
    def the_connected_client_holds_the_truth(self) -> None:
        if getattr(self, "client", None) is None:
            return
        truth = self.truth["kvStore"]
        assert self.state["kvStore"] == (truth[-1]["data"] if truth else None)
        assert self.state["collection"] == self.collection_now()
        for type, seen in self.seen.items():
            if seen is not None:  # caught up
                assert seen[2] == len(self.truth[type]) - 1


Resume.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
TestResume = Resume.TestCase
