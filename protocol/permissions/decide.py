"""Pure decisions: may this user do this, on this item, with these fields?

Every protocol asks the same functions, so every protocol obeys the same
rules (issue 11 parts 1 and 2):

- ``can`` answers yes or no for an action, on an item or on the collection.
- ``readable_fields`` / ``writable_fields`` and ``redact`` cut records to
  what a user may see. A readable record always shows its ``_id``: which
  item it is is not content (Directus shows primary keys too).
- ``read_filter`` is the rule's item filter, to AND into a read so that it
  is pushed down into the store; ``read_query`` builds that read
  (``QueryRecords``) and refuses a query that filters, sorts or selects on
  fields the user may not read (Directus answers those with FORBIDDEN,
  since a filter on a hidden field would reveal its value).
- ``check_write`` decides a create, an update or a delete from the item
  before and after it (see its docstring).
- ``delivery_groups`` decides, for one change and many subscribers, who
  receives which rendering, so that a renderer encodes once per group
  (Directus re-reads every event with each subscriber's permissions,
  ``../shared/protocols/directus.md`` sections 1b and 2).

``now_ms`` is the clock reading for rules that use ``$NOW``; the core reads
no clock, so it is handed in (omit it only when no rule uses ``$NOW``).
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Literal, Union

import msgspec

from ..operations import QueryRecords
from ..query import MATCH_ALL, MATCH_NONE, Filter, Query, Variables, apply, matches, query_fields, redact, uses_variable
from ..query.evaluate import ALL_FIELDS, matches_bound
from ..records import RESERVED_FIELDS
from .rules import Accountability, Forbidden, PermissionAction, Rule, RuleSet

__all__ = [
    "FieldSet",
    "variables_for",
    "can",
    "readable_fields",
    "writable_fields",
    "redact",
    "read_filter",
    "read_query",
    "changed_fields",
    "check_write",
    "Subscriber",
    "DeliveryGroup",
    "delivery_groups",
]

#: Top-level field names, or ``"*"`` for all of them.
FieldSet = Union[Literal["*"], frozenset[str]]

_encode = msgspec.json.encode


def variables_for(who: Accountability, now_ms: int | None = None, user_fields: dict[str, Any] | None = None) -> Variables:
    """The values the variables of a rule (or of a query, which may also use
    ``$CURRENT_USER.<field>``: ``user_fields``) take for ``who``."""
    return Variables(user=who.user, role=who.effective_role, now_ms=now_ms, user_fields=user_fields or {})


def can(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    action: PermissionAction,
    item: dict[str, Any] | None = None,
    *,
    now_ms: int | None = None,
) -> bool:
    """Whether ``who`` may do ``action`` on ``collection`` - on ``item`` when
    given (its filter must admit the item), else on some item of it."""
    rule = rules.rule(who, collection, action)
    if rule is None:
        return False
    if item is None:
        return True
    if rule.constant:  # most rules: nothing to bind per call
        return matches_bound(rule.filter, item)
    return matches(rule.filter, item, variables_for(who, now_ms))


def _fields(rule: Rule | None, always: frozenset[str]) -> FieldSet:
    if rule is None:
        return frozenset()
    return ALL_FIELDS if rule.fields == ALL_FIELDS else rule.fields | always


def readable_fields(rules: RuleSet, who: Accountability, collection: str) -> FieldSet:
    """The fields ``who`` may read in ``collection`` (``_id`` included);
    ``frozenset()`` when it may read nothing there."""
    return _fields(rules.rule(who, collection, "read"), frozenset({"_id"}))


def writable_fields(rules: RuleSet, who: Accountability, collection: str, action: Literal["create", "update"]) -> FieldSet:
    """The fields ``who`` may set by ``action`` in ``collection``;
    ``frozenset()`` when it may not do it at all."""
    return _fields(rules.rule(who, collection, action), frozenset())


def read_filter(rules: RuleSet, who: Accountability, collection: str) -> Filter:
    """The item filter of ``who``'s reads of ``collection``, to AND into a
    read query (``MATCH_NONE`` when it may read nothing)."""
    rule = rules.rule(who, collection, "read")
    return MATCH_NONE if rule is None else rule.filter


def read_query(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    query: Query,
    *,
    now_ms: int | None = None,
    user_fields: dict[str, Any] | None = None,
) -> QueryRecords:
    """The ``QueryRecords`` that runs ``query`` as ``who``: the rule's filter
    and readable fields pushed down with it (``user_fields``: the values of
    the query's ``$CURRENT_USER.<field>``).

    Raises ``Forbidden`` when ``who`` may not read ``collection``, or when the
    query's filter, sort or field list names a field it may not read.
    """
    rule = rules.rule(who, collection, "read")
    if rule is None:
        raise Forbidden()
    readable = _fields(rule, frozenset({"_id"}))
    if readable != ALL_FIELDS:
        hidden = sorted(query_fields(query) - readable)
        if hidden:
            raise Forbidden(f"You don't have permission to access field \"{hidden[0][:64]}\".")
    return QueryRecords(
        collection,
        query,
        variables_for(who, now_ms, user_fields),
        rule.filter,
        ALL_FIELDS if readable == ALL_FIELDS else tuple(sorted(readable)),
    )


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any]) -> frozenset[str]:
    """The top-level fields a write changes: added, removed, or given another
    JSON value (``1`` and ``1.0``, ``1`` and ``true`` differ). The fields the
    server owns (``_id``, ``createdAt``, ``updatedAt``, ``__v``) never count."""
    before = before or {}
    names = (before.keys() | after.keys()) - RESERVED_FIELDS
    return frozenset(
        name
        for name in names
        if name not in before or name not in after or _encode(before[name]) != _encode(after[name])
    )


def check_write(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    now_ms: int | None = None,
) -> None:
    """Decide a write by what it does; return if allowed, else raise ``Forbidden``.

    - create (``before`` is ``None``): the ``create`` rule must admit the new
      item (``after``, as it will be stored) and cover every field it sets.
    - update (both given; Backpack's patch and overwrite, Directus's update):
      the ``update`` rule must admit the item as it is (``before``: no
      changing others' items) and as it will be (``after``: no giving an
      item away, e.g. by rewriting its ``userId``), and cover every field
      the write changes (``changed_fields``: a PUT that drops a field
      changes it).
    - delete (``after`` is ``None``): the ``delete`` rule must admit ``before``.
    """
    if before is None and after is None:
        raise ValueError("a write has an item before it or after it")
    action: PermissionAction = "create" if before is None else "delete" if after is None else "update"
    rule = rules.rule(who, collection, action)
    if rule is None:
        raise Forbidden()
    variables = variables_for(who, now_ms)
    for item in (before, after):
        if item is not None and not matches(rule.filter, item, variables):
            raise Forbidden()
    if after is not None and rule.fields != ALL_FIELDS:
        denied = sorted(changed_fields(before, after) - rule.fields)
        if denied:
            raise Forbidden(f"You don't have permission to write field \"{denied[0][:64]}\".")


# -- delivery ---------------------------------------------------------------------


class Subscriber(msgspec.Struct, frozen=True):
    """One subscriber of a change: a ``key`` of the caller's choice (a
    connection id, a subscription id), who it is, and its subscription's
    query (its filter, search and fields apply; sort, limit and meta do not
    to a single record)."""

    key: Hashable
    who: Accountability
    query: Query | None = None


class DeliveryGroup(msgspec.Struct, frozen=True):
    """Subscribers that receive the same rendering of a change: ``record`` is
    what they may see of it (redacted and cut to their query's fields), to be
    encoded once for all of ``members`` (their keys, in the order given)."""

    record: dict[str, Any]
    members: tuple[Hashable, ...]


_WHOLE = Query()
_EVERY_FIELD = _WHOLE.fields


def delivery_groups(
    rules: RuleSet,
    collection: str,
    record: dict[str, Any],
    subscribers: Iterable[Subscriber],
    *,
    now_ms: int | None = None,
) -> list[DeliveryGroup]:
    """Who receives ``record`` (a created or updated item of ``collection``), and what.

    A subscriber receives it when its read rule admits the record and its
    query's filter and search do, and gets only its readable fields (and
    its query's fields). Subscribers that may not read it are in no group.
    The decision is made once per distinct (role, query) - once per user
    only where the rule or query uses ``$CURRENT_USER`` - and the groups are
    formed by identical renderings, so a renderer encodes once per group,
    not once per subscriber. Groups come in order of their first member.
    """
    decided: dict[tuple[Any, ...], bytes | None] = {}
    renderings: dict[bytes, dict[str, Any]] = {}
    members: dict[bytes, list[Hashable]] = {}
    per_user: dict[tuple[str, Query], bool] = {}
    for subscriber in subscribers:
        who = subscriber.who
        query = subscriber.query if subscriber.query is not None else _WHOLE
        role = who.effective_role
        user_dependent = per_user.get((role, query))
        if user_dependent is None:
            rule = rules.rule(who, collection, "read")
            user_dependent = (rule is not None and rule.per_user) or uses_variable(query.filter, "CURRENT_USER") or uses_variable(query.filter, "CURRENT_USER.")
            per_user[(role, query)] = user_dependent
        decision_key = (role, query, who.user if user_dependent else None)
        if decision_key not in decided:
            decided[decision_key] = _render(rules, collection, record, who, query, now_ms, renderings)
        encoded = decided[decision_key]
        if encoded is not None:
            members.setdefault(encoded, []).append(subscriber.key)
    return [DeliveryGroup(renderings[encoded], tuple(keys)) for encoded, keys in members.items()]


def _render(
    rules: RuleSet,
    collection: str,
    record: dict[str, Any],
    who: Accountability,
    query: Query,
    now_ms: int | None,
    renderings: dict[bytes, dict[str, Any]],
) -> bytes | None:
    rule = rules.rule(who, collection, "read")
    if rule is None:
        return None
    readable = _fields(rule, frozenset({"_id"}))
    if query.filter == MATCH_ALL and query.search is None and query.fields == _EVERY_FIELD:
        # The whole item (most subscriptions): the rule's filter and fields
        # alone, as ``apply`` would decide them, without its general machinery.
        if rule.constant:
            admitted = matches_bound(rule.filter, record)
        else:
            admitted = matches(rule.filter, record, variables_for(who, now_ms))
        if not admitted:
            return None
        shown = redact(record, readable)
    else:
        single = msgspec.structs.replace(query, limit=None, offset=0, sort=(), meta=())
        found = apply(single, [record], variables_for(who, now_ms), rule.filter, readable).records
        if not found:
            return None
        shown = found[0]
    encoded = _encode(shown)
    renderings.setdefault(encoded, shown)
    return encoded

