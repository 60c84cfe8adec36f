"""The Directus query and filter language, implemented once for every protocol.

Directus's ``query`` (docs.directus.io, Reference > Query and Reference >
Filter Rules; ``../shared/protocols/directus.md`` sections 2-3 for what the
websocket and ``@directus/sdk`` send) selects the records of a collection:
``fields``, ``filter``, ``search``, ``sort``, ``limit``, ``offset``, ``page``,
``meta``. The same filter syntax is the item filter of Satchel's permission
rules (``satchel.protocol.permissions``).

Three steps, each pure:

- ``parse_query(raw)`` / ``parse_filter(raw)`` validate what a peer sent (an
  object, or the REST-style strings of SDK v26) into a frozen ``Query`` /
  ``Filter``, or raise ``InvalidQuery`` (Directus code ``INVALID_QUERY``).
- ``matches(filter, record, variables)`` and ``apply(query, records, ...)``
  are the reference semantics (``evaluate`` spells out every type rule).
- The ``QueryRecords`` storage operation runs a query inside a store;
  ``sql`` compiles it for SQLite, and the conformance suite checks that
  every store answers exactly what ``apply`` answers.
"""

from .errors import InvalidQuery
from .evaluate import ALL_FIELDS, MISSING, Fields, QueryResult, apply, compare, lookup, matches, project, redact, searched, sort_key
from .filters import (
    MATCH_ALL,
    MATCH_NONE,
    MAX_DEPTH,
    MAX_FILTER_BYTES,
    MAX_NODES,
    MAX_PATH_DEPTH,
    NO_VARIABLES,
    OPERATORS,
    And,
    Compare,
    Filter,
    Or,
    Variable,
    Variables,
    bind,
    filter_fields,
    parse_filter,
    parse_path,
    resolve,
    uses_variable,
)
from .parse import DEFAULT_LIMIT, META, Query, SortKey, parse_fields, parse_query, parse_sort, query_fields

__all__ = [
    # parsing
    "parse_query",
    "parse_filter",
    "parse_fields",
    "parse_sort",
    "parse_path",
    "InvalidQuery",
    "Query",
    "SortKey",
    "Filter",
    "And",
    "Or",
    "Compare",
    "MATCH_ALL",
    "MATCH_NONE",
    "Variable",
    "Variables",
    "NO_VARIABLES",
    "OPERATORS",
    "DEFAULT_LIMIT",
    "META",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_PATH_DEPTH",
    "MAX_FILTER_BYTES",
    # evaluation
    "matches",
    "apply",
    "compare",
    "lookup",
    "sort_key",
    "searched",
    "redact",
    "project",
    "bind",
    "resolve",
    "uses_variable",
    "filter_fields",
    "query_fields",
    "QueryResult",
    "ALL_FIELDS",
    "Fields",
    "MISSING",
]
