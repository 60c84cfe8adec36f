"""Parsing Directus queries: both wire forms, and every refusal a clear
``InvalidQuery`` (``../shared/protocols/directus.md`` sections 2-3)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.query import (
    MATCH_ALL,
    MATCH_NONE,
    MAX_DEPTH,
    MAX_NODES,
    And,
    Compare,
    InvalidQuery,
    Or,
    Query,
    SortKey,
    Variable,
    Variables,
    bind,
    filter_fields,
    parse_filter,
    parse_query,
    query_fields,
    resolve,
    uses_variable,
)


def test_the_sdk_v26_strings_and_the_v20_objects_parse_alike() -> None:
    # What queryToParams sends (directus.md section 3, confirmed on the wire)...
    v26 = {"fields": "id,title", "filter": '{"status":{"_eq":"published"}}', "limit": "5", "sort": "-date,title",
           "offset": "2", "meta": "total_count", "search": "hello", "deep": "{}", "alias": "{}"}
    # ...and the same query as v20 and hand-written clients send it.
    v20 = {"fields": ["id", "title"], "filter": {"status": {"_eq": "published"}}, "limit": 5, "sort": ["-date", "title"],
           "offset": 2, "meta": ["total_count"], "search": "hello"}
    expected = Query(
        fields=(("id",), ("title",)),
        filter=Compare(("status",), "eq", "published"),
        sort=(SortKey(("date",), True), SortKey(("title",))),
        limit=5,
        offset=2,
        search="hello",
        meta=("total_count",),
    )
    assert parse_query(v26) == parse_query(v20) == expected
    assert parse_query(msgspec.json.encode(v20)) == expected  # a whole query as JSON text


def test_defaults() -> None:
    assert parse_query(None) == parse_query({}) == Query(limit=100)
    assert parse_query({}, default_limit=None) == Query()
    assert parse_query({"limit": -1}).limit is None
    assert parse_query({"limit": "-1"}, default_limit=10).limit is None
    assert parse_query({"fields": ""}).fields == (("*",),)
    assert parse_query({"fields": []}).fields == (("*",),)
    assert parse_query({"search": ""}).search is None
    assert parse_query({"filter": {}}).filter == MATCH_ALL
    assert parse_query({"filter": None, "limit": None}) == Query(limit=100)
    assert parse_query({"backlink": True}) == Query(limit=100)  # only changes relational fields: ignored


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"fields": "*"}, (("*",),)),
        ({"fields": " id , author.name ,"}, (("id",), ("author", "name"))),
        ({"fields": ["*", "author.*"]}, (("*",), ("author",))),  # author.* is the whole author
        ({"fields": "é,with space,_id"}, (("é",), ("with space",), ("_id",))),
    ],
)
def test_fields(raw: dict[str, Any], expected: tuple[tuple[str, ...], ...]) -> None:
    assert parse_query(raw).fields == expected


def test_pages_and_meta() -> None:
    assert parse_query({"limit": 10, "page": 3}).offset == 20
    assert parse_query({"limit": 10, "page": "1", "offset": 7}).offset == 0  # page wins, as in Directus
    assert parse_query({"limit": -1, "page": 3, "offset": 4}).offset == 4  # no limit: page changes nothing
    assert parse_query({"meta": "*"}).meta == ("filter_count", "total_count")
    assert parse_query({"meta": "filter_count,total_count"}).meta == ("filter_count", "total_count")
    assert parse_query({"limit": 50}, max_limit=50).limit == 50


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"filter": {"a": {"_regex": "x"}}}, 'operator "_regex" is not supported'),
        ({"filter": {"a": {"_some": {}}}}, "no relations"),
        ({"filter": {"a": {"_foo": 1}}}, 'Unknown filter operator "_foo"'),
        ({"filter": {"_eq": 1}}, "needs a field"),
        ({"filter": "{oops"}, '"filter" is not valid JSON'),
        ({"filter": "[1]"}, "a filter must be an object"),
        ({"filter": {"a": {"_eq": None}}}, "use _null"),
        ({"filter": {"a": None}}, "use _null"),
        ({"filter": {"a": [1, 2]}}, "takes a string, number or boolean"),
        ({"filter": {"a": {"_in": 5}}}, "takes a list"),
        ({"filter": {"a": {"_in": [{"x": 1}]}}}, "takes a string, number or boolean"),
        ({"filter": {"a": {"_between": [1]}}}, "a list of two"),
        ({"filter": {"a": {"_lt": True}}}, "takes a string or number"),
        ({"filter": {"a": {"_starts_with": 5}}}, "takes a string"),
        ({"filter": {"a": {"_null": "yes"}}}, "takes true or false"),
        ({"filter": {"a": {"_eq": 2**64}}}, "64 bits"),
        ({"filter": {"a": {"_eq": float("inf")}}}, "finite"),
        ({"filter": {"_and": {"a": 1}}}, "takes a list of filters"),
        ({"filter": {"a..b": 1}}, "not a valid field"),
        ({"filter": {'a"b': 1}}, "not a valid field"),
        ({"filter": {"a\\b": 1}}, "not a valid field"),
        ({"filter": {"year(date)": 1}}, "not a valid field"),  # Directus field functions
        ({"filter": {"a": {"_eq": "$CURRENT_ROLES"}}}, "unknown dynamic variable"),
        ({"filter": {"a": {"_eq": "$NOW(-1 month)"}}}, "$NOW adjusts by"),
        ({"filter": {"a": {"_eq": "$NOW(+999999999999 weeks)"}}}, "too far"),
        ({"fields": "a,*.b"}, "not a valid field"),
        ({"fields": 5}, '"fields" must be a string or a list'),
        ({"fields": ["a", 1]}, '"fields" must be a string or a list'),
        ({"sort": "?"}, "random sort"),
        ({"sort": "-"}, "must be a non-empty string"),
        ({"limit": "five"}, '"limit" must be an integer'),
        ({"limit": 2.5}, '"limit" must be an integer'),
        ({"limit": True}, '"limit" must be an integer'),
        ({"limit": -2}, '"limit" must be at least -1'),
        ({"limit": 10**20}, 'too large'),
        ({"limit": "1" * 20}, '"limit" must be an integer'),
        ({"limit": 2**60}, "too large"),
        ({"offset": -1}, '"offset" must be at least 0'),
        ({"page": 0}, '"page" must be at least 1'),
        ({"search": 5}, '"search" must be a string'),
        ({"search": "x" * 1001}, "longer than 1000"),
        ({"meta": "everything"}, '"meta" may ask for total_count and filter_count'),
        ({"deep": '{"author": {"_limit": 1}}'}, '"deep" is not supported'),
        ({"deep": {"author": {}}}, '"deep" is not supported'),
        ({"alias": {"name": "title"}}, '"alias" is not supported'),
        ({"aggregate": '{"count": "*"}'}, '"aggregate" is not supported'),
        ({"groupBy": "author"}, '"groupBy" is not supported'),
        ({"export": "csv"}, '"export" is not supported'),
        ({"version": "draft"}, '"version" is not supported'),
        ({"filters": {}}, 'unknown query parameter "filters"'),
        ([1, 2], "a query must be an object"),
        ("not json", '"query" is not valid JSON'),
    ],
)
def test_refusals_are_invalid_query_with_a_clear_message(raw: Any, message: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_query(raw)
    assert caught.value.code == "INVALID_QUERY" and caught.value.status == 400
    assert caught.value.message.startswith("Invalid query. ")
    assert message.lower() in caught.value.message.lower()
    assert len(caught.value.message) < 300  # never echoes a huge input


def test_max_limit() -> None:
    for raw in ({"limit": 51}, {"limit": -1}):
        with pytest.raises(InvalidQuery, match="at most 50"):
            parse_query(raw, max_limit=50)


def _nested(depth: int) -> dict[str, Any]:
    """A filter whose objects nest ``depth`` deep: {"a": {"_eq": 1}} is 2."""
    raw: dict[str, Any] = {"a": {"_eq": 1}}
    for _ in range(depth - 2):
        raw = {"_and": [raw]}
    return raw


def test_bounds_on_depth_and_size() -> None:
    assert parse_filter(_nested(MAX_DEPTH)) is not None
    with pytest.raises(InvalidQuery, match="nested more than 10"):
        parse_filter(_nested(MAX_DEPTH + 1))
    parse_filter({"_or": [{"a": {"_eq": n}} for n in range(MAX_NODES - 1)]})
    with pytest.raises(InvalidQuery, match="more than 1000 conditions"):
        parse_filter({"_or": [{"a": {"_eq": n}} for n in range(MAX_NODES)]})
    with pytest.raises(InvalidQuery, match="more than 1000"):
        parse_filter({"a": {"_in": list(range(MAX_NODES + 1))}})
    with pytest.raises(InvalidQuery, match="nested more than 10"):
        parse_filter({".".join("abcdefghijk"): 1})
    with pytest.raises(InvalidQuery, match="nested more than 10"):  # nested objects count too
        parse_filter({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": 1}}}}}}}}}}})
    # A JSON string nested far too deep is refused before it can recurse.
    with pytest.raises(InvalidQuery, match="not valid JSON"):
        parse_filter("[" * 30_000 + "]" * 30_000)
    with pytest.raises(InvalidQuery, match="longer than"):
        parse_filter('{"a": "' + "x" * 70_000 + '"}')


def test_the_filter_tree() -> None:
    parsed = parse_filter({
        "_or": [{"author": {"name": {"_eq": "ann"}, "age": {"_gte": 18}}}, {"tags": {"_in": "a,b"}}],
        "status": "published",
        "deleted": {"_null": False},
        "_id": {"_nin": [1, "$CURRENT_USER"]},
    })
    assert parsed == And((
        Or((
            And((Compare(("author", "name"), "eq", "ann"), Compare(("author", "age"), "gte", 18))),
            Compare(("tags",), "in", ("a", "b")),
        )),
        Compare(("status",), "eq", "published"),
        Compare(("deleted",), "null", None, True),  # _null: false is _nnull
        Compare(("_id",), "in", (1, Variable("CURRENT_USER")), True),
    ))
    assert filter_fields(parsed) == {"author", "tags", "status", "deleted", "_id"}
    assert parse_filter({"a": {"_nnull": False}}) == Compare(("a",), "null", None, False)
    assert parse_filter({"a": {"_empty": "true"}}) == Compare(("a",), "empty", None, False)
    assert parse_filter({"_or": []}) == MATCH_NONE
    assert parse_filter({"a": {}}) == MATCH_ALL
    query = parse_query({"fields": "x.y", "sort": "-z", "filter": {"w.v": 1}})
    assert query_fields(query) == {"x", "z", "w"}
    assert hash(query) == hash(parse_query({"fields": ["x.y"], "sort": ["-z"], "filter": '{"w.v": 1}'}))


def test_variables_are_kept_and_bound_later() -> None:
    parsed = parse_filter({
        "owner": {"_eq": "$CURRENT_USER"},
        "role": {"_eq": "$CURRENT_ROLE"},
        "team": {"_eq": "$CURRENT_USER.team.id"},
        "at": {"_between": ["$NOW(-1 day)", "$NOW"]},
        "note": {"_eq": "$NOTAVARIABLE"},  # other $ strings are plain text
    })
    assert uses_variable(parsed) and uses_variable(parsed, "CURRENT_USER") and uses_variable(parsed, "NOW")
    assert uses_variable(parsed, "CURRENT_USER.") and not uses_variable(parse_filter({"a": 1}))
    variables = Variables(user="u1", role="editor", now_ms=86_400_000, user_fields={"team": {"id": 7}})
    assert bind(parsed, variables) == And((
        Compare(("owner",), "eq", "u1"),
        Compare(("role",), "eq", "editor"),
        Compare(("team",), "eq", 7),
        Compare(("at",), "between", ("1970-01-01T00:00:00.000Z", "1970-01-02T00:00:00.000Z")),
        Compare(("note",), "eq", "$NOTAVARIABLE"),
    ))
    assert resolve(Variable("CURRENT_USER"), Variables()) is None
    assert resolve(Variable("CURRENT_USER", ("team",)), variables) is None  # an object is no scalar
    assert resolve(Variable("CURRENT_USER", ("nope",)), variables) is None
    assert resolve(Variable("NOW", offset_ms=1500), Variables(now_ms=0)) == "1970-01-01T00:00:01.500Z"
    assert parse_filter({"a": {"_lt": "$NOW(+2 hours)"}}) == Compare(("a",), "lt", Variable("NOW", offset_ms=7_200_000))
    # The core reads no clock: forgetting to hand one in is the caller's bug.
    with pytest.raises(LocalProtocolError):
        bind(parsed, Variables(user="u1"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["_eq", "_and", "_or", "_in", "$NOW", "$CURRENT_USER", "a.b", "*", "-a", "5", "-1"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["_eq", "_and", "_or", "_in", "_between", "_null", "a", "b.c", "_x", "fields",
                                       "filter", "sort", "limit", "page", "meta", "deep"]) | st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values | json_values.map(lambda value: msgspec.json.encode(value, enc_hook=str).decode()))
def test_garbage_only_ever_raises_invalid_query(raw: Any) -> None:
    # h11's rule: whatever the peer sends, the one remote error or a value.
    for parse in (parse_query, parse_filter):
        try:
            parse(raw)
        except InvalidQuery:
            pass
    try:
        parse_query({"filter": raw, "fields": raw, "sort": raw}) if not isinstance(raw, dict) else parse_query(raw)
    except InvalidQuery:
        pass
