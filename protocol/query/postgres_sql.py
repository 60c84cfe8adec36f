"""The query language compiled to PostgreSQL SQL over a ``jsonb`` column.

Pure text generation, beside ``sql`` (the SQLite dialect): this module builds
SQL and its ``%s`` parameters (psycopg's style) and runs nothing
(``PostgresStore`` does). The SQL implements the rules of ``evaluate``
exactly:

- A path steps through objects only: one ``-> key`` per segment, the key a
  bound ``text`` parameter. ``jsonb -> text`` is NULL on an array, so a
  segment is never an array index (``#>`` would index arrays).
- ``jsonb_typeof`` is checked before every comparison, inside a ``CASE``
  (PostgreSQL does not promise to evaluate AND left to right, and casting a
  jsonb string to numeric raises). Numbers compare as ``numeric``; jsonb
  keeps the decimal text of what was stored, and operands are bound as the
  decimal of Python's ``repr``, which orders floats as Python does.
- Strings order with ``COLLATE "C"``: UTF-8 bytes, which is code point order.
- Every condition is wrapped in ``COALESCE(..., false)``, so ``NOT`` is
  exact negation as ``evaluate`` defines it.
- Case folding must be Python's ``str.lower()`` (PostgreSQL's ``lower()``
  follows the locale and differs for ``İ``, ``ß``, final sigma ...). The
  store therefore keeps a second jsonb column, ``folded``: the record's
  strings, reached through objects, already lowered by Python at write time
  (``folded_record``). The ``i`` operators and ``search`` read that column.
- PostgreSQL's text and jsonb cannot hold U+0000. Stored jsonb columns have
  it replaced by U+FFFD, and so do the operands here (``evaluate`` leaves
  U+0000 outside the contract, as SQLite's JSON functions stop at it).

AND and OR are balanced trees, so a filter of ``MAX_NODES`` conditions stays
shallow.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from .evaluate import ALL_FIELDS, Fields
from .filters import And, Compare, Filter, Variables, bind
from .parse import SortKey

__all__ = ["folded_record", "where_sql", "search_sql", "order_sql", "nul_free"]

_Sql = tuple[str, list[Any]]
_encode = msgspec.json.Encoder().encode


def nul_free(text: str) -> str:
    """``text`` with U+0000 (which PostgreSQL text cannot hold) as U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def folded_record(record: Any) -> dict[str, Any]:
    """The strings of ``record`` reached through objects, lowered with
    ``str.lower()``; other values (arrays, numbers...) are left out."""
    folded: dict[str, Any] = {}
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            folded[key] = value.lower()
        elif kind is dict:
            folded[key] = folded_record(value)
    return folded


def _join(word: str, parts: list[_Sql]) -> _Sql:
    """``parts`` joined by AND/OR as a balanced tree; empty: AND is true, OR false."""
    if not parts:
        return ("true" if word == "AND" else "false", [])
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    left, right = _join(word, parts[:middle]), _join(word, parts[middle:])
    return f"({left[0]} {word} {right[0]})", left[1] + right[1]


def _kind(operand: Any) -> str | None:
    if operand is None:
        return None
    if type(operand) is bool:
        return "bool"
    return "text" if type(operand) is str else "number"


def _number(operand: Any) -> Any:
    # A float is bound as the decimal of its repr: the text jsonb keeps for a
    # stored float (msgspec writes repr), so equal values compare equal.
    return Decimal(repr(operand)) if type(operand) is float else operand


def _operand(operand: Any, kind: str) -> Any:
    return nul_free(operand) if kind == "text" else _number(operand)


class _Leaf:
    """SQL for the value at one path of one jsonb column."""

    def __init__(self, column: str, path: tuple[str, ...]) -> None:
        self.column = column
        self.path = path
        self.sql = "(" + column + "".join(" -> %s::text" for _ in path) + ")"
        self.params = [nul_free(segment) for segment in path]

    def value(self) -> _Sql:
        return self.sql, list(self.params)

    def type(self) -> _Sql:
        return f"jsonb_typeof({self.sql})", list(self.params)

    def typed(self, kind: str) -> _Sql:
        """The value as SQL ``numeric`` or ``text``, NULL when it has another type."""
        if kind == "number":
            return f"(CASE WHEN jsonb_typeof({self.sql}) = 'number' THEN ({self.sql})::numeric END)", self.params * 2
        return f"(CASE WHEN jsonb_typeof({self.sql}) = 'string' THEN ({self.sql} #>> '{{}}') END)", self.params * 2

    def test(self, kind: str | None, template: str, params: list[Any]) -> _Sql:
        """``template`` holds where the value has ``kind`` (``"text"`` or
        ``"number"``); ``V`` in it (once, before its placeholders) is the value."""
        if kind not in ("text", "number"):
            return "false", []
        value_sql, value_params = self.typed(kind)
        return f"({template.replace('V', value_sql)})", value_params + params

    def equal(self, operand: Any) -> _Sql:
        # Containment of {path: operand}: jsonb equality of scalars is the
        # rule of eq (numbers by value, strings byte for byte, true is not
        # 1), an object on the way must be an object, and an array never
        # contains a scalar below the top level.
        if _kind(operand) is None:
            return "false", []
        return f"({self.column} @> %s::jsonb)", [self.nested(operand)]

    def nested(self, operand: Any) -> str:
        """``{path: operand}`` as JSON text."""
        value: Any = nul_free(operand) if type(operand) is str else operand
        for segment in reversed(self.path):
            value = {nul_free(segment): value}
        return _encode(value).decode()


_SIGNS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _compare(compare: Compare, doc: str, folded: str) -> _Sql:
    op, operand = compare.op, compare.operand
    leaf = _Leaf(doc, compare.path)
    if op == "eq":
        return leaf.equal(operand)
    if op == "in":
        wanted = list(dict.fromkeys(leaf.nested(item) for item in operand if item is not None))
        if not wanted:
            return "false", []
        return f"({leaf.column} @> ANY(%s::jsonb[]))", [wanted]
    if op in _SIGNS:
        kind = _kind(operand)
        collate = ' COLLATE "C"' if kind == "text" else ""
        return leaf.test(kind, f"V{collate} {_SIGNS[op]} %s", [_operand(operand, kind)] if kind else [])
    if op == "between":
        low, high = operand
        kind = _kind(low)
        if kind not in ("text", "number") or _kind(high) != kind:
            return "false", []
        collate = ' COLLATE "C"' if kind == "text" else ""
        return leaf.test(kind, f"V{collate} BETWEEN %s AND %s", [_operand(low, kind), _operand(high, kind)])
    if op == "null":
        type_sql, type_params = leaf.type()
        return f"(COALESCE({type_sql}, 'null') = 'null')", type_params
    if op == "empty":
        type_sql, type_params = leaf.type()
        value_sql, value_params = leaf.value()
        return (
            f"(COALESCE({type_sql}, 'null') = 'null' OR {value_sql} IN ('\"\"'::jsonb, '[]'::jsonb, '{{}}'::jsonb))",
            type_params + value_params,
        )
    if op == "contains":
        kind = _kind(operand)
        if kind is None:
            return "false", []
        # @> on arrays: some element equals the operand (jsonb equality:
        # numbers by value, strings byte for byte, true is not 1).
        element = _encode([_operand(operand, kind) if kind != "number" else operand]).decode()
        value_sql, value_params = leaf.value()
        member = (f"(jsonb_typeof({value_sql}) = 'array' AND {value_sql} @> %s::jsonb)", value_params * 2 + [element])
        if kind != "text":
            return member
        return _join("OR", [leaf.test("text", "strpos(V, %s) > 0", [nul_free(operand)]), member])
    if _kind(operand) != "text":
        return "false", []
    if op in ("icontains", "istarts_with", "iends_with"):
        leaf = _Leaf(folded, compare.path)
        text = nul_free(operand.lower())
    else:
        text = nul_free(operand)
    if op in ("contains", "icontains"):
        return leaf.test("text", "strpos(V, %s) > 0", [text])
    if not text:
        return leaf.test("text", "V IS NOT NULL", [])
    if op in ("starts_with", "istarts_with"):
        return leaf.test("text", "left(V, %s::integer) = %s", [len(text), text])
    if op in ("ends_with", "iends_with"):
        return leaf.test("text", "right(V, %s::integer) = %s", [len(text), text])
    raise ValueError(f"unknown operator {op!r}")


def _filter(filter: Filter, doc: str, folded: str) -> _Sql:
    if isinstance(filter, Compare):
        sql, params = _compare(filter, doc, folded)
        # COALESCE: a condition is true or false, never NULL, so NOT negates it exactly.
        sql = f"COALESCE({sql}, false)"
        return (f"NOT {sql}", params) if filter.negate else (sql, params)
    parts = [_filter(item, doc, folded) for item in filter.filters]
    return _join("AND" if isinstance(filter, And) else "OR", parts)


def where_sql(filter: Filter, variables: Variables, doc: str = "doc", folded: str = "folded") -> _Sql:
    """A WHERE condition (and its parameters) equal to ``evaluate.matches``
    on the jsonb column ``doc`` (and its lowered strings in ``folded``)."""
    return _filter(bind(filter, variables), doc, folded)


def search_sql(text: str | None, readable: Fields = ALL_FIELDS, folded: str = "folded") -> _Sql:
    """A condition equal to ``evaluate.searched`` (``text`` ``None``: true)."""
    if text is None:
        return "true", []
    keys = ""
    params: list[Any] = [nul_free(text.lower())]
    if readable != ALL_FIELDS:
        names = sorted(readable)
        if not names:
            return "false", []
        keys = " AND s.key = ANY(%s::text[])"
        params.append([nul_free(name) for name in names])
    return (
        f"EXISTS (SELECT 1 FROM jsonb_each({folded}) AS s WHERE jsonb_typeof(s.value) = 'string'"
        f" AND strpos(s.value #>> '{{}}', %s) > 0{keys})",
        params,
    )


def order_sql(sort: tuple[SortKey, ...], doc: str = "doc", tiebreak: str = "seq") -> _Sql:
    """An ORDER BY list equal to ``evaluate.sort_key`` ordering, ties broken by
    ``tiebreak`` (the creation order) ascending."""
    terms: list[str] = []
    params: list[Any] = []
    for key in sort:
        leaf = _Leaf(doc, key.path)
        direction = " DESC" if key.descending else ""
        # By type first (null/missing, booleans, numbers, strings, the rest),
        # then by the value of that type; only one of the value terms is
        # non-NULL within a type, so the others never decide.
        terms.append(
            f"(CASE COALESCE(jsonb_typeof({leaf.sql}), 'null') WHEN 'null' THEN 0 WHEN 'boolean' THEN 1"
            f" WHEN 'number' THEN 2 WHEN 'string' THEN 3 ELSE 4 END){direction}"
        )
        params += leaf.params
        terms.append(f"(CASE WHEN jsonb_typeof({leaf.sql}) = 'boolean' THEN ({leaf.sql})::boolean END){direction}")
        params += leaf.params * 2
        number_sql, number_params = leaf.typed("number")
        text_sql, text_params = leaf.typed("text")
        terms += [f"{number_sql}{direction}", f'{text_sql} COLLATE "C"{direction}']
        params += number_params + text_params
    terms.append(tiebreak)
    return ", ".join(terms), params
