"""The reference semantics of the query language (``query.evaluate``): the
type rules, field selection, sorting, search and ``apply``'s order of steps.
The same tables run against every store in the conformance suite."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.protocol.query import (
    MATCH_ALL,
    MISSING,
    Query,
    QueryResult,
    Variables,
    apply,
    compare,
    lookup,
    matches,
    parse_fields,
    parse_filter,
    parse_query,
    project,
    redact,
    searched,
    sort_key,
)
from satchel.protocol.records import format_timestamp
from satchel.storage_backends.conformance_queries import EDGE_FILTERS, EDGE_RECORDS, EDGE_SORTS, query_strategies


@pytest.mark.parametrize("raw, user, expected", EDGE_FILTERS, ids=lambda case: str(case)[:60])
def test_the_type_rules(raw: dict[str, Any], user: str | None, expected: list[str]) -> None:
    parsed = parse_filter(raw)
    assert [name for name, record in EDGE_RECORDS.items() if matches(parsed, record, Variables(user=user))] == expected


@pytest.mark.parametrize("sort, expected", EDGE_SORTS)
def test_sorting_across_types(sort: str, expected: list[str]) -> None:
    records = [{"_id": name, **fields} for name, fields in EDGE_RECORDS.items()]
    assert [record["_id"] for record in apply(parse_query({"sort": sort, "limit": -1}), records).records] == expected


def test_lookup_walks_objects_only() -> None:
    record = {"a": {"b": [{"c": 1}]}, "n": None}
    assert lookup(record, ("a", "b")) == [{"c": 1}]
    assert lookup(record, ("a", "b", "0")) is MISSING
    assert lookup(record, ("a", "b", "c")) is MISSING
    assert lookup(record, ("n",)) is None and lookup(record, ("n", "x")) is MISSING
    assert lookup(record, ()) is record


@pytest.mark.parametrize(
    "op, value, operand, expected",
    [
        ("eq", 2**53 + 1, 2**53 + 1, True),
        ("eq", -0.0, 0, True),
        ("lt", "2020-01-01T00:00:00.000Z", "2020-01-02T00:00:00.000Z", True),  # ISO timestamps order by time
        ("lt", 1, "2", False),
        ("gt", "2", 1, False),
        ("lte", None, 1, False),
        ("gte", MISSING, "a", False),
        ("lt", [1], 2, False),
        ("gt", True, 0, False),  # a boolean is not a number
        ("between", 5, (1, 10), True),
        ("between", 10, (1, 10), True),  # inclusive
        ("between", 5, (10, 1), False),  # bounds in order
        ("between", "m", ("a", 5), False),
        ("contains", ["x", 1], 1.0, True),
        ("contains", ["x", [1]], 1, False),  # elements, not nested arrays
        ("contains", "abc", None, False),
        ("icontains", "İstanbul", "i̇st", True),  # str.lower folds İ to i + combining dot
        ("icontains", ["ABC"], "b", False),
        ("starts_with", "abc", "", True),
        ("ends_with", "", "", True),
        ("in", 1, (None, 1.0), True),
        ("in", None, (None,), False),
        ("empty", {"a": None}, None, False),
    ],
)
def test_compare(op: str, value: Any, operand: Any, expected: bool) -> None:
    assert compare(op, value, operand) is expected


def test_dynamic_variables() -> None:
    now = 1_700_000_000_000
    records = [{"at": format_timestamp(now - 3_600_000)}, {"at": format_timestamp(now - 2 * 86_400_000)}, {"at": "later"}]
    recent = parse_filter({"at": {"_gte": "$NOW(-1 day)"}, "_and": [{"at": {"_lt": "$NOW"}}]})
    assert [matches(recent, record, Variables(now_ms=now)) for record in records] == [True, False, False]
    mine = parse_filter({"_or": [{"owner": "$CURRENT_USER"}, {"team": "$CURRENT_USER.team"}, {"role": "$CURRENT_ROLE"}]})
    who = Variables(user="u1", role="editor", user_fields={"team": "red"})
    assert matches(mine, {"owner": "u1"}, who) and matches(mine, {"team": "red"}, who) and matches(mine, {"role": "editor"}, who)
    assert not matches(mine, {"owner": "u2", "team": "blue"}, who)
    assert not matches(mine, {"owner": None}, Variables())  # nobody signed in owns nothing


@pytest.mark.parametrize(
    "fields, expected",
    [
        ("*", {"_id": "1", "a": {"b": 1, "c": {"d": 2}}, "l": [1], "s": "x"}),
        ("s,_id", {"_id": "1", "s": "x"}),  # the record's own key order
        ("a.b", {"a": {"b": 1}}),
        ("a.c.d,a.b", {"a": {"b": 1, "c": {"d": 2}}}),
        ("a.zz", {"a": {}}),  # an object without the key: an empty object
        ("l.x,s.x,missing.x", {}),  # not objects, or missing: nothing
        ("a.b,a", {"a": {"b": 1, "c": {"d": 2}}}),  # the whole field wins
        ("a,a.b", {"a": {"b": 1, "c": {"d": 2}}}),
        ("*,a.b", {"_id": "1", "a": {"b": 1, "c": {"d": 2}}, "l": [1], "s": "x"}),
        ("a.*", {"a": {"b": 1, "c": {"d": 2}}}),
    ],
)
def test_field_selection(fields: str, expected: dict[str, Any]) -> None:
    record = {"_id": "1", "a": {"b": 1, "c": {"d": 2}}, "l": [1], "s": "x"}
    projected = project(record, parse_fields(fields))
    assert projected == expected and list(projected) == list(expected)


def test_redact_and_search() -> None:
    record = {"_id": "a1", "name": "Zoë", "secret": "hidden", "n": 15}
    assert redact(record, "*") == record and redact(record, "*") is not record
    assert redact(record, frozenset({"_id", "name", "nope"})) == {"_id": "a1", "name": "Zoë"}
    assert redact(record, frozenset()) == {}
    assert searched(record, "ZOË") and searched(record, "hid") and not searched(record, "15")
    assert not searched(record, "hid", ("_id", "name"))
    assert searched(record, "")  # every record with a string field


def test_apply_filters_then_sorts_then_pages_then_selects() -> None:
    records = [{"_id": str(n), "n": n % 4, "tag": "even" if n % 2 == 0 else "odd", "secret": n} for n in range(10)]
    query = parse_query({"filter": {"tag": "even"}, "sort": "-n,_id", "limit": 2, "offset": 1, "fields": "_id,n,secret", "meta": "*"})
    result = apply(query, records, permission=parse_filter({"n": {"_neq": 0}}), readable=("_id", "n", "tag"))
    # even and n != 0: 2, 6 (n=2); then by -n, _id: 2, 6; skip one, take two.
    assert result == QueryResult([{"_id": "6", "n": 2}], total_count=7, filter_count=2)
    assert apply(Query(), []) == QueryResult([])
    assert apply(Query(limit=0, meta=("total_count",)), records) == QueryResult([], 10)


@settings(max_examples=200, deadline=None)
@given(query_strategies().records, st.lists(query_strategies().queries, max_size=1))
def test_apply_is_a_page_of_the_filtered_sorted_records(records: list[dict[str, Any]], queries: list[Any]) -> None:
    stored = [{"_id": f"{n:04d}", **fields} for n, fields in enumerate(records)]
    for raw in (queries[0] if queries else [{}]):
        query = parse_query(raw)
        result = apply(query, stored, Variables(now_ms=0))
        everything = apply(Query(filter=query.filter, search=query.search, sort=query.sort), stored, Variables(now_ms=0))
        stop = None if query.limit is None else query.offset + query.limit
        assert result.records == [project(record, query.fields) for record in everything.records[query.offset:stop]]
        assert all(matches(query.filter, record, Variables(now_ms=0)) for record in everything.records)
        keys = [tuple(sort_key(lookup(record, key.path)) for key in query.sort) for record in everything.records]
        for key in query.sort[:1]:
            firsts = [k[0] for k in keys]
            assert firsts == sorted(firsts, reverse=key.descending)
    assert apply(Query(filter=MATCH_ALL), stored).records == stored
