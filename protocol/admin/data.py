"""What the admin console reads and edits of the one data model (issue 16
part 2): collections and their records, files, token-addressed documents,
the key-value store and live configuration.

Every write here is made by the same actions any client's write goes
through - records by the Directus items actions (``directus.items``, on
``collections``), a file's deletion by Backpack's (``backpack.uploads``),
entries by the resource protocol's (``resources.entries``) - as the
administrator (``Accountability`` of the admin's account, under the rules
in force), with the origin ``admin-http``. So each write produces the one
change event of its kind, and every subscriber of every protocol that may
see it is sent it, as for any other client; the live view of the console
(``live``) is one of them.

Reads are an administrator's: every collection (those of other protocols,
``_``-prefixed, too; they are read-only here: their records keep those
protocols' invariants), whole records, every file, document and entry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import msgspec

from .. import collections as data
from ..backpack import uploads
from ..changes import Change, EntryChange
from ..directus import items
from ..directus.errors import DirectusError, invalid_payload
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..files import FileBody
from ..http import HttpResponse
from ..inbox.documents import MESSAGES_KEY
from ..operations import (
    Action,
    Document,
    GetDocument,
    GetRecord,
    ListCollections,
    ListDocuments,
    ListEntries,
    QueryRecords,
    StoredRecord,
)
from ..permissions import ADMIN, Accountability, CurrentRules, RuleSet, check_write
from ..query import Query, QueryResult, SortKey
from ..records import is_object_id
from ..resources import entries
from ..resources.config import ENTRY_SPACES, ResourcesConfig

__all__ = ["ORIGIN", "MAX_PAGE", "Page", "page_of", "collections", "records", "create_record", "update_record",
           "replace_record", "delete_record", "files", "file_record", "file_download", "delete_file", "documents", "document",
           "list_entries", "put_entry", "delete_entry"]

#: ``Change.origin`` of every write the admin API makes.
ORIGIN = "admin-http"
#: The most records, files, documents or entries one page holds.
MAX_PAGE = 500
_META = ("filter_count", "total_count")
_decode = msgspec.json.Decoder().decode


class Page(msgspec.Struct, frozen=True):
    """What a listing route was asked: ``offset``, ``limit`` (at most
    ``MAX_PAGE``) and ``search`` (``""``: none)."""

    offset: int = 0
    limit: int = 50
    search: str = ""


def _number(values: dict[str, list[str]], name: str, default: int) -> int:
    raw = values.get(name, [""])[0]
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise invalid_payload(f'"{name}" must be a whole number')
    return int(raw)


def page_of(query: str) -> Page:
    """The ``?offset=&limit=&search=`` of a listing request."""
    values = parse_qs(query)
    return Page(_number(values, "offset", 0), min(_number(values, "limit", 50), MAX_PAGE),
                values.get("search", [""])[0].strip())


def _who(admin_id: str) -> Accountability:
    return Accountability(admin_id, ADMIN)


# -- collections and records -------------------------------------------------------


def collections() -> Action[list[dict[str, Any]]]:
    """Every collection that holds a record, but the files' metadata (shown
    as files); each with whether the console may write it."""
    names: list[str] = yield ListCollections()
    return [{"name": name, "writable": _writable(name)} for name in names if name != uploads.UPLOADS]


def _writable(name: str) -> bool:
    try:
        items.check_collection(name)
    except RemoteProtocolError:
        return False
    return True


def _writable_collection(name: str) -> str:
    if not _writable(name):
        raise DirectusError("FORBIDDEN", f"'{name[:64]}' is not a collection the console may write "
                                         "(another protocol's own data, or a reserved name)", 403)
    return name


def records(collection: str, page: Page) -> Action[QueryResult]:
    """A page of ``collection``'s records as stored, newest first, those
    with ``page.search`` in a field when it is given, with their counts."""
    query = Query(sort=(SortKey(("_id",), descending=True),), limit=page.limit, offset=page.offset,
                  search=page.search or None, meta=_META)
    result: QueryResult = yield QueryRecords(collection, query)
    return result


def _rules() -> Action[RuleSet]:
    rules: RuleSet = yield CurrentRules()
    return rules


def _fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid_payload("a record must be a JSON object")
    return body


def create_record(collection: str, body: Any, admin_id: str, env: Environment) -> Action[tuple[dict[str, Any], Change]]:
    """A new record of ``body``'s fields, made as any client's create is."""
    collection = _writable_collection(collection)
    rules = yield from _rules()
    [record], [change] = yield from items.create_items(rules, _who(admin_id), collection, [_fields(body)], env, ORIGIN)
    return record, change


def update_record(collection: str, record_id: str, body: Any, admin_id: str,
                  env: Environment) -> Action[tuple[dict[str, Any], Change]]:
    """Merge ``body`` into the record (``null`` removes a field), as
    Backpack's PATCH and Directus's update do; 404 when it is gone."""
    collection = _writable_collection(collection)
    rules = yield from _rules()
    try:
        [record], [change] = yield from items.update_items(rules, _who(admin_id), collection, [record_id],
                                                           _fields(body), env, ORIGIN)
    except DirectusError as exc:
        raise _gone(exc) from None
    return record, change


def replace_record(collection: str, record_id: str, body: Any, admin_id: str,
                   env: Environment) -> Action[tuple[dict[str, Any], Change]]:
    """Replace every field of the record by ``body``'s, as Backpack's PUT does."""
    collection = _writable_collection(collection)
    rules = yield from _rules()
    who = _who(admin_id)
    fields = items.item_data(_fields(body))
    if not is_object_id(record_id):
        raise _not_found("The record")

    def guard(before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        check_write(rules, who, collection, before, after, now_ms=env.now_ms())

    record, change = yield from data.overwrite(collection, record_id, fields, admin_id, ORIGIN, env, guard)
    if record is None or change is None:
        raise _not_found("The record")
    return record, change


def delete_record(collection: str, record_id: str, admin_id: str, env: Environment) -> Action[tuple[dict[str, Any], Change]]:
    """Remove the record, as any client's delete does; 404 when it is gone."""
    collection = _writable_collection(collection)
    rules = yield from _rules()
    try:
        [record], [change] = yield from items.delete_items(rules, _who(admin_id), collection, [record_id], env, ORIGIN)
    except DirectusError as exc:
        raise _gone(exc) from None
    return record, change


def _not_found(what: str) -> DirectusError:
    return DirectusError("NOT_FOUND", f"{what} does not exist.", 404)


def _gone(exc: DirectusError) -> DirectusError:
    # The items actions answer FORBIDDEN for a missing item (as Directus
    # does); an admin may do everything, so here it can only mean "gone".
    return _not_found("The record") if exc.code == "FORBIDDEN" else exc


# -- files ---------------------------------------------------------------------------


def files(page: Page) -> Action[QueryResult]:
    """A page of every user's files (their metadata), newest first, those
    whose filename, bucket or owner holds ``page.search``."""
    query = Query(sort=(SortKey(("_id",), descending=True),), limit=page.limit, offset=page.offset,
                  search=page.search or None, meta=_META)
    result: QueryResult = yield QueryRecords(uploads.UPLOADS, query)
    return result


def file_record(file_id: str) -> Action[dict[str, Any]]:
    """One file's metadata; 404 when there is no such file."""
    stored: StoredRecord | None = (yield GetRecord(uploads.UPLOADS, file_id)) if is_object_id(file_id) else None
    if stored is None:
        raise _not_found("The file")
    return stored.record


def file_download(file_id: str) -> Action[tuple[HttpResponse, FileBody | None]]:
    """The file's bytes, as Backpack serves them (its content type, and a
    download for any type a browser would run)."""
    record = yield from file_record(file_id)
    outcome = yield from uploads.download(record["userId"], record["filename"])
    return outcome.response, outcome.file


def delete_file(file_id: str, admin_id: str) -> Action[tuple[dict[str, Any], list[Any]]]:
    """Delete the file and its metadata, as its owner's delete does."""
    record = yield from file_record(file_id)
    outcome = yield from uploads.delete(record, admin_id)
    if outcome.response.status != 200:
        raise _not_found("The file")
    return record, list(outcome.changes)


# -- documents -------------------------------------------------------------------------


def _messages(content: bytes) -> dict[str, Any] | None:
    try:
        value = _decode(content)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    messages = value.get(MESSAGES_KEY) if isinstance(value, dict) else None
    return messages if isinstance(messages, dict) else None


def _document_summary(document: Document) -> dict[str, Any]:
    messages = _messages(document.content)
    return {"read_token": document.read_token, "revision": document.revision, "bytes": len(document.content),
            "inbox": messages is not None, "messages": len(messages) if messages is not None else None}


def documents(page: Page) -> Action[list[dict[str, Any]]]:
    """A page of the documents in creation order: token, revision, size,
    whether it is an inbox and how many messages it holds. Never a write
    token (only values derived from it are stored)."""
    found: list[Document] = yield ListDocuments(page.offset, page.limit)
    return [_document_summary(document) for document in found]


def document(read_token: str) -> Action[dict[str, Any]]:
    """One document: its summary, its content and its messages by id."""
    found: Document | None = yield GetDocument(read_token)
    if found is None:
        raise _not_found("The document")
    try:
        content = _decode(found.content)
    except (msgspec.DecodeError, UnicodeDecodeError):
        content = None
    return {**_document_summary(found), "content": content}


# -- entries: the key-value store and live configuration ---------------------------------


def _space(space: str) -> str:
    if space not in ENTRY_SPACES:
        raise _not_found(f"The space {space[:32]!r}")
    return space


def _scope(query: str) -> entries.Scope:
    values = parse_qs(query)
    return entries.Scope(values.get("organization", [""])[0].strip(), values.get("project", [""])[0].strip())


def _entry_view(entry: Any) -> dict[str, Any]:
    return {"id": entry.id, "value": _decode(entry.value) if entry.value is not None else None,
            "version": entry.version, "user": entry.user_id}


def list_entries(space: str, query: str) -> Action[dict[str, Any]]:
    """A page of the live entries of ``space`` in the scope the query names
    (``organization``, ``project``; ``""`` each by default), by id from
    ``after``, those whose id starts with ``prefix``."""
    space = _space(space)
    scope = _scope(query)
    values = parse_qs(query)
    limit = min(_number(values, "limit", 100), MAX_PAGE)
    found = yield ListEntries(space, scope.organization, scope.project, values.get("prefix", [""])[0],
                              values.get("after", [""])[0], limit + 1)
    more = len(found) > limit
    found = found[:limit]
    return {"entries": [_entry_view(entry) for entry in found], "next": found[-1].id if more and found else None,
            "organization": scope.organization, "project": scope.project}


def put_entry(space: str, entry_id: str, query: str, body: bytes, admin_id: str,
              env: Environment) -> Action[tuple[dict[str, Any], EntryChange]]:
    """Store ``body`` (one JSON value) as the entry, as the resource
    protocol's REST ``PUT`` does."""
    config = ResourcesConfig()
    space = _space(space)
    try:
        entry_id = entries.validate_entry_id(entry_id, config)
        value = entries.check_value(body, config)
    except entries.ResourceError as exc:
        raise invalid_payload(exc.message) from None
    rules = yield from _rules()
    entry, change = yield from entries.put_entry(space, _scope(query), entry_id, value, _who(admin_id), rules, env,
                                                 ORIGIN)
    return _entry_view(entry), change


def delete_entry(space: str, entry_id: str, query: str, admin_id: str,
                 env: Environment) -> Action[tuple[dict[str, Any], EntryChange]]:
    """Delete the entry (a tombstone stays), as the REST ``DELETE`` does; 404 when it is absent."""
    space = _space(space)
    rules = yield from _rules()
    deleted = yield from entries.delete_entry(space, _scope(query), entry_id, _who(admin_id), rules, env, ORIGIN)
    if deleted is None:
        raise _not_found("The entry")
    entry, change = deleted
    return _entry_view(entry), change


