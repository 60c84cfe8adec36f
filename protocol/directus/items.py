"""Directus items on Satchel's one data model: Backpack's collections and records.

Directus's ``ItemsService`` (readByQuery, readOne, readMany, createOne,
createMany, updateOne, updateMany, updateBatch, updateByQuery, deleteOne,
deleteMany, deleteByQuery) as actions, under the one rule set
(``satchel.protocol.permissions``). The items REST API (``rest``) answers
with them, and so can the websocket protocols' ``items`` / ``get`` / ``post``
/ ``patch`` / ``delete`` messages: every function takes the rules, who is
asking and plain values, and raises ``DirectusError`` / ``Forbidden`` /
``InvalidQuery`` (each with its Directus code) for the caller to render.

One data model (BRIEF "One data model"; issue 11 part 7). A Directus item
*is* a Backpack record: the same collection, the same stored dict, the same
``Change`` per write (through ``satchel.protocol.collections``), so a record
created here reaches Backpack websockets and a Backpack record is an item
here. **How ``id`` maps to ``_id``:**

- In every answer the record's ``_id`` (24 hex digits) is shown as ``id``,
  first; its other fields - ``createdAt``, ``updatedAt`` and ``__v``
  included - are shown as they are. A stored field that is itself named
  ``id`` (a Backpack client may write one) is not shown: ``id`` is the key.
- In queries - ``fields``, ``filter``, ``sort`` - ``id`` (and ``_id``) name
  the key: ``fields=id,title``, ``filter={"id":{"_in":[...]}}``, ``sort=-id``
  (ids sort by creation second).
- In payloads ``id`` and ``_id`` are the key, never data: a create ignores
  them (the server makes the id, as Backpack's does); a batch update names
  each item by its ``id``; the server-owned ``createdAt``, ``updatedAt`` and
  ``__v`` are ignored as in Backpack.
- A key that is not 24 hex digits names no item.

Writes keep Backpack's meaning: an update merges top-level fields and a
``null`` value removes the field (Backpack's PATCH; Directus would store a
null) - so a Backpack client and a Directus client agree on what is stored.

As in Directus, an item that does not exist and one the rules hide answer
alike (``FORBIDDEN``), a collection that may not be one - ``users``,
``uploads``, ``sessions``, any ``_``-prefixed or ``directus_*`` name, any
name Backpack would refuse - answers ``FORBIDDEN`` too, and a collection
with no records yet is an empty collection. A batch is checked whole
before any of it is written: a batch with one forbidden item writes
nothing. It is not a transaction against concurrent writers, though (each
item is its own write, each checked again as it is made).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import msgspec

from .. import collections as data
from ..changes import Change
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..operations import Action, GetRecord, QueryRecords, StoredRecord
from ..permissions import Accountability, Forbidden, RuleSet, check_write, read_query
from ..query import And, Compare, Filter, Or, Query, QueryResult, SortKey, apply
from ..records import format_timestamp, is_object_id, new_record, patch_record
from .errors import forbidden, invalid_payload

__all__ = [
    "ORIGIN_REST",
    "SYSTEM_PREFIX",
    "KEY",
    "check_collection",
    "to_item",
    "item_data",
    "stored_query",
    "stored_filter",
    "item_keys",
    "read_items",
    "read_item",
    "read_back",
    "create_items",
    "update_items",
    "update_batch",
    "delete_items",
    "query_keys",
]

#: ``Change.origin`` of writes made through the items REST API.
ORIGIN_REST = "directus-http"
#: What Directus's own collections start with; none is a Satchel collection.
SYSTEM_PREFIX = "directus_"
#: The name of an item's key in Directus answers and queries.
KEY = "id"
_STORED_KEY = "_id"
_KEY_NAMES = frozenset((KEY, _STORED_KEY))


def check_collection(name: object) -> str:
    """``name`` if it is a collection the items API may reach, else
    ``FORBIDDEN`` (Directus's answer for a collection that does not exist)."""
    if not isinstance(name, str) or name.lower().startswith(SYSTEM_PREFIX) or data.is_hidden_collection(name):
        raise forbidden()
    try:
        return data.validate_collection_name(name)
    except RemoteProtocolError:
        raise forbidden() from None


# -- the id mapping ---------------------------------------------------------------


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record as Directus shows it: ``_id`` as ``id``, first; a
    stored ``id`` field is not shown."""
    item: dict[str, Any] = {}
    if _STORED_KEY in record:
        item[KEY] = record[_STORED_KEY]
    for name, value in record.items():
        if name not in _KEY_NAMES:
            item[name] = value
    return item


def item_data(payload: object) -> dict[str, Any]:
    """The fields a payload writes (``id`` / ``_id`` dropped), or ``INVALID_PAYLOAD``."""
    if not isinstance(payload, dict):
        raise invalid_payload("an item must be a JSON object")
    return {name: value for name, value in payload.items() if name not in _KEY_NAMES}


def _stored_path(path: tuple[str, ...]) -> tuple[str, ...]:
    return (_STORED_KEY, *path[1:]) if path and path[0] == KEY else path


def stored_filter(filter: Filter) -> Filter:
    """``filter`` with ``id`` read as the stored ``_id``."""
    if isinstance(filter, Compare):
        path = _stored_path(filter.path)
        return filter if path == filter.path else msgspec.structs.replace(filter, path=path)
    items = tuple(stored_filter(item) for item in filter.filters)
    return And(items) if isinstance(filter, And) else Or(items)


def stored_query(query: Query) -> Query:
    """``query`` with ``id`` read as the stored ``_id`` in its fields, filter and sort."""
    return msgspec.structs.replace(
        query,
        fields=tuple(_stored_path(path) for path in query.fields),
        filter=stored_filter(query.filter),
        sort=tuple(SortKey(_stored_path(key.path), key.descending) for key in query.sort),
    )


def item_keys(keys: object, max_batch: int) -> list[str]:
    """A list of keys from a payload, duplicates dropped, or ``INVALID_PAYLOAD``.
    Keys that name no item stay (they are refused as forbidden when used)."""
    if not isinstance(keys, list):
        raise invalid_payload('"keys" must be a list of item ids')
    if len(keys) > max_batch:
        raise invalid_payload(f"a request may name at most {max_batch} items")
    for key in keys:
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise invalid_payload("item ids are strings")
    return list(dict.fromkeys(str(key) for key in keys))


# -- reads ---------------------------------------------------------------------------


def _single(query: Query) -> Query:
    # What a read of given items keeps of a query: fields and filter (and the
    # sort, for many); never a page.
    return msgspec.structs.replace(query, limit=None, offset=0, meta=())


def _by_key(key: str) -> Filter:
    return Compare((_STORED_KEY,), "eq", key)


def read_items(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    query: Query,
    *,
    now_ms: int,
    user_fields: dict[str, Any] | None = None,
) -> Action[QueryResult]:
    """readByQuery: the items ``query`` selects (Directus names, ``query`` as
    the client wrote it), with the rule's filter and readable fields pushed
    into the store. ``FORBIDDEN`` when ``who`` may not read the collection or
    the query names a field it may not read."""
    operation = read_query(rules, who, check_collection(collection), stored_query(query), now_ms=now_ms,
                           user_fields=user_fields)
    result: QueryResult = yield operation
    return msgspec.structs.replace(result, records=[to_item(record) for record in result.records])


def _visible(operation: QueryRecords, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # The store's semantics (``QueryRecords`` equals ``apply``) on records in
    # hand: a read by key costs one point read, not a scan.
    found = apply(operation.query, records, operation.variables, operation.permission, operation.readable)
    return [to_item(record) for record in found.records]


def read_item(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    key: object,
    query: Query = Query(),
    *,
    now_ms: int,
    user_fields: dict[str, Any] | None = None,
) -> Action[dict[str, Any]]:
    """readOne: the item ``key``, cut to what ``who`` may read and to the
    query's fields; ``FORBIDDEN`` when it does not exist, its rules hide it
    or the query's filter does not admit it."""
    operation = read_query(rules, who, check_collection(collection), stored_query(_single(query)), now_ms=now_ms,
                           user_fields=user_fields)
    if not isinstance(key, str) or not is_object_id(key):
        raise forbidden()
    stored: StoredRecord | None = yield GetRecord(collection, key)
    found = _visible(operation, [stored.record] if stored is not None else [])
    if not found:
        raise forbidden()
    return found[0]


def read_back(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    records: list[dict[str, Any]],
    query: Query = Query(),
    *,
    now_ms: int,
    user_fields: dict[str, Any] | None = None,
) -> list[dict[str, Any]] | None:
    """readMany of records just written (in hand, in the order given): what
    ``who`` may read of them, cut to the query's fields; ``None`` when it may
    not read the collection at all (Directus then answers a write with no
    body). Pure: the records are not read again."""
    try:
        operation = read_query(rules, who, collection, stored_query(_single(query)), now_ms=now_ms,
                               user_fields=user_fields)
    except Forbidden:
        return None
    return _visible(operation, records)


def query_keys(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    query: Query,
    *,
    now_ms: int,
    max_batch: int,
    user_fields: dict[str, Any] | None = None,
) -> Action[list[str]]:
    """The keys of the items ``query`` selects for an update or a delete by
    query (read with ``who``'s read rule, as Directus does); more than
    ``max_batch`` of them is ``INVALID_PAYLOAD``."""
    limit = query.limit if query.limit is not None and query.limit <= max_batch else max_batch + 1
    keyed = msgspec.structs.replace(query, fields=((KEY,),), limit=limit, meta=())
    result = yield from read_items(rules, who, collection, keyed, now_ms=now_ms, user_fields=user_fields)
    if len(result.records) > max_batch:
        raise invalid_payload(f"the query selects more than {max_batch} items")
    return [item[KEY] for item in result.records if KEY in item]


# -- writes ----------------------------------------------------------------------


def _guard(rules: RuleSet, who: Accountability, collection: str, now_ms: int) -> data.Guard:
    def guard(before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        check_write(rules, who, collection, before, after, now_ms=now_ms)

    return guard


def create_items(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    payloads: list[Any],
    env: Environment,
    origin: str = ORIGIN_REST,
) -> Action[tuple[list[dict[str, Any]], list[Change]]]:
    """createOne / createMany: new records holding each payload's fields;
    ``(the records as stored, their changes)``. ``FORBIDDEN`` (nothing
    written) when the create rule refuses any of them."""
    collection = check_collection(collection)
    fields = [item_data(payload) for payload in payloads]
    now_ms = env.now_ms()
    guard = _guard(rules, who, collection, now_ms)
    if len(fields) > 1:
        # The whole batch first: a preview of each record as it will be stored.
        now = format_timestamp(now_ms)
        for item in fields:
            guard(None, new_record(item, "0" * 24, now))
    records, changes = [], []
    for item in fields:
        record, change = yield from data.create(collection, item, who.user, origin, env, guard)
        records.append(record)
        changes.append(change)
    return records, changes


def _write_all(
    keys: list[str],
    rules: RuleSet,
    who: Accountability,
    collection: str,
    changes_for: Callable[[str], dict[str, Any]],
    env: Environment,
    origin: str,
) -> Action[tuple[list[dict[str, Any]], list[Change]]]:
    now_ms = env.now_ms()
    guard = _guard(rules, who, collection, now_ms)
    for key in keys:
        if not is_object_id(key):
            raise forbidden()
    if len(keys) > 1:
        now = format_timestamp(now_ms)
        for key in keys:
            stored: StoredRecord | None = yield GetRecord(collection, key)
            if stored is None:
                raise forbidden()
            guard(stored.record, patch_record(stored.record, changes_for(key), now))
    records, changes = [], []
    for key in keys:
        record, change = yield from data.patch(collection, key, changes_for(key), who.user, origin, env, guard)
        if record is None or change is None:
            raise forbidden()  # it does not exist (or was deleted since the batch was checked)
        records.append(record)
        changes.append(change)
    return records, changes


def update_items(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    keys: list[str],
    payload: Any,
    env: Environment,
    origin: str = ORIGIN_REST,
) -> Action[tuple[list[dict[str, Any]], list[Change]]]:
    """updateOne / updateMany: merge ``payload`` into each item of ``keys``
    (``null`` removes a field); ``(the records after, their changes)``.
    ``FORBIDDEN`` (nothing written) when any item is missing or refused."""
    collection = check_collection(collection)
    fields = item_data(payload)
    return (yield from _write_all(keys, rules, who, collection, lambda key: fields, env, origin))


def update_batch(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    payloads: list[Any],
    env: Environment,
    origin: str = ORIGIN_REST,
) -> Action[tuple[list[dict[str, Any]], list[Change]]]:
    """updateBatch: each payload names its item by ``id`` and is merged into
    it; ``(the records after, their changes)``."""
    collection = check_collection(collection)
    by_key: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        if not isinstance(payload, dict):
            raise invalid_payload("each item of a batch update must be a JSON object")
        key = payload.get(KEY, payload.get(_STORED_KEY))
        if not isinstance(key, str):
            raise invalid_payload(f'each item of a batch update needs its "{KEY}"')
        if key in by_key:
            raise invalid_payload(f'the item "{key[:64]}" appears twice in the batch')
        by_key[key] = item_data(payload)
    return (yield from _write_all(list(by_key), rules, who, collection, by_key.__getitem__, env, origin))


def delete_items(
    rules: RuleSet,
    who: Accountability,
    collection: str,
    keys: list[str],
    env: Environment,
    origin: str = ORIGIN_REST,
) -> Action[tuple[list[dict[str, Any]], list[Change]]]:
    """deleteOne / deleteMany: remove each item of ``keys``; ``(the records
    removed, their changes)``. ``FORBIDDEN`` (nothing removed) when any item
    is missing or the delete rule refuses it."""
    collection = check_collection(collection)
    guard = _guard(rules, who, collection, env.now_ms())
    for key in keys:
        if not is_object_id(key):
            raise forbidden()
    if len(keys) > 1:
        for key in keys:
            stored: StoredRecord | None = yield GetRecord(collection, key)
            if stored is None:
                raise forbidden()
            guard(stored.record, None)
    records, changes = [], []
    for key in keys:
        record, change = yield from data.delete(collection, key, who.user, origin, guard)
        if record is None or change is None:
            raise forbidden()
        records.append(record)
        changes.append(change)
    return records, changes
