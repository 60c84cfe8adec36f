"""Garbage in, protocol errors out: the Backpack core never raises on what a
peer sends, and never corrupts what is stored.

Frames and requests are generated from the shapes the protocol knows (real
action names, real field names, wrong types everywhere) as well as from
arbitrary bytes, so that the fuzz reaches past the JSON decoder.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from core_harness import Core
from satchel.protocol.backpack.websocket import ACTIONS
from satchel.protocol.operations import ListCollections, ListRecords

FIELDS = ["action", "collection", "id", "data", "query", "usersInformationCollection", "channelMessagesCollection",
          "channelType", "channelId", "name", "broadcast"]
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30) | st.sampled_from(
    ["messages", "users", "rooms", "usersmeta", "../x", "", "5e9f2fc00fb8899611d642a4", "$where"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                      max_leaves=6)
messages = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6) | st.builds(lambda action, rest: {**rest, "action": action},
                              st.sampled_from(sorted(ACTIONS) + ["connection", "error", ""]),
                              st.dictionaries(st.sampled_from(FIELDS), values, max_size=6))
frames = messages.map(json.dumps) | st.binary(max_size=64) | st.text(max_size=64)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8))
def test_any_frames_only_produce_replies_and_errors(sequence: list) -> None:
    core = Core()
    _, cookie = core.user("fuzz@example.com")
    sender, watcher = core.connect(cookie), core.connect(cookie)
    core.take(sender)
    core.take(watcher)
    for frame in sequence:
        core.send(sender, frame)  # raises if the core raises
    for connection in (sender, watcher):
        for message in core.take(connection):
            assert isinstance(message, dict) and isinstance(message.get("action"), str)
            if message["action"] == "error":
                assert isinstance(message["message"], str) and message["message"]
    # Whatever happened, the store still answers and holds only records.
    for name in core.store.execute_sync(ListCollections()):
        for record in core.store.execute_sync(ListRecords(name)):
            assert len(record["_id"]) == 24 and "createdAt" in record


methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW", ""])
segments = st.sampled_from(["register", "login", "logout", "collections", "messages", "users", "uploads",
                            "5e9f2fc00fb8899611d642a4", "..", "%2F", "%00", "a" * 100, ""]) | st.text(max_size=10)
targets = st.lists(segments, max_size=4).map(lambda parts: "/" + "/".join(parts)) | st.text(max_size=40)
bodies = st.binary(max_size=80) | values.map(lambda v: json.dumps(v).encode())


@settings(max_examples=400, deadline=None)
@given(methods, targets, bodies, st.booleans())
def test_any_request_gets_a_well_formed_answer(method: str, target: str, body: bytes, logged_in: bool) -> None:
    core = Core()
    cookie = core.user("fuzz@example.com")[1] if logged_in else None
    response = core.http(method, target, raw=body, cookie=cookie)
    assert 200 <= response.status < 500
    if response.body:
        assert response.header("content-type").startswith("application/json")
        if response.status >= 400:
            assert isinstance(response.json["message"], str)

