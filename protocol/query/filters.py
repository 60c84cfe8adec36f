"""The Directus filter language, parsed into a small frozen tree.

A filter is what Directus calls "filter rules" (docs.directus.io, Reference >
Filter Rules): ``{"title": {"_eq": "hello"}}``, ``_and`` / ``_or`` lists,
nested field objects (``{"author": {"name": {"_eq": "ann"}}}``) or dotted keys
(``{"author.name": ...}``), and the dynamic variables ``$CURRENT_USER``,
``$CURRENT_ROLE`` and ``$NOW``. The same filters are the item filters of the
permission rules (``satchel.protocol.permissions``), so reads, writes and
deliveries all speak one language.

``parse_filter`` turns the JSON (an object, or the JSON string that
``@directus/sdk`` v26's ``queryToParams`` sends, ``../shared/protocols/
directus.md`` section 3) into ``And`` / ``Or`` / ``Compare`` nodes, or raises
``InvalidQuery``. It refuses, never crashes on: unknown or unsupported
operators, operands of the wrong type, paths that are not field names,
filters nested deeper than ``MAX_DEPTH`` or larger than ``MAX_NODES``.

Variables stay in the tree as ``Variable`` nodes, so one parsed filter (a
permission rule's, a subscription's) serves every user; ``bind`` replaces
them with the values a caller hands in as ``Variables`` - the core reads no
clock, so ``$NOW`` is ``Variables.now_ms``.

What the operators mean is defined once, in ``evaluate``; the supported set:
``_eq _neq _lt _lte _gt _gte _in _nin _null _nnull _empty _nempty _contains
_ncontains _icontains _nicontains _starts_with _nstarts_with _istarts_with
_nistarts_with _ends_with _nends_with _iends_with _niends_with _between
_nbetween``. Each ``_n...`` operator is the exact negation of its positive
form, and ``_null: false`` means ``_nnull: true`` (as in Directus).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Union

import msgspec

from ..errors import LocalProtocolError
from ..records import format_timestamp
from .errors import InvalidQuery

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_PATH_DEPTH",
    "MAX_FILTER_BYTES",
    "OPERATORS",
    "Variable",
    "Variables",
    "NO_VARIABLES",
    "Compare",
    "And",
    "Or",
    "Filter",
    "MATCH_ALL",
    "MATCH_NONE",
    "parse_filter",
    "parse_path",
    "bind",
    "resolve",
    "uses_variable",
    "filter_fields",
    "decode_json_param",
]

#: How deeply the objects of one filter may nest (``{"a": {"_eq": 1}}`` is 2
#: deep; each ``_and``/``_or`` item and each nested field object adds one).
MAX_DEPTH = 10
#: How many comparisons, groups and list items one filter may hold in all.
MAX_NODES = 1000
#: How many segments a dotted field path may have.
MAX_PATH_DEPTH = 10
#: The longest JSON text a filter (or another JSON query parameter) may be.
MAX_FILTER_BYTES = 64 * 1024
_MAX_SEGMENT = 128
_MAX_INT = 2**63 - 1
# One hundred years: far enough for any "$NOW(-N unit)", small enough to format.
_MAX_NOW_OFFSET_MS = 100 * 366 * 86_400_000

#: The operators of a field, as (base operator, negated). The base operators
#: are what ``evaluate`` and the SQL compiler implement.
OPERATORS: dict[str, tuple[str, bool]] = {
    "_eq": ("eq", False),
    "_neq": ("eq", True),
    "_lt": ("lt", False),
    "_lte": ("lte", False),
    "_gt": ("gt", False),
    "_gte": ("gte", False),
    "_in": ("in", False),
    "_nin": ("in", True),
    "_null": ("null", False),
    "_nnull": ("null", True),
    "_empty": ("empty", False),
    "_nempty": ("empty", True),
    "_contains": ("contains", False),
    "_ncontains": ("contains", True),
    "_icontains": ("icontains", False),
    "_nicontains": ("icontains", True),
    "_starts_with": ("starts_with", False),
    "_nstarts_with": ("starts_with", True),
    "_istarts_with": ("istarts_with", False),
    "_nistarts_with": ("istarts_with", True),
    "_ends_with": ("ends_with", False),
    "_nends_with": ("ends_with", True),
    "_iends_with": ("iends_with", False),
    "_niends_with": ("iends_with", True),
    "_between": ("between", False),
    "_nbetween": ("between", True),
}
# Directus operators Satchel knows of and does not offer, with the reason.
_UNSUPPORTED = {
    "_regex": "regular expressions are not supported",
    "_some": "Satchel collections have no relations",
    "_none": "Satchel collections have no relations",
    "_intersects": "geometry is not supported",
    "_nintersects": "geometry is not supported",
    "_intersects_bbox": "geometry is not supported",
    "_nintersects_bbox": "geometry is not supported",
}
_LOGICAL = ("_and", "_or")
# The kind of operand each base operator takes.
_SCALAR_OPS = frozenset({"eq", "contains"})
_ORDERED_OPS = frozenset({"lt", "lte", "gt", "gte"})
_TEXT_OPS = frozenset({"icontains", "starts_with", "istarts_with", "ends_with", "iends_with"})
_FLAG_OPS = frozenset({"null", "empty"})


class Variable(msgspec.Struct, frozen=True, tag="variable"):
    """A dynamic variable left in a parsed filter until ``bind``.

    ``name`` is ``CURRENT_USER`` (``path``: the ``$CURRENT_USER.a.b`` form,
    looked up in ``Variables.user_fields``), ``CURRENT_ROLE`` or ``NOW``
    (``offset_ms``: the ``$NOW(-1 day)`` form).
    """

    name: Literal["CURRENT_USER", "CURRENT_ROLE", "NOW"]
    path: tuple[str, ...] = ()
    offset_ms: int = 0


class Variables(msgspec.Struct, frozen=True):
    """The values a filter's dynamic variables take, handed in by the caller.

    ``user`` is the current user's id (``None``: nobody is signed in), ``role``
    the role's name, ``now_ms`` the clock reading for ``$NOW`` (milliseconds
    since the epoch; a filter that uses ``$NOW`` without one is a caller's
    bug, ``LocalProtocolError``), ``user_fields`` the user's own fields for
    ``$CURRENT_USER.<field>``.
    """

    user: str | None = None
    role: str | None = None
    now_ms: int | None = None
    user_fields: dict[str, Any] = msgspec.field(default_factory=dict)


#: No user, no role, no clock.
NO_VARIABLES = Variables()

#: An operand: a JSON scalar, a variable, or (``_in``, ``_between``) a tuple of them.
Operand = Any


class Compare(msgspec.Struct, frozen=True, tag="compare"):
    """One comparison of the value at ``path`` (object keys, outermost first).

    ``op`` is a base operator (the values of ``OPERATORS``), ``operand`` a
    scalar, a ``Variable``, a tuple of those (``in``, ``between``) or ``None``
    (``null``, ``empty``); ``negate`` turns it into its ``_n...`` form.
    """

    path: tuple[str, ...]
    op: str
    operand: Operand = None
    negate: bool = False


class And(msgspec.Struct, frozen=True, tag="and"):
    """True when every one of ``filters`` is; ``And(())`` is always true."""

    filters: tuple["Filter", ...] = ()


class Or(msgspec.Struct, frozen=True, tag="or"):
    """True when at least one of ``filters`` is; ``Or(())`` is always false."""

    filters: tuple["Filter", ...] = ()


#: A parsed filter.
Filter = Union[And, Or, Compare]
#: The filter that keeps every record (also what an absent or ``{}`` filter parses to).
MATCH_ALL = And(())
#: The filter that keeps no record.
MATCH_NONE = Or(())


# -- parsing --------------------------------------------------------------------

# SQLite's JSON paths cannot quote " or \ in a key; the rest are Directus's syntax.
_SEGMENT = re.compile(r'[^\x00-\x1f\x7f"\\.()*,\[\]]+\Z')
_NOW = re.compile(r"\$NOW(?:\(\s*([+-]?)\s*(\d{1,12})\s*([a-z]+)\s*\))?\Z")
_NOW_UNITS = {
    "millisecond": 1, "milliseconds": 1, "ms": 1,
    "second": 1000, "seconds": 1000, "sec": 1000, "secs": 1000, "s": 1000,
    "minute": 60_000, "minutes": 60_000, "min": 60_000, "mins": 60_000,
    "hour": 3_600_000, "hours": 3_600_000, "h": 3_600_000,
    "day": 86_400_000, "days": 86_400_000, "d": 86_400_000,
    "week": 604_800_000, "weeks": 604_800_000, "w": 604_800_000,
}


def decode_json_param(raw: str | bytes, name: str) -> Any:
    """Decode a query parameter sent as a JSON string (``filter``, ``deep``...)."""
    if len(raw) > MAX_FILTER_BYTES:
        raise InvalidQuery(f'"{name}" is longer than {MAX_FILTER_BYTES} bytes')
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise InvalidQuery(f'"{name}" is not valid JSON') from None


def parse_path(key: object, *, what: str = "field", star: bool = False) -> tuple[str, ...]:
    """Split a dotted field path (``"author.name"``) into validated segments.

    A segment is 1-128 characters, none of them a control character, ``"``,
    ``\\``, ``.``, ``,``, ``(``, ``)``, ``[``, ``]`` or ``*``. With ``star``, the last
    segment may be ``*`` (field lists: ``*``, ``author.*``).
    """
    if not isinstance(key, str) or not key:
        raise InvalidQuery(f"a {what} must be a non-empty string")
    segments = tuple(key.split("."))
    if len(segments) > MAX_PATH_DEPTH:
        raise InvalidQuery(f"the {what} {_shown(key)} is nested more than {MAX_PATH_DEPTH} levels")
    for n, segment in enumerate(segments):
        if star and segment == "*" and n == len(segments) - 1:
            continue
        if len(segment) > _MAX_SEGMENT or not _SEGMENT.match(segment):
            raise InvalidQuery(f"{_shown(key)} is not a valid {what}")
    return segments


def _shown(value: str) -> str:
    # Messages name what was wrong without echoing a huge input back.
    return '"' + (value if len(value) <= 64 else value[:61] + "...") + '"'


class _Budget:
    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0

    def spend(self, count: int = 1) -> None:
        self.nodes += count
        if self.nodes > MAX_NODES:
            raise InvalidQuery(f"the filter has more than {MAX_NODES} conditions")


def parse_filter(raw: object) -> Filter:
    """Parse a Directus filter (an object, a JSON string of one, or ``None``).

    Raises ``InvalidQuery`` for anything that is not a filter Satchel runs.
    ``None`` and ``{}`` give ``MATCH_ALL``.
    """
    if isinstance(raw, (str, bytes)):
        raw = decode_json_param(raw, "filter")
    if raw is None:
        return MATCH_ALL
    return _group(raw, (), 1, _Budget())


def _group(raw: object, prefix: tuple[str, ...], depth: int, budget: _Budget) -> Filter:
    """An object of conditions on the value at ``prefix`` (``()``: the record)."""
    if depth > MAX_DEPTH:
        raise InvalidQuery(f"the filter is nested more than {MAX_DEPTH} levels")
    if not isinstance(raw, dict):
        raise InvalidQuery("a filter must be an object" if not prefix else f"the filter of {_shown('.'.join(prefix))} must be an object")
    parts: list[Filter] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            raise InvalidQuery("filter keys must be strings")
        if key in _LOGICAL:
            parts.append(_logical(key, value, prefix, depth, budget))
        elif prefix and key.startswith("_"):
            parts.append(_comparison(key, value, prefix, budget))
        elif key in OPERATORS or key in _UNSUPPORTED:
            raise InvalidQuery(f'the operator "{key}" needs a field: {{"field": {{"{key}": ...}}}}')
        else:
            path = prefix + parse_path(key)
            if len(path) > MAX_PATH_DEPTH:
                raise InvalidQuery(f"a field path is nested more than {MAX_PATH_DEPTH} levels")
            if isinstance(value, dict):
                parts.append(_group(value, path, depth + 1, budget))
            else:
                # Directus's shorthand: {"field": value} is {"field": {"_eq": value}}.
                parts.append(_comparison("_eq", value, path, budget))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _logical(key: str, value: object, prefix: tuple[str, ...], depth: int, budget: _Budget) -> Filter:
    if not isinstance(value, list):
        raise InvalidQuery(f'"{key}" takes a list of filters')
    budget.spend()
    items = tuple(_group(item, prefix, depth + 1, budget) for item in value)
    return And(items) if key == "_and" else Or(items)


def _comparison(key: str, operand: object, path: tuple[str, ...], budget: _Budget) -> Compare:
    if key not in OPERATORS:
        if key in _UNSUPPORTED:
            raise InvalidQuery(f'the filter operator "{key}" is not supported: {_UNSUPPORTED[key]}')
        raise InvalidQuery(f"unknown filter operator {_shown(key)}")
    op, negate = OPERATORS[key]
    budget.spend()
    where = f'"{key}" on {_shown(".".join(path))}'
    if op in _FLAG_OPS:
        flag = _flag(operand, where)
        return Compare(path, op, None, negate if flag else not negate)
    if op in ("in", "between"):
        items = operand.split(",") if isinstance(operand, str) else operand
        if not isinstance(items, list):
            raise InvalidQuery(f"{where} takes a list")
        if op == "between" and len(items) != 2:
            raise InvalidQuery(f"{where} takes a list of two values")
        budget.spend(len(items))
        kinds = "ordered" if op == "between" else "scalar"
        return Compare(path, op, tuple(_operand(item, kinds, where) for item in items), negate)
    kinds = "scalar" if op in _SCALAR_OPS else "ordered" if op in _ORDERED_OPS else "text"
    return Compare(path, op, _operand(operand, kinds, where), negate)


def _flag(operand: object, where: str) -> bool:
    if isinstance(operand, bool):
        return operand
    if operand in ("true", "false"):  # REST query strings carry booleans as text
        return operand == "true"
    raise InvalidQuery(f"{where} takes true or false")


def _operand(value: object, kinds: str, where: str) -> Any:
    """Validate one operand: ``scalar`` (string, number, boolean), ``ordered``
    (string or number) or ``text`` (string); a string may be a variable."""
    if isinstance(value, str):
        variable = _variable(value)
        return value if variable is None else variable
    if value is None:
        raise InvalidQuery(f"{where} cannot compare with null; use _null")
    if isinstance(value, bool):
        if kinds == "scalar":
            return value
    elif isinstance(value, int):
        if kinds != "text":
            if abs(value) > _MAX_INT:
                raise InvalidQuery(f"{where}: numbers must fit in 64 bits")
            return value
    elif isinstance(value, float):
        if kinds != "text":
            if not math.isfinite(value):
                raise InvalidQuery(f"{where}: numbers must be finite")
            return value
    wanted = {"scalar": "a string, number or boolean", "ordered": "a string or number", "text": "a string"}[kinds]
    raise InvalidQuery(f"{where} takes {wanted}")


def _variable(text: str) -> Variable | None:
    """The variable ``text`` names, ``None`` for a plain string."""
    if not text.startswith(("$CURRENT_", "$NOW")):
        return None
    if text == "$CURRENT_USER":
        return Variable("CURRENT_USER")
    if text.startswith("$CURRENT_USER."):
        return Variable("CURRENT_USER", parse_path(text[len("$CURRENT_USER."):], what="$CURRENT_USER field"))
    if text == "$CURRENT_ROLE":
        return Variable("CURRENT_ROLE")
    match = _NOW.match(text)
    if match is not None:
        sign, amount, unit = match.groups()
        if amount is None:
            return Variable("NOW")
        if unit not in _NOW_UNITS:
            raise InvalidQuery(f"{_shown(text)}: $NOW adjusts by milliseconds, seconds, minutes, hours, days or weeks")
        offset = int(amount) * _NOW_UNITS[unit] * (-1 if sign == "-" else 1)
        if abs(offset) > _MAX_NOW_OFFSET_MS:
            raise InvalidQuery(f"{_shown(text)} is too far from now")
        return Variable("NOW", offset_ms=offset)
    raise InvalidQuery(f"unknown dynamic variable {_shown(text)}: use $CURRENT_USER, $CURRENT_ROLE or $NOW")


# -- variables --------------------------------------------------------------------


def resolve(variable: Variable, variables: Variables) -> str | int | float | bool | None:
    """The value of one variable; ``None`` when it has none (nobody signed
    in, a missing user field, a field that is not a JSON scalar)."""
    if variable.name == "CURRENT_ROLE":
        return variables.role
    if variable.name == "NOW":
        if variables.now_ms is None:
            raise LocalProtocolError("a filter uses $NOW but no now_ms was handed in")
        return format_timestamp(variables.now_ms + variable.offset_ms)
    if not variable.path:
        return variables.user
    value: Any = variables.user_fields
    for segment in variable.path:
        if not isinstance(value, dict) or segment not in value:
            return None
        value = value[segment]
    if isinstance(value, (str, bool, float)) or isinstance(value, int) and abs(value) <= _MAX_INT:
        return value
    return None


def _bind_operand(operand: Any, variables: Variables) -> Any:
    if isinstance(operand, Variable):
        return resolve(operand, variables)
    if isinstance(operand, tuple):
        return tuple(_bind_operand(item, variables) for item in operand)
    return operand


def bind(filter: Filter, variables: Variables) -> Filter:
    """``filter`` with every ``Variable`` replaced by its value (which may be ``None``)."""
    if isinstance(filter, Compare):
        if filter.operand is None or not uses_variable(filter):
            return filter
        return Compare(filter.path, filter.op, _bind_operand(filter.operand, variables), filter.negate)
    items = tuple(bind(item, variables) for item in filter.filters)
    return And(items) if isinstance(filter, And) else Or(items)


def _operand_names(operand: Any) -> set[str]:
    if isinstance(operand, Variable):
        return {operand.name if not operand.path else "CURRENT_USER."}
    if isinstance(operand, tuple):
        return set().union(*(_operand_names(item) for item in operand))
    return set()


def uses_variable(filter: Filter, name: str | None = None) -> bool:
    """Whether ``filter`` holds a variable (named ``name``, if given:
    ``"CURRENT_USER"``, ``"CURRENT_USER."`` for the field form,
    ``"CURRENT_ROLE"``, ``"NOW"``)."""
    if isinstance(filter, Compare):
        names = _operand_names(filter.operand)
        return bool(names) if name is None else name in names
    return any(uses_variable(item, name) for item in filter.filters)


def filter_fields(filter: Filter) -> frozenset[str]:
    """The top-level field names ``filter`` looks at (for permission checks)."""
    if isinstance(filter, Compare):
        return frozenset(filter.path[:1])
    return frozenset().union(*(filter_fields(item) for item in filter.filters))
