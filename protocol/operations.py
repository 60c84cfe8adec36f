"""What the core asks its runner to do.

Every action in the core is a generator: it yields one of these operations,
the runner (a trio transport, an asyncio server, a test) carries it out and
sends the result back in, and the generator finally returns its outcome. The
core therefore decides everything - what is stored, what is answered, what is
delivered - while owning no I/O. ``run_sync`` drives an action against any
object with a synchronous ``execute`` method, which is how tests and
thread-based servers use it.

Storage operations are executed by a backend (``satchel.storage_backends``);
the password operations are slow on purpose (argon2) and are executed in a
worker thread by the runner.

Token-addressed documents (seed 001, ``satchel.protocol.inbox``) have their
own operations: ``GetDocument`` by read token, ``GetDocumentByWriteKey`` by
the lookup key derived from the write token, ``PutDocument``, a
compare-and-swap on the document's revision that also creates, and
``ApplyMessage``, which merges a message into an inbox (or removes one)
atomically inside the store, by the core's pure merge rule. Message writes
find their document with ``GetDocumentKeys``, which reads the keys without
the content, and ``ApplyMessages`` applies a whole batch of them (the
datagrams read in one go) in one write, one group commit. Stores keep an
inbox's messages as rows of their own, by (document, message id) with the
message's revision, so a merge writes one message, not the document
(``satchel.protocol.inbox.documents.MessageTable`` is the shared, pure
bookkeeping).

Sessions have a ``kind``: Backpack's cookie sessions are ``"session"``; the
Bearer tokens of the other protocols (``satchel.protocol.tokens``) are
``"access"``, ``"refresh"`` and ``"static"`` (API tokens that never expire);
``DeleteSessions`` revokes all of one user's tokens of a kind at once and
``ListSessions`` lists them (a user's static tokens). Three record
operations serve queries that need more than field equality (Asnity's pages of chats and its user search,
seed 002): ``TakeNumber`` hands out the numbers of a named sequence
atomically (per-channel chat ids), ``ListRecordRange`` reads records by a
range of ids, and ``SearchRecords`` finds records by a substring of a field.

``QueryRecords`` runs a Directus query (``satchel.protocol.query``: filter,
search, sort, offset, limit, fields, meta) inside the store, with the
reader's permission filter and readable fields (``satchel.protocol.
permissions``) pushed down with it; its answer must equal the pure
``query.apply`` in every backend. Named settings (``GetSetting``,
``PutSetting``: the permission rules live in one) are small JSON values the
store keeps apart from collections, and ``SetUserRole`` gives a user its role.

Entries (seed 004, ``satchel.protocol.resources``) are the key-value store
(``kvStore``) and the live configuration (``liveConfig``): JSON values by
id, in a ``space`` (one of the two), scoped by ``(organization, project)``
and apart from collections. Each has a ``version`` in milliseconds that the
core computes and that strictly grows with every write of the entry;
``PutEntry`` and ``DeleteEntry`` are compare-and-swaps on it, so two writers
can never store equal or decreasing versions; ``OverwriteEntry`` lets the
store pick the next version itself, for writers that need not read first. A delete leaves a tombstone
(``Entry.value is None``) that keeps the entry's last version, so that a
value written again later still gets a greater one. ``GetEntry`` reads one
(tombstones included) and ``ListEntries`` a page of the live ones by id
prefix.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Literal, TypeVar

import msgspec

from .errors import LocalProtocolError
from .query.evaluate import ALL_FIELDS, QueryResult
from .query.filters import MATCH_ALL, NO_VARIABLES, Filter, Variables
from .query.parse import Query

__all__ = [
    "Operation",
    "Action",
    "StoredRecord",
    "User",
    "Session",
    "Document",
    "MessageResult",
    "MessageWrite",
    "GetRecord",
    "ListRecords",
    "InsertRecord",
    "ReplaceRecord",
    "DeleteRecord",
    "DeleteRecords",
    "ListCollections",
    "ListRecordRange",
    "SearchRecords",
    "QueryRecords",
    "QueryResult",
    "TakeNumber",
    "InsertNumbered",
    "GetUserByEmail",
    "GetUser",
    "InsertUser",
    "InsertSession",
    "GetSession",
    "DeleteSession",
    "DeleteSessions",
    "ListSessions",
    "SetUserRole",
    "SetUserPassword",
    "ListUsers",
    "HeldRoles",
    "DEFAULT_ROLE",
    "StoredSetting",
    "GetSetting",
    "PutSetting",
    "SESSION",
    "ACCESS_TOKEN",
    "REFRESH_TOKEN",
    "STATIC_TOKEN",
    "NEVER_EXPIRES_MS",
    "Entry",
    "GetEntry",
    "PutEntry",
    "OverwriteEntry",
    "DeleteEntry",
    "ListEntries",
    "GetDocument",
    "GetDocumentByWriteKey",
    "ListDocuments",
    "PutDocument",
    "ApplyMessage",
    "HashPassword",
    "VerifyPassword",
    "run_sync",
]


class Operation(msgspec.Struct, frozen=True, tag=True):
    """Base of everything an action yields."""


T = TypeVar("T")
#: An action: yields operations, receives their results, returns ``T``.
Action = Generator[Operation, Any, T]


# -- values that cross the boundary -----------------------------------------


class StoredRecord(msgspec.Struct, frozen=True):
    """A record as stored, with the store's revision counter.

    ``revision`` increases by one with every write of the record; it is what
    ``ReplaceRecord`` compares to make read-modify-write safe under
    concurrency. It is never shown to clients.
    """

    record: dict[str, Any]
    revision: int


class StoredJson(msgspec.Struct, frozen=True):
    """A record as stored, as its JSON text: what ``GetRecord(...,
    as_json=True)`` may answer instead of a ``StoredRecord``, so that a read
    whose answer is the whole record sends the stored bytes as they are,
    neither decoded nor encoded again. ``json`` is the JSON of exactly the
    record a ``StoredRecord`` would hold (same keys, same order)."""

    json: bytes
    revision: int


#: The role of a user nobody gave another one (``satchel.protocol.permissions``).
DEFAULT_ROLE = "authenticated"


class User(msgspec.Struct, frozen=True):
    """An account. Only ever read by the auth actions; never by a collection API.

    ``role`` names the user's role in the permission rules
    (``satchel.protocol.permissions``); ``SetUserRole`` changes it.
    """

    id: str
    email: str
    password_hash: str
    created_at: str
    role: str = DEFAULT_ROLE


#: ``Session.kind`` of Backpack's cookie sessions.
SESSION = "session"
#: ``Session.kind`` of a Bearer access token (accepted by the guarded routes).
ACCESS_TOKEN = "access"
#: ``Session.kind`` of a refresh token (accepted only to issue access tokens).
REFRESH_TOKEN = "refresh"
#: ``Session.kind`` of a static API token: accepted where an access token is,
#: never expires, revoked by deleting it.
STATIC_TOKEN = "static"
#: ``Session.expires_ms`` of a token that never expires (the largest value a
#: 64-bit signed integer column holds).
NEVER_EXPIRES_MS = 2**63 - 1


class Session(msgspec.Struct, frozen=True):
    """A login session or a token, stored under the SHA-256 of its token.

    ``kind`` says what the token may be used for (``SESSION``,
    ``ACCESS_TOKEN``, ``REFRESH_TOKEN``, ``STATIC_TOKEN``, or a kind of
    another protocol): a
    token is only ever accepted where its kind is, so a refresh token is no
    access token and neither is a Backpack cookie.
    """

    token_hash: str
    user_id: str
    expires_ms: int
    kind: str = SESSION


class Document(msgspec.Struct, frozen=True):
    """A token-addressed document (seed 001) as stored.

    ``read_token`` (32 lowercase hex digits) names it. The write token itself
    is never stored; three values derived from it are, each lowercase hex
    (``satchel.protocol.inbox.tokens`` defines them): ``write_key``, the
    lookup key (32 digits, unique among documents), ``write_hash``, the
    SHA-256 that an HTTP write token is compared with (64 digits), and
    ``mac_key``, the key of the datagrams' HMAC (64 digits). The three are
    fixed when the document is created. ``revision`` is the document's
    revision (a client's choice on PUT, greater with every write) and
    ``content`` the exact bytes of its JSON.
    """

    read_token: str
    write_key: str
    write_hash: str
    mac_key: str
    revision: int
    content: bytes


#: What a message write did: ``done`` (written, or there was nothing to
#: change), ``not-inbox``, ``too-large`` (the merged document would exceed
#: the size limit), ``unknown`` (no document has that write key).
MessageResult = Literal["done", "not-inbox", "too-large", "unknown"]


class DocumentKeys(msgspec.Struct, frozen=True):
    """A document's token fields without its content (``Document`` says
    what each is); they are fixed when the document is created."""

    read_token: str
    write_key: str
    write_hash: str
    mac_key: str


class MessageWrite(msgspec.Struct, frozen=True):
    """The result of ``ApplyMessage``: what happened and, when the document
    was written, the document after the write and its ``revision`` (0:
    nothing was written)."""

    result: MessageResult
    document: Document | None = None
    revision: int = 0


# -- collections and records ------------------------------------------------


class GetRecord(Operation, frozen=True):
    """-> ``StoredRecord | None``; with ``as_json``, a store that keeps
    records as JSON text may answer ``StoredJson`` instead (a caller that
    asks must take either)."""

    collection: str
    id: str
    as_json: bool = False


class ListRecords(Operation, frozen=True):
    """-> ``list[dict]`` in creation order; ``query`` keeps records for which
    ``records.matches_query`` is true (``None``: all)."""

    collection: str
    query: dict[str, Any] | None = None


class InsertRecord(Operation, frozen=True):
    """-> ``None``. The record's ``_id`` is new (ids come from an id source);
    inserting an existing ``(collection, _id)`` raises ``LocalProtocolError``."""

    collection: str
    record: dict[str, Any]


class ReplaceRecord(Operation, frozen=True):
    """-> ``bool``: replaced only if the stored revision still equals
    ``revision`` (compare-and-swap); ``False`` if it changed or is gone."""

    collection: str
    record: dict[str, Any]
    revision: int


class DeleteRecord(Operation, frozen=True):
    """-> the deleted ``dict``, or ``None`` if there was no such record."""

    collection: str
    id: str


class DeleteRecords(Operation, frozen=True):
    """-> ``list[dict]`` of the deleted records matching ``query``, in creation order."""

    collection: str
    query: dict[str, Any]


class ListCollections(Operation, frozen=True):
    """-> ``list[str]``: the collections that hold at least one record, sorted."""


class ListRecordRange(Operation, frozen=True):
    """-> ``list[dict]``: the records of ``collection`` whose ``_id`` is at
    least ``start`` and less than ``stop``, ordered by ``_id`` (code point
    order, as Python compares strings; ``descending`` reverses it), at most
    ``limit`` of them (``None``: all).

    Ids that embed a fixed-width number (``"<channel>:000000000042"``) make
    this a page of numbered records read through the store's index.
    """

    collection: str
    start: str
    stop: str
    limit: int | None = None
    descending: bool = False


class SearchRecords(Operation, frozen=True):
    """-> ``list[dict]`` in creation order, at most ``limit``: the records of
    ``collection`` in which at least one of the top-level ``fields`` is a
    string containing ``text``, both compared after ``str.lower()`` (Python's
    folding, in every backend). ``text`` is literal: no pattern syntax. An
    empty ``text`` matches every record that has one of the fields as a string.
    """

    collection: str
    fields: tuple[str, ...]
    text: str
    limit: int


class QueryRecords(Operation, frozen=True):
    """-> ``QueryResult``: run ``query`` over the records of ``collection``.

    The answer equals ``satchel.protocol.query.apply(query, records,
    variables, permission, readable)`` over the collection's records in
    creation order: records that ``permission`` (the reader's item filter)
    and the query's ``filter`` and ``search`` admit, sorted, ``offset`` and
    ``limit`` applied, then cut to the ``readable`` top-level fields (``"*"``:
    all; search looks only at readable fields) and to the query's
    ``fields``. ``variables`` are the values of ``$CURRENT_USER``,
    ``$CURRENT_ROLE`` and ``$NOW``. ``total_count`` / ``filter_count`` are
    set when ``query.meta`` asks for them. Stores run the filter, search,
    sort and limit where the records are (SQLite: SQL on the JSON column),
    not over a full read into Python.
    """

    collection: str
    query: Query
    variables: Variables = NO_VARIABLES
    permission: Filter = MATCH_ALL
    readable: Literal["*"] | tuple[str, ...] = ALL_FIELDS


class InsertNumbered(Operation, frozen=True):
    """-> the ``dict`` stored: take the next number ``n`` of ``sequence`` (as
    ``TakeNumber``) and insert ``record`` with ``record[number_field] = n``
    and ``_id`` = ``id_prefix`` + ``n`` zero-padded to ``id_digits``, in one
    transaction - one write where a number and a record would be two (a
    chat and its per-channel id). ``record`` has no ``_id`` of its own."""

    collection: str
    record: dict[str, Any]
    sequence: str
    number_field: str
    id_prefix: str
    id_digits: int


class TakeNumber(Operation, frozen=True):
    """-> ``int``: the next number of the sequence named ``sequence`` - 0 the
    first time, then 1, 2, ... Each number is handed out exactly once, even to
    concurrent callers, and a sequence never goes back (it outlives any
    record numbered from it). Sequences are apart from collections.
    """

    sequence: str


# -- accounts and sessions --------------------------------------------------


class GetUserByEmail(Operation, frozen=True):
    """-> ``User | None``; emails compare equal when their ``str.lower()`` do
    (Python's folding, non-ASCII included, in every backend)."""

    email: str


class GetUser(Operation, frozen=True):
    """-> ``User | None``"""

    id: str


class InsertUser(Operation, frozen=True):
    """-> ``bool``: ``False`` when the email is already registered (compared as
    in ``GetUserByEmail``); an existing user id raises ``LocalProtocolError``."""

    user: User


class InsertSession(Operation, frozen=True):
    """-> ``None``; an existing ``token_hash`` raises ``LocalProtocolError``."""

    session: Session


class GetSession(Operation, frozen=True):
    """-> ``Session | None`` (expired sessions may still be returned; the core checks)."""

    token_hash: str


class DeleteSession(Operation, frozen=True):
    """-> ``bool``: whether there was such a session (so that of two
    requests spending one token, exactly one finds it)."""

    token_hash: str


class DeleteSessions(Operation, frozen=True):
    """-> ``int``: delete every session of ``user_id`` whose ``kind`` is
    ``kind`` (a user's refresh tokens, at signout); how many were deleted."""

    user_id: str
    kind: str


class ListSessions(Operation, frozen=True):
    """-> ``list[Session]``: every session of ``user_id`` whose ``kind`` is
    ``kind`` (expired ones too; the core checks), ordered by ``token_hash``
    (a user's static tokens, for an administrator to list)."""

    user_id: str
    kind: str


class SetUserRole(Operation, frozen=True):
    """-> ``bool``: give user ``user_id`` the role ``role``; ``False`` when
    there is no such user. The store does not check that the role exists
    (the permission rules do: an unknown role may do nothing)."""

    user_id: str
    role: str


class SetUserPassword(Operation, frozen=True):
    """-> ``bool``: store ``password_hash`` as user ``user_id``'s; ``False``
    when there is no such user. The administration API resets passwords
    with it, and disables an account by storing a hash no password matches
    (``satchel.protocol.admin.users``)."""

    user_id: str
    password_hash: str


class ListUsers(Operation, frozen=True):
    """-> ``list[User]``: a page of the accounts, in code point order of
    their ids (creation order: ids begin with their creation second), the
    ones whose email contains ``search`` (compared after ``str.lower()``;
    ``""``: all), skipping ``offset``, at most ``limit``. For an
    administrator's list; no protocol lists its users."""

    search: str = ""
    offset: int = 0
    limit: int = 100


class HeldRoles(Operation, frozen=True):
    """-> ``frozenset[str]``: every role at least one user holds (so that
    rules are never replaced by rules without a role someone still has)."""


# -- settings -------------------------------------------------------------------


class StoredSetting(msgspec.Struct, frozen=True):
    """A named setting as stored: its ``value`` (JSON bytes) and a revision
    that starts at 1 and grows by one with every write."""

    value: bytes
    revision: int


class GetSetting(Operation, frozen=True):
    """-> ``StoredSetting | None``: the setting called ``name``. Settings are
    apart from collections: no collection operation reaches them."""

    name: str


class PutSetting(Operation, frozen=True):
    """-> ``bool``: a compare-and-swap on the setting called ``name``.

    ``expected_revision == 0`` creates it (``False`` if it exists); otherwise
    the stored revision must equal ``expected_revision`` and becomes
    ``expected_revision + 1``. ``value`` must be ``bytes``, else
    ``LocalProtocolError``.
    """

    name: str
    value: bytes
    expected_revision: int


# -- entries: the key-value store and live configuration (seed 004) ---------


class Entry(msgspec.Struct, frozen=True):
    """An entry as stored: its ``id``, its ``value`` (the exact JSON bytes;
    ``None``: a tombstone, the entry was deleted), its ``version`` (ms since
    the epoch, greater with every write of the entry) and the ``user_id``
    of whoever wrote it last (``None``: nobody signed in)."""

    id: str
    value: bytes | None
    version: int
    user_id: str | None = None


class GetEntry(Operation, frozen=True):
    """-> ``Entry | None``: the entry ``id`` (non-empty) of ``space`` in the scope
    ``(organization, project)``, a tombstone included; ``None``: it was
    never written. Spaces and scopes never see each other's entries."""

    space: str
    organization: str
    project: str
    id: str


class PutEntry(Operation, frozen=True):
    """-> ``bool``: a compare-and-swap on the entry's version that stores
    ``value`` (JSON bytes) at ``version``, written by ``user_id``.

    ``expected_version == 0`` creates: it succeeds only if the entry was
    never written (no tombstone either). Otherwise the stored version (of a
    value or a tombstone) must equal ``expected_version``. ``False`` changes
    nothing. ``version`` must be greater than ``expected_version`` and
    ``value`` bytes, else ``LocalProtocolError``.
    """

    space: str
    organization: str
    project: str
    id: str
    value: bytes
    version: int
    expected_version: int
    user_id: str | None = None


class OverwriteEntry(Operation, frozen=True):
    """-> ``int``: stores ``value`` (JSON bytes) as the entry whatever is
    stored, written by ``user_id``, at its next version: ``at_least`` when
    that is greater than the stored version (of a value or a tombstone),
    else the stored version + 1; the version written. ``at_least`` must be
    positive and ``value`` bytes, else ``LocalProtocolError``.

    The write for a caller whose permission does not depend on what is
    stored (``PutEntry`` needs the stored version, read first): with no read
    before it, writers of one entry do not take turns, so a burst of them
    commits in one batch, each still at a greater version than the last.
    """

    space: str
    organization: str
    project: str
    id: str
    value: bytes
    at_least: int
    user_id: str | None = None


class DeleteEntry(Operation, frozen=True):
    """-> ``bool``: a compare-and-swap that turns the live entry stored at
    exactly ``expected_version`` into a tombstone at ``version`` (greater,
    else ``LocalProtocolError``), deleted by ``user_id``. ``False`` (no such
    live entry at that version) changes nothing."""

    space: str
    organization: str
    project: str
    id: str
    version: int
    expected_version: int
    user_id: str | None = None


class ListEntries(Operation, frozen=True):
    """-> ``list[Entry]``: the live entries (no tombstones) of ``space`` in
    the scope whose ids start with ``prefix`` and are greater than ``after``
    (``""``: from the first), in code point order of their ids, at most
    ``limit`` of them."""

    space: str
    organization: str
    project: str
    prefix: str = ""
    after: str = ""
    limit: int = 100


# -- token-addressed documents (seed 001) -----------------------------------


class GetDocument(Operation, frozen=True):
    """-> ``Document | None``"""

    read_token: str


class GetDocumentByWriteKey(Operation, frozen=True):
    """-> ``Document | None``: the document whose ``write_key`` this is."""

    write_key: str


class ListDocuments(Operation, frozen=True):
    """-> ``list[Document]``: a page of the token-addressed documents in the
    order they were created, skipping ``offset``, at most ``limit`` (an
    administrator's list; no protocol lists documents)."""

    offset: int = 0
    limit: int = 100


class GetDocumentKeys(Operation, frozen=True):
    """-> ``list[DocumentKeys | None]``: for each write key, in order, the
    keys of the document whose ``write_key`` it is (``None``: none is).

    What a message write needs to authenticate its sender, without reading
    (or assembling) the document's content: the cost does not grow with the
    inbox. A key named twice is answered twice.
    """

    write_keys: tuple[str, ...]


class PutDocument(Operation, frozen=True):
    """-> ``bool``: a compare-and-swap on the document's revision.

    ``expected_revision == 0`` creates: it succeeds only if no document has
    this ``read_token`` and none has this ``write_key``. Otherwise it updates
    the document's ``revision`` and ``content`` (the token fields never
    change), and succeeds only if a document with this ``read_token`` and
    ``write_key`` is stored at exactly ``expected_revision``. ``False``
    changes nothing. ``document.revision`` must be greater than
    ``expected_revision`` (revisions only grow, which is what makes the
    compare-and-swap safe); anything else raises ``LocalProtocolError``.
    """

    document: Document
    expected_revision: int


class ApplyMessage(Operation, frozen=True):
    """-> ``MessageWrite``: merge ``message`` (JSON bytes; ``None``: remove
    message ``message_id``) into the inbox document whose write key this is,
    atomically.

    The store reads the document, computes the write with
    ``satchel.protocol.inbox.documents.apply_message(document, message_id,
    message, now_ms, max_document_bytes)`` - the pure merge rule, so that
    every backend merges alike - and writes what it returns, all in one
    transaction. Applying messages in the store rather than by a
    compare-and-swap from the core is what lets many senders write to one
    inbox at once: each is applied in turn, and none has to retry. A
    ``message`` that is not JSON with a numeric ``"#"`` raises
    ``satchel.protocol.inbox.merge.InvalidMessage`` and writes nothing (the
    core checks first, so this is a caller's bug).
    """

    write_key: str
    message_id: str
    message: bytes | None
    now_ms: int
    max_document_bytes: int


class MessageEdit(msgspec.Struct, frozen=True):
    """One message write of ``ApplyMessages``: ``message`` (JSON bytes;
    ``None``: remove) under ``message_id`` in the inbox with ``write_key``."""

    write_key: str
    message_id: str
    message: bytes | None


class ApplyMessages(Operation, frozen=True):
    """-> ``list[MessageWrite]``, one per edit in order: each edit applied as
    ``ApplyMessage`` would, one after another (an edit sees the ones before
    it, several may name one inbox or one message), all in one write - one
    group commit for a batch of datagrams.

    Each edit's ``MessageWrite`` is as ``ApplyMessage`` answers it: its
    ``document`` and ``revision`` are the document just after that edit
    (every write is one change event, even when a batch holds several
    into one inbox). If any message is not JSON with a numeric ``"#"`` the
    store raises ``satchel.protocol.inbox.merge.InvalidMessage`` and writes
    nothing.
    """

    edits: tuple[MessageEdit, ...]
    now_ms: int
    max_document_bytes: int


# -- slow, CPU-bound work the runner should take off its event loop ----------


class HashPassword(Operation, frozen=True):
    """-> ``str``: an argon2id hash of ``password``."""

    password: str


class VerifyPassword(Operation, frozen=True):
    """-> ``bool``: whether ``password`` matches ``password_hash``.

    The runner verifies against a dummy hash when the account does not exist,
    so that a missing account and a wrong password take the same time.
    """

    password_hash: str
    password: str


def run_sync(action: Action[T], execute: Callable[[Operation], Any]) -> T:
    """Drive ``action`` to completion, passing each operation to ``execute``."""
    try:
        operation = next(action)
        while True:
            if not isinstance(operation, Operation):
                raise LocalProtocolError(f"an action yielded {operation!r}, not an Operation")
            operation = action.send(execute(operation))
    except StopIteration as done:
        return done.value
