"""Inbox documents over HTTP, driven through the pure core (seed 001, BRIEF section 2)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from inbox_harness import MESSAGE_ID, OTHER_READ, OTHER_WRITE, READ, START_MS, WRITE, InboxCore
from satchel.protocol import inbox
from satchel.protocol.changes import Change, DocumentChange
from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.http import HttpRequest
from satchel.protocol.inbox.config import MAX_REVISION
from satchel.protocol.operations import ApplyMessage, PutDocument
from satchel.storage_backends.memory import MemoryStore


@pytest.fixture
def core() -> InboxCore:
    return InboxCore()


# -- reading and writing documents --------------------------------------------------


def test_a_created_document_reads_back_byte_for_byte_with_its_revision(core: InboxCore) -> None:
    content = ' {"title": "ü ✓", "n": 12345678901234567890123,\n  "list": [1, 2.50, {}]} '.encode()
    created = core.put(content, revision=1_700_000_000_123)
    assert (created.status, created.json) == (200, {"revision": 1_700_000_000_123})
    assert created.header("revision") == "1700000000123"

    response = core.get()
    assert response.status == 200
    assert response.body == content
    assert response.header("revision") == "1700000000123"
    assert response.header("content-type") == "application/json"


@pytest.mark.parametrize("content", [b"null", b"0", b'"text"', b"[]", b"{}", b"true", b"-1.5e3"])
def test_any_json_value_is_a_document(core: InboxCore, content: bytes) -> None:
    assert core.put(content).status == 200
    assert core.get().body == content


def test_an_update_needs_the_current_revision_and_the_write_token(core: InboxCore) -> None:
    core.put({"v": 1}, revision=10)
    updated = core.put({"v": 2}, derived_from=10, revision=11)
    assert (updated.status, updated.json) == (200, {"revision": 11})
    assert core.content() == {"v": 2}
    # A write token stands for its 16 bytes: its digits may come in either case.
    assert core.put({"v": 3}, write=WRITE.upper(), derived_from=11, revision=12).status == 200
    assert core.content() == {"v": 3}


@pytest.mark.parametrize(
    "if_newer_than, status",
    [(0, 200), (999, 200), (1000, 304), (1001, 304), (9_999_999_999_999_999, 304)],
)
def test_if_newer_than_answers_304_unless_the_document_is_newer(core: InboxCore, if_newer_than: int, status: int) -> None:
    core.put({"v": 1}, revision=1000)
    response = core.get(if_newer_than=if_newer_than)
    assert response.status == status
    assert response.header("revision") == "1000"
    if status == 304:
        assert response.body == b""


def test_head_answers_like_get(core: InboxCore) -> None:
    core.put({"v": 1})
    response = core.http("HEAD", f"/backend/documents/{READ}")
    assert response.status == 200 and response.header("revision") == "1000"


@pytest.mark.parametrize(
    "target, headers, status",
    [
        (f"/backend/documents/{OTHER_READ}", [], 404),
        (f"/backend/documents/{READ.upper()}", [], 400),  # read tokens are lowercase
        (f"/backend/documents/{READ[:-1]}", [], 400),
        (f"/backend/documents/{READ}0", [], 400),
        (f"/backend/documents/{READ[:-1]}g", [], 400),
        (f"/backend/documents/{READ}", [("if-newer-than", "soon")], 400),
        (f"/backend/documents/{READ}", [("if-newer-than", "-1")], 400),
        (f"/backend/documents/{READ}", [("if-newer-than", "1" * 17)], 400),
    ],
)
def test_reading_failures(core: InboxCore, target: str, headers: list[tuple[str, str]], status: int) -> None:
    core.put({"v": 1})
    response = core.http("GET", target, headers=headers)
    assert response.status == status
    assert isinstance(response.json["message"], str)


_PUT_FAILURES: list[tuple[str, dict[str, Any], int]] = [
    # (what, keyword arguments of InboxCore.put against the existing document at revision 1000, status)
    ("no write token", dict(write=None, derived_from=1000, revision=1001), 400),
    ("no derived-from", dict(derived_from=None, revision=1001), 400),
    ("no revision", dict(derived_from=1000, revision=None), 400),
    ("short write token", dict(write=WRITE[:-1], derived_from=1000, revision=1001), 400),
    ("non-hex write token", dict(write="x" * 32, derived_from=1000, revision=1001), 400),
    ("derived-from not a number", dict(derived_from="1e3", revision=1001), 400),
    ("negative revision", dict(derived_from=1000, revision=-5), 400),
    ("revision equal to derived-from", dict(derived_from=1000, revision=1000), 400),
    ("revision below derived-from", dict(derived_from=1000, revision=999), 400),
    ("revision beyond 2**53 - 1", dict(derived_from=1000, revision=MAX_REVISION + 1), 400),
    ("wrong write token", dict(write=OTHER_WRITE, derived_from=1000, revision=1001), 403),
    ("wrong write token, creating", dict(write=OTHER_WRITE, derived_from=0, revision=1001), 403),
    ("stale derived-from", dict(derived_from=999, revision=1001), 409),
    ("future derived-from", dict(derived_from=1001, revision=1002), 409),
    ("creating what exists", dict(derived_from=0, revision=1001), 409),
]


@pytest.mark.parametrize("what, put, status", _PUT_FAILURES, ids=[case[0] for case in _PUT_FAILURES])
def test_put_failures_change_nothing(core: InboxCore, what: str, put: dict[str, Any], status: int) -> None:
    core.put({"v": "original"}, revision=1000)
    core.take_changes()
    response = core.put({"v": "new"}, **put)
    assert response.status == status, response
    assert isinstance(response.json["message"], str)
    assert core.content() == {"v": "original"}
    assert core.get().header("revision") == "1000"
    assert core.take_changes() == []


def test_a_conflict_tells_the_writer_the_current_revision(core: InboxCore) -> None:
    core.put({"v": 1}, revision=1000)
    response = core.put({"v": 2}, derived_from=5, revision=6)
    assert response.status == 409 and response.header("revision") == "1000"
    # Someone without the write token learns nothing of it.
    refused = core.put({"v": 2}, write=OTHER_WRITE, derived_from=5, revision=6)
    assert refused.status == 403 and refused.header("revision") is None


@pytest.mark.parametrize(
    "body, status",
    [(b"", 400), (b"{", 400), (b"{} {}", 400), (b"\xff", 400), (b'"\\ud800"', 400), (b"NaN", 400), (b"1e999", 400)],
)
def test_a_body_that_is_not_json_is_refused(core: InboxCore, body: bytes, status: int) -> None:
    assert core.put(body).status == status
    assert core.get().status == 404


def test_the_size_limit_is_checked_before_parsing() -> None:
    core = InboxCore(inbox.InboxConfig(max_document_bytes=100))
    assert core.put(b"[" + b"1," * 49 + b"1]").status == 413  # 101 bytes of valid JSON
    assert core.put(b"x" * 101).status == 413
    assert core.put(b'"' + b"x" * 98 + b'"').status == 200


def test_creating_absent_with_a_nonzero_derived_from_is_a_conflict(core: InboxCore) -> None:
    response = core.put({"v": 1}, derived_from=5, revision=6)
    assert response.status == 409
    assert core.get().status == 404


def test_a_write_token_belongs_to_one_document(core: InboxCore) -> None:
    core.put({"v": 1})
    response = core.put({"v": 2}, read=OTHER_READ)
    assert response.status == 409
    assert core.get(OTHER_READ).status == 404


def test_the_write_token_is_stored_only_as_derived_values(core: InboxCore) -> None:
    core.put({"v": 1})
    stored = repr(core.store.__dict__).lower()
    assert WRITE not in stored
    assert bytes.fromhex(WRITE).hex() not in stored


def test_every_write_returns_one_document_change(core: InboxCore) -> None:
    core.put({"#messages": {}}, revision=1000)
    core.put({"#messages": {}, "v": 2}, derived_from=1000, revision=2000)
    core.post_message({"#": 1, "text": "hi"})
    core.post_message({"#": 1, "text": "hi"})  # no change: no write, no event
    core.delete_message()
    core.delete_message()  # absent: no write, no event
    changes = core.take_changes()
    assert [type(change) for change in changes] == [DocumentChange] * 4
    assert {change.read_token for change in changes} == {READ}
    assert {change.origin for change in changes} == {"inbox-http"}
    assert [change.revision for change in changes[:2]] == [1000, 2000]
    assert changes[-1].revision == int(core.get().header("revision"))
    assert changes[-1].content == core.get().body


def test_backpack_renderers_ignore_document_changes() -> None:
    hub_events = standard_mounts(BackpackConfig(api_key="k")).hub_events
    change = DocumentChange(READ, 1, b"{}", "inbox-http")
    assert list(hub_events([change])) == []
    record = Change("notes", "create", {"_id": "x"}, "u", "backpack-http")
    assert [event.protocol for event in hub_events([change, record, change])] == ["backpack"]


# -- batch reads ----------------------------------------------------------------------


def test_a_batch_read_answers_newer_documents_null_for_absent_ones_and_omits_the_rest(core: InboxCore) -> None:
    first, second, absent = "a" * 32, "b" * 32, "c" * 32
    core.put({"doc": 1}, read=first, write="1" * 32, revision=100)
    core.put(b' [ "doc", 2 ] ', read=second, write="2" * 32, revision=200)
    response = core.http("GET", f"/backend/documents?t={first}/99,{second}/200,{absent}/0")
    assert response.status == 200
    assert response.json == {first: {"revision": 100, "content": {"doc": 1}}, absent: None}

    everything = core.http("GET", f"/backend/documents?t={first},{second}/0")
    assert everything.json == {
        first: {"revision": 100, "content": {"doc": 1}},
        second: {"revision": 200, "content": ["doc", 2]},
    }
    # Separate t parameters and percent-encoding read the same.
    split = core.http("GET", f"/backend/documents?t={first}%2F0&t={second}/199")
    assert split.json == everything.json
    # A token named twice is answered against the lower revision.
    twice = core.http("GET", f"/backend/documents?t={first}/100,{first}/0")
    assert twice.json == {first: {"revision": 100, "content": {"doc": 1}}}
    assert core.http("GET", "/backend/documents?t=").json == {}


@pytest.mark.parametrize(
    "query",
    ["", "?x=1", f"?t={READ.upper()}/0", f"?t={READ}/x", f"?t={READ}/-1", f"?t={READ}/", "?t=nonsense"],
)
def test_malformed_batch_reads_answer_400(core: InboxCore, query: str) -> None:
    response = core.http("GET", "/backend/documents" + query)
    assert response.status == 400 and isinstance(response.json["message"], str)


def test_a_batch_read_names_at_most_the_configured_number_of_documents() -> None:
    core = InboxCore(inbox.InboxConfig(max_batch_tokens=3))
    tokens = [f"{n:032x}" for n in range(4)]
    assert core.http("GET", "/backend/documents?t=" + ",".join(tokens[:3])).status == 200
    assert core.http("GET", "/backend/documents?t=" + ",".join(tokens)).status == 400


# -- messages ---------------------------------------------------------------------------


def test_a_message_is_merged_into_an_inbox_and_bumps_the_revision(core: InboxCore) -> None:
    revision = core.inbox({"owner": "me", "#messages": {}}, revision=1000)
    core.clock.now_ms = START_MS
    response = core.post_message({"#": 5, "type": "temperature", "value": 21.1})
    assert response.status == 200
    assert core.content() == {"owner": "me", "#messages": {MESSAGE_ID: {"#": 5, "type": "temperature", "value": 21.1}}}
    # max(revision + 1, now): readers polling with If-Newer-Than notice.
    assert core.get().header("revision") == str(max(revision + 1, START_MS))
    assert core.get(if_newer_than=revision).status == 200


def test_the_revision_steps_by_one_when_the_clock_is_behind(core: InboxCore) -> None:
    core.inbox(revision=START_MS + 10_000)
    core.post_message({"#": 1})
    assert core.get().header("revision") == str(START_MS + 10_001)


def test_merging_preserves_the_rest_of_the_document_byte_for_byte(core: InboxCore) -> None:
    core.put(b'{"a": [1,  2.50, "\\u00fc"], "#messages": {"ffffffffffffffff": {"#": 1,  "x": 1}}, "z": {}}')
    assert core.post_message(b'  {"#": 2, "y": [ 1 ]}  ').status == 200
    assert core.get().body == (
        b'{"a":[1,  2.50, "\\u00fc"],"#messages":{"00112233aabbccdd":{"#": 2, "y": [ 1 ]},'
        b'"ffffffffffffffff":{"#": 1,  "x": 1}},"z":{}}'
    )


@pytest.mark.parametrize(
    "stored, incoming, kept",
    [
        ({"#": 5, "v": "old"}, {"#": 6, "v": "new"}, "new"),
        ({"#": 5, "v": "old"}, {"#": 5, "v": "new"}, "old"),  # a tie keeps what is stored
        ({"#": 5, "v": "old"}, {"#": 4, "v": "new"}, "old"),
        ({"v": "old"}, {"#": 0, "v": "new"}, "old"),  # no "#" is revision 0
        ({"v": "old"}, {"#": 0.5, "v": "new"}, "new"),
        ({"#": -1, "v": "old"}, {"v": "new"}, "new"),
        ({"#": "junk", "v": "old"}, {"#": -1e300, "v": "new"}, "new"),  # a stored non-number ranks lowest
    ],
)
def test_the_higher_revision_wins_and_a_tie_keeps_what_is_stored(
    core: InboxCore, stored: dict[str, Any], incoming: dict[str, Any], kept: str
) -> None:
    core.inbox({"#messages": {MESSAGE_ID: stored}})
    assert core.post_message(incoming).status == 200
    assert core.content()["#messages"][MESSAGE_ID]["v"] == kept


def test_message_ids_are_stored_lowercase(core: InboxCore) -> None:
    core.inbox()
    core.post_message({"#": 1}, message_id=MESSAGE_ID.upper())
    assert list(core.content()["#messages"]) == [MESSAGE_ID]
    assert core.delete_message(message_id=MESSAGE_ID.upper()).status == 200
    assert core.content()["#messages"] == {}


_MESSAGE_FAILURES: list[tuple[str, str, str, bytes, int]] = [
    # (what, method, path after /backend/documents/, body, status)
    ("short id", "POST", f"{WRITE}/messages/{MESSAGE_ID[:-1]}", b"{}", 400),
    ("long id", "POST", f"{WRITE}/messages/{MESSAGE_ID}0", b"{}", 400),
    ("non-hex id", "POST", f"{WRITE}/messages/{'g' * 16}", b"{}", 400),
    ("malformed write token", "POST", f"{WRITE[:-1]}/messages/{MESSAGE_ID}", b"{}", 400),
    ("not JSON", "POST", f"{WRITE}/messages/{MESSAGE_ID}", b"{oops", 400),
    ("empty", "POST", f"{WRITE}/messages/{MESSAGE_ID}", b"", 400),
    ("# a string", "POST", f"{WRITE}/messages/{MESSAGE_ID}", b'{"#": "5"}', 400),
    ("# a bool", "POST", f"{WRITE}/messages/{MESSAGE_ID}", b'{"#": true}', 400),
    ("# null", "POST", f"{WRITE}/messages/{MESSAGE_ID}", b'{"#": null}', 400),
    ("too large", "POST", f"{WRITE}/messages/{MESSAGE_ID}", b'"' + b"x" * 4095 + b'"', 413),
    ("too large, not JSON either", "POST", f"{WRITE}/messages/{MESSAGE_ID}", b"x" * 4097, 413),
    ("unknown write token", "POST", f"{OTHER_WRITE}/messages/{MESSAGE_ID}", b"{}", 404),
    ("unknown write token, delete", "DELETE", f"{OTHER_WRITE}/messages/{MESSAGE_ID}", b"", 404),
    ("malformed id, delete", "DELETE", f"{WRITE}/messages/xyz", b"", 400),
    ("wrong method", "PUT", f"{WRITE}/messages/{MESSAGE_ID}", b"{}", 405),
]


@pytest.mark.parametrize("what, method, path, body, status", _MESSAGE_FAILURES, ids=[case[0] for case in _MESSAGE_FAILURES])
def test_message_failures_change_nothing(core: InboxCore, what: str, method: str, path: str, body: bytes, status: int) -> None:
    core.inbox({"#messages": {MESSAGE_ID: {"#": 1}}})
    before = core.get()
    core.take_changes()
    response = core.http(method, f"/backend/documents/{path}", body)
    assert response.status == status, response
    assert isinstance(response.json["message"], str)
    assert core.get().body == before.body and core.take_changes() == []


def test_a_message_of_exactly_4096_bytes_is_accepted(core: InboxCore) -> None:
    core.inbox()
    message = b'"' + b"x" * 4094 + b'"'
    assert len(message) == 4096
    assert core.post_message(message).status == 200


@pytest.mark.parametrize(
    "content",
    [{"#messages": []}, {"#messages": "x"}, {"#messages": None}, {"messages": {}}, [{"#messages": {}}], "#messages", {}],
)
def test_only_a_document_with_a_top_level_messages_object_is_an_inbox(core: InboxCore, content: Any) -> None:
    core.put(content)
    assert core.post_message({"#": 1}).status == 403
    assert core.delete_message().status == 403
    assert core.content() == content


def test_removing_a_message_answers_200_whether_or_not_it_was_there(core: InboxCore) -> None:
    core.inbox({"#messages": {MESSAGE_ID: {"#": 1}, "ffffffffffffffff": {}}}, revision=10)
    assert core.delete_message().status == 200
    assert core.content() == {"#messages": {"ffffffffffffffff": {}}}
    revision = core.get().header("revision")
    assert core.delete_message().status == 200
    assert core.get().header("revision") == revision


def test_an_inbox_cannot_grow_beyond_the_document_limit() -> None:
    core = InboxCore(inbox.InboxConfig(max_document_bytes=260))
    core.inbox()
    statuses = [core.post_message({"#": 1, "pad": "x" * 40}, message_id=f"{n:016x}").status for n in range(5)]
    assert statuses == [200, 200, 200, 413, 413]
    assert len(core.get().body) <= 260
    # Removal still works, and makes room again.
    assert core.delete_message(message_id=f"{0:016x}").status == 200
    assert core.post_message({"#": 1, "pad": "x" * 40}, message_id=f"{9:016x}").status == 200


# -- routes and CORS ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, target, status",
    [
        ("POST", "/backend/documents", 405),
        ("DELETE", f"/backend/documents/{READ}", 405),
        ("GET", f"/backend/documents/{WRITE}/messages/{MESSAGE_ID}", 405),
        ("GET", f"/backend/documents/{READ}/other", 404),
        ("GET", f"/backend/documents/{WRITE}/messages/{MESSAGE_ID}/more", 404),
        ("GET", "/backend/elsewhere", 404),
    ],
)
def test_unknown_routes_and_methods(core: InboxCore, method: str, target: str, status: int) -> None:
    response = core.http(method, target)
    assert response.status == status
    if status == 405:
        assert response.header("allow")


def test_is_inbox_path() -> None:
    assert inbox.is_inbox_path("/backend/documents")
    assert inbox.is_inbox_path(f"/backend/documents/{READ}")
    assert not inbox.is_inbox_path("/backend/documentsx")
    assert not inbox.is_inbox_path("/notes")


def test_preflight_echoes_the_origin_without_credentials(core: InboxCore) -> None:
    response = core.http(
        "OPTIONS",
        f"/backend/documents/{READ}",
        headers=[("origin", "https://app.test"), ("access-control-request-method", "PUT"), ("access-control-request-headers", "write-token,derived-from,revision")],
    )
    assert response.status == 204
    assert response.header("access-control-allow-origin") == "https://app.test"
    assert response.header("access-control-allow-credentials") is None
    assert "PUT" in response.header("access-control-allow-methods")
    assert response.header("access-control-allow-headers") == "write-token,derived-from,revision"


def test_answers_expose_the_revision_header_to_scripts(core: InboxCore) -> None:
    core.put({"v": 1})
    for response in (core.http("GET", f"/backend/documents/{READ}", headers=[("origin", "https://app.test")]),
                     core.http("GET", f"/backend/documents/{OTHER_READ}", headers=[("origin", "https://app.test")])):
        assert response.header("access-control-allow-origin") == "https://app.test"
        assert response.header("access-control-expose-headers") == "Revision"
    assert core.get().header("access-control-allow-origin") is None


def test_allowed_origins_limit_cors() -> None:
    core = InboxCore(inbox.InboxConfig(allowed_origins=frozenset({"https://good.test"})))
    good = core.http("GET", f"/backend/documents/{READ}", headers=[("origin", "https://good.test")])
    bad = core.http("GET", f"/backend/documents/{READ}", headers=[("origin", "https://evil.test")])
    assert good.header("access-control-allow-origin") == "https://good.test"
    assert bad.header("access-control-allow-origin") is None


# -- concurrency: the compare-and-swap ------------------------------------------------------


def _step_until_put(action: Any, store: MemoryStore) -> PutDocument:
    """Run ``action`` until it yields a PutDocument, which is returned unexecuted."""
    operation = next(action)
    while not isinstance(operation, PutDocument):
        operation = action.send(store.execute_sync(operation))
    return operation


def _finish(action: Any, result: Any, store: MemoryStore) -> Any:
    try:
        operation = action.send(result)
        while True:
            operation = action.send(store.execute_sync(operation))
    except StopIteration as done:
        return done.value


def _request(method: str, target: str, body: Any, headers: list[tuple[str, str]] = []) -> HttpRequest:
    return HttpRequest(method, target, headers, json.dumps(body).encode())


def _step_until(action: Any, kind: type, store: MemoryStore) -> Any:
    """Run ``action`` until it yields an operation of ``kind``, which is returned unexecuted."""
    operation = next(action)
    while not isinstance(operation, kind):
        operation = action.send(store.execute_sync(operation))
    return operation


def test_a_message_is_applied_to_the_document_as_the_store_holds_it_then(core: InboxCore) -> None:
    core.inbox({"owner": "first", "#messages": {"ffffffffffffffff": {}}}, revision=START_MS + 1000)
    post = inbox.handle_request(_request("POST", f"/backend/documents/{WRITE}/messages/{MESSAGE_ID}", {"#": 1}), core.config, core.env)
    apply = _step_until(post, ApplyMessage, core.store)
    # The owner writes between the sender's read and its write.
    assert core.put({"owner": "second", "#messages": {}}, derived_from=START_MS + 1000, revision=START_MS + 2000).status == 200
    outcome = _finish(post, core.store.execute_sync(apply), core.store)
    assert outcome.response.status == 200 and len(outcome.changes) == 1
    assert core.content() == {"owner": "second", "#messages": {MESSAGE_ID: {"#": 1}}}
    assert outcome.changes[0].revision == START_MS + 2001


def test_of_two_racing_creations_exactly_one_wins(core: InboxCore) -> None:
    headers = [("write-token", WRITE), ("derived-from", "0"), ("revision", "5")]
    first = inbox.handle_request(_request("PUT", f"/backend/documents/{READ}", {"by": 1}, headers), core.config, core.env)
    second = inbox.handle_request(_request("PUT", f"/backend/documents/{READ}", {"by": 2}, headers), core.config, core.env)
    first_put = _step_until_put(first, core.store)
    second_put = _step_until_put(second, core.store)
    assert _finish(first, core.store.execute_sync(first_put), core.store).response.status == 200
    loser = _finish(second, core.store.execute_sync(second_put), core.store)
    assert loser.response.status == 409 and loser.changes == []
    assert core.content() == {"by": 1}


def test_outcomes_encode_for_a_broker() -> None:
    change = DocumentChange(READ, 7, b'{"a":1}', "inbox-udp")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(change), type=DocumentChange) == change
