"""The conformance checks of token-addressed documents and inbox messages
(``PutDocument``, ``GetDocument``, ``GetDocumentByWriteKey``,
``GetDocumentKeys``, ``ApplyMessage``, ``ApplyMessages``), run by
``conformance.check_store`` with the rest.

They hold a backend to the operations' docstrings: a document's bytes come
back exactly, writes are compare-and-swaps on the revision and racing
writers land once each, inbox merges follow the merge rule whether applied
one at a time or in batches, and messages kept as rows read back as the
document they make.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import AsyncContextManager, Callable, Iterator

import msgspec
import trio

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import (
    ApplyMessage,
    ApplyMessages,
    Document,
    DocumentKeys,
    GetDocument,
    GetDocumentByWriteKey,
    GetDocumentKeys,
    GetRecord,
    ListCollections,
    MessageEdit,
    MessageWrite,
    PutDocument,
)

from .base import Store

__all__ = ["DOCUMENT_CHECKS", "assert_raises", "check_documents", "check_document_compare_and_swap", "check_document_races", "check_document_copies", "check_apply_message", "check_concurrent_messages", "check_document_keys", "check_apply_messages", "check_inbox_rows"]

MakeStore = Callable[[], AsyncContextManager[Store]]


@contextlib.contextmanager
def assert_raises(exception_type: type[BaseException]) -> Iterator[None]:
    """The block must raise ``exception_type``."""
    try:
        yield
    except exception_type:
        pass
    else:
        raise AssertionError(f"expected {exception_type.__name__}")


_document_numbers = itertools.count(1)


def _document(content: bytes = b'{"#messages":{}}', revision: int = 1) -> Document:
    """A document with fresh tokens, as the inbox core creates one."""
    n = next(_document_numbers)
    return Document(
        read_token=f"{n:032x}",
        write_key=f"{n:031x}f",
        write_hash=f"{n:063x}a",
        mac_key=f"{n:063x}b",
        revision=revision,
        content=content,
    )


async def check_documents(make_store: MakeStore) -> None:
    """Documents by read token and by write key, their exact bytes, and out of
    reach of collections."""
    async with make_store() as store:
        document = _document(' {"text": "ü ✓ \\u00fc", "n": 12345678901234567890123,\n "f": 0.1, "#messages": {}} '.encode())
        assert await store.execute(GetDocument(document.read_token)) is None
        assert await store.execute(GetDocumentByWriteKey(document.write_key)) is None

        assert await store.execute(PutDocument(document, 0)) is True
        assert await store.execute(GetDocument(document.read_token)) == document
        assert await store.execute(GetDocumentByWriteKey(document.write_key)) == document
        # The content comes back byte for byte, whitespace and all.
        assert (await store.execute(GetDocument(document.read_token))).content == document.content

        # Neither key finds anything through the other.
        assert await store.execute(GetDocument(document.write_key)) is None
        assert await store.execute(GetDocumentByWriteKey(document.read_token)) is None

        other = _document(b"[1, 2, 3]", revision=1_700_000_000_000)
        assert await store.execute(PutDocument(other, 0)) is True
        assert await store.execute(GetDocument(other.read_token)) == other
        assert await store.execute(GetDocument(document.read_token)) == document

        # Documents are not records of any collection.
        assert await store.execute(ListCollections()) == []
        assert await store.execute(GetRecord("documents", document.read_token)) is None

        # Every write is visible to the very next read.
        current = document
        for step in range(20):
            updated = msgspec.structs.replace(current, revision=current.revision + 1 + step, content=b'{"step": %d}' % step)
            assert await store.execute(PutDocument(updated, current.revision)) is True
            assert await store.execute(GetDocument(document.read_token)) == updated
            assert await store.execute(GetDocumentByWriteKey(document.write_key)) == updated
            current = updated


async def check_document_compare_and_swap(make_store: MakeStore) -> None:
    """PutDocument writes only at the expected revision; 0 creates only what does not exist."""
    async with make_store() as store:
        document = _document(revision=5)
        # Nothing to update yet.
        assert await store.execute(PutDocument(msgspec.structs.replace(document, revision=6), 5)) is False
        assert await store.execute(GetDocument(document.read_token)) is None
        assert await store.execute(PutDocument(document, 0)) is True

        # Creating it again fails, whatever the content.
        assert await store.execute(PutDocument(msgspec.structs.replace(document, content=b"{}"), 0)) is False
        # So does creating another document with the same write key.
        thief = msgspec.structs.replace(_document(), write_key=document.write_key)
        assert await store.execute(PutDocument(thief, 0)) is False
        assert await store.execute(GetDocument(thief.read_token)) is None
        assert await store.execute(GetDocumentByWriteKey(document.write_key)) == document

        # A stale or future expected revision changes nothing.
        for expected in (1, 4, 6, 7):
            attempt = msgspec.structs.replace(document, revision=99, content=b'"no"')
            assert await store.execute(PutDocument(attempt, expected)) is False
        assert await store.execute(GetDocument(document.read_token)) == document

        # Nor does a write naming another write key.
        wrong_key = msgspec.structs.replace(document, write_key="f" * 32, revision=6)
        assert await store.execute(PutDocument(wrong_key, 5)) is False
        assert await store.execute(GetDocument(document.read_token)) == document

        # The expected revision succeeds, and the token fields stay as created.
        updated = msgspec.structs.replace(document, revision=9, content=b'{"new": true}', write_hash="0" * 64, mac_key="1" * 64)
        assert await store.execute(PutDocument(updated, 5)) is True
        expected = msgspec.structs.replace(document, revision=9, content=b'{"new": true}')
        assert await store.execute(GetDocument(document.read_token)) == expected
        assert await store.execute(GetDocumentByWriteKey(document.write_key)) == expected
        assert await store.execute(PutDocument(msgspec.structs.replace(document, revision=10), 5)) is False

        # A revision that does not grow is a bug of the caller.
        for revision, expected_revision in ((9, 9), (8, 9), (0, 0), (5, -1)):
            with assert_raises(LocalProtocolError):
                await store.execute(PutDocument(msgspec.structs.replace(document, revision=revision), expected_revision))
        assert (await store.execute(GetDocument(document.read_token))).revision == 9


async def check_document_races(make_store: MakeStore) -> None:
    """Concurrent creations of one document, or of two sharing a write key,
    and concurrent updates from one revision: exactly one wins each race."""
    async with make_store() as store:
        results: list[tuple[str, int, bool]] = []

        async def put(race: str, n: int, document: Document, expected: int) -> None:
            results.append((race, n, await store.execute(PutDocument(document, expected))))

        contested = _document(revision=1)
        shared_key = _document(revision=1)
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(put, "create", n, msgspec.structs.replace(contested, content=b"%d" % n), 0)
                rival = msgspec.structs.replace(_document(content=b"%d" % n), write_key=shared_key.write_key)
                nursery.start_soon(put, "write-key", n, rival, 0)
        for race in ("create", "write-key"):
            winners = [n for name, n, won in results if name == race and won]
            assert len(winners) == 1, (race, winners)
        (winner,) = [n for name, n, won in results if name == "create" and won]
        stored = await store.execute(GetDocument(contested.read_token))
        assert stored.content == b"%d" % winner and stored.revision == 1
        (key_winner,) = [n for name, n, won in results if name == "write-key" and won]
        assert (await store.execute(GetDocumentByWriteKey(shared_key.write_key))).content == b"%d" % key_winner

        results.clear()
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(put, "update", n, msgspec.structs.replace(contested, revision=2 + n, content=b"%d" % n), 1)
        (updater,) = [n for _, n, won in results if won]
        assert await store.execute(GetDocument(contested.read_token)) == msgspec.structs.replace(
            contested, revision=2 + updater, content=b"%d" % updater
        )


async def check_document_copies(make_store: MakeStore) -> None:
    """Documents are values: content must be ``bytes`` (a caller's bytearray
    could change under the store), and what comes out is what went in."""
    async with make_store() as store:
        content = bytearray(b'{"#messages": {}}')
        with assert_raises(LocalProtocolError):
            await store.execute(PutDocument(msgspec.structs.replace(_document(), content=content), 0))  # type: ignore[arg-type]
        document = _document(bytes(content))
        assert await store.execute(PutDocument(document, 0)) is True
        content.extend(b"changed")
        got = await store.execute(GetDocument(document.read_token))
        assert type(got.content) is bytes and got == document
        assert await store.execute(GetDocument(document.read_token)) == document


async def check_apply_message(make_store: MakeStore) -> None:
    """ApplyMessage merges and removes by the core's rule, bumps the revision
    to max(revision + 1, now) only when something changed, and answers
    unknown, not-inbox and too-large without writing."""
    async with make_store() as store:
        inbox = _document(b'{"owner": "me",  "#messages": {}}', revision=100)
        plain = _document(b'{"messages": {}}', revision=100)
        for document in (inbox, plain):
            await store.execute(PutDocument(document, 0))

        assert await store.execute(ApplyMessage("e" * 32, "0" * 16, b"{}", 1, 10_000)) == MessageWrite("unknown")
        assert await store.execute(ApplyMessage(plain.write_key, "0" * 16, b"{}", 1, 10_000)) == MessageWrite("not-inbox")
        assert await store.execute(ApplyMessage(plain.write_key, "0" * 16, None, 1, 10_000)) == MessageWrite("not-inbox")
        assert await store.execute(GetDocument(plain.read_token)) == plain

        # A merge: the revision steps past the old one, or jumps to now.
        written = await store.execute(ApplyMessage(inbox.write_key, "0" * 16, b'{"#": 2, "v": "a"}', 50, 10_000))
        assert written.result == "done" and written.document is not None
        assert written.document.revision == 101
        assert written.document.content == b'{"owner":"me","#messages":{"0000000000000000":{"#": 2, "v": "a"}}}'
        assert (written.document.read_token, written.document.write_key, written.document.mac_key) == (
            inbox.read_token, inbox.write_key, inbox.mac_key
        )
        assert await store.execute(GetDocument(inbox.read_token)) == written.document
        newer = await store.execute(ApplyMessage(inbox.write_key, "1" * 16, b"{}", 5_000, 10_000))
        assert newer.document.revision == 5_000

        # Nothing to change: nothing written.
        for message in (b'{"#": 2, "v": "other"}', b'{"#": 1}'):
            assert await store.execute(ApplyMessage(inbox.write_key, "0" * 16, message, 9_000, 10_000)) == MessageWrite("done")
        assert await store.execute(ApplyMessage(inbox.write_key, "2" * 16, None, 9_000, 10_000)) == MessageWrite("done")
        assert await store.execute(GetDocument(inbox.read_token)) == newer.document

        # A message that is not JSON with a numeric "#" is a caller's bug: raised, not stored.
        for message in (b"{oops", b'{"#": "1"}'):
            with assert_raises(ValueError):
                await store.execute(ApplyMessage(inbox.write_key, "4" * 16, message, 9_000, 10_000))
        assert await store.execute(GetDocument(inbox.read_token)) == newer.document

        # Too large: refused; a removal may always shrink.
        assert await store.execute(ApplyMessage(inbox.write_key, "3" * 16, b'"' + b"x" * 100 + b'"', 9_000, 100)) == MessageWrite("too-large")
        removed = await store.execute(ApplyMessage(inbox.write_key, "0" * 16, None, 9_000, 10))
        assert removed.result == "done" and removed.document.revision == 9_000
        assert removed.document.content == b'{"owner":"me","#messages":{"1111111111111111":{}}}'
        assert await store.execute(GetDocumentByWriteKey(inbox.write_key)) == removed.document


async def check_concurrent_messages(make_store: MakeStore) -> None:
    """Many senders into one inbox at once: every message lands, each write
    gets its own revision, none is lost."""
    async with make_store() as store:
        inbox = _document(b'{"#messages": {}}', revision=1)
        await store.execute(PutDocument(inbox, 0))
        revisions: list[int] = []

        async def send(n: int) -> None:
            written = await store.execute(ApplyMessage(inbox.write_key, f"{n:016x}", b'{"#": %d}' % n, 0, 1_000_000))
            assert written.result == "done"
            revisions.append(written.document.revision)

        async with trio.open_nursery() as nursery:
            for n in range(100):
                nursery.start_soon(send, n)
        stored = await store.execute(GetDocument(inbox.read_token))
        assert sorted(revisions) == list(range(2, 102)) and stored.revision == 101
        assert msgspec.json.decode(stored.content) == {"#messages": {f"{n:016x}": {"#": n} for n in range(100)}}


async def check_document_keys(make_store: MakeStore) -> None:
    """GetDocumentKeys: each write key's document keys, in order, without content."""
    async with make_store() as store:
        first, second = _document(), _document(b"[1]")
        for document in (first, second):
            await store.execute(PutDocument(document, 0))

        def keys(d: Document) -> DocumentKeys:
            return DocumentKeys(d.read_token, d.write_key, d.write_hash, d.mac_key)

        assert await store.execute(GetDocumentKeys(())) == []
        answer = await store.execute(GetDocumentKeys((second.write_key, "e" * 32, first.write_key, second.write_key)))
        assert answer == [keys(second), None, keys(first), keys(second)]
        assert await store.execute(GetDocumentKeys((first.read_token,))) == [None]  # not a write key
        # They stay what they were at creation, whatever is written since.
        await store.execute(ApplyMessage(first.write_key, "0" * 16, b"{}", 5, 10_000))
        await store.execute(PutDocument(msgspec.structs.replace(second, revision=9, write_hash="0" * 64), second.revision))
        assert await store.execute(GetDocumentKeys((first.write_key, second.write_key))) == [keys(first), keys(second)]


async def check_apply_messages(make_store: MakeStore) -> None:
    """ApplyMessages: edits applied in order as ApplyMessage would, each
    seeing the ones before, each answered with the document just after it;
    an invalid message refuses the whole batch."""
    async with make_store() as store:
        inbox = _document(b'{"a": 1, "#messages": {}, "z": 2}', revision=100)
        other = _document(b'{"#messages": {"0000000000000009": {"#": 1}}}', revision=7)
        plain = _document(b'{"messages": {}}', revision=3)
        for document in (inbox, other, plain):
            await store.execute(PutDocument(document, 0))
        assert await store.execute(ApplyMessages((), 50, 10_000)) == []
        edits = (
            MessageEdit(inbox.write_key, "0000000000000002", b'{"#": 1, "v": "a"}'),
            MessageEdit(plain.write_key, "0000000000000002", b"{}"),
            MessageEdit("e" * 32, "0000000000000002", b"{}"),
            MessageEdit(inbox.write_key, "0000000000000001", b' {"#": 5} '),
            MessageEdit(inbox.write_key, "0000000000000002", b'{"#": 1, "v": "tie: kept"}'),
            MessageEdit(other.write_key, "0000000000000009", None),
            MessageEdit(inbox.write_key, "0000000000000002", b'{"#": 2, "v": "b"}'),
            MessageEdit(inbox.write_key, "0000000000000003", b'"' + b"x" * 200 + b'"'),
            MessageEdit(inbox.write_key, "0000000000000001", None),
            MessageEdit(other.write_key, "0000000000000009", None),
        )
        written = await store.execute(ApplyMessages(edits, 50, 150))
        results = [w.result for w in written]
        assert results == ["done", "not-inbox", "unknown", "done", "done", "done", "done", "too-large", "done", "done"]
        assert [w.revision for w in written] == [101, 0, 0, 102, 0, 50, 103, 0, 104, 0]
        revisions = [w.document.revision if w.document else None for w in written]
        assert revisions == [101, None, None, 102, None, 50, 103, None, 104, None]
        contents = [w.document.content if w.document else None for w in written]
        assert contents[0] == b'{"a":1,"#messages":{"0000000000000002":{"#": 1, "v": "a"}},"z":2}'
        assert contents[3] == b'{"a":1,"#messages":{"0000000000000001":{"#": 5},"0000000000000002":{"#": 1, "v": "a"}},"z":2}'
        assert contents[5] == b'{"#messages":{}}'
        assert contents[6] == b'{"a":1,"#messages":{"0000000000000001":{"#": 5},"0000000000000002":{"#": 2, "v": "b"}},"z":2}'
        assert contents[8] == b'{"a":1,"#messages":{"0000000000000002":{"#": 2, "v": "b"}},"z":2}'
        assert await store.execute(GetDocument(inbox.read_token)) == written[8].document
        assert await store.execute(GetDocumentByWriteKey(inbox.write_key)) == written[8].document
        assert await store.execute(GetDocument(other.read_token)) == written[5].document
        assert await store.execute(GetDocument(plain.read_token)) == plain

        # A message without a numeric "#" is a caller's bug: nothing of its batch is written.
        for bad in (b"{oops", b'{"#": "1"}'):
            with assert_raises(ValueError):
                await store.execute(ApplyMessages((MessageEdit(inbox.write_key, "0000000000000005", b"{}"),
                                                   MessageEdit(inbox.write_key, "0000000000000006", bad)), 60, 10_000))
        assert await store.execute(GetDocument(inbox.read_token)) == written[8].document


async def check_inbox_rows(make_store: MakeStore) -> None:
    """An inbox's messages are kept apart and the document assembled from
    them: an owner's PUT replaces them all (and is served byte for byte
    until the next merge), thousands of messages come back in id order,
    and concurrent batches into one inbox lose nothing."""
    async with make_store() as store:
        inbox = _document(b'{"#messages": {"ffffffffffffffff": {"#": 9}, "0000000000000001": {"#": "x"}}, "k": 1}', revision=10)
        await store.execute(PutDocument(inbox, 0))
        # A stored message whose "#" is not a number ranks below every revision.
        first = await store.execute(ApplyMessage(inbox.write_key, "0000000000000001", b'{"#": -5}', 0, 1_000_000))
        assert first.document.content == b'{"#messages":{"0000000000000001":{"#": -5},"ffffffffffffffff":{"#": 9}},"k":1}'
        # The owner's PUT replaces every message; its bytes are served as PUT.
        replaced = msgspec.structs.replace(inbox, revision=20, content=b' {"#messages": {"0000000000000002": 1}} ')
        assert await store.execute(PutDocument(replaced, first.document.revision)) is True
        assert await store.execute(GetDocument(inbox.read_token)) == replaced
        again = await store.execute(ApplyMessage(inbox.write_key, "0000000000000001", b'{"#": -5}', 0, 1_000_000))
        assert again.document.content == b'{"#messages":{"0000000000000001":{"#": -5},"0000000000000002":1}}'
        # A PUT that makes it no inbox: messages are refused.
        notinbox = msgspec.structs.replace(inbox, revision=30, content=b'{"#messages": 1}')
        assert await store.execute(PutDocument(notinbox, again.document.revision)) is True
        assert (await store.execute(ApplyMessage(inbox.write_key, "0000000000000001", b"{}", 0, 1_000_000))).result == "not-inbox"

        big = _document(b'{"#messages": {}}', revision=1)
        await store.execute(PutDocument(big, 0))
        ids = [f"{(n * 7919) % 3000:016x}" for n in range(3000)]

        async def send(chunk: list[str]) -> None:
            edits = tuple(MessageEdit(big.write_key, message_id, b'{"#": 1, "n": "%s"}' % message_id.encode()) for message_id in chunk)
            written = await store.execute(ApplyMessages(edits, 0, 10_000_000))
            assert all(w.result == "done" for w in written)

        async with trio.open_nursery() as nursery:
            for start in range(0, len(ids), 250):
                nursery.start_soon(send, ids[start : start + 250])
        stored = await store.execute(GetDocument(big.read_token))
        assert stored.revision == 3001
        expected = b'{"#messages":{' + b",".join(b'"%s":{"#": 1, "n": "%s"}' % (i.encode(), i.encode()) for i in sorted(ids)) + b"}}"
        assert stored.content == expected
        # Removing all but one, in one batch.
        edits = tuple(MessageEdit(big.write_key, message_id, None) for message_id in sorted(ids)[1:])
        written = await store.execute(ApplyMessages(edits, 0, 10))
        assert written[-1].document.content == b'{"#messages":{"%s":{"#": 1, "n": "%s"}}}' % (min(ids).encode(), min(ids).encode())
        assert (await store.execute(GetDocumentByWriteKey(big.write_key))) == written[-1].document


#: The document checks, in the order ``check_store`` runs them.
DOCUMENT_CHECKS = (
    check_documents,
    check_document_compare_and_swap,
    check_document_races,
    check_document_copies,
    check_apply_message,
    check_concurrent_messages,
    check_document_keys,
    check_apply_messages,
    check_inbox_rows,
)
