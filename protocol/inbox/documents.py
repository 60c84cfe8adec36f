"""Inbox documents at the byte level, and the message write shared by HTTP and UDP.

A document's content is kept as the exact bytes its owner PUT. Merging a
message must not disturb the rest of it, so the content is decoded only one
level deep, its values kept as raw JSON (``msgspec.Raw``): a merge rewrites
the top-level object (dropping the whitespace between its members and any
duplicate key, whose last value counts - as in every JSON.parse) and the
``#messages`` object, and leaves every other value byte for byte as it was.

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

from typing import Any

import msgspec

from ..changes import DocumentChange
from ..environment import Environment
from ..operations import Action, ApplyMessage, Document, MessageResult, MessageWrite
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
    "write_message",
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
    return MessageWrite("done", written)


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
