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

import copy
import itertools
from typing import Any, AsyncContextManager, Awaitable, Callable

import msgspec
import trio

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import (
    DeleteRecord,
    DeleteRecords,
    DeleteSession,
    DeleteSessions,
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
    NEVER_EXPIRES_MS,
    STATIC_TOKEN,
    Operation,
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
from .conformance_documents import (
    DOCUMENT_CHECKS,
    assert_raises as _assert_raises,
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
    check_record_ranges,
    check_search,
    check_numbers,
    check_concurrent_numbers,
    check_rejects_non_storage_operations,
    *DOCUMENT_CHECKS,
    *QUERY_CHECKS,
    *ENTRY_CHECKS,
    *ORDER_CHECKS,
    *ADMIN_CHECKS,
)


async def check_store(make_store: MakeStore) -> None:
    """Run every check against stores from ``make_store``; an AssertionError names the failure."""
    for check in CHECKS:
        await check(make_store)
