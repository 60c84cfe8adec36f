"""The inbox as rows (``MessageTable``, ``apply_to_table``) against the
definition (``apply_message`` on the whole document): the same answers, the
same revisions, the same bytes, whatever the writes, including documents an
owner PUT with unsorted, duplicate or non-numeric messages."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings, strategies as st

from satchel.protocol.inbox.documents import MessageTable, NotAnInbox, apply_message, apply_to_table
from satchel.protocol.inbox.merge import InvalidMessage
from satchel.protocol.operations import Document

_ids = st.sampled_from(["0000000000000000", "00000000000000ff", "1111111111111111", "abcdefabcdef0123", "ffffffffffffffff"])
_messages = st.one_of(
    st.none(),
    st.builds(lambda r, v: b' {"#": %s, "v": %s} ' % (r.encode(), v.encode()),
              st.sampled_from(["0", "1", "2", "2.5", "-1", "1e3", "12345678901234567890123"]), st.sampled_from(['"a"', "[1, 2]", "null"])),
    st.sampled_from([b"{}", b"3", b'"text"', b"[]", b'{"v": "no revision"}']),
)
_owner_contents = st.sampled_from([
    b'{"#messages": {}}',
    b' {"title": "t", "#messages": {"ffffffffffffffff": {"#": 3}, "0000000000000000": {"#": "x"}}, "z": [1, 2] } ',
    b'{"#messages": {"b": 1, "a": {"#": true}, "b": {"#": 9}}, "#messages2": 1}',
    b'{"a": 1, "a": 2, "#messages": {"\\u00e9": {"#": 1}, "e": 2}}',
])


def _document(content: bytes) -> Document:
    return Document("1" * 32, "2" * 32, "3" * 64, "4" * 64, 5, content)


@settings(max_examples=300, deadline=None)
@given(_owner_contents, st.lists(st.tuples(_ids, _messages, st.integers(0, 20)), max_size=25), st.sampled_from([60, 150, 10_000]))
def test_a_table_writes_what_the_whole_document_merge_writes(content: bytes, writes: list, limit: int) -> None:
    document = _document(content)
    table = MessageTable.from_content(content)
    revision = document.revision
    for message_id, message, now in writes:
        expected = apply_message(document, message_id, message, now, limit)
        written = apply_to_table(table, revision, message_id, message, now, limit)
        assert written.result == expected.result
        if expected.document is None:
            assert written.revision is None
        else:
            document = expected.document
            assert written.revision == document.revision
            revision = document.revision
            assert table.content == document.content
            assert table.size == len(document.content)
        # A table rebuilt from its rows (as a store reloads one) is the same.
        rows = [(key, table.revisions[key], table.bodies[key]) for key in reversed(table.ids)]
        assert MessageTable.from_rows(table.head, table.tail, rows).content == table.content


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.booleans(), st.integers(0, 5)), max_size=120))
def test_runs_split_and_empty_as_messages_come_and_go(writes: list) -> None:
    """With runs of 2 (at most 4 before a split), many ids: the same bytes."""
    saved = MessageTable.RUN
    MessageTable.RUN = 2
    try:
        document = _document(b'{"#messages": {"0000000000000010": 1, "0000000000000020": 2, "0000000000000030": 3}}')
        table = MessageTable.from_content(document.content)
        for n, remove, revision in writes:
            message_id = f"{n:016x}"
            message = None if remove else b'{"#": %d, "n": %d}' % (revision, n)
            expected = apply_message(document, message_id, message, 0, 1 << 20)
            written = apply_to_table(table, document.revision, message_id, message, 0, 1 << 20)
            assert written.result == expected.result and (written.revision is None) == (expected.document is None)
            if expected.document is not None:
                document = expected.document
                assert table.content == document.content and table.size == len(document.content)
        assert table.ids == sorted(table.bodies)
    finally:
        MessageTable.RUN = saved


def test_a_table_refuses_what_is_not_an_inbox_and_messages_without_a_revision() -> None:
    for content in (b'{"messages": {}}', b"[1]", b'{"#messages": []}'):
        try:
            MessageTable.from_content(content)
        except NotAnInbox:
            pass
        else:
            raise AssertionError(content)
    table = MessageTable.from_content(b'{"#messages": {}}')
    for message in (b"{oops", b'{"#": "1"}', b'{"#": true}'):
        try:
            apply_to_table(table, 1, "0" * 16, message, 0, 1000)
        except InvalidMessage:
            pass
        else:
            raise AssertionError(message)
    assert table.content == b'{"#messages":{}}' and msgspec.json.decode(table.content) == {"#messages": {}}
