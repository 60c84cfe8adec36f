"""The query language compiled to SQLite SQL over a JSON text column.

Pure text generation: this module builds SQL and its parameters and runs
nothing (``SqliteStore`` does). The SQL implements the rules of ``evaluate``
exactly, on SQLite's JSON1 functions (sqlite.org/json1.html):
``json_type(body, path)`` tells the JSON type of a value (``NULL`` when the
path is missing), and is checked before every comparison, because
``json_extract`` alone maps ``true`` to ``1`` and cannot tell ``null`` from
missing. Every condition is written to yield 0 or 1, never SQL ``NULL``, so
``NOT`` is exact negation as ``evaluate`` defines it. Strings compare with
the BINARY collation, the code point order Python uses.

Paths are bound as parameters (``$."author"."name"``: each segment a quoted
object key, so no segment can be an array index); field names never reach
the SQL text. Case folding calls ``LOWER_FUNCTION``, which the store must
register as Python's ``str.lower`` (SQLite's ``lower()`` folds ASCII only).
AND and OR are written as balanced trees, so a filter of ``MAX_NODES``
conditions stays far below SQLite's expression depth limit (1000).

A Postgres store would add its own dialect beside this one; the rules it
must equal are those of ``evaluate``.
"""

from __future__ import annotations

from typing import Any

from .evaluate import ALL_FIELDS, Fields
from .filters import And, Compare, Filter, Variables, bind
from .parse import SortKey

__all__ = ["LOWER_FUNCTION", "json_path", "where_sql", "search_sql", "order_sql"]

#: The SQL function ``SqliteStore`` registers as Python's ``str.lower``.
LOWER_FUNCTION = "satchel_lower"

_Sql = tuple[str, list[Any]]
_NUMBER = "('integer','real')"


def json_path(path: tuple[str, ...]) -> str:
    """The JSON1 path of a field path: ``("a", "b")`` -> ``$."a"."b"``."""
    return "$" + "".join(f'."{segment}"' for segment in path)


def _join(word: str, parts: list[_Sql]) -> _Sql:
    """``parts`` joined by AND/OR as a balanced tree; empty: AND is 1, OR is 0."""
    if not parts:
        return ("1" if word == "AND" else "0", [])
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


class _Leaf:
    """SQL for the value at one path of one JSON column."""

    def __init__(self, body: str, path: tuple[str, ...]) -> None:
        self.body = body
        self.path = json_path(path)

    def type(self) -> _Sql:
        return f"json_type({self.body}, ?)", [self.path]

    def value(self) -> _Sql:
        return f"json_extract({self.body}, ?)", [self.path]

    def typed(self, kind: str | None, template: str, params: list[Any]) -> _Sql:
        """``template`` holds where the value has ``kind`` (``"text"`` or
        ``"number"``). ``template`` names the value ``V`` at most once, before
        its ``?`` placeholders, so the parameters stay in text order."""
        if kind not in ("text", "number"):
            return "0", []
        type_sql, type_params = self.type()
        test = f"{type_sql} IS 'text'" if kind == "text" else f"{type_sql} IN {_NUMBER}"
        if "V" not in template:
            return f"({test} AND {template})", type_params + params
        value_sql, value_params = self.value()
        return f"({test} AND {template.replace('V', value_sql)})", type_params + value_params + params

    def equal(self, operand: Any) -> _Sql:
        kind = _kind(operand)
        if kind == "bool":
            type_sql, type_params = self.type()
            return f"{type_sql} IS '{'true' if operand else 'false'}'", type_params
        return self.typed(kind, "V = ?", [operand])


def _compare(compare: Compare, body: str) -> _Sql:
    leaf = _Leaf(body, compare.path)
    op, operand = compare.op, compare.operand
    if op == "eq":
        return leaf.equal(operand)
    if op == "in":
        by_kind: dict[str, list[Any]] = {}
        for item in operand:
            kind = _kind(item)
            if kind is not None:
                by_kind.setdefault(kind, []).append(item)
        parts = []
        for kind, items in by_kind.items():
            if kind == "bool":
                parts += [leaf.equal(item) for item in dict.fromkeys(items)]
            else:
                parts.append(leaf.typed(kind, f"V IN ({', '.join('?' * len(items))})", items))
        return _join("OR", parts)
    if op in ("lt", "lte", "gt", "gte"):
        sign = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[op]
        return leaf.typed(_kind(operand), f"V {sign} ?", [operand])
    if op == "between":
        low, high = operand
        kind = _kind(low)
        if kind not in ("text", "number") or _kind(high) != kind:
            return "0", []
        return leaf.typed(kind, "V BETWEEN ? AND ?", [low, high])
    type_sql, type_params = leaf.type()
    if op == "null":
        return f"IFNULL({type_sql}, 'null') = 'null'", type_params
    if op == "empty":
        value_sql, value_params = leaf.value()
        # json_extract gives arrays and objects as minified JSON text.
        empties = [
            (f"IFNULL({type_sql}, 'null') = 'null'", type_params),
            *(
                (f"({type_sql} IS '{kind}' AND {value_sql} = '{text}')", type_params + value_params)
                for kind, text in (("text", ""), ("array", "[]"), ("object", "{}"))
            ),
        ]
        return _join("OR", empties)
    if op == "contains":
        kind = _kind(operand)
        if kind is None:
            return "0", []
        member = (
            f"{type_sql} IS 'array' AND EXISTS (SELECT 1 FROM json_each({body}, ?) AS e WHERE "
            + ("e.type IS ?" if kind == "bool" else "e.type IS 'text' AND e.value = ?" if kind == "text" else f"e.type IN {_NUMBER} AND e.value = ?")
            + ")"
        )
        member_params = type_params + [leaf.path, ("true" if operand else "false") if kind == "bool" else operand]
        if kind != "text":
            return f"({member})", member_params
        substring = leaf.typed("text", "instr(V, ?) > 0", [operand])
        return _join("OR", [substring, (f"({member})", member_params)])
    if _kind(operand) != "text":
        return "0", []
    folded = op in ("icontains", "istarts_with", "iends_with")
    text = operand.lower() if folded else operand
    value = f"{LOWER_FUNCTION}(V)" if folded else "V"
    if op in ("contains", "icontains"):
        return leaf.typed("text", f"instr({value}, ?) > 0", [text])
    if not text:
        return leaf.typed("text", "1", [])
    if op in ("starts_with", "istarts_with"):
        return leaf.typed("text", f"substr({value}, 1, ?) = ?", [len(text), text])
    if op in ("ends_with", "iends_with"):
        return leaf.typed("text", f"substr({value}, ?) = ?", [-len(text), text])
    raise ValueError(f"unknown operator {op!r}")


def _filter(filter: Filter, body: str) -> _Sql:
    if isinstance(filter, Compare):
        sql, params = _compare(filter, body)
        # COALESCE: a condition is 0 or 1, never NULL, so NOT negates it exactly.
        sql = f"COALESCE({sql}, 0)"
        return (f"NOT {sql}", params) if filter.negate else (sql, params)
    parts = [_filter(item, body) for item in filter.filters]
    return _join("AND" if isinstance(filter, And) else "OR", parts)


def where_sql(filter: Filter, variables: Variables, body: str = "body") -> tuple[str, list[Any]]:
    """A WHERE condition (and its parameters) equal to ``evaluate.matches``
    on the JSON text in column ``body``."""
    return _filter(bind(filter, variables), body)


def search_sql(text: str | None, readable: Fields = ALL_FIELDS, body: str = "body") -> tuple[str, list[Any]]:
    """A condition equal to ``evaluate.searched`` (``text`` ``None``: true)."""
    if text is None:
        return "1", []
    keys = ""
    params: list[Any] = [text.lower()]
    if readable != ALL_FIELDS:
        names = sorted(readable)
        if not names:
            return "0", []
        keys = f" AND s.key IN ({', '.join('?' * len(names))})"
        params += names
    return (
        f"EXISTS (SELECT 1 FROM json_each({body}) AS s WHERE s.type IS 'text'"
        f" AND instr({LOWER_FUNCTION}(s.value), ?) > 0{keys})",
        params,
    )


def order_sql(sort: tuple[SortKey, ...], body: str = "body", tiebreak: str = "seq") -> tuple[str, list[Any]]:
    """An ORDER BY list equal to ``evaluate.sort_key`` ordering, ties broken by
    ``tiebreak`` (the creation order) ascending."""
    terms: list[str] = []
    params: list[Any] = []
    for key in sort:
        path = json_path(key.path)
        direction = " DESC" if key.descending else ""
        terms.append(
            f"CASE IFNULL(json_type({body}, ?), 'null') WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1"
            f" WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 ELSE 4 END{direction}"
        )
        terms.append(f"CASE WHEN json_type({body}, ?) IN ('array', 'object') THEN NULL ELSE json_extract({body}, ?) END{direction}")
        params += [path, path, path]
    terms.append(tiebreak)
    return ", ".join(terms), params
