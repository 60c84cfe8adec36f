"""The conformance suite every storage backend passes, after
``trio.testing.check_two_way_stream``.

A backend's tests hand ``check_store`` a factory and the suite does the rest::

    async def test_my_store_conforms():
        await check_store(make_my_store)

``make_store()`` must return an async context manager that gives a fresh,
empty store and closes it afterwards. Each ``check_*`` function is also
importable on its own (``CHECKS`` lists them), so a test run can report them
one by one. The checks hold a backend to the operations' docstrings in
``satchel.protocol.operations`` and to the shared contract in ``base``. They
need trio, for concurrency, and nothing from pytest, so the suite ships with
the package for third-party backends. The checks of ``QueryRecords``,
settings and user roles live in ``conformance_queries``, those of entries
(the key-value store and live configuration) in ``conformance_entries``,
those of commit stamps in ``conformance_order``,
and run as part of this suite (``check_generated_queries`` needs Hypothesis, the
``conformance`` extra).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from typing import Any, AsyncContextManager, Awaitable, Callable, Iterator

import msgspec
import trio

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import (
    ApplyMessage,
    ApplyMessages,
    DocumentKeys,
    GetDocumentKeys,
    MessageEdit,
    DeleteRecord,
    DeleteRecords,
    DeleteSession,
    DeleteSessions,
    Document,
    GetDocument,
    GetDocumentByWriteKey,
    GetRecord,
    GetSession,
    GetUser,
    GetUserByEmail,
    HashPassword,
    InsertRecord,
    InsertSession,
    InsertUser,
    ListCollections,
    ListRecordRange,
    ListRecords,
    ListSessions,
    MessageWrite,
    NEVER_EXPIRES_MS,
    STATIC_TOKEN,
    Operation,
    PutDocument,
    ReplaceRecord,
    SearchRecords,
    Session,
    StoredJson,
    StoredRecord,
    TakeNumber,
    InsertNumbered,
    User,
    VerifyPassword,
)
from satchel.protocol.records import format_timestamp, matches_query, new_record, object_id

from .base import Store
from .conformance_admin import ADMIN_CHECKS
from .conformance_entries import ENTRY_CHECKS
from .conformance_order import ORDER_CHECKS
from .conformance_queries import (
    QUERY_CHECKS,
    check_generated_queries,
    check_query_edge_cases,
    check_query_operator_grid,
    check_query_pages_and_counts,
    check_settings,
    check_user_roles,
)

__all__ = [
    "MakeStore",
    "CHECKS",
    "check_store",
    "check_records",
    "check_queries",
    "check_compare_and_swap",
    "check_deletes",
    "check_collections",
    "check_users",
    "check_sessions",
    "check_session_kinds",
    "check_listed_sessions",
    "check_copies",
    "check_duplicate_inserts",
    "check_concurrent_writers",
    "check_documents",
    "check_document_compare_and_swap",
    "check_document_races",
    "check_document_copies",
    "check_apply_message",
    "check_concurrent_messages",
    "check_document_keys",
    "check_apply_messages",
    "check_inbox_rows",
    "check_record_ranges",
    "check_search",
    "check_numbers",
    "check_concurrent_numbers",
    "check_rejects_non_storage_operations",
    "check_query_edge_cases",
    "check_query_operator_grid",
    "check_query_pages_and_counts",
    "check_generated_queries",
    "check_settings",
    "check_user_roles",
]

#: A factory of fresh, empty stores: ``async with make_store() as store: ...``
MakeStore = Callable[[], AsyncContextManager[Store]]

_NOW = format_timestamp(1_700_000_000_000)
_ids = (object_id(1_700_000_000, b"\x5a\x7c\x4e\x11\x00", counter) for counter in itertools.count())


def _record(**fields: Any) -> dict[str, Any]:
    """A record as the core creates it, with a fresh id."""
    return new_record(fields, next(_ids), _NOW)


@contextlib.contextmanager
def _assert_raises(exception_type: type[BaseException]) -> Iterator[None]:
    try:
        yield
    except exception_type:
        pass
    else:
        raise AssertionError(f"expected {exception_type.__name__}")


async def _insert_all(store: Store, collection: str, records: list[dict[str, Any]]) -> None:
    for record in records:
        assert await store.execute(InsertRecord(collection, record)) is None


async def check_records(make_store: MakeStore) -> None:
    """Insert, get and list: creation order, key order, scoping by collection,
    and read-your-writes."""
    async with make_store() as store:
        assert await store.execute(ListRecords("notes")) == []
        assert await store.execute(GetRecord("notes", next(_ids))) is None

        # Keys come back in the order they were written, not sorted.
        notes = [_record(zebra=1, apple={"b": 2, "a": 1}, mango=[3, 1, 2]) for _ in range(3)]
        notes.append(_record(text="ünïcödé ✓", value=0.1, big=2**53 + 1, flag=False, nothing=None))
        await _insert_all(store, "notes", notes)

        stored = await store.execute(GetRecord("notes", notes[0]["_id"]))
        assert stored == StoredRecord(notes[0], 1)
        assert list(stored.record) == list(notes[0])
        assert list(stored.record["apple"]) == ["b", "a"]
        # Asked for the stored JSON, a store answers the same record in
        # either form: StoredJson holds its keys in the same order.
        for note in notes:
            raw = await store.execute(GetRecord("notes", note["_id"], as_json=True))
            if isinstance(raw, StoredJson):
                assert raw.revision == 1 and isinstance(raw.json, bytes)
                assert msgspec.json.decode(raw.json) == note and list(msgspec.json.decode(raw.json)) == list(note)
            else:
                assert raw == StoredRecord(note, 1)
        assert await store.execute(GetRecord("other", notes[0]["_id"], as_json=True)) is None
        listed = await store.execute(ListRecords("notes"))
        assert listed == notes
        assert [list(record) for record in listed] == [list(record) for record in notes]

        # A record belongs to its collection only.
        assert await store.execute(GetRecord("other", notes[0]["_id"])) is None
        assert await store.execute(ListRecords("other")) == []

        # Every write is visible to the very next read.
        for _ in range(50):
            record = _record(step="fresh")
            await store.execute(InsertRecord("fresh", record))
            assert (await store.execute(GetRecord("fresh", record["_id"]))).record == record
            assert (await store.execute(ListRecords("fresh")))[-1] == record


#: (query, names of the matching records); every answer is also checked against
#: ``matches_query`` itself, which is the definition.
_QUERY_CASES: list[tuple[dict[str, Any] | None, str]] = [
    (None, "abcd"),
    ({}, "abcd"),
    ({"n": 1}, "ab"),  # 1 == 1.0, but neither equals True nor "1"
    ({"n": 1.0}, "ab"),
    ({"n": True}, "c"),
    ({"n": "1"}, "d"),
    ({"flag": True}, "a"),  # true is not 1
    ({"flag": 1}, "b"),
    ({"author.name": "ann"}, "a"),  # a dotted path reaches into objects...
    ({"author.name": "literal"}, ""),  # ...and never matches a key with a dot in it
    ({"author": {"name": "bob"}}, "b"),  # objects compare whole
    ({"author": "ann"}, "c"),
    ({"nested.deep.er": 2}, "d"),
    ({"tags": ["a", "b"]}, "a"),  # arrays compare whole, in order
    ({"tags": ["b", "a"]}, ""),
    ({"tags": "a"}, ""),  # no array-contains
    ({"none": None}, "a"),  # null matches a null field, not a missing one
    ({"missing": None}, ""),
    ({"n": 1, "name": "y"}, "b"),  # every key must match
    ({"name": "z"}, ""),
]


def _query_records() -> dict[str, dict[str, Any]]:
    return {
        "a": _record(n=1, flag=True, name="x", author={"name": "ann", "age": 30}, tags=["a", "b"], none=None),
        "b": _record(n=1.0, flag=1, name="y", author={"name": "bob"}),
        "c": _record(**{"n": True, "flag": False, "author": "ann", "author.name": "literal"}),
        "d": _record(n="1", tags=["a"], nested={"deep": {"er": 2}}),
    }


async def check_queries(make_store: MakeStore) -> None:
    """ListRecords with a query keeps exactly what ``matches_query`` keeps, in creation order."""
    async with make_store() as store:
        records = _query_records()
        await _insert_all(store, "things", list(records.values()))
        for query, names in _QUERY_CASES:
            expected = [records[name] for name in names]
            assert expected == [record for record in records.values() if query is None or matches_query(record, query)]
            assert await store.execute(ListRecords("things", query)) == expected, query
        assert await store.execute(ListRecords("nowhere", {"n": 1})) == []


async def check_compare_and_swap(make_store: MakeStore) -> None:
    """ReplaceRecord replaces only at the current revision, which then goes up by one."""
    async with make_store() as store:
        original = _record(count=0)
        record_id = original["_id"]
        await store.execute(InsertRecord("counters", original))
        assert (await store.execute(GetRecord("counters", record_id))).revision == 1

        first = dict(original, count=1)
        assert await store.execute(ReplaceRecord("counters", first, 1)) is True
        assert await store.execute(GetRecord("counters", record_id)) == StoredRecord(first, 2)

        # A stale revision changes nothing.
        assert await store.execute(ReplaceRecord("counters", dict(original, count=99), 1)) is False
        assert await store.execute(GetRecord("counters", record_id)) == StoredRecord(first, 2)
        # Nor does a revision from the future.
        assert await store.execute(ReplaceRecord("counters", dict(original, count=99), 3)) is False

        second = dict(original, count=2, added="field")
        assert await store.execute(ReplaceRecord("counters", second, 2)) is True
        assert await store.execute(GetRecord("counters", record_id)) == StoredRecord(second, 3)
        assert await store.execute(ListRecords("counters")) == [second]

        # The same id in another collection is another record, and absent.
        assert await store.execute(ReplaceRecord("elsewhere", second, 3)) is False
        assert await store.execute(ListRecords("elsewhere")) == []

        # A deleted record cannot be replaced back to life.
        await store.execute(DeleteRecord("counters", record_id))
        assert await store.execute(ReplaceRecord("counters", second, 3)) is False
        assert await store.execute(GetRecord("counters", record_id)) is None

        # Nor can one that never existed.
        assert await store.execute(ReplaceRecord("counters", _record(count=0), 1)) is False
        assert await store.execute(ListRecords("counters")) == []


async def check_deletes(make_store: MakeStore) -> None:
    """DeleteRecord answers the record or None; DeleteRecords answers what it deleted, in creation order."""
    async with make_store() as store:
        records = _query_records()
        await _insert_all(store, "things", list(records.values()))

        assert await store.execute(DeleteRecord("things", records["b"]["_id"])) == records["b"]
        assert await store.execute(DeleteRecord("things", records["b"]["_id"])) is None
        assert await store.execute(GetRecord("things", records["b"]["_id"])) is None
        assert await store.execute(DeleteRecord("nowhere", records["a"]["_id"])) is None
        assert await store.execute(ListRecords("things")) == [records["a"], records["c"], records["d"]]

        assert await store.execute(DeleteRecords("things", {"name": "nobody"})) == []
        assert await store.execute(DeleteRecords("nowhere", {})) == []
        assert await store.execute(DeleteRecords("things", {"flag": True})) == [records["a"]]
        assert await store.execute(ListRecords("things")) == [records["c"], records["d"]]
        assert await store.execute(DeleteRecords("things", {})) == [records["c"], records["d"]]
        assert await store.execute(ListRecords("things")) == []


async def check_collections(make_store: MakeStore) -> None:
    """A collection is listed, sorted, exactly while it holds a record."""
    async with make_store() as store:
        assert await store.execute(ListCollections()) == []
        names = ["b", "a", "B", "é", "z", "with space"]
        kept = {}
        for name in names:
            kept[name] = _record(name=name)
            await store.execute(InsertRecord(name, kept[name]))
            await store.execute(InsertRecord(name, _record(name=name, extra=True)))
        assert await store.execute(ListCollections()) == sorted(names)

        # Users and sessions are not collections.
        await store.execute(InsertUser(User(next(_ids), "someone@example.com", "hash", _NOW)))
        await store.execute(InsertSession(Session("0" * 64, "someone", 0)))
        assert await store.execute(ListCollections()) == sorted(names)

        # A collection goes away with its last record, however that goes.
        await store.execute(DeleteRecords("a", {"extra": True}))
        assert "a" in await store.execute(ListCollections())
        await store.execute(DeleteRecord("a", kept["a"]["_id"]))
        await store.execute(DeleteRecords("z", {}))
        assert await store.execute(ListCollections()) == sorted(set(names) - {"a", "z"})

        # And comes back with a new one.
        await store.execute(InsertRecord("a", _record(name="a")))
        assert await store.execute(ListCollections()) == sorted(set(names) - {"z"})


async def check_users(make_store: MakeStore) -> None:
    """Users by id and by email, emails unique regardless of case, and out of reach of collections."""
    async with make_store() as store:
        alice = User(next(_ids), "Alice@Example.com", "$argon2id$alice", _NOW)
        assert await store.execute(GetUser(alice.id)) is None
        assert await store.execute(GetUserByEmail(alice.email)) is None

        assert await store.execute(InsertUser(alice)) is True
        assert await store.execute(GetUser(alice.id)) == alice
        for spelling in ["Alice@Example.com", "alice@example.com", "ALICE@EXAMPLE.COM"]:
            assert await store.execute(GetUserByEmail(spelling)) == alice

        impostor = User(next(_ids), "aLiCe@example.COM", "$argon2id$impostor", _NOW)
        assert await store.execute(InsertUser(impostor)) is False
        assert await store.execute(GetUser(impostor.id)) is None
        assert await store.execute(GetUserByEmail("alice@example.com")) == alice

        # Case folds beyond ASCII, as Python's str.lower() does.
        zoe = User(next(_ids), "Zoë@Exämple.com", "$argon2id$zoe", _NOW)
        assert await store.execute(InsertUser(zoe)) is True
        assert await store.execute(GetUserByEmail("ZOË@EXÄMPLE.COM")) == zoe
        assert await store.execute(InsertUser(User(next(_ids), "zoË@exÄmple.com", "x", _NOW))) is False

        assert await store.execute(ListCollections()) == []
        for collection in ["users", "user", "accounts"]:
            assert await store.execute(ListRecords(collection)) == []
            assert await store.execute(GetRecord(collection, alice.id)) is None


async def check_sessions(make_store: MakeStore) -> None:
    """Sessions by token hash: insert, get (expired ones too), delete."""
    async with make_store() as store:
        live = Session("a" * 64, "user-1", 1_900_000_000_000)
        expired = Session("b" * 64, "user-1", 0)
        assert await store.execute(GetSession(live.token_hash)) is None
        assert await store.execute(InsertSession(live)) is None
        assert await store.execute(InsertSession(expired)) is None
        assert await store.execute(GetSession(live.token_hash)) == live
        assert await store.execute(GetSession(expired.token_hash)) == expired

        assert await store.execute(DeleteSession(live.token_hash)) is True
        assert await store.execute(GetSession(live.token_hash)) is None
        assert await store.execute(GetSession(expired.token_hash)) == expired
        assert await store.execute(DeleteSession(live.token_hash)) is False  # spent: only one spender finds it


async def check_session_kinds(make_store: MakeStore) -> None:
    """Sessions keep their kind (Backpack's by default); DeleteSessions removes
    exactly one user's sessions of one kind and counts them."""
    async with make_store() as store:
        cookie = Session("1" * 64, "user-1", 1_900_000_000_000)
        assert cookie.kind == "session"
        access = Session("2" * 64, "user-1", 1_900_000_000_000, "access")
        refreshes = [Session(f"{n}" * 64, "user-1", 1_900_000_000_000, "refresh") for n in (3, 4, 5)]
        elsewhere = Session("6" * 64, "user-2", 1_900_000_000_000, "refresh")
        for session in (cookie, access, *refreshes, elsewhere):
            await store.execute(InsertSession(session))
        for session in (cookie, access, *refreshes, elsewhere):
            assert await store.execute(GetSession(session.token_hash)) == session

        assert await store.execute(DeleteSessions("user-1", "refresh")) == 3
        for session in refreshes:
            assert await store.execute(GetSession(session.token_hash)) is None
        assert await store.execute(GetSession(cookie.token_hash)) == cookie
        assert await store.execute(GetSession(access.token_hash)) == access
        assert await store.execute(GetSession(elsewhere.token_hash)) == elsewhere
        assert await store.execute(DeleteSessions("user-1", "refresh")) == 0
        assert await store.execute(DeleteSessions("nobody", "access")) == 0
        assert await store.execute(DeleteSessions("user-1", "access")) == 1
        assert await store.execute(GetSession(access.token_hash)) is None
        assert await store.execute(GetSession(cookie.token_hash)) == cookie


async def check_listed_sessions(make_store: MakeStore) -> None:
    """ListSessions answers exactly one user's sessions of one kind, ordered
    by token hash, expired ones and tokens that never expire included."""
    async with make_store() as store:
        assert await store.execute(ListSessions("user-1", STATIC_TOKEN)) == []
        statics = [Session(f"{n}" * 64, "user-1", NEVER_EXPIRES_MS, STATIC_TOKEN) for n in (9, 3, 7)]
        expired = Session("8" * 64, "user-1", 0, STATIC_TOKEN)
        others = [
            Session("1" * 64, "user-1", 1_900_000_000_000, "access"),
            Session("2" * 64, "user-2", NEVER_EXPIRES_MS, STATIC_TOKEN),
            Session("4" * 64, "user-1", 1_900_000_000_000),
        ]
        for session in (*statics, expired, *others):
            await store.execute(InsertSession(session))
        listed = await store.execute(ListSessions("user-1", STATIC_TOKEN))
        assert listed == sorted([*statics, expired], key=lambda s: s.token_hash)
        assert await store.execute(GetSession(statics[0].token_hash)) == statics[0]  # the largest expiry round-trips
        assert await store.execute(ListSessions("user-2", STATIC_TOKEN)) == [others[1]]
        assert await store.execute(ListSessions("user-1", "access")) == [others[0]]
        assert await store.execute(ListSessions("nobody", STATIC_TOKEN)) == []
        await store.execute(DeleteSession(statics[1].token_hash))
        listed = await store.execute(ListSessions("user-1", STATIC_TOKEN))
        assert [s.token_hash for s in listed] == sorted(s.token_hash for s in (statics[0], statics[2], expired))


async def check_copies(make_store: MakeStore) -> None:
    """Records are copied in and out: no caller's dict is ever the stored one."""
    async with make_store() as store:
        record = _record(nested={"list": [1, 2]}, text="original")
        snapshot = copy.deepcopy(record)
        await store.execute(InsertRecord("things", record))
        record["text"] = "changed by the inserter"
        record["nested"]["list"].append("inserter")

        got = await store.execute(GetRecord("things", snapshot["_id"]))
        got.record["nested"]["list"].append("getter")
        got.record["added"] = True
        listed = await store.execute(ListRecords("things"))
        listed[0]["nested"]["list"].clear()
        queried = await store.execute(ListRecords("things", {"text": "original"}))
        queried[0]["nested"]["gone"] = True
        assert await store.execute(GetRecord("things", snapshot["_id"])) == StoredRecord(snapshot, 1)

        replacement = dict(snapshot, nested={"list": [3]})
        assert await store.execute(ReplaceRecord("things", replacement, 1)) is True
        replacement["nested"]["list"].append("replacer")
        assert (await store.execute(GetRecord("things", snapshot["_id"]))).record["nested"] == {"list": [3]}


async def check_duplicate_inserts(make_store: MakeStore) -> None:
    """Inserting an existing record or session is refused with LocalProtocolError
    (ids are new by construction, so this is a bug) and changes nothing."""
    async with make_store() as store:
        original = _record(version="first")
        await store.execute(InsertRecord("things", original))
        with _assert_raises(LocalProtocolError):
            await store.execute(InsertRecord("things", dict(original, version="second")))
        assert await store.execute(GetRecord("things", original["_id"])) == StoredRecord(original, 1)
        assert await store.execute(ListRecords("things")) == [original]

        session = Session("c" * 64, "user-1", 1)
        await store.execute(InsertSession(session))
        with _assert_raises(LocalProtocolError):
            await store.execute(InsertSession(Session(session.token_hash, "user-2", 2)))
        assert await store.execute(GetSession(session.token_hash)) == session


async def check_concurrent_writers(make_store: MakeStore) -> None:
    """Many tasks at once: CAS increments with retry lose no update; concurrent inserts all land."""
    async with make_store() as store:
        counter = _record(count=0)
        await store.execute(InsertRecord("counters", counter))
        increments = 50

        async def increment() -> None:
            while True:
                stored = await store.execute(GetRecord("counters", counter["_id"]))
                # Let the other tasks read the same revision, so that most CAS attempts conflict.
                await trio.sleep(0)
                updated = dict(stored.record, count=stored.record["count"] + 1)
                if await store.execute(ReplaceRecord("counters", updated, stored.revision)):
                    return

        inserted = [_record(n=n) for n in range(200)]
        async with trio.open_nursery() as nursery:
            for _ in range(increments):
                nursery.start_soon(increment)
            for record in inserted:
                nursery.start_soon(store.execute, InsertRecord("crowd", record))

        stored = await store.execute(GetRecord("counters", counter["_id"]))
        assert stored.record["count"] == increments
        assert stored.revision == 1 + increments
        crowd = await store.execute(ListRecords("crowd"))
        assert sorted(crowd, key=lambda record: record["n"]) == inserted


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
            with _assert_raises(LocalProtocolError):
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
        with _assert_raises(LocalProtocolError):
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
            with _assert_raises(ValueError):
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
            with _assert_raises(ValueError):
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


def _with_id(record_id: str, **fields: Any) -> dict[str, Any]:
    return new_record(fields, record_id, _NOW)


async def check_record_ranges(make_store: MakeStore) -> None:
    """ListRecordRange: ids in [start, stop), in code point order either way,
    at most ``limit``, one collection only, whatever the creation order."""
    async with make_store() as store:
        ids = ["c1:000000000010", "c0:000000000099", "c1:000000000002", "c1", "c1:000000000000",
               "c1;", "c2:000000000000", "c1:000000000001", "c1:é", "c1:Z", "c1:中", "c1:😀", "c1:a"]
        records = {record_id: _with_id(record_id, n=n) for n, record_id in enumerate(ids)}
        await _insert_all(store, "chats", list(records.values()))
        await store.execute(InsertRecord("other", _with_id("c1:000000000005")))

        inside = sorted(record_id for record_id in ids if "c1:" <= record_id < "c1;")
        assert inside[:4] == ["c1:000000000000", "c1:000000000001", "c1:000000000002", "c1:000000000010"]
        assert inside[4:] == ["c1:Z", "c1:a", "c1:é", "c1:中", "c1:😀"]  # code points, not UTF-16 units
        assert await store.execute(ListRecordRange("chats", "c1:", "c1;")) == [records[i] for i in inside]
        assert await store.execute(ListRecordRange("chats", "c1:", "c1;", descending=True)) == [records[i] for i in reversed(inside)]
        assert await store.execute(ListRecordRange("chats", "c1:", "c1;", limit=2)) == [records[i] for i in inside[:2]]
        assert await store.execute(ListRecordRange("chats", "c1:", "c1;", limit=1, descending=True)) == [records["c1:😀"]]
        assert await store.execute(ListRecordRange("chats", "c1:", "c1;", limit=0)) == []
        # start is inside, stop is not.
        page = await store.execute(ListRecordRange("chats", "c1:000000000001", "c1:000000000010"))
        assert page == [records["c1:000000000001"], records["c1:000000000002"]]
        assert await store.execute(ListRecordRange("chats", "c1:000000000010", "c1:000000000010")) == []
        assert await store.execute(ListRecordRange("chats", "c3:", "c3;")) == []
        assert await store.execute(ListRecordRange("nowhere", "", "\U0010ffff")) == []
        assert await store.execute(ListRecordRange("other", "c1:", "c1;")) == [_with_id("c1:000000000005")]
        everything = await store.execute(ListRecordRange("chats", "", "\U0010ffff"))
        assert everything == [records[i] for i in sorted(ids)]

        # Copies out: changing an answer changes nothing stored.
        everything[0]["n"] = "changed"
        assert (await store.execute(ListRecordRange("chats", "", "\U0010ffff")))[0] == records[sorted(ids)[0]]
        # Writes are seen by the next read, and a replaced record keeps its place.
        await store.execute(ReplaceRecord("chats", dict(records["c1:000000000001"], n="new"), 1))
        await store.execute(InsertRecord("chats", _with_id("c1:000000000003", n=99)))
        await store.execute(DeleteRecord("chats", "c1:000000000000"))
        page = await store.execute(ListRecordRange("chats", "c1:0", "c1:1"))
        assert [(record["_id"], record["n"]) for record in page] == [
            ("c1:000000000001", "new"), ("c1:000000000002", 2), ("c1:000000000003", 99), ("c1:000000000010", 0)
        ]


async def check_search(make_store: MakeStore) -> None:
    """SearchRecords: a literal, case-folded substring of any of the fields,
    in creation order, at most ``limit``, one collection only."""
    async with make_store() as store:
        people = {
            "alice": _record(nickname="Alice", id="alice@example.com"),
            "bob": _record(nickname="bob", id="BOB@Example.com"),
            "carol": _record(nickname=5, id="carol@example.org"),  # not a string: never matches
            "zoe": _record(nickname="Zoë", id="zoe@example.com"),
            "regex": _record(nickname="a.*b", id="regex@example.com"),
            "like": _record(nickname="50%_off", id="like@example.com"),
            "nested": _record(profile={"nickname": "alice"}, id="nested@example.net"),
            "none": _record(nickname=None),
        }
        await _insert_all(store, "people", list(people.values()))
        await store.execute(InsertRecord("others", _record(nickname="Alice")))
        fields = ("id", "nickname")

        async def search(text: str, limit: int = 100, in_fields: tuple[str, ...] = fields) -> list[str]:
            found = await store.execute(SearchRecords("people", in_fields, text, limit))
            names = {record["_id"]: name for name, record in people.items()}
            assert all(record == people[names[record["_id"]]] for record in found)
            return [names[record["_id"]] for record in found]

        assert await search("ALI") == ["alice"]  # the nested field is not a top-level one
        assert await search("example.com") == ["alice", "bob", "zoe", "regex", "like"]
        assert await search("b@EXAMPLE") == ["bob"]
        assert await search("ZOË") == ["zoe"]  # folds beyond ASCII
        assert await search("a.*") == ["regex"]  # no pattern syntax: . and * are themselves
        assert await search(".*") == ["regex"]
        assert await search("%") == ["like"] and await search("_o") == ["like"]  # nor LIKE's
        assert await search("5") == ["like"]  # the number 5 is not the string "5"
        assert await search("example", limit=2) == ["alice", "bob"]
        assert await search("example", limit=0) == []
        assert await search("nobody") == []
        assert await search("alice", in_fields=("nickname",)) == ["alice"]
        assert await search("org", in_fields=("nickname",)) == []
        assert await search("") == ["alice", "bob", "carol", "zoe", "regex", "like", "nested"]
        assert await store.execute(SearchRecords("nowhere", fields, "", 10)) == []


async def check_numbers(make_store: MakeStore) -> None:
    """TakeNumber: each sequence counts 0, 1, 2, ... on its own, apart from
    collections, and deleting records never rewinds it."""
    async with make_store() as store:
        assert [await store.execute(TakeNumber("chats:a")) for _ in range(3)] == [0, 1, 2]
        assert await store.execute(TakeNumber("chats:b")) == 0
        assert await store.execute(TakeNumber("chats:é")) == 0
        assert await store.execute(TakeNumber("chats:a")) == 3
        assert await store.execute(ListCollections()) == []
        await store.execute(InsertRecord("chats:a", _record()))
        await store.execute(DeleteRecords("chats:a", {}))
        assert await store.execute(TakeNumber("chats:a")) == 4
        assert await store.execute(TakeNumber("chats:b")) == 1


async def check_concurrent_numbers(make_store: MakeStore) -> None:
    """Many tasks taking numbers of one sequence at once: every number from 0
    up is handed out exactly once."""
    async with make_store() as store:
        taken: list[int] = []

        async def take() -> None:
            await trio.sleep(0)
            taken.append(await store.execute(TakeNumber("crowd")))

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(take)
        assert sorted(taken) == list(range(200))
        assert await store.execute(TakeNumber("crowd")) == 200


async def check_numbered_inserts(make_store: MakeStore) -> None:
    """InsertNumbered: the number and the record in one write - ids from the
    sequence, shared with TakeNumber, each record readable at its id; a
    refused insert takes no number; concurrent inserts get every number once."""
    async with make_store() as store:
        assert await store.execute(TakeNumber("seq:a")) == 0
        first = await store.execute(InsertNumbered("chats", {"text": "hi"}, "seq:a", "id", "ch1:", 4))
        assert first == {"text": "hi", "id": 1, "_id": "ch1:0001"}
        stored = await store.execute(GetRecord("chats", "ch1:0001"))
        assert stored is not None and stored.record == first
        await store.execute(InsertRecord("chats", {"_id": "ch1:0002", "text": "squatter"}))
        with _assert_raises(LocalProtocolError):
            await store.execute(InsertNumbered("chats", {"text": "clash"}, "seq:a", "id", "ch1:", 4))
        assert await store.execute(TakeNumber("seq:a")) == 2  # the refused insert took none
        results: list[dict[str, Any]] = []

        async def insert(n: int) -> None:
            await trio.sleep(0)
            results.append(await store.execute(InsertNumbered("crowd", {"n": n}, "seq:crowd", "id", "", 6)))

        async with trio.open_nursery() as nursery:
            for n in range(100):
                nursery.start_soon(insert, n)
        assert sorted(record["id"] for record in results) == list(range(100))
        assert len(await store.execute(ListRecords("crowd"))) == 100


class _NotAStorageOperation(Operation, frozen=True):
    pass


async def check_rejects_non_storage_operations(make_store: MakeStore) -> None:
    """Password work and unknown operations are refused with TypeError."""
    async with make_store() as store:
        for operation in [HashPassword("secret"), VerifyPassword("$argon2id$x", "secret"), _NotAStorageOperation()]:
            with _assert_raises(TypeError):
                await store.execute(operation)


#: Every check, in the order ``check_store`` runs them.
CHECKS: tuple[Callable[[MakeStore], Awaitable[None]], ...] = (
    check_records,
    check_numbered_inserts,
    check_queries,
    check_compare_and_swap,
    check_deletes,
    check_collections,
    check_users,
    check_sessions,
    check_session_kinds,
    check_listed_sessions,
    check_copies,
    check_duplicate_inserts,
    check_concurrent_writers,
    check_documents,
    check_document_compare_and_swap,
    check_document_races,
    check_document_copies,
    check_apply_message,
    check_concurrent_messages,
    check_document_keys,
    check_apply_messages,
    check_inbox_rows,
    check_record_ranges,
    check_search,
    check_numbers,
    check_concurrent_numbers,
    check_rejects_non_storage_operations,
    *QUERY_CHECKS,
    *ENTRY_CHECKS,
    *ORDER_CHECKS,
    *ADMIN_CHECKS,
)


async def check_store(make_store: MakeStore) -> None:
    """Run every check against stores from ``make_store``; an AssertionError names the failure."""
    for check in CHECKS:
        await check(make_store)
