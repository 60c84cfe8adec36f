"""What a query means: the reference semantics every store must equal.

The Directus docs (Reference > Filter Rules, Reference > Query) leave the
types to the SQL database under them. Satchel's records are schemaless JSON,
so the rules are spelled out here once; ``MemoryStore`` runs these functions
and ``SqliteStore`` compiles the same rules to SQL (``sql``), and the
conformance suite compares the two on generated data.

Values. A path reaches into nested JSON objects only (a segment is an object
key, never an array index); a path that runs into a missing key or a
non-object is *missing*, which every operator treats like ``null``.

- ``eq``, ``in``: equal JSON scalars of the same type. Numbers compare by
  value (``1`` equals ``1.0``); a boolean is not a number (``true`` is not
  ``1``); a string never equals a number (``"1"`` is not ``1``); arrays and
  objects equal nothing. A ``null`` operand - a variable with no value, such
  as ``$CURRENT_USER`` when nobody is signed in - equals nothing, as in SQL.
- ``lt lte gt gte between``: numbers with numbers, strings with strings (by
  code point, which orders ISO 8601 timestamps by time); any other pairing
  - a number with a string, a boolean, null, missing, an array - is false.
  ``between`` needs both bounds of the value's type and is inclusive.
- ``null``: the value is null or missing. ``empty``: null, missing, ``""``,
  ``[]`` or ``{}``.
- ``contains``: a string operand is a substring of a string value, or equals
  (as ``eq``) an element of an array value; a number or boolean operand is an
  element of an array value. ``icontains``, ``starts_with``, ``ends_with``
  and their ``i`` forms apply to string values only; the ``i`` forms fold
  case with Python's ``str.lower()``, non-ASCII included.
- A negated operator is exactly ``not`` its positive form: ``_neq`` keeps
  records where the field is missing or null, ``_nin: []`` keeps everything.
- ``_and: []`` is true and ``_or: []`` is false.

Sorting orders values by type first - null and missing, then booleans
(false before true), numbers, strings (code points), then arrays and objects
(which tie) - then by value; ``-field`` reverses both. Ties keep creation
order, whatever the direction. Without ``sort``, records come in creation
order.

``search`` keeps records in which some top-level string field (among the
readable ones) contains the text, both folded with ``str.lower()``; numbers
are not searched.

Known limit: SQLite's JSON functions stop a string at U+0000 and read
integers beyond 64 bits as doubles, so those values are outside the
contract; everything else must agree exactly.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Iterable, Literal, Union

import msgspec

from .filters import MATCH_ALL, NO_VARIABLES, And, Compare, Filter, Variables, bind
from .parse import Query

__all__ = [
    "ALL_FIELDS",
    "Fields",
    "QueryResult",
    "MISSING",
    "lookup",
    "matches",
    "matches_bound",
    "compare",
    "sort_key",
    "searched",
    "redact",
    "project",
    "apply",
]

#: A set of top-level field names, or ``ALL_FIELDS`` for every field.
ALL_FIELDS: Literal["*"] = "*"
Fields = Union[Literal["*"], frozenset[str], tuple[str, ...]]


class QueryResult(msgspec.Struct, frozen=True):
    """What a query answers: the records of the page, in order, and the
    counts its ``meta`` asked for (``None`` when not asked).

    ``total_count`` counts the records of the collection that the permission
    filter admits; ``filter_count`` those that the query's filter and search
    admit as well, before ``offset`` and ``limit`` (Directus's ``meta``).
    """

    records: list[dict[str, Any]]
    total_count: int | None = None
    filter_count: int | None = None


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: What ``lookup`` answers for a path that leads nowhere.
MISSING: Any = _Missing()


def lookup(record: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``record``, through objects only; ``MISSING`` if none."""
    value = record
    for segment in path:
        if type(value) is not dict:
            return MISSING
        value = value.get(segment, MISSING)
        if value is MISSING:
            return MISSING
    return value


def _is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float)


def _equal(value: Any, operand: Any) -> bool:
    if operand is None:
        return False
    if type(operand) is bool:
        return type(value) is bool and value is operand
    if type(operand) is str:
        return type(value) is str and value == operand
    return _is_number(value) and value == operand


def _same_kind(value: Any, operand: Any) -> bool:
    if type(operand) is str:
        return type(value) is str
    return _is_number(operand) and _is_number(value)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


def compare(op: str, value: Any, operand: Any) -> bool:
    """The base operator ``op`` applied to a record's ``value`` (or ``MISSING``)
    and a bound ``operand``, exactly as the module docstring defines it."""
    if op == "eq":
        return _equal(value, operand)
    if op == "in":
        return any(_equal(value, item) for item in operand)
    if op in _ORDER:
        return _same_kind(value, operand) and _ORDER[op](value, operand)
    if op == "between":
        low, high = operand
        return _same_kind(value, low) and _same_kind(value, high) and low <= value <= high
    if op == "null":
        return value is MISSING or value is None
    if op == "empty":
        return value is MISSING or value is None or (type(value) in (str, list, dict) and len(value) == 0)
    if op == "contains":
        if operand is None:
            return False
        if type(value) is str and type(operand) is str:
            return operand in value
        return type(value) is list and any(_equal(item, operand) for item in value)
    if type(value) is not str or type(operand) is not str:
        return False
    if op == "icontains":
        return operand.lower() in value.lower()
    if op == "starts_with":
        return value.startswith(operand)
    if op == "istarts_with":
        return value.lower().startswith(operand.lower())
    if op == "ends_with":
        return value.endswith(operand)
    if op == "iends_with":
        return value.lower().endswith(operand.lower())
    raise ValueError(f"unknown operator {op!r}")


def _test(filter: Filter, record: dict[str, Any]) -> bool:
    """``filter`` (already bound) against ``record``."""
    if type(filter) is Compare:
        return compare(filter.op, lookup(record, filter.path), filter.operand) is not filter.negate
    if type(filter) is And:
        return all(_test(item, record) for item in filter.filters)
    return any(_test(item, record) for item in filter.filters)


def matches(filter: Filter, record: dict[str, Any], variables: Variables = NO_VARIABLES) -> bool:
    """Whether ``record`` satisfies ``filter``, its variables taking ``variables``."""
    return _test(bind(filter, variables), record)


def matches_bound(filter: Filter, record: dict[str, Any]) -> bool:
    """Whether ``record`` satisfies ``filter``, which holds no variable (or
    was bound already): ``matches`` without the cost of binding."""
    return _test(filter, record)


def sort_key(value: Any) -> tuple[int, Any]:
    """The key ``sort`` orders a value by (see the module docstring)."""
    if value is MISSING or value is None:
        return (0, 0)
    kind = type(value)
    if kind is bool:
        return (1, int(value))
    if kind is int or kind is float:
        return (2, value)
    if kind is str:
        return (3, value)
    return (4, 0)


def searched(record: dict[str, Any], text: str, readable: Fields = ALL_FIELDS) -> bool:
    """Whether a top-level string field of ``record`` (a readable one) contains
    ``text``, case folded."""
    folded = text.lower()
    return any(
        type(value) is str and folded in value.lower()
        for key, value in record.items()
        if readable == ALL_FIELDS or key in readable
    )


def redact(record: dict[str, Any], fields: Fields) -> dict[str, Any]:
    """A copy of ``record`` with only the top-level ``fields`` (``"*"``: all of them)."""
    if fields == ALL_FIELDS:
        return dict(record)
    return {key: value for key, value in record.items() if key in fields}


# A selection tree: field name -> True (the whole value) or a nested tree.
_Tree = dict[str, Any]


@functools.lru_cache(maxsize=256)
def _selection(fields: tuple[tuple[str, ...], ...]) -> tuple[bool, _Tree]:
    star = False
    tree: _Tree = {}
    for path in fields:
        if path == ("*",):
            star = True
            continue
        node = tree
        for segment in path[:-1]:
            child = node.get(segment)
            if child is True:
                break
            node = node.setdefault(segment, {})
        else:
            node[path[-1]] = True
    return star, tree


def _select(value: dict[str, Any], tree: _Tree, star: bool) -> dict[str, Any]:
    selected: dict[str, Any] = {}
    for key, item in value.items():
        node = True if star else tree.get(key)
        if node is True:
            selected[key] = item
        elif node is not None and type(item) is dict:
            selected[key] = _select(item, node, False)
    return selected


def project(record: dict[str, Any], fields: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """Keep the ``fields`` of ``record`` (parsed paths; ``("*",)`` is every
    top-level field), in the record's own key order.

    ``a.b`` keeps ``{"a": {"b": ...}}`` when ``a`` is an object (``{"a": {}}``
    if it has no ``b``) and nothing when ``a`` is missing or not an object. A
    whole field beats a path into it. The answer is a new dict that may share
    values with ``record`` (stores hand it freshly decoded records).
    """
    star, tree = _selection(fields)
    return _select(record, tree, star)


def apply(
    query: Query,
    records: Iterable[dict[str, Any]],
    variables: Variables = NO_VARIABLES,
    permission: Filter = MATCH_ALL,
    readable: Fields = ALL_FIELDS,
) -> QueryResult:
    """Run ``query`` over ``records`` given in creation order.

    ``permission`` is the reader's item filter (``permissions.read_filter``),
    ANDed with the query's; ``readable`` the fields it may read: the others
    are removed from the answer and not searched. Filter and search, sort,
    ``offset`` and ``limit``, then the field selection - the semantics that
    ``QueryRecords`` must have in every store.
    """
    scope = bind(permission, variables)
    scoped = [record for record in records if _test(scope, record)]
    wanted = bind(query.filter, variables)
    selected = [
        record
        for record in scoped
        if _test(wanted, record) and (query.search is None or searched(record, query.search, readable))
    ]
    for key in reversed(query.sort):
        # Stable sorts from the last key to the first; reverse=True keeps ties in order.
        selected.sort(key=lambda record, path=key.path: sort_key(lookup(record, path)), reverse=key.descending)
    stop = None if query.limit is None else query.offset + query.limit
    page = selected[query.offset : stop]
    return QueryResult(
        [project(redact(record, readable), query.fields) for record in page],
        len(scoped) if "total_count" in query.meta else None,
        len(selected) if "filter_count" in query.meta else None,
    )
