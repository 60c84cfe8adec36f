"""A Directus ``query``, parsed once into a validated, frozen ``Query``.

The parameters are those of Directus's global query (docs.directus.io,
Reference > Query): ``fields``, ``filter``, ``search``, ``sort``, ``limit``,
``offset``, ``page``, ``meta``. They arrive in two forms, and both are
accepted (``../shared/protocols/directus.md`` sections 2 and 3): objects, as
``@directus/sdk`` v20 and hand-written clients send them, and the REST-style
strings of v26's ``queryToParams`` - ``fields: "id,title"``, ``sort:
"-date,title"``, ``limit: "5"``, and ``filter``, ``deep``, ``alias``,
``aggregate`` as JSON strings. Directus's core runs every websocket query
through the same ``sanitizeQuery`` as its REST API, so this parser serves the
websocket protocols and the items API alike.

What Satchel stores is collections of JSON records without relations, so:

- ``fields``: ``*`` (every top-level field), top-level names, and dotted
  paths into nested JSON objects (``author.name``; ``author.*`` is the
  whole ``author``), at most ``MAX_PATH_DEPTH`` deep. Absent or empty:
  ``*``.
- ``deep``, ``alias``, ``aggregate``, ``groupBy`` / ``group`` (relations,
  renaming, aggregation) are refused unless empty; ``export``, ``version``
  and ``versionRaw`` are refused; ``backlink`` (which only changes relational
  fields) is ignored. Any other key is refused as unknown.
- ``limit``: ``-1`` means all; when absent, ``default_limit`` applies
  (Directus's ``QUERY_LIMIT_DEFAULT`` is 100). ``page`` (from 1) sets
  ``offset`` to ``limit * (page - 1)`` and wins over ``offset``, as in
  Directus; without a limit it changes nothing.
- ``meta``: ``total_count``, ``filter_count``, ``*`` (both), as a comma
  string or a list.

Every refusal is an ``InvalidQuery`` (code ``INVALID_QUERY``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import msgspec

from .errors import InvalidQuery
from .filters import MATCH_ALL, Filter, decode_json_param, filter_fields, parse_filter, parse_path

__all__ = [
    "DEFAULT_LIMIT",
    "META",
    "MAX_FIELDS",
    "MAX_SORT_KEYS",
    "MAX_SEARCH",
    "SortKey",
    "Query",
    "parse_query",
    "parse_fields",
    "parse_sort",
    "query_fields",
]

#: Directus's QUERY_LIMIT_DEFAULT: the page size when a query names no limit.
DEFAULT_LIMIT = 100
#: The counts a query's ``meta`` may ask for.
META = ("filter_count", "total_count")
#: The most entries a ``fields`` list may have.
MAX_FIELDS = 256
#: The most keys a ``sort`` may have.
MAX_SORT_KEYS = 16
#: The longest ``search`` text.
MAX_SEARCH = 1000
_MAX_INDEX = 2**53
_INTEGER = re.compile(r"-?[0-9]{1,16}\Z")


class SortKey(msgspec.Struct, frozen=True):
    """One key of a sort: the field ``path`` and its direction."""

    path: tuple[str, ...]
    descending: bool = False


class Query(msgspec.Struct, frozen=True):
    """A validated query. Built by ``parse_query``, or directly in code.

    ``fields`` are parsed paths (``("*",)`` is every top-level field),
    ``filter`` a parsed filter, ``sort`` its keys in order, ``limit`` the page
    size (``None``: all), ``offset`` how many to skip, ``search`` the text to
    look for (``None``: no search), ``meta`` the counts to compute (a sorted
    subset of ``META``). A ``Query()`` built in code has no limit.
    """

    fields: tuple[tuple[str, ...], ...] = (("*",),)
    filter: Filter = MATCH_ALL
    sort: tuple[SortKey, ...] = ()
    limit: int | None = None
    offset: int = 0
    search: str | None = None
    meta: tuple[str, ...] = ()


def _split(value: object, name: str) -> list[str]:
    """A list of strings from a comma string or a list, entries stripped, empties dropped."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidQuery(f'"{name}" must be a string or a list of strings')
    if not all(isinstance(item, str) for item in items):
        raise InvalidQuery(f'"{name}" must be a string or a list of strings')
    return [item.strip() for item in items if item.strip()]


def parse_fields(value: object) -> tuple[tuple[str, ...], ...]:
    """``fields`` as parsed paths: ``"id,title"``, ``["id", "author.name"]``, ``"*"``."""
    items = _split(value, "fields")
    if len(items) > MAX_FIELDS:
        raise InvalidQuery(f'"fields" has more than {MAX_FIELDS} entries')
    paths = []
    for item in items:
        path = parse_path(item, what="field", star=True)
        if path[-1] == "*" and len(path) > 1:
            path = path[:-1]  # "author.*" is the whole author: there are no relations below it
        paths.append(path)
    return tuple(paths) or (("*",),)


def parse_sort(value: object) -> tuple[SortKey, ...]:
    """``sort`` as keys: ``"-date,title"`` or ``["-date", "title"]``."""
    items = _split(value, "sort")
    if len(items) > MAX_SORT_KEYS:
        raise InvalidQuery(f'"sort" has more than {MAX_SORT_KEYS} keys')
    keys = []
    for item in items:
        if item == "?":
            raise InvalidQuery("random sort (?) is not supported")
        descending = item.startswith("-")
        keys.append(SortKey(parse_path(item[1:] if descending else item, what="sort field"), descending))
    return tuple(keys)


def _integer(value: object, name: str, minimum: int) -> int:
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        value = int(value.strip())
    if type(value) is not int:
        raise InvalidQuery(f'"{name}" must be an integer')
    if value < minimum:
        raise InvalidQuery(f'"{name}" must be at least {minimum}')
    if value > _MAX_INDEX:
        raise InvalidQuery(f'"{name}" is too large')
    return value


def _meta(value: object) -> tuple[str, ...]:
    names = set(_split(value, "meta"))
    if "*" in names:
        names = (names - {"*"}) | set(META)
    unknown = names - set(META)
    if unknown:
        raise InvalidQuery(f'"meta" may ask for total_count and filter_count, not {min(unknown)[:64]!r}')
    return tuple(sorted(names))


def _empty(value: object, name: str) -> bool:
    """Whether an unsupported JSON parameter is empty (and so harmless)."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):  # queryToParams sends these as JSON strings
            value = decode_json_param(text, name)
        else:
            return not text
    return value is None or value == {} or value == []


_UNSUPPORTED = {
    "deep": "nested queries need relations, which Satchel collections do not have",
    "alias": "field aliases are not supported",
    "aggregate": "aggregation is not supported",
    "groupBy": "grouping is not supported",
    "group": "grouping is not supported",
}
_REFUSED = {
    "export": "exporting is not supported",
    "version": "content versions are not supported",
    "versionRaw": "content versions are not supported",
}
_IGNORED = frozenset({"backlink"})


def parse_query(raw: object, *, default_limit: int | None = DEFAULT_LIMIT, max_limit: int | None = None) -> Query:
    """Parse a Directus query (an object, a JSON string of one, or ``None``).

    ``default_limit`` is the limit when the query names none (``None``: all);
    ``max_limit`` the largest limit accepted (``None``: no bound; a query
    asking for all then exceeds any bound). Raises ``InvalidQuery``.
    """
    if isinstance(raw, (str, bytes)):
        raw = decode_json_param(raw, "query")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidQuery("a query must be an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or key in _IGNORED:
            continue
        if key in _UNSUPPORTED:
            if not _empty(value, key):
                raise InvalidQuery(f'"{key}" is not supported: {_UNSUPPORTED[key]}')
        elif key in _REFUSED:
            raise InvalidQuery(f'"{key}" is not supported: {_REFUSED[key]}')
        elif key in ("fields", "filter", "search", "sort", "limit", "offset", "page", "meta"):
            values[key] = value
        else:
            shown = key[:64] if isinstance(key, str) else repr(key)[:64]
            raise InvalidQuery(f'unknown query parameter "{shown}"')

    limit = default_limit
    if "limit" in values:
        asked = _integer(values["limit"], "limit", -1)
        limit = None if asked == -1 else asked
    if max_limit is not None and (limit is None or limit > max_limit):
        raise InvalidQuery(f'"limit" may be at most {max_limit}')
    offset = _integer(values["offset"], "offset", 0) if "offset" in values else 0
    if "page" in values:
        page = _integer(values["page"], "page", 1)
        if limit is not None:
            offset = limit * (page - 1)
    search = values.get("search")
    if search is not None:
        if not isinstance(search, str):
            raise InvalidQuery('"search" must be a string')
        if len(search) > MAX_SEARCH:
            raise InvalidQuery(f'"search" is longer than {MAX_SEARCH} characters')
        search = search or None
    return Query(
        fields=parse_fields(values["fields"]) if "fields" in values else (("*",),),
        filter=parse_filter(values["filter"]) if "filter" in values else MATCH_ALL,
        sort=parse_sort(values["sort"]) if "sort" in values else (),
        limit=limit,
        offset=offset,
        search=search,
        meta=_meta(values["meta"]) if "meta" in values else (),
    )


def query_fields(query: Query) -> frozenset[str]:
    """The top-level fields ``query`` names in its filter, sort and field list
    (``*`` not included): what a permission check must find readable."""
    named = {path[0] for path in query.fields if path != ("*",)}
    named.update(key.path[0] for key in query.sort)
    return frozenset(named) | filter_fields(query.filter)

