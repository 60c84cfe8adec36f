"""The message merge rule of inbox documents (seed 001), as pure functions.

A document whose top level has a ``#messages`` object is an inbox; that
object holds the messages, keyed by message id. Seed 001: "Messages can be
updated by sending a message with the same ID, and a newer revision field
("#": ...). [...] If no revision field is present, the revision is assumed
to be 0." So:

- a message's revision is its ``"#"`` field, 0 when absent (or when the
  message is not an object); it must be a JSON number (``true`` is not);
- a message with a new id is added;
- for an existing id, a strictly higher revision replaces the stored
  message and a tie (or lower) keeps what is stored - a message delivered
  again changes nothing;
- a stored message whose ``"#"`` is not a number (an owner may PUT anything)
  ranks below every revision, so the next valid message replaces it.

Convergence: for messages where an (id, revision) pair names one message -
which is what a revision promises - the result depends only on the set
delivered, not on their order or how often each arrives: per id the highest
revision wins, and ties are copies of one message. The functions keep the
ids in sorted order, so equal sets give byte-identical documents.

Removal (``remove``) is not a forward operation: as the seed warns, after a
removal an older version of the message can be merged again.

The functions are generic in how a message is held: the core keeps stored
messages as raw JSON (``msgspec.Raw``) and passes a ``revision`` function
that decodes one; tests use decoded values and the default.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, TypeVar

__all__ = ["Revision", "InvalidMessage", "revision_of", "supersedes", "merge", "remove"]

#: A message revision: a JSON number.
Revision = int | float
M = TypeVar("M")


class InvalidMessage(ValueError):
    """A message that cannot be merged: its ``"#"`` is not a JSON number."""


def revision_of(message: Any) -> Revision | None:
    """The revision of a decoded message, or ``None`` if its ``"#"`` is not a
    finite number (a bool is not a number)."""
    if not isinstance(message, dict):
        return 0
    revision = message.get("#", 0)
    if isinstance(revision, bool) or not isinstance(revision, (int, float)):
        return None
    if isinstance(revision, float) and not math.isfinite(revision):
        return None
    return revision


def supersedes(incoming: Revision, stored: Revision | None) -> bool:
    """Whether a message at revision ``incoming`` replaces a stored one at
    ``stored`` (``None``: the stored one has no valid revision)."""
    return stored is None or incoming > stored


def merge(
    messages: Mapping[str, M],
    message_id: str,
    message: M,
    revision: Callable[[M], Revision | None] = revision_of,
) -> dict[str, M] | None:
    """``messages`` with ``message`` merged in under ``message_id``, ids in
    sorted order; ``None`` when the merge changes nothing.

    Raises ``InvalidMessage`` if ``message`` has no valid revision.
    """
    incoming = revision(message)
    if incoming is None:
        raise InvalidMessage('The message\'s "#" must be a number')
    if message_id in messages and not supersedes(incoming, revision(messages[message_id])):
        return None
    merged = dict(messages)
    merged[message_id] = message
    return dict(sorted(merged.items()))


def remove(messages: Mapping[str, M], message_id: str) -> dict[str, M] | None:
    """``messages`` without ``message_id``, ids in sorted order; ``None`` when
    there was no such message."""
    if message_id not in messages:
        return None
    return {key: value for key, value in sorted(messages.items()) if key != message_id}
