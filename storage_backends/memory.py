"""A store that keeps everything in process memory.

``MemoryStore`` is the reference backend: plain dicts, no threads, no event
loop of its own. Tests drive the core against it synchronously with
``run_sync(action, store.execute_sync)``; async runners (trio or asyncio) can
use ``execute``. Nothing survives the process, so it is for tests and for
trying Satchel out, never for data anyone wants back.

Documents (seed 001) are immutable values (``Document`` is frozen and its
content is ``bytes``), so they are stored as they come. An inbox that has
taken a message is also held as a ``MessageTable`` (its messages apart, the
content joined from runs of them), so a merge costs one message, as it does
in the SQLite store's rows.

Records are kept as their JSON encoding: storing bytes copies a record in,
decoding copies it out, and every record round-trips through JSON exactly as
it does in the SQLite backend, so the two behave the same.

Commit stamps (``execute_stamped``, ``base``): the writes are applied at
once, in the order they are executed, so a write is stamped as it is
applied, by one counter, when it changed something (``_changed``).

``QueryRecords`` runs the query language's reference evaluator
(``satchel.protocol.query.apply``) over the collection: this store is the
definition the SQLite store is held to.
"""

from __future__ import annotations

from typing import Any, Callable

import msgspec

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.inbox.documents import MessageTable, NotAnInbox, apply_to_table
from satchel.protocol.inbox.merge import InvalidMessage, revision_of
from satchel.protocol.operations import (
    ApplyMessage,
    ApplyMessages,
    DocumentKeys,
    GetDocumentKeys,
    MessageEdit,
    DeleteRecord,
    DeleteRecords,
    DeleteSession,
    DeleteSessions,
    DeleteEntry,
    Document,
    Entry,
    GetEntry,
    ListEntries,
    PutEntry,
    OverwriteEntry,
    GetDocument,
    GetDocumentByWriteKey,
    GetRecord,
    GetSession,
    GetSetting,
    GetUser,
    GetUserByEmail,
    InsertRecord,
    InsertSession,
    InsertUser,
    ListCollections,
    ListSessions,
    ListRecordRange,
    ListRecords,
    MessageWrite,
    Operation,
    PutDocument,
    PutSetting,
    QueryRecords,
    QueryResult,
    ReplaceRecord,
    SearchRecords,
    Session,
    SetUserRole,
    SetUserPassword,
    ListUsers,
    ListDocuments,
    HeldRoles,
    StoredRecord,
    StoredSetting,
    InsertNumbered,
    TakeNumber,
    User,
)
from satchel.protocol.query import apply
from satchel.protocol.records import matches_query

from .base import Store

__all__ = ["MemoryStore"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class _Stored:
    """One record: its JSON encoding and its revision."""

    __slots__ = ("body", "revision")

    def __init__(self, body: bytes, revision: int) -> None:
        self.body = body
        self.revision = revision


class MemoryStore(Store):
    """An in-process store; ``execute_sync`` is the same as ``execute``, synchronously."""

    def __init__(self) -> None:
        # Per collection, records by id; dicts keep insertion order, which is
        # creation order because a replace updates the entry in place. A
        # collection is removed with its last record, so the keys of
        # ``_collections`` are exactly the non-empty collections.
        self._collections: dict[str, dict[str, _Stored]] = {}
        self._users: dict[str, User] = {}
        # Lowercased email -> user id; SqliteStore folds emails the same way.
        self._user_ids_by_email: dict[str, str] = {}
        self._sessions: dict[str, Session] = {}
        # Sequence name -> the next number it hands out.
        self._sequences: dict[str, int] = {}
        self._documents: dict[str, Document] = {}
        # write_key -> read_token, the index GetDocumentByWriteKey uses.
        self._read_tokens_by_write_key: dict[str, str] = {}
        # read_token -> the messages of an inbox that has taken one since
        # its last PUT (its Document's content is the table's).
        self._tables: dict[str, MessageTable] = {}
        self._settings: dict[str, StoredSetting] = {}
        # (space, organization, project) -> id -> entry (tombstones included).
        self._entries: dict[tuple[str, str, str], dict[str, Entry]] = {}
        # The next commit stamp (execute_stamped).
        self._next_stamp = 1
        self._handlers: dict[type[Operation], Callable[[Any], Any]] = {
            GetRecord: self._get_record,
            ListRecords: self._list_records,
            InsertRecord: self._insert_record,
            ReplaceRecord: self._replace_record,
            DeleteRecord: self._delete_record,
            DeleteRecords: self._delete_records,
            ListCollections: self._list_collections,
            ListRecordRange: self._list_record_range,
            SearchRecords: self._search_records,
            QueryRecords: self._query_records,
            TakeNumber: self._take_number,
            InsertNumbered: self._insert_numbered,
            GetUserByEmail: self._get_user_by_email,
            GetUser: self._get_user,
            InsertUser: self._insert_user,
            InsertSession: self._insert_session,
            GetSession: self._get_session,
            DeleteSession: self._delete_session,
            DeleteSessions: self._delete_sessions,
            ListSessions: self._list_sessions,
            SetUserRole: self._set_user_role,
            HeldRoles: self._held_roles,
            SetUserPassword: self._set_user_password,
            ListUsers: self._list_users,
            ListDocuments: self._list_documents,
            GetSetting: self._get_setting,
            PutSetting: self._put_setting,
            GetDocument: self._get_document,
            GetDocumentByWriteKey: self._get_document_by_write_key,
            PutDocument: self._put_document,
            ApplyMessage: self._apply_message,
            ApplyMessages: self._apply_messages,
            GetDocumentKeys: self._get_document_keys,
            GetEntry: self._get_entry,
            PutEntry: self._put_entry,
            OverwriteEntry: self._overwrite_entry,
            DeleteEntry: self._delete_entry,
            ListEntries: self._list_entries,
        }

    async def execute(self, operation: Operation) -> Any:
        """Carry out ``operation``. It completes without yielding to the event
        loop, so this works under any async framework."""
        return self.execute_sync(operation)

    async def execute_stamped(self, operation: Operation) -> tuple[Any, int | None]:
        """``execute``, and the write's commit stamp (``Store.execute_stamped``)."""
        result = self.execute_sync(operation)
        if type(operation) in _READS or not _changed(operation, result):
            return result, None
        self._next_stamp += 1
        return result, self._next_stamp - 1

    def execute_sync(self, operation: Operation) -> Any:
        """Carry out ``operation`` and return its documented result.

        Raises ``TypeError`` for anything that is not a storage operation.
        """
        handler = self._handlers.get(type(operation))
        if handler is None:
            raise TypeError(f"{type(operation).__name__} is not a storage operation")
        return handler(operation)

    # -- collections and records ---------------------------------------------

    def _get_record(self, op: GetRecord) -> StoredRecord | None:
        stored = self._collections.get(op.collection, {}).get(op.id)
        if stored is None:
            return None
        return StoredRecord(_decode(stored.body), stored.revision)

    def _list_records(self, op: ListRecords) -> list[dict[str, Any]]:
        records = [_decode(stored.body) for stored in self._collections.get(op.collection, {}).values()]
        if op.query is None:
            return records
        return [record for record in records if matches_query(record, op.query)]

    def _insert_record(self, op: InsertRecord) -> None:
        # Encode first: a record that cannot be stored must not create its collection.
        body = _encode(op.record)
        record_id = op.record["_id"]
        records = self._collections.setdefault(op.collection, {})
        if record_id in records:
            raise LocalProtocolError(f"record {op.collection}/{record_id} already exists")
        records[record_id] = _Stored(body, 1)

    def _replace_record(self, op: ReplaceRecord) -> bool:
        stored = self._collections.get(op.collection, {}).get(op.record["_id"])
        if stored is None or stored.revision != op.revision:
            return False
        stored.body = _encode(op.record)
        stored.revision += 1
        return True

    def _delete_record(self, op: DeleteRecord) -> dict[str, Any] | None:
        records = self._collections.get(op.collection)
        if records is None or op.id not in records:
            return None
        stored = records.pop(op.id)
        if not records:
            del self._collections[op.collection]
        return _decode(stored.body)

    def _delete_records(self, op: DeleteRecords) -> list[dict[str, Any]]:
        deleted = self._list_records(ListRecords(op.collection, op.query))
        for record in deleted:
            self._delete_record(DeleteRecord(op.collection, record["_id"]))
        return deleted

    def _list_collections(self, op: ListCollections) -> list[str]:
        return sorted(self._collections)

    def _list_record_range(self, op: ListRecordRange) -> list[dict[str, Any]]:
        # A sort per call: this store is for tests, where collections are small.
        records = self._collections.get(op.collection, {})
        ids = sorted((key for key in records if op.start <= key < op.stop), reverse=op.descending)
        if op.limit is not None:
            ids = ids[: max(op.limit, 0)]
        return [_decode(records[key].body) for key in ids]

    def _search_records(self, op: SearchRecords) -> list[dict[str, Any]]:
        text = op.text.lower()
        found: list[dict[str, Any]] = []
        for stored in self._collections.get(op.collection, {}).values():
            if len(found) >= op.limit:
                break
            record = _decode(stored.body)
            if any(isinstance(record.get(field), str) and text in record[field].lower() for field in op.fields):
                found.append(record)
        return found

    def _query_records(self, op: QueryRecords) -> QueryResult:
        records = (_decode(stored.body) for stored in self._collections.get(op.collection, {}).values())
        return apply(op.query, records, op.variables, op.permission, op.readable)

    def _take_number(self, op: TakeNumber) -> int:
        number = self._sequences.get(op.sequence, 0)
        self._sequences[op.sequence] = number + 1
        return number

    def _insert_numbered(self, op: InsertNumbered) -> dict[str, Any]:
        number = self._sequences.get(op.sequence, 0)
        record = {**op.record, op.number_field: number, "_id": f"{op.id_prefix}{number:0{op.id_digits}d}"}
        self._insert_record(InsertRecord(op.collection, record))  # raises before the number is taken
        self._sequences[op.sequence] = number + 1
        return record

    # -- accounts and sessions -----------------------------------------------

    def _get_user_by_email(self, op: GetUserByEmail) -> User | None:
        user_id = self._user_ids_by_email.get(op.email.lower())
        return None if user_id is None else self._users[user_id]

    def _get_user(self, op: GetUser) -> User | None:
        return self._users.get(op.id)

    def _insert_user(self, op: InsertUser) -> bool:
        email_key = op.user.email.lower()
        if email_key in self._user_ids_by_email:
            return False
        if op.user.id in self._users:
            raise LocalProtocolError(f"user {op.user.id} already exists")
        self._users[op.user.id] = op.user
        self._user_ids_by_email[email_key] = op.user.id
        return True

    def _insert_session(self, op: InsertSession) -> None:
        if op.session.token_hash in self._sessions:
            # Overwriting would hand someone else's session to this user.
            raise LocalProtocolError("a session with this token hash already exists")
        self._sessions[op.session.token_hash] = op.session

    def _get_session(self, op: GetSession) -> Session | None:
        return self._sessions.get(op.token_hash)

    def _delete_session(self, op: DeleteSession) -> bool:
        return self._sessions.pop(op.token_hash, None) is not None

    def _delete_sessions(self, op: DeleteSessions) -> int:
        doomed = [key for key, session in self._sessions.items() if session.user_id == op.user_id and session.kind == op.kind]
        for key in doomed:
            del self._sessions[key]
        return len(doomed)

    def _list_sessions(self, op: ListSessions) -> list[Session]:
        found = [s for s in self._sessions.values() if s.user_id == op.user_id and s.kind == op.kind]
        return sorted(found, key=lambda session: session.token_hash)

    def _set_user_role(self, op: SetUserRole) -> bool:
        user = self._users.get(op.user_id)
        if user is None:
            return False
        self._users[op.user_id] = msgspec.structs.replace(user, role=op.role)
        return True

    def _set_user_password(self, op: SetUserPassword) -> bool:
        user = self._users.get(op.user_id)
        if user is None:
            return False
        self._users[op.user_id] = msgspec.structs.replace(user, password_hash=op.password_hash)
        return True

    def _list_users(self, op: ListUsers) -> list[User]:
        search = op.search.lower()
        found = [user for _, user in sorted(self._users.items()) if search in user.email.lower()]
        return found[op.offset:op.offset + op.limit]

    def _held_roles(self, op: HeldRoles) -> frozenset[str]:
        return frozenset(user.role for user in self._users.values())

    # -- settings ------------------------------------------------------------

    def _get_setting(self, op: GetSetting) -> StoredSetting | None:
        return self._settings.get(op.name)

    def _put_setting(self, op: PutSetting) -> bool:
        if not isinstance(op.value, bytes):
            raise LocalProtocolError("a setting's value is bytes")
        stored = self._settings.get(op.name)
        current = 0 if stored is None else stored.revision
        if current != op.expected_revision:
            return False
        self._settings[op.name] = StoredSetting(op.value, current + 1)
        return True

    # -- token-addressed documents -------------------------------------------

    def _get_document(self, op: GetDocument) -> Document | None:
        return self._documents.get(op.read_token)

    def _list_documents(self, op: ListDocuments) -> list[Document]:
        # Insertion order is creation order: a write replaces the value in place.
        documents = list(self._documents.values())
        return documents[op.offset:op.offset + op.limit]

    def _get_document_by_write_key(self, op: GetDocumentByWriteKey) -> Document | None:
        read_token = self._read_tokens_by_write_key.get(op.write_key)
        return None if read_token is None else self._documents[read_token]

    def _put_document(self, op: PutDocument) -> bool:
        document = op.document
        if op.expected_revision < 0 or document.revision <= op.expected_revision:
            raise LocalProtocolError("a document's revision must grow with every write")
        if not isinstance(document.content, bytes):
            raise LocalProtocolError("a document's content is bytes")
        stored = self._documents.get(document.read_token)
        if op.expected_revision == 0:
            if stored is not None or document.write_key in self._read_tokens_by_write_key:
                return False
            self._read_tokens_by_write_key[document.write_key] = document.read_token
            self._documents[document.read_token] = document
            return True
        if stored is None or stored.write_key != document.write_key or stored.revision != op.expected_revision:
            return False
        # The token fields are fixed at creation: keep the stored ones.
        self._documents[document.read_token] = msgspec.structs.replace(
            stored, revision=document.revision, content=document.content
        )
        self._tables.pop(document.read_token, None)
        return True

    def _get_document_keys(self, op: GetDocumentKeys) -> list[DocumentKeys | None]:
        keys: list[DocumentKeys | None] = []
        for write_key in op.write_keys:
            read_token = self._read_tokens_by_write_key.get(write_key)
            if read_token is None:
                keys.append(None)
            else:
                d = self._documents[read_token]
                keys.append(DocumentKeys(d.read_token, d.write_key, d.write_hash, d.mac_key))
        return keys

    def _apply_message(self, op: ApplyMessage) -> MessageWrite:
        return self._apply_messages(ApplyMessages((MessageEdit(op.write_key, op.message_id, op.message),), op.now_ms, op.max_document_bytes))[0]

    def _apply_messages(self, op: ApplyMessages) -> list[MessageWrite]:
        incoming = check_messages(op)  # before anything is written: all or nothing
        writes: list[MessageWrite] = []
        for edit, revision in zip(op.edits, incoming):
            read_token = self._read_tokens_by_write_key.get(edit.write_key)
            if read_token is None:
                writes.append(MessageWrite("unknown"))
                continue
            document = self._documents[read_token]
            table = self._tables.get(read_token)
            if table is None:
                try:
                    table = MessageTable.from_content(document.content)
                except NotAnInbox:
                    writes.append(MessageWrite("not-inbox"))
                    continue
                self._tables[read_token] = table
            written = apply_to_table(table, document.revision, edit.message_id, edit.message, op.now_ms,
                                     op.max_document_bytes, revision)
            if written.revision is None:
                writes.append(MessageWrite(written.result))
                continue
            document = msgspec.structs.replace(document, revision=written.revision, content=table.content)
            self._documents[read_token] = document
            writes.append(MessageWrite(written.result, document, written.revision))
        return writes

    # -- entries (seed 004) ---------------------------------------------------

    def _get_entry(self, op: GetEntry) -> Entry | None:
        return self._entries.get((op.space, op.organization, op.project), {}).get(op.id)

    def _put_entry(self, op: PutEntry) -> bool:
        check_entry_write(op)
        entries = self._entries.setdefault((op.space, op.organization, op.project), {})
        stored = entries.get(op.id)
        if (0 if stored is None else stored.version) != op.expected_version:
            return False
        entries[op.id] = Entry(op.id, op.value, op.version, op.user_id)
        return True

    def _overwrite_entry(self, op: OverwriteEntry) -> int:
        check_entry_write(op)
        entries = self._entries.setdefault((op.space, op.organization, op.project), {})
        stored = entries.get(op.id)
        version = op.at_least if stored is None or stored.version < op.at_least else stored.version + 1
        entries[op.id] = Entry(op.id, op.value, version, op.user_id)
        return version

    def _delete_entry(self, op: DeleteEntry) -> bool:
        check_entry_write(op)
        entries = self._entries.get((op.space, op.organization, op.project), {})
        stored = entries.get(op.id)
        if stored is None or stored.value is None or stored.version != op.expected_version:
            return False
        entries[op.id] = Entry(op.id, None, op.version, op.user_id)
        return True

    def _list_entries(self, op: ListEntries) -> list[Entry]:
        # A sort per call: this store is for tests, where scopes are small.
        entries = self._entries.get((op.space, op.organization, op.project), {})
        ids = sorted(key for key, entry in entries.items()
                     if entry.value is not None and key.startswith(op.prefix) and key > op.after)
        return [entries[key] for key in ids[: max(op.limit, 0)]]


def check_messages(op: ApplyMessages) -> list[Any]:
    """The revision of each message of ``op`` (``None`` for a removal);
    raises ``InvalidMessage`` if one is not JSON with a numeric ``"#"``: a
    caller's bug, refused before anything is written."""
    revisions: list[Any] = []
    for edit in op.edits:
        revision = None
        if edit.message is not None:
            try:
                revision = revision_of(_decode(edit.message))
            except (msgspec.DecodeError, UnicodeDecodeError):
                pass
            if revision is None:
                raise InvalidMessage('The message\'s "#" must be a number')
        revisions.append(revision)
    return revisions


#: Operations that only read: never stamped. Every other operation is a write.
_READS: frozenset[type[Operation]] = frozenset({
    GetRecord, ListRecords, ListCollections, ListRecordRange, SearchRecords, QueryRecords, GetUserByEmail,
    GetUser, GetSession, ListSessions, HeldRoles, GetSetting, GetDocument, GetDocumentByWriteKey, GetEntry,
    ListEntries, ListUsers, ListDocuments, GetDocumentKeys,
})
#: Writes that succeed only by changing something (they raise otherwise).
_ALWAYS_CHANGE = (InsertRecord, InsertNumbered, TakeNumber, InsertSession)


def _changed(operation: Operation, result: Any) -> bool:
    """Whether a write that returned ``result`` changed stored state: not a
    refused compare-and-swap (``False``), a delete of nothing (``None``,
    ``[]``, ``0``) or a merge that kept what was stored."""
    if isinstance(operation, _ALWAYS_CHANGE):
        return True
    if isinstance(result, MessageWrite):
        return result.document is not None
    if isinstance(result, list) and result and isinstance(result[0], MessageWrite):
        return any(write.document is not None for write in result)
    return bool(result)


def check_entry_write(op: PutEntry | OverwriteEntry | DeleteEntry) -> None:
    """Refuse a write of an entry that breaks the operation's contract (a
    caller's bug): versions only grow, values are bytes."""
    if type(op) is OverwriteEntry:
        if op.at_least <= 0:
            raise LocalProtocolError("an entry's version is positive")
    elif op.expected_version < 0 or op.version <= op.expected_version:
        raise LocalProtocolError("an entry's version must grow with every write")
    if type(op) is not DeleteEntry and not isinstance(op.value, bytes):
        raise LocalProtocolError("an entry's value is bytes")
