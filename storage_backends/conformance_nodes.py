"""Conformance checks for two nodes: two store instances on one database at
once, as two Satchel processes sharing PostgreSQL (or one SQLite file) are.

``make_nodes()`` returns an async context manager giving two stores, fresh
and empty, that see the same data. The checks hold what the operations'
docstrings promise under concurrent writers to hold across the two as well:
a compare-and-swap that lost on one node loses, and no increment is lost;
an email is registered once whichever node two registrations land on; a
sequence hands out each number once; an inbox that both nodes merge into
ends as the merge rule says; and what one node acknowledged, the other
reads at once (a session revoked on one is gone on the other).
"""

from __future__ import annotations

import itertools
from typing import AsyncContextManager, Awaitable, Callable

import trio

from satchel.protocol.operations import (
    ApplyMessage,
    ApplyMessages,
    DeleteSession,
    Document,
    GetDocument,
    GetEntry,
    GetRecord,
    GetSession,
    GetUserByEmail,
    InsertRecord,
    InsertSession,
    InsertUser,
    MessageEdit,
    PutDocument,
    PutEntry,
    OverwriteEntry,
    ReplaceRecord,
    Session,
    TakeNumber,
    User,
)

from .base import Store
from .memory import MemoryStore

__all__ = ["MakeNodes", "NODE_CHECKS"]

#: A factory of two fresh stores on one database: ``async with make_nodes() as (a, b): ...``
MakeNodes = Callable[[], AsyncContextManager[tuple[Store, Store]]]

_counter = itertools.count(1)


async def check_nodes_compare_and_swap(make_nodes: MakeNodes) -> None:
    """A stale revision loses on either node; increments from both with retry lose nothing."""
    async with make_nodes() as (a, b):
        await a.execute(InsertRecord("counters", {"_id": "c", "count": 0}))
        seen_a = await a.execute(GetRecord("counters", "c"))
        seen_b = await b.execute(GetRecord("counters", "c"))
        assert seen_a == seen_b
        assert await a.execute(ReplaceRecord("counters", {"_id": "c", "count": 1}, seen_a.revision)) is True
        assert await b.execute(ReplaceRecord("counters", {"_id": "c", "count": 100}, seen_b.revision)) is False
        assert (await b.execute(GetRecord("counters", "c"))).record == {"_id": "c", "count": 1}

        increments = 20

        async def increment(store: Store) -> None:
            while True:
                stored = await store.execute(GetRecord("counters", "c"))
                await trio.sleep(0)
                updated = dict(stored.record, count=stored.record["count"] + 1)
                if await store.execute(ReplaceRecord("counters", updated, stored.revision)):
                    return

        async with trio.open_nursery() as nursery:
            for n in range(increments):
                nursery.start_soon(increment, a if n % 2 else b)
        final = await a.execute(GetRecord("counters", "c"))
        assert final.record["count"] == 1 + increments
        assert final.revision == 2 + increments
        assert await b.execute(GetRecord("counters", "c")) == final


async def check_nodes_unique_emails(make_nodes: MakeNodes) -> None:
    """Registrations of one email on both nodes at once: exactly one succeeds."""
    async with make_nodes() as (a, b):
        outcomes: dict[str, list[bool]] = {}

        async def register(store: Store, email: str, user_id: str) -> None:
            user = User(user_id, email, "$argon2id$x", "2020-01-01T00:00:00.000Z")
            outcomes.setdefault(email.lower(), []).append(await store.execute(InsertUser(user)))

        async with trio.open_nursery() as nursery:
            for n in range(10):
                for attempt, store in enumerate([a, b, a, b]):
                    email = f"Person{n}@Example.com" if attempt % 2 else f"person{n}@example.COM"
                    nursery.start_soon(register, store, email, f"u{n}-{attempt}")
        assert len(outcomes) == 10
        for email, results in outcomes.items():
            assert sorted(results) == [False, False, False, True], email
            assert await a.execute(GetUserByEmail(email)) == await b.execute(GetUserByEmail(email.upper()))


async def check_nodes_numbers(make_nodes: MakeNodes) -> None:
    """One sequence drawn from both nodes at once: every number exactly once."""
    async with make_nodes() as (a, b):
        taken: list[int] = []

        async def take(store: Store) -> None:
            taken.append(await store.execute(TakeNumber("chats:c1")))

        async with trio.open_nursery() as nursery:
            for n in range(60):
                nursery.start_soon(take, a if n % 2 else b)
        assert sorted(taken) == list(range(60))


async def check_nodes_read_each_others_writes(make_nodes: MakeNodes) -> None:
    """What one node acknowledged the other reads at once: a session revoked
    on one node is gone on the other, an entry's compare-and-swap sees the
    other node's version."""
    async with make_nodes() as (a, b):
        session = Session("s" * 64, "u1", 2**40)
        await a.execute(InsertSession(session))
        assert await b.execute(GetSession(session.token_hash)) == session
        assert await b.execute(DeleteSession(session.token_hash)) is True
        assert await a.execute(GetSession(session.token_hash)) is None
        assert await a.execute(DeleteSession(session.token_hash)) is False

        scope = ("kvStore", "org", "proj", "key")
        assert await a.execute(PutEntry(*scope, b"1", 10, 0)) is True
        assert await b.execute(PutEntry(*scope, b"2", 11, 0)) is False  # it exists: no second create
        assert await b.execute(PutEntry(*scope, b"2", 11, 10)) is True
        assert await a.execute(PutEntry(*scope, b"3", 12, 10)) is False  # stale
        assert (await a.execute(GetEntry(*scope))).value == b"2"
        # Overwrites from both nodes at once: one version each, all past the last.
        versions: list[int] = []

        async def overwrite(store: Store, n: int) -> None:
            versions.append(await store.execute(OverwriteEntry(*scope, str(n).encode(), 5)))

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(overwrite, a if n % 2 else b, n)
        assert sorted(versions) == list(range(12, 32))
        assert (await b.execute(GetEntry(*scope))).version == 31


def _inbox() -> Document:
    n = next(_counter)
    return Document(f"{n:032x}", f"{n + 10**6:032x}", "a" * 64, "b" * 64, 1, b'{"#messages": {}, "owner": "x"}')


async def check_nodes_inbox_merges(make_nodes: MakeNodes) -> None:
    """Both nodes merge into one inbox at once, singly and in batches, with
    ids they share at different revisions: the document ends as the merge
    rule says (the same set of messages applied in one place), read alike
    from both."""
    async with make_nodes() as (a, b):
        inbox = _inbox()
        assert await a.execute(PutDocument(inbox, 0)) is True
        edits: dict[str, list[MessageEdit]] = {"a": [], "b": []}
        for n in range(40):
            # Ids 0-9 are sent by both nodes, at revisions that differ.
            # Revisions never tie (a tie keeps what came first): a sends n, b n + 5.
            for node, revision in (("a", n), ("b", n + 5)):
                message_id = f"{n % 10:016x}" if n < 20 else f"{n:015x}{node}"
                body = b'{"#": %d, "from": "%s", "n": %d}' % (revision, node.encode(), n)
                edits[node].append(MessageEdit(inbox.write_key, message_id, body))
        edits["a"].append(MessageEdit(inbox.write_key, f"{39:015x}b", None))  # a removes one of b's (if it came first)

        async def send(store: Store, batch: list[MessageEdit], singly: bool) -> None:
            if singly:
                for edit in batch:
                    written = await store.execute(ApplyMessage(edit.write_key, edit.message_id, edit.message, 0, 1_000_000))
                    assert written.result == "done"
            else:
                written = await store.execute(ApplyMessages(tuple(batch), 0, 1_000_000))
                assert all(write.result == "done" for write in written)

        async with trio.open_nursery() as nursery:
            for node, store in (("a", a), ("b", b)):
                for start in range(0, len(edits[node]), 10):
                    nursery.start_soon(send, store, edits[node][start : start + 10], start % 20 == 0)

        stored_a = await a.execute(GetDocument(inbox.read_token))
        stored_b = await b.execute(GetDocument(inbox.read_token))
        assert stored_a == stored_b
        # The reference: MemoryStore applying the same messages. Order matters
        # only for the removal (a message removed before it arrived is there);
        # the merge rule makes everything else converge.
        removal_won = b'"%s"' % f"{39:015x}b".encode() not in stored_a.content
        reference = MemoryStore()
        reference.execute_sync(PutDocument(inbox, 0))
        for edit in edits["b"] + edits["a"][:-1] + (edits["a"][-1:] if removal_won else []):
            reference.execute_sync(ApplyMessage(edit.write_key, edit.message_id, edit.message, 0, 1_000_000))
        expected = reference.execute_sync(GetDocument(inbox.read_token))
        assert stored_a.content == expected.content
        assert stored_a.revision > inbox.revision


#: Every two-node check, in order.
NODE_CHECKS: tuple[Callable[[MakeNodes], Awaitable[None]], ...] = (
    check_nodes_compare_and_swap,
    check_nodes_unique_emails,
    check_nodes_numbers,
    check_nodes_read_each_others_writes,
    check_nodes_inbox_merges,
)
