"""The SQLite compilation of the query language equals the reference evaluator.

Run straight on an in-memory SQLite table (no store, no threads), so that
Hypothesis can afford many examples: every operator, composite filters,
sorts and search, each compared with ``satchel.protocol.query.evaluate``.
The stores' own comparison is in the conformance suite
(``check_generated_queries``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satchel.protocol.query import (
    MAX_NODES,
    Variables,
    lookup,
    matches,
    parse_filter,
    parse_sort,
    searched,
    sort_key,
)
from satchel.protocol.query.sql import LOWER_FUNCTION, json_path, order_sql, search_sql, where_sql
from satchel.storage_backends.conformance_queries import query_strategies, scalars_in

VARIABLES = Variables(user="u1", role="reader", now_ms=1_700_000_000_000)
EXAMPLES = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _table(records: list[dict[str, Any]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.create_function(LOWER_FUNCTION, 1, lambda text: text.lower() if isinstance(text, str) else text, deterministic=True)
    db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    db.executemany("INSERT INTO records (seq, body) VALUES (?, ?)", [(n, msgspec.json.encode(r).decode()) for n, r in enumerate(records)])
    return db


def _selected(db: sqlite3.Connection, where: str, params: list[Any]) -> list[int]:
    return [seq for (seq,) in db.execute(f"SELECT seq FROM records WHERE {where} ORDER BY seq", params)]


@st.composite
def records_and_filters(draw: Any, composite: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records = draw(query_strategies().records)
    strategies = query_strategies(scalars_in(records))
    return records, draw(st.lists(strategies.filters if composite else strategies.leaves, min_size=1, max_size=20))


@EXAMPLES
@given(records_and_filters(composite=False))
def test_every_operator_selects_what_the_reference_selects(case: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    records, filters = case
    db = _table(records)
    for raw in filters:
        parsed = parse_filter(raw)
        expected = [n for n, record in enumerate(records) if matches(parsed, record, VARIABLES)]
        assert _selected(db, *where_sql(parsed, VARIABLES)) == expected, raw


@EXAMPLES
@given(records_and_filters(composite=True))
def test_composite_filters_select_what_the_reference_selects(case: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    records, filters = case
    db = _table(records)
    for raw in filters:
        parsed = parse_filter(raw)
        for variables in (VARIABLES, Variables(now_ms=0)):
            expected = [n for n, record in enumerate(records) if matches(parsed, record, variables)]
            assert _selected(db, *where_sql(parsed, variables)) == expected, raw


sort_fields = st.lists(st.sampled_from(["a", "-a", "n", "-n", "s", "-s", "obj.x", "-obj.x", "tags", "é", "-é"]), min_size=1, max_size=3)


@EXAMPLES
@given(query_strategies().records, sort_fields)
def test_sorts_order_as_the_reference_orders(records: list[dict[str, Any]], fields: list[str]) -> None:
    db = _table(records)
    keys = parse_sort(fields)
    expected = list(range(len(records)))
    for key in reversed(keys):
        expected.sort(key=lambda n, path=key.path: sort_key(lookup(records[n], path)), reverse=key.descending)
    order, params = order_sql(keys)
    assert [seq for (seq,) in db.execute(f"SELECT seq FROM records ORDER BY {order}", params)] == expected


@EXAMPLES
@given(query_strategies().records, query_strategies().text, st.just("*") | st.sets(st.sampled_from(["a", "b", "s", "é"])))
def test_search_finds_what_the_reference_finds(records: list[dict[str, Any]], text: str, readable: Any) -> None:
    db = _table(records)
    expected = [n for n, record in enumerate(records) if searched(record, text, readable)]
    assert _selected(db, *search_sql(text, readable)) == expected


@pytest.mark.parametrize(
    "key",
    ["a b", "it's", "$", "é中😀", "0", "-", "a'; DROP TABLE records; --", "{}", "_id", "\u2028"],
)
def test_any_field_name_is_a_bound_parameter_never_sql(key: str) -> None:
    records = [{key: 1}, {key: "1"}, {"other": 1}]
    db = _table(records)
    parsed = parse_filter({key: {"_eq": 1}})
    assert _selected(db, *where_sql(parsed, VARIABLES)) == [0]
    assert db.execute("SELECT count(*) FROM records").fetchone() == (3,)
    assert json_path((key,)) == f'$."{key}"'


def test_the_largest_filter_stays_within_sqlites_limits() -> None:
    # MAX_NODES conditions in one flat _or: a balanced tree, not 1000 nested ORs.
    records = [{"n": n} for n in range(50)]
    db = _table(records)
    raw = {"_or": [{"n": {"_eq": n}} for n in range(MAX_NODES - 1)]}
    parsed = parse_filter(raw)
    assert _selected(db, *where_sql(parsed, VARIABLES)) == list(range(50))
    wide = parse_filter({"n": {"_nin": list(range(MAX_NODES - 1))}})
    assert _selected(db, *where_sql(wide, VARIABLES)) == []
