"""The message merge rule (seed 001) as properties: it converges, and removal
behaves as the seed warns."""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgspec
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from satchel.protocol.inbox import merge
from satchel.protocol.inbox.documents import NotAnInbox, is_inbox, merge_into, remove_from

IDS = [f"{n:016x}" for n in (0, 1, 0xABC, 2**63, 2**64 - 1)]


def _version(message_id: str, revision: int | float | None, payload: int | None = None) -> dict[str, Any]:
    """A message version. Unless given, its content is a function of (id,
    revision), which is what a revision promises: one revision, one message."""
    if payload is None:
        payload = zlib.crc32(repr((message_id, revision)).encode()) % 1000
    message: dict[str, Any] = {"from": message_id, "payload": payload}
    if revision is not None:
        message["#"] = revision
    return message


#: Revisions with distinct values: an absent "#" is revision 0, so 0 itself is left out.
revisions = st.one_of(st.none(), st.sampled_from([-3, -1, 1, 2, 3, 0.5, 1.5, 1e15, 1_700_000_000_000]))


@st.composite
def deliveries(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    """A delivery: messages in some order, some of them several times."""
    versions = draw(st.lists(st.tuples(st.sampled_from(IDS), revisions), min_size=1, max_size=12, unique=True))
    delivered = draw(st.lists(st.sampled_from(versions), min_size=1, max_size=30))
    return [(message_id, _version(message_id, revision)) for message_id, revision in delivered]


def _fold(messages: dict[str, Any], delivery: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    for message_id, message in delivery:
        merged = merge.merge(messages, message_id, message)
        if merged is not None:
            messages = merged
    return messages


def _expected(delivery: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The model: per id, the version with the highest revision."""
    best: dict[str, Any] = {}
    for message_id, message in delivery:
        if message_id not in best or merge.revision_of(message) > merge.revision_of(best[message_id]):
            best[message_id] = message
    return best


@given(deliveries(), st.randoms(use_true_random=False), st.integers(1, 3))
def test_any_order_any_number_of_times_gives_the_same_document(
    delivery: list[tuple[str, dict[str, Any]]], random: Any, repeats: int
) -> None:
    reference = _fold({}, delivery)
    assert reference == _expected(delivery)
    shuffled = delivery * repeats
    random.shuffle(shuffled)
    again = _fold({}, shuffled)
    # Byte for byte, not merely equal: ids are kept sorted.
    assert msgspec.json.encode(again) == msgspec.json.encode(reference)


@given(deliveries(), deliveries())
def test_merging_is_associative_over_batches(first: list[Any], second: list[Any]) -> None:
    assert _fold(_fold({}, first), second) == _fold({}, first + second) == _fold(_fold({}, second), first)


@given(deliveries())
def test_delivering_everything_again_changes_nothing(delivery: list[tuple[str, dict[str, Any]]]) -> None:
    messages = _fold({}, delivery)
    for message_id, message in delivery:
        assert merge.merge(messages, message_id, message) is None


def test_a_tie_keeps_what_is_stored() -> None:
    stored = {"a": {"#": 5, "v": "stored"}}
    assert merge.merge(stored, "a", {"#": 5, "v": "other"}) is None
    assert merge.merge(stored, "a", {"#": 5.0, "v": "other"}) is None
    assert merge.merge(stored, "a", {"#": 6, "v": "other"}) == {"a": {"#": 6, "v": "other"}}


@given(st.one_of(st.text(), st.booleans(), st.none(), st.lists(st.integers()), st.dictionaries(st.text(), st.integers())))
def test_a_revision_that_is_not_a_number_is_refused(revision: Any) -> None:
    assert merge.revision_of({"#": revision}) is None
    try:
        merge.merge({}, "a", {"#": revision})
    except merge.InvalidMessage:
        pass
    else:
        raise AssertionError("merged a message whose # is not a number")


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_a_number_is_a_revision_and_absence_is_zero(revision: int | float) -> None:
    assert merge.revision_of({"#": revision}) == revision
    assert merge.revision_of({"x": revision}) == 0
    assert merge.revision_of([revision]) == 0
    assert merge.revision_of(revision) == 0


# -- the same rule on document bytes, as the server runs it ------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


@given(deliveries(), st.dictionaries(st.text(max_size=4).filter(lambda key: key != "#messages"), json_values, max_size=3), st.booleans())
def test_merging_into_document_bytes_agrees_with_the_rule(
    delivery: list[tuple[str, dict[str, Any]]], others: dict[str, Any], indent: bool
) -> None:
    content = json.dumps({**others, "#messages": {}}, indent=2 if indent else None).encode()
    for message_id, message in delivery:
        merged = merge_into(content, message_id, json.dumps(message, indent=1).encode())
        content = merged if merged is not None else content
    decoded = msgspec.json.decode(content)
    assert decoded == {**others, "#messages": _expected(delivery)}
    assert list(decoded["#messages"]) == sorted(decoded["#messages"])


@given(json_values)
def test_anything_without_a_top_level_messages_object_is_not_an_inbox(value: Any) -> None:
    content = msgspec.json.encode(value)
    assert is_inbox(content) == (isinstance(value, dict) and isinstance(value.get("#messages"), dict))
    if not is_inbox(content):
        for attempt in (lambda: merge_into(content, IDS[0], b"{}"), lambda: remove_from(content, IDS[0])):
            try:
                attempt()
            except NotAnInbox:
                pass
            else:
                raise AssertionError("merged into a document that is not an inbox")


# -- removal: not a forward operation ---------------------------------------------------------


class MergeAndRemove(RuleBasedStateMachine):
    """Merges and removals on an inbox's bytes, against a model.

    The model of an inbox is, per id, the message with the highest revision
    merged since that id was last removed. That removal forgets is the
    seed's warning: "after the removal, an old version of the message may get
    merged".
    """

    def __init__(self) -> None:
        super().__init__()
        self.content = b'{"owner": "me", "#messages": {}}'
        self.model: dict[str, dict[str, Any]] = {}
        self.removed: dict[str, dict[str, Any]] = {}  # id -> the message a removal took away

    @rule(message_id=st.sampled_from(IDS), revision=revisions)
    def merge_message(self, message_id: str, revision: int | float | None) -> None:
        message = _version(message_id, revision)
        merged = merge_into(self.content, message_id, msgspec.json.encode(message))
        stored = self.model.get(message_id)
        wins = stored is None or merge.revision_of(message) > merge.revision_of(stored)
        assert (merged is not None) == wins
        if merged is not None:
            self.content = merged
            self.model[message_id] = message

    @rule(message_id=st.sampled_from(IDS))
    def remove_message(self, message_id: str) -> None:
        removed = remove_from(self.content, message_id)
        assert (removed is not None) == (message_id in self.model)
        if removed is not None:
            self.content = removed
            self.removed[message_id] = self.model.pop(message_id)

    @precondition(lambda self: any(message_id not in self.model for message_id in self.removed))
    @rule(data=st.data())
    def an_older_version_comes_back_after_removal(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(sorted(m for m in self.removed if m not in self.model)))
        newest_removed = merge.revision_of(self.removed[message_id])
        older = _version(message_id, newest_removed - 1)
        merged = merge_into(self.content, message_id, msgspec.json.encode(older))
        assert merged is not None, "removal forgot the newer revision, so the older one is merged"
        self.content = merged
        self.model[message_id] = older

    @invariant()
    def the_document_is_the_model(self) -> None:
        decoded = msgspec.json.decode(self.content)
        assert decoded == {"owner": "me", "#messages": self.model}
        assert list(decoded["#messages"]) == sorted(self.model)


TestMergeAndRemove = MergeAndRemove.TestCase
TestMergeAndRemove.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
