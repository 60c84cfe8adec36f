"""The conformance checks of ``QueryRecords``, settings and user roles.

Part of the suite in ``conformance`` (which lists these checks in its
``CHECKS``). ``QueryRecords`` must answer exactly what the pure reference
``satchel.protocol.query.apply`` answers (``evaluate`` defines every type
rule), so the checks compare a store with it in two ways: a table of edge
cases whose answers are also pinned by name (missing fields, nulls, mixed
types, unicode, ``_contains`` on arrays and strings, sort order across
types, pages, counts, field selection, search, permission filters), and
Hypothesis-generated records and queries (``query_strategies``), compared
byte for byte as JSON so that ``1`` and ``1.0`` or ``true`` and ``1`` cannot
pass for each other.

Hypothesis is imported only by ``check_generated_queries`` and
``query_strategies``: it is the ``conformance`` extra's, and the other checks
need nothing but trio.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any, AsyncContextManager, Callable

import msgspec
import trio

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import (
    GetRecord,
    GetSetting,
    GetUser,
    GetUserByEmail,
    HeldRoles,
    InsertRecord,
    InsertUser,
    ListCollections,
    ListRecords,
    PutSetting,
    QueryRecords,
    QueryResult,
    SetUserRole,
    StoredSetting,
    User,
)
from satchel.protocol.query import MATCH_ALL, OPERATORS, Filter, Variables, apply, parse_filter, parse_query

from .base import Store

__all__ = [
    "check_query_edge_cases",
    "check_query_operator_grid",
    "check_query_pages_and_counts",
    "check_generated_queries",
    "check_settings",
    "check_user_roles",
    "query_strategies",
    "scalars_in",
    "QUERY_CHECKS",
]

MakeStore = Callable[[], AsyncContextManager[Store]]
_encode = msgspec.json.encode
_collections = (f"queries-{n}" for n in itertools.count())

#: The edge-case records, in creation order: one value ``v`` of each kind.
EDGE_RECORDS: dict[str, dict[str, Any]] = {
    "int1": {"v": 1},
    "float1": {"v": 1.0},
    "float15": {"v": 1.5},
    "str1": {"v": "1"},
    "strA": {"v": "A"},
    "stra": {"v": "a"},
    "true": {"v": True},
    "false": {"v": False},
    "null": {"v": None},
    "missing": {"other": 1},
    "empty_str": {"v": ""},
    "empty_arr": {"v": []},
    "empty_obj": {"v": {}},
    "arr": {"v": ["a", 1, True, "Bé"]},
    "obj": {"v": {"k": "deep", "n": 2}},
    "uni": {"v": "Zoë ÉCOLE 中文 😀"},
    "dotted": {"v.k": "literal"},  # a key with a dot in it: no path reaches it
}
_ALL = list(EDGE_RECORDS)


def _but(*names: str) -> list[str]:
    return [name for name in _ALL if name not in names]


#: (filter, variables' user, the names it keeps in creation order).
EDGE_FILTERS: list[tuple[dict[str, Any], str | None, list[str]]] = [
    ({"v": {"_eq": 1}}, None, ["int1", "float1"]),  # 1 equals 1.0...
    ({"v": {"_eq": "1"}}, None, ["str1"]),  # ...but not "1"
    ({"v": {"_eq": True}}, None, ["true"]),  # ...and true is not 1
    ({"v": {"_neq": 1}}, None, _but("int1", "float1")),  # negation keeps null and missing
    ({"v": 1.5}, None, ["float15"]),  # shorthand for _eq
    ({"v": {"_lt": 2}}, None, ["int1", "float1", "float15"]),  # numbers with numbers only
    ({"v": {"_lt": "b"}}, None, ["str1", "strA", "stra", "empty_str", "uni"]),  # code points
    ({"v": {"_gte": "a"}}, None, ["stra"]),
    ({"v": {"_gt": 0}}, None, ["int1", "float1", "float15"]),  # true is no number
    ({"v": {"_in": [1, "a", False]}}, None, ["int1", "float1", "stra", "false"]),
    ({"v": {"_in": "A,a"}}, None, ["strA", "stra"]),  # a comma string, as REST sends it
    ({"v": {"_in": []}}, None, []),
    ({"v": {"_nin": []}}, None, _ALL),
    ({"v": {"_null": True}}, None, ["null", "missing", "dotted"]),
    ({"v": {"_nnull": True}}, None, _but("null", "missing", "dotted")),
    ({"v": {"_null": False}}, None, _but("null", "missing", "dotted")),
    ({"v": {"_empty": True}}, None, ["null", "missing", "empty_str", "empty_arr", "empty_obj", "dotted"]),
    ({"v": {"_nempty": True}}, None, _but("null", "missing", "empty_str", "empty_arr", "empty_obj", "dotted")),
    ({"v": {"_contains": "a"}}, None, ["stra", "arr"]),  # a substring, or an element of an array
    ({"v": {"_contains": "B"}}, None, []),  # array elements must equal, not contain
    ({"v": {"_contains": 1}}, None, ["arr"]),  # numbers: array elements only
    ({"v": {"_contains": True}}, None, ["arr"]),
    ({"v": {"_contains": ""}}, None, ["str1", "strA", "stra", "empty_str", "uni"]),
    ({"v": {"_ncontains": "a"}}, None, _but("stra", "arr")),
    ({"v": {"_icontains": "école"}}, None, ["uni"]),  # folds beyond ASCII
    ({"v": {"_icontains": "a"}}, None, ["strA", "stra"]),  # strings only, never arrays
    ({"v": {"_nicontains": "a"}}, None, _but("strA", "stra")),
    ({"v": {"_starts_with": "Zo"}}, None, ["uni"]),
    ({"v": {"_starts_with": "zo"}}, None, []),
    ({"v": {"_istarts_with": "ZOË"}}, None, ["uni"]),
    ({"v": {"_ends_with": "😀"}}, None, ["uni"]),  # code points, not UTF-16 units
    ({"v": {"_iends_with": "文 😀"}}, None, ["uni"]),
    ({"v": {"_nends_with": "😀"}}, None, _but("uni")),
    ({"v": {"_nstarts_with": ""}}, None, _but("str1", "strA", "stra", "empty_str", "uni")),
    ({"v": {"_between": [1, 1.5]}}, None, ["int1", "float1", "float15"]),
    ({"v": {"_between": ["A", "a"]}}, None, ["strA", "stra", "uni"]),
    ({"v": {"_between": [1, "a"]}}, None, []),  # bounds of two types: nothing is between
    ({"v": {"_nbetween": [1, 1.5]}}, None, _but("int1", "float1", "float15")),
    ({"v.k": {"_eq": "deep"}}, None, ["obj"]),  # a dotted path into an object
    ({"v": {"k": {"_eq": "deep"}}}, None, ["obj"]),  # the same, as nested objects
    ({"v.n": {"_gt": 1}, "v.k": {"_starts_with": "d"}}, None, ["obj"]),  # keys AND
    ({"v.k": {"_null": True}}, None, _but("obj")),
    ({"v.0": {"_eq": "a"}}, None, []),  # a segment is a key, never an array index
    ({"_and": []}, None, _ALL),
    ({"_or": []}, None, []),
    ({"_or": [{"v": {"_eq": 1}}, {"v": {"_eq": "a"}}]}, None, ["int1", "float1", "stra"]),
    ({"_and": [{"v": {"_nnull": True}}, {"_or": [{"v": {"_lt": 1.2}}, {"v": {"_gt": "Z"}}]}]}, None, ["int1", "float1", "stra", "uni"]),
    ({"v": {"_eq": "$CURRENT_USER"}}, "a", ["stra"]),
    ({"v": {"_eq": "$CURRENT_USER"}}, None, []),  # nobody signed in equals nothing...
    ({"v": {"_neq": "$CURRENT_USER"}}, None, _ALL),  # ...so its negation keeps all
    ({"v": {"_in": ["$CURRENT_USER", 1.5]}}, "A", ["float15", "strA"]),
]

#: (sort, names in order): types order null, booleans, numbers, strings, the rest;
#: ties keep creation order in both directions.
EDGE_SORTS: list[tuple[str, list[str]]] = [
    ("v", ["null", "missing", "dotted", "false", "true", "int1", "float1", "float15", "empty_str", "str1", "strA",
           "uni", "stra", "empty_arr", "empty_obj", "arr", "obj"]),
    ("-v", ["empty_arr", "empty_obj", "arr", "obj", "stra", "uni", "strA", "str1", "empty_str", "float15", "int1",
            "float1", "true", "false", "null", "missing", "dotted"]),
    ("v.n,-other", ["missing", "int1", "float1", "float15", "str1", "strA", "stra", "true", "false", "null",
                    "empty_str", "empty_arr", "empty_obj", "arr", "uni", "dotted", "obj"]),
]


async def _insert(store: Store, records: dict[str, dict[str, Any]]) -> tuple[str, dict[str, str], list[dict[str, Any]]]:
    """Insert ``records`` under ids of digits, in order, into a fresh collection."""
    collection = next(_collections)
    names: dict[str, str] = {}
    stored = []
    for n, (name, fields) in enumerate(records.items()):
        record = {"_id": f"{n:06d}", **fields}
        await store.execute(InsertRecord(collection, record))
        names[record["_id"]] = name
        stored.append(record)
    return collection, names, stored


async def _run(store: Store, stored: list[dict[str, Any]], op: QueryRecords) -> QueryResult:
    """Run ``op`` in the store and check it against the reference, byte for byte."""
    got = await store.execute(op)
    expected = apply(op.query, stored, op.variables, op.permission, op.readable)
    assert isinstance(got, QueryResult), got
    assert _encode(got) == _encode(expected), (op, got, expected)
    return got


async def check_query_edge_cases(make_store: MakeStore) -> None:
    """QueryRecords on one value of every kind: each filter and sort keeps
    exactly the pinned records, as the reference does."""
    async with make_store() as store:
        collection, names, stored = await _insert(store, EDGE_RECORDS)
        for raw, user, expected in EDGE_FILTERS:
            query = parse_query({"filter": raw, "limit": -1})
            result = await _run(store, stored, QueryRecords(collection, query, Variables(user=user)))
            assert [names[record["_id"]] for record in result.records] == expected, raw
        for sort, expected in EDGE_SORTS:
            result = await _run(store, stored, QueryRecords(collection, parse_query({"sort": sort, "limit": "-1"})))
            assert [names[record["_id"]] for record in result.records] == expected, sort
        nowhere = await store.execute(QueryRecords("nowhere", parse_query({"meta": "*"})))
        assert nowhere == QueryResult([], 0, 0)


#: Operands for ``check_query_operator_grid``: every value stored in
#: ``EDGE_RECORDS`` and their neighbours, pieces and case variants.
GRID_OPERANDS: list[Any] = [
    0, 1, 1.0, 1.5, 2, -1, 0.5, "1", "A", "a", "", "b", "Zo", "zo", "ZOË", "😀", "文 😀", "Bé", "bé", "B",
    "école", "ÉCOLE", "deep", "d", "ep", "literal", True, False, "$CURRENT_USER",
]


def grid_filters() -> list[dict[str, Any]]:
    """Every operator on ``v`` and ``v.k`` with every operand of its kind
    (lists of one and two for ``_in``, pairs for ``_between``)."""
    filters = []
    for name, (op, _) in sorted(OPERATORS.items()):
        for path in ("v", "v.k"):
            if op in ("null", "empty"):
                filters += [{path: {name: flag}} for flag in (True, False)]
                continue
            for operand in GRID_OPERANDS:
                if op in ("lt", "lte", "gt", "gte", "between") and type(operand) is bool:
                    continue
                if op in ("icontains", "starts_with", "istarts_with", "ends_with", "iends_with") and type(operand) is not str:
                    continue
                if op == "in":
                    filters += [{path: {name: [operand]}}, {path: {name: [operand, "a", 1.5]}}]
                elif op == "between":
                    filters += [{path: {name: [operand, high]}} for high in (1, 1.5, "a", "Zz")]
                else:
                    filters.append({path: {name: operand}})
    return filters


async def check_query_operator_grid(make_store: MakeStore) -> None:
    """Every operator with every operand of its kind, on one value of every
    kind, boundaries included: the store keeps what the reference keeps."""
    async with make_store() as store:
        collection, _, stored = await _insert(store, EDGE_RECORDS)
        for raw in grid_filters():
            op = QueryRecords(collection, parse_query({"filter": raw, "limit": -1, "fields": "_id"}), Variables(user="A"))
            await _run(store, stored, op)


async def check_query_pages_and_counts(make_store: MakeStore) -> None:
    """Offset, limit and page; total and filter counts under a permission
    filter; field selection into objects; search, also limited to the
    readable fields; the REST-style strings of SDK v26."""
    async with make_store() as store:
        collection, names, stored = await _insert(store, EDGE_RECORDS)

        async def run(raw: dict[str, Any], permission: Filter = MATCH_ALL, readable: Any = "*", **variables: Any) -> QueryResult:
            op = QueryRecords(collection, parse_query(raw), Variables(**variables), permission, readable)
            return await _run(store, stored, op)

        def named(result: QueryResult) -> list[str]:
            return [names[record["_id"]] for record in result.records]

        assert named(await run({"sort": "v", "limit": 3, "offset": 2})) == ["dotted", "false", "true"]
        assert named(await run({"sort": ["v"], "limit": "3", "page": "2", "offset": 9})) == ["false", "true", "int1"]
        assert named(await run({"limit": 0})) == []
        assert named(await run({"offset": 15, "limit": -1})) == ["uni", "dotted"]
        assert named(await run({"offset": 99})) == []
        assert len((await run({})).records) == len(EDGE_RECORDS)  # the default limit is 100

        nonnull = parse_filter({"v": {"_nnull": True}})
        counted = await run({"filter": '{"v": {"_contains": "a"}}', "meta": "total_count,filter_count", "limit": "1"}, nonnull)
        assert (counted.total_count, counted.filter_count, named(counted)) == (14, 2, ["stra"])
        only_total = await run({"meta": ["total_count"]}, parse_filter({"other": {"_eq": 1}}))
        assert (only_total.total_count, only_total.filter_count, named(only_total)) == (1, None, ["missing"])

        fields = await run({"fields": "v.k,other", "filter": {"v": {"_nnull": True}}, "limit": 3, "sort": "-v"})
        assert fields.records == [{}, {"v": {}}, {}]  # [] and a list are no objects; {} is one
        objects = await run({"fields": ["v.k", "_id"], "filter": {"_or": [{"v": {"_empty": True}}, {"v.k": {"_nnull": True}}]}})
        assert [record.get("v") for record in objects.records] == [None, None, None, None, {}, {"k": "deep"}, None]
        whole = await run({"fields": "*,v.k", "filter": {"v.n": {"_eq": 2}}})
        assert whole.records == [{"_id": "000014", "v": {"k": "deep", "n": 2}}]

        assert named(await run({"search": "école"})) == ["uni"]
        assert (await run({"search": "1"}, readable=("v",))).records == [{"v": "1"}]  # numbers are not searched
        assert (await run({"search": "0000"}, readable=("v",))).records == []  # _id is not readable here
        assert len((await run({"search": "0000"})).records) == len(EDGE_RECORDS)
        redacted = await run({"filter": {"v": {"_eq": "a"}}}, readable=("_id",))
        assert redacted.records == [{"_id": "000005"}]


async def check_generated_queries(make_store: MakeStore, *, max_examples: int = 80) -> None:
    """Hypothesis: random records and random valid queries, permission
    filters and readable fields; the store answers what the reference answers."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    async with make_store() as store:

        @settings(max_examples=max_examples, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.data())
        def compare(data: Any) -> None:
            records = data.draw(query_strategies().records, label="records")
            strategies = query_strategies(scalars_in(records))
            queries = data.draw(strategies.queries, label="queries")
            permission = data.draw(strategies.permissions, label="permission")
            readable = data.draw(strategies.readables, label="readable")
            user = data.draw(strategies.users, label="user")
            collection = next(_collections)
            stored = [{"_id": f"{n:06d}", **fields} for n, fields in enumerate(records)]
            for record in stored:
                trio.from_thread.run(store.execute, InsertRecord(collection, record))
            variables = Variables(user=user, role="reader", now_ms=1_700_000_000_000)
            for raw in queries:
                op = QueryRecords(collection, parse_query(raw), variables, parse_filter(permission), readable)
                trio.from_thread.run(_run, store, stored, op)

        await trio.to_thread.run_sync(compare)


async def check_settings(make_store: MakeStore) -> None:
    """GetSetting / PutSetting: a compare-and-swap from revision 0 up, bytes
    in and out, apart from collections."""
    async with make_store() as store:
        assert await store.execute(GetSetting("permissions")) is None
        assert await store.execute(PutSetting("permissions", b"x", 1)) is False
        assert await store.execute(GetSetting("permissions")) is None
        assert await store.execute(PutSetting("permissions", b'{"v": 1}', 0)) is True
        assert await store.execute(GetSetting("permissions")) == StoredSetting(b'{"v": 1}', 1)
        assert await store.execute(PutSetting("permissions", b"again", 0)) is False
        assert await store.execute(PutSetting("permissions", b"stale", 2)) is False
        assert await store.execute(PutSetting("permissions", "ü ✓".encode(), 1)) is True
        stored = await store.execute(GetSetting("permissions"))
        assert stored == StoredSetting("ü ✓".encode(), 2) and type(stored.value) is bytes
        assert await store.execute(PutSetting("other", b"", 0)) is True
        assert await store.execute(GetSetting("other")) == StoredSetting(b"", 1)
        assert await store.execute(GetSetting("permissions")) == StoredSetting("ü ✓".encode(), 2)
        try:
            await store.execute(PutSetting("permissions", bytearray(b"x"), 2))  # type: ignore[arg-type]
        except LocalProtocolError:
            pass
        else:
            raise AssertionError("a setting's value must be bytes")
        assert (await store.execute(GetSetting("permissions"))).revision == 2
        assert await store.execute(ListCollections()) == []
        assert await store.execute(ListRecords("settings")) == []
        assert await store.execute(GetRecord("settings", "permissions")) is None


async def check_user_roles(make_store: MakeStore) -> None:
    """A user's role: ``authenticated`` unless given, kept, and changed by
    SetUserRole; HeldRoles answers the roles users hold."""
    async with make_store() as store:
        assert await store.execute(HeldRoles()) == frozenset()
        plain = User("u-plain", "plain@example.com", "$argon2id$x", "2020-01-01T00:00:00.000Z")
        assert plain.role == "authenticated"
        editor = User("u-editor", "editor@example.com", "$argon2id$y", "2020-01-01T00:00:00.000Z", "editor")
        assert await store.execute(InsertUser(plain)) is True
        assert await store.execute(InsertUser(editor)) is True
        assert await store.execute(GetUser(plain.id)) == plain
        assert await store.execute(GetUserByEmail("EDITOR@example.com")) == editor
        assert await store.execute(SetUserRole(plain.id, "admin")) is True
        assert await store.execute(GetUser(plain.id)) == msgspec.structs.replace(plain, role="admin")
        assert await store.execute(GetUserByEmail(plain.email)) == msgspec.structs.replace(plain, role="admin")
        assert await store.execute(GetUser(editor.id)) == editor
        assert await store.execute(SetUserRole("nobody", "admin")) is False
        assert await store.execute(GetUser("nobody")) is None
        assert await store.execute(HeldRoles()) == {"admin", "editor"}
        assert await store.execute(SetUserRole(editor.id, "admin")) is True
        assert await store.execute(HeldRoles()) == {"admin"}


def scalars_in(records: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Every (dotted path, JSON scalar) stored in ``records``, through objects
    (and an array's scalar elements, under the array's path): filters built
    on these hit stored values, boundaries included."""
    found: list[tuple[str, Any]] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{path}.{key}" if path else key, item)
        elif isinstance(value, list):
            found.extend((path, item) for item in value if item is not None and not isinstance(item, (dict, list)))
        elif value is not None and path:
            found.append((path, value))

    for record in records:
        walk("", record)
    return found


def query_strategies(pool: list[Any] | None = None) -> SimpleNamespace:
    """Hypothesis strategies: ``records`` (lists of field dicts), ``queries``
    (lists of raw Directus queries, object and string forms), ``filters``
    and ``permissions`` (raw filters), ``readables``, ``users``.

    Domains are narrow, and operands are also drawn from ``pool`` (stored
    values, ``scalars_in``), so that filters often hit and often sit exactly
    on a boundary."""
    from hypothesis import strategies as st

    short = st.sampled_from(["", "a", "A", "ab", "é", "É", "u1", "B", "%", "😀"])
    text = short | st.text(alphabet="aAbBzé ÉßİıK1_%.-😀", max_size=5)
    small = st.integers(-2, 2)
    numbers = small | st.sampled_from([0.5, -0.0, 1.0, 2.0, -1.5]) | st.integers(-(2**53), 2**53)
    numbers |= st.floats(allow_nan=False, allow_infinity=False)
    scalars = st.none() | st.booleans() | numbers | text
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["x", "y", "n"]), inner, max_size=3),
        max_leaves=6,
    )
    names = st.sampled_from(["a", "b", "n", "s", "tags", "obj", "é"])
    records = st.lists(st.dictionaries(names, values, max_size=5), max_size=12)

    stored_numbers = [value for _, value in pool or () if type(value) in (int, float)]
    stored_text = [value for _, value in pool or () if type(value) is str]
    if stored_numbers:
        numbers = numbers | st.sampled_from(stored_numbers)
    if stored_text:
        text = text | st.sampled_from(stored_text)
    paths = st.sampled_from(["a", "b", "n", "s", "tags", "obj", "obj.x", "obj.n", "obj.x.y", "é", "missing", "_id"])
    operands = st.booleans() | numbers | text | st.just("$CURRENT_USER")
    ordered = numbers | text | st.just("$NOW(-1 day)")
    strings = text | st.just("$CURRENT_USER")
    operand_of = {
        "eq": operands, "contains": operands, "in": st.lists(operands, max_size=4),
        "null": st.booleans(), "empty": st.booleans(), "between": st.lists(ordered, min_size=2, max_size=2),
        "lt": ordered, "lte": ordered, "gt": ordered, "gte": ordered,
    }
    # Every operator equally likely, each with an operand of its kind.
    operator = st.sampled_from(sorted(OPERATORS)).flatmap(
        lambda name: st.tuples(st.just(name), operand_of.get(OPERATORS[name][0], strings))
    )
    leaves = st.builds(lambda path, op: {path: {op[0]: op[1]}}, paths, operator)
    leaves |= st.builds(lambda path, value: {path: value}, paths, st.booleans() | numbers | text)
    if pool:
        # Aimed at a stored value: the operator gets that value, or a piece of it.
        leaves = st.sampled_from(pool).flatmap(lambda found: st.sampled_from(sorted(OPERATORS)).flatmap(
            lambda name: st.builds(lambda operand: {found[0]: {name: operand}}, _near(st, name, found[1], operand_of))
        )) | leaves
    filters = st.recursive(
        leaves,
        lambda inner: st.builds(lambda items: {"_and": items}, st.lists(inner, max_size=3))
        | st.builds(lambda items: {"_or": items}, st.lists(inner, max_size=3))
        | st.builds(lambda a, b: {**a, **b}, inner, inner),
        max_leaves=6,
    )
    field_lists = st.lists(st.sampled_from(["*", "a", "obj", "obj.x", "obj.x.y", "obj.*", "tags", "_id", "missing"]), max_size=4)
    sort_keys = st.lists(st.sampled_from(["a", "-a", "n", "-n", "s", "obj.x", "-obj.x", "tags", "-é", "_id", "-_id"]), max_size=3)
    query = st.fixed_dictionaries(
        {},
        optional={
            "filter": filters | filters.map(lambda raw: msgspec.json.encode(raw).decode()),
            "fields": field_lists | field_lists.map(",".join),
            "sort": sort_keys | sort_keys.map(",".join),
            "limit": st.integers(-1, 6) | st.integers(-1, 6).map(str),
            "offset": st.integers(0, 4),
            "page": st.integers(1, 3),
            "search": text,
            "meta": st.sampled_from(["*", "total_count", "filter_count", ["total_count"]]),
        },
    )
    readables = st.just("*") | st.lists(st.sampled_from(["_id", "a", "b", "n", "s", "obj", "tags"]), unique=True).map(
        lambda fields: tuple(sorted(fields))
    )
    return SimpleNamespace(
        records=records,
        queries=st.lists(query, min_size=1, max_size=8),
        leaves=leaves,
        filters=filters,
        permissions=st.just({}) | filters,
        readables=readables,
        users=st.sampled_from([None, "u1", "a"]),
        text=text,
        values=values,
    )


def _near(st: Any, name: str, value: Any, operand_of: dict[str, Any]) -> Any:
    """Operands for operator ``name`` on or next to a stored ``value``."""
    op = OPERATORS[name][0]
    if op in ("null", "empty"):
        return st.booleans()
    if type(value) is bool:
        return st.just(value) if op in ("eq", "contains") else st.just([value]) if op == "in" else operand_of.get(op, st.just("a"))
    if op == "in":
        return st.lists(operand_of["eq"], max_size=2).map(lambda others: [value, *others])
    if op == "between":
        other = operand_of["lt"]
        return st.tuples(other, st.booleans()).map(lambda pair: [value, pair[0]] if pair[1] else [pair[0], value])
    if op in ("eq", "contains", "lt", "lte", "gt", "gte"):
        return st.just(value) | (st.integers(-1, 1).map(lambda step: value + step) if type(value) is int else st.just(value))
    if type(value) is not str:
        return operand_of.get(op, st.just(str(value)))
    # A piece of the stored string, its case changed or not.
    pieces = st.tuples(st.integers(0, len(value)), st.integers(0, len(value)), st.booleans()).map(
        lambda cut: (value[: cut[1]] if op.endswith("starts_with") else value[cut[0]:] if op.endswith("ends_with") else value[cut[0] : cut[1]])
    )
    return pieces | pieces.map(str.upper) | pieces.map(str.swapcase)


#: The checks of this module, in the order ``conformance.check_store`` runs them.
QUERY_CHECKS = (
    check_query_edge_cases,
    check_query_operator_grid,
    check_query_pages_and_counts,
    check_generated_queries,
    check_settings,
    check_user_roles,
)
