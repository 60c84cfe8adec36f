"""Inbox documents at the byte level, and the message write shared by HTTP and UDP.

A document's content is kept as the exact bytes its owner PUT. Merging a
message must not disturb the rest of it, so the content is decoded only one
level deep, its values kept as raw JSON (``msgspec.Raw``): a merge rewrites
the top-level object (dropping the whitespace between its members and any
duplicate key, whose last value counts - as in every JSON.parse) and the
``#messages`` object, and leaves every other value byte for byte as it was.

Stores keep an inbox's messages apart, one row per (document, message id)
with its revision, so that a merge writes one message and the document's
revision, not the whole document (seed 001's inboxes fill up: rewriting a
38 KB ``#messages`` object cost ~145 us a merge). ``MessageTable`` is that
bookkeeping as a pure object every store shares: the bytes before and after
the ``#messages`` object (``head``, ``tail``), the messages by id in sorted
order in runs whose bytes stay joined, so that a write re-joins one run
and the content is one join of the runs. ``apply_to_table`` is
``apply_message`` on a table; both give byte for byte the same document
(``merge_into`` and ``remove_from`` are the definition; the tests hold the
table to them).

``write_message`` is the one action that changes an inbox, whichever
transport asked. It yields one ``ApplyMessage``, which the store carries out
atomically by calling ``apply_message`` here: the merge rule (``merge.py``),
and the document's revision bumped to ``max(revision + 1, now)`` so that
``If-Newer-Than`` readers notice. A write that changes nothing is not made.

Why the store applies the rule, rather than the core writing with a
compare-and-swap: an inbox is one document with many senders. Under
compare-and-swap, every concurrent sender but one loses each round and
retries, and with SQLite's group commit one document takes one write per
commit (benches/bench_inbox.py measured retries and, at 256 tasks, senders
starved). Applied in the store, the writes to one inbox queue up and a
batch applies them one after another.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Iterable

import msgspec

from ..changes import DocumentChange
from ..environment import Environment
from ..operations import Action, ApplyMessage, ApplyMessages, Document, MessageEdit, MessageResult, MessageWrite
from . import merge
from .config import InboxConfig

__all__ = [
    "MESSAGES_KEY",
    "InvalidJson",
    "NotAnInbox",
    "decode_json",
    "is_inbox",
    "merge_into",
    "remove_from",
    "apply_message",
    "MessageTable",
    "TableWrite",
    "apply_to_table",
    "write_message",
    "write_messages",
]

#: Seed 001: "Documents with a #messages key at the first level are inbox documents."
MESSAGES_KEY = "#messages"

_decode_any = msgspec.json.Decoder().decode
_decode_members = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_encode = msgspec.json.Encoder().encode
_WHITESPACE = b" \t\r\n"


class InvalidJson(ValueError):
    """Bytes that are not one JSON value in UTF-8."""


class NotAnInbox(Exception):
    """The document has no top-level ``#messages`` object."""


def decode_json(data: bytes) -> Any:
    """``data`` decoded as JSON; raises ``InvalidJson``.

    msgspec is strict: invalid UTF-8, lone surrogates, numbers out of a
    double's range and trailing data are all refused, so whatever passes can
    be stored and served as it is.
    """
    try:
        return _decode_any(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidJson(str(exc)) from None


def _inbox_parts(content: bytes) -> tuple[dict[str, msgspec.Raw], dict[str, msgspec.Raw]]:
    """The top-level members and the messages of an inbox; raises ``NotAnInbox``."""
    try:
        members = _decode_members(content)
        raw_messages = members[MESSAGES_KEY]
        return members, _decode_members(raw_messages)
    except (msgspec.DecodeError, UnicodeDecodeError, KeyError):
        raise NotAnInbox from None


def is_inbox(content: bytes) -> bool:
    """Whether ``content`` is an object with a ``#messages`` object at its top level."""
    try:
        _inbox_parts(content)
    except NotAnInbox:
        return False
    return True


def _raw_revision(message: msgspec.Raw) -> merge.Revision | None:
    try:
        return merge.revision_of(_decode_any(message))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def merge_into(content: bytes, message_id: str, message: bytes) -> bytes | None:
    """Inbox ``content`` with ``message`` (valid JSON bytes) merged in under
    ``message_id``; ``None`` when that changes nothing.

    Raises ``NotAnInbox``, or ``merge.InvalidMessage`` if the message's
    ``"#"`` is not a number.
    """
    members, messages = _inbox_parts(content)
    merged = merge.merge(messages, message_id, msgspec.Raw(message.strip(_WHITESPACE)), _raw_revision)
    if merged is None:
        return None
    members[MESSAGES_KEY] = merged  # type: ignore[assignment]  # a dict of Raw encodes as an object
    return _encode(members)


def remove_from(content: bytes, message_id: str) -> bytes | None:
    """Inbox ``content`` without message ``message_id``; ``None`` when it had
    no such message. Raises ``NotAnInbox``."""
    members, messages = _inbox_parts(content)
    remaining = merge.remove(messages, message_id)
    if remaining is None:
        return None
    members[MESSAGES_KEY] = remaining  # type: ignore[assignment]
    return _encode(members)


def apply_message(
    document: Document, message_id: str, message: bytes | None, now_ms: int, max_document_bytes: int
) -> MessageWrite:
    """The write that merges ``message`` into ``document`` under
    ``message_id`` (``None``: removes that message), as a pure function:
    stores run it inside their transaction for ``ApplyMessage``.

    A write that changes the inbox bumps its revision to ``max(revision + 1,
    now_ms)``; one that changes nothing is not made (``done`` without a
    document). A merge may not grow the document beyond
    ``max_document_bytes``; a removal always may shrink it.
    """
    try:
        if message is None:
            content = remove_from(document.content, message_id)
        else:
            content = merge_into(document.content, message_id, message)
    except NotAnInbox:
        return MessageWrite("not-inbox")
    if content is None:
        return MessageWrite("done")
    if message is not None and len(content) > max_document_bytes:
        return MessageWrite("too-large")
    written = msgspec.structs.replace(document, revision=max(document.revision + 1, now_ms), content=content)
    return MessageWrite("done", written, written.revision)


_MESSAGES_NAME = _encode(MESSAGES_KEY)


class MessageTable:
    """An inbox held as its messages apart from the rest of its content.

    ``head`` is the content's bytes up to and including ``"#messages":``,
    ``tail`` what follows the ``#messages`` object; between them the
    messages, ``{"id":message,...}`` in sorted id order - exactly the bytes
    ``merge_into`` writes. ``revisions`` and ``bodies`` hold each message's
    revision (``None``: its ``"#"`` is not a number) and raw JSON. A store
    persists the same pieces (a row per message) and rebuilds a table from
    them with ``from_rows``.

    The ids are kept in sorted runs of at most ``2 * RUN`` (the layout of
    ``sortedcontainers``), each with its entries' bytes joined once, so a
    write re-joins one run and ``content`` joins the runs: no decode or
    encode of the other messages, one copy of the document's bytes.
    """

    RUN = 64

    __slots__ = ("head", "tail", "revisions", "bodies", "size", "_runs", "_maxes", "_joined", "_content")

    def __init__(self, head: bytes, tail: bytes, rows: Iterable[tuple[str, merge.Revision | None, bytes]] = ()) -> None:
        self.head = head
        self.tail = tail
        self.revisions: dict[str, merge.Revision | None] = {}
        self.bodies: dict[str, bytes] = {}
        for message_id, revision, body in rows:
            self.revisions[message_id] = revision
            self.bodies[message_id] = body
        ids = sorted(self.bodies)
        self._runs: list[list[str]] = [ids[start : start + self.RUN] for start in range(0, len(ids), self.RUN)]
        self._maxes: list[str] = [run[-1] for run in self._runs]
        self._joined: list[bytes | None] = [None] * len(self._runs)
        entries = sum(len(_encode(message_id)) + 1 + len(body) for message_id, body in self.bodies.items())
        self.size = len(head) + 2 + entries + max(len(ids) - 1, 0) + len(tail)
        self._content: bytes | None = None

    @classmethod
    def from_content(cls, content: bytes) -> "MessageTable":
        """The table of inbox ``content``; raises ``NotAnInbox``. Its
        ``content`` is what the first merge into ``content`` writes: the top
        level re-encoded (duplicate keys resolved as JSON.parse does), the
        messages in sorted order, every value byte for byte."""
        members, messages = _inbox_parts(content)
        parts = [_encode(key) + b":" + value for key, value in members.items()]
        at = list(members).index(MESSAGES_KEY)
        before, after = parts[:at], parts[at + 1 :]
        head = b"{" + b"".join(part + b"," for part in before) + _MESSAGES_NAME + b":"
        tail = b"".join(b"," + part for part in after) + b"}"
        return cls(head, tail, ((key, _raw_revision(value), bytes(value)) for key, value in messages.items()))

    @classmethod
    def from_rows(cls, head: bytes, tail: bytes, rows: Iterable[tuple[str, merge.Revision | None, bytes]]) -> "MessageTable":
        """A table from what a store persisted: ``head``, ``tail`` and
        (message id, revision, body) rows in any order."""
        return cls(head, tail, rows)

    def __len__(self) -> int:
        return len(self.bodies)

    @property
    def ids(self) -> list[str]:
        """The message ids, sorted."""
        return [message_id for run in self._runs for message_id in run]

    @property
    def content(self) -> bytes:
        """The document's content, as ``merge_into`` would have written it."""
        if self._content is None:
            joined = self._joined
            bodies = self.bodies
            for index, run in enumerate(self._runs):
                if joined[index] is None:
                    joined[index] = b",".join([_encode(message_id) + b":" + bodies[message_id] for message_id in run])
            # One join, one copy of the document's bytes.
            parts: list[bytes] = [self.head, b"{"]
            for index, run_bytes in enumerate(joined):
                if index:
                    parts.append(b",")
                parts.append(run_bytes)  # type: ignore[arg-type]
            parts += (b"}", self.tail)
            self._content = b"".join(parts)
        return self._content

    def _run_of(self, message_id: str) -> int:
        index = bisect_left(self._maxes, message_id)
        return min(index, len(self._runs) - 1)

    def put(self, message_id: str, revision: merge.Revision | None, body: bytes, key: bytes | None = None) -> None:
        """Store ``body`` under ``message_id`` (added, or replacing it);
        ``key`` is ``message_id`` JSON-encoded, if the caller has it."""
        stored = self.bodies.get(message_id)
        if stored is not None:
            self.size += len(body) - len(stored)
            self._joined[self._run_of(message_id)] = None
        else:
            self.size += len(key or _encode(message_id)) + 1 + len(body) + (1 if self.bodies else 0)
            if not self._runs:
                self._runs.append([message_id])
                self._maxes.append(message_id)
                self._joined.append(None)
            else:
                index = self._run_of(message_id)
                run = self._runs[index]
                insort(run, message_id)
                self._maxes[index] = run[-1]
                self._joined[index] = None
                if len(run) > 2 * self.RUN:
                    # Split a run grown too long in two.
                    half = run[self.RUN :]
                    del run[self.RUN :]
                    self._maxes[index] = run[-1]
                    self._runs.insert(index + 1, half)
                    self._maxes.insert(index + 1, half[-1])
                    self._joined.insert(index + 1, None)
        self.revisions[message_id] = revision
        self.bodies[message_id] = body
        self._content = None

    def remove(self, message_id: str) -> bool:
        """Drop ``message_id``; whether there was such a message."""
        stored = self.bodies.pop(message_id, None)
        if stored is None:
            return False
        del self.revisions[message_id]
        self.size -= len(_encode(message_id)) + 1 + len(stored) + (1 if self.bodies else 0)
        index = self._run_of(message_id)
        run = self._runs[index]
        run.remove(message_id)
        if run:
            self._maxes[index] = run[-1]
            self._joined[index] = None
        else:
            del self._runs[index], self._maxes[index], self._joined[index]
        self._content = None
        return True

    def size_with(self, message_id: str, body: bytes, key: bytes | None = None) -> int:
        """The content's length once ``body`` is stored under ``message_id``."""
        stored = self.bodies.get(message_id)
        if stored is not None:
            return self.size + len(body) - len(stored)
        return self.size + len(key or _encode(message_id)) + 1 + len(body) + (1 if self.bodies else 0)


class TableWrite(msgspec.Struct, frozen=True):
    """What ``apply_to_table`` did: ``result`` as in ``MessageWrite``, and
    when the inbox changed, its new ``revision`` and the message row
    written (``body``/``revision`` of ``message_id``; ``body`` ``None``:
    the row was removed). The table has been updated already."""

    result: MessageResult
    revision: int | None = None
    message_id: str = ""
    body: bytes | None = None
    message_revision: merge.Revision | None = None


def apply_to_table(
    table: MessageTable,
    revision: int,
    message_id: str,
    message: bytes | None,
    now_ms: int,
    max_document_bytes: int,
    incoming: merge.Revision | None = None,
) -> TableWrite:
    """``apply_message`` on an inbox held as ``table`` at ``revision``:
    the same rule, the same answers, the same bytes; updates ``table``.
    ``incoming`` is the message's revision when the caller has decoded it
    already (``None``: it is decoded here).

    Raises ``merge.InvalidMessage`` for a message that is not JSON with a
    numeric ``"#"`` (a caller's bug: the core checks first).
    """
    new_revision = max(revision + 1, now_ms)
    if message is None:
        if not table.remove(message_id):
            return TableWrite("done")
        return TableWrite("done", new_revision, message_id)
    body = message.strip(_WHITESPACE)
    if incoming is None:
        incoming = _raw_revision(body)
        if incoming is None:
            raise merge.InvalidMessage('The message\'s "#" must be a number')
    if message_id in table.bodies and not merge.supersedes(incoming, table.revisions[message_id]):
        return TableWrite("done")
    key = _encode(message_id)
    if table.size_with(message_id, body, key) > max_document_bytes:
        return TableWrite("too-large")
    table.put(message_id, incoming, body, key)
    return TableWrite("done", new_revision, message_id, body, incoming)


def write_message(
    write_key: str,
    message_id: str,
    message: bytes | None,
    origin: str,
    config: InboxConfig,
    env: Environment,
) -> Action[tuple[MessageResult, DocumentChange | None]]:
    """Merge ``message`` into the inbox with ``write_key`` under
    ``message_id`` (``None``: remove that message).

    ``message`` must already be valid JSON with a valid revision (the
    transports check, to answer in their own words). Returns what happened
    and the change event of the write, if one was made.
    """
    written: MessageWrite = yield ApplyMessage(write_key, message_id, message, env.now_ms(), config.max_document_bytes)
    document = written.document
    if document is None:
        return written.result, None
    return written.result, DocumentChange(document.read_token, document.revision, document.content, origin)


def write_messages(
    edits: list[MessageEdit], origin: str, config: InboxConfig, env: Environment
) -> Action[list[tuple[MessageResult, DocumentChange | None]]]:
    """``write_message`` for a batch of edits, in one ``ApplyMessages``
    (one store write, one group commit): what each did and its change
    event, if it wrote."""
    if not edits:
        return []
    written: list[MessageWrite] = yield ApplyMessages(tuple(edits), env.now_ms(), config.max_document_bytes)
    results: list[tuple[MessageResult, DocumentChange | None]] = []
    for write in written:
        document = write.document
        change = None if document is None else DocumentChange(document.read_token, document.revision, document.content, origin)
        results.append((write.result, change))
    return results
