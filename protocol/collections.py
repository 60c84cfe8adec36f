"""Writes to collections, shared by every protocol.

Each function here is an action (see ``operations``): it yields storage
operations and returns the resulting record together with the one ``Change``
the write produced (``None`` when nothing was written). Backpack's REST API,
its websocket actions and the other protocols all call these, so a record
written through any of them looks the same and produces the same event.

Read-modify-write (patch, overwrite) uses the store's compare-and-swap and
retries on conflict, so concurrent writers never lose each other's fields.

``guard(before, after)``, when given, decides a write from the record as it
is (``None`` for a create) and as it will be (``None`` for a delete) just
before it is made - on every attempt of a compare-and-swap loop - and
raises (``permissions.Forbidden``) to refuse it: how the rules
(``satchel.protocol.permissions.check_write``) reach every protocol's writes.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .changes import DELETED, Change, ChangeKind
from .environment import Environment
from .errors import RemoteProtocolError
from .operations import Action, DeleteRecord, GetRecord, InsertRecord, ReplaceRecord, StoredRecord
from .records import format_timestamp, new_record, overwrite_record, patch_record

#: Decides a write from the record before and after it; raises to refuse.
Guard = Callable[[dict[str, Any] | None, dict[str, Any] | None], None]

__all__ = [
    "Guard",
    "HIDDEN_COLLECTIONS",
    "RESERVED_PREFIX",
    "ENTRY_COLLECTIONS",
    "is_hidden_collection",
    "validate_collection_name",
    "create",
    "patch",
    "overwrite",
    "delete",
]

#: Names that are never collections: the account store and file metadata are
#: kept apart and must not be reachable, listed or shadowed through a collection.
HIDDEN_COLLECTIONS = frozenset({"users", "uploads", "sessions"})

#: What the collections of other protocols' own data start with (Asnity's
#: ``_asnity.chats``...). No Backpack name can start with it, so Backpack
#: can neither read nor write them, and it never lists or renders them.
RESERVED_PREFIX = "_"


#: The names the permission rules give the resource protocol's key-value
#: store and live configuration (``satchel.protocol.resources``): a rule file
#: may name them like collections, so no record collection may take them
#: (compared without case, like the hidden names).
ENTRY_COLLECTIONS = frozenset({"kvstore", "liveconfig"})


def is_hidden_collection(name: str) -> bool:
    """Whether ``name`` is never shown as a Backpack collection."""
    return name.lower() in HIDDEN_COLLECTIONS or name.startswith(RESERVED_PREFIX)

_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")

# A CAS loop that keeps losing means something is hammering one record; after
# this many attempts the caller gets an error instead of spinning forever.
_MAX_ATTEMPTS = 64


def validate_collection_name(name: object) -> str:
    """Return ``name`` if it may name a collection, else raise ``RemoteProtocolError``.

    Names are 1-64 characters of letters, digits, ``_``, ``.`` and ``-``,
    starting with a letter or digit, and not one of ``HIDDEN_COLLECTIONS``
    or ``ENTRY_COLLECTIONS``.
    """
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name):
        raise RemoteProtocolError(
            "collection names are 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
            400,
        )
    if name.lower() in HIDDEN_COLLECTIONS or name.lower() in ENTRY_COLLECTIONS:
        raise RemoteProtocolError(f"'{name}' is reserved and cannot be used as a collection", 403)
    return name


def create(
    collection: str, data: dict[str, Any], user_id: str | None, origin: str, env: Environment,
    guard: Guard | None = None,
) -> Action[tuple[dict[str, Any], Change]]:
    """Insert a new record holding ``data``."""
    record = new_record(data, env.new_id(), format_timestamp(env.now_ms()))
    if guard is not None:
        guard(None, record)
    yield InsertRecord(collection, record)
    return record, Change(collection, "create", record, user_id, origin, revision=1)


def _rewrite(
    kind: ChangeKind,
    collection: str,
    record_id: str,
    data: dict[str, Any],
    user_id: str | None,
    origin: str,
    env: Environment,
    guard: Guard | None = None,
) -> Action[tuple[dict[str, Any] | None, Change | None]]:
    rewrite = patch_record if kind == "patch" else overwrite_record
    for _ in range(_MAX_ATTEMPTS):
        stored: StoredRecord | None = yield GetRecord(collection, record_id)
        if stored is None:
            return None, None
        record = rewrite(stored.record, data, format_timestamp(env.now_ms()))
        if guard is not None:
            guard(stored.record, record)
        if (yield ReplaceRecord(collection, record, stored.revision)):
            return record, Change(collection, kind, record, user_id, origin, revision=stored.revision + 1)
    raise RemoteProtocolError("the record is changing too fast; try again", 409)


def patch(
    collection: str, record_id: str, changes: dict[str, Any], user_id: str | None, origin: str, env: Environment,
    guard: Guard | None = None,
) -> Action[tuple[dict[str, Any] | None, Change | None]]:
    """Merge ``changes`` into a record (``null`` removes a field); ``(None, None)`` if absent."""
    return (yield from _rewrite("patch", collection, record_id, changes, user_id, origin, env, guard))


def overwrite(
    collection: str, record_id: str, data: dict[str, Any], user_id: str | None, origin: str, env: Environment,
    guard: Guard | None = None,
) -> Action[tuple[dict[str, Any] | None, Change | None]]:
    """Replace every field of a record with ``data``; ``(None, None)`` if absent."""
    return (yield from _rewrite("overwrite", collection, record_id, data, user_id, origin, env, guard))


def delete(
    collection: str, record_id: str, user_id: str | None, origin: str, guard: Guard | None = None
) -> Action[tuple[dict[str, Any] | None, Change | None]]:
    """Remove a record and return it; ``(None, None)`` if absent.

    With a ``guard`` the record is read first and the guard decides on it
    (a write between that read and the delete is not seen: deletes have no
    compare-and-swap)."""
    if guard is not None:
        stored: StoredRecord | None = yield GetRecord(collection, record_id)
        if stored is None:
            return None, None
        guard(stored.record, None)
    record = yield DeleteRecord(collection, record_id)
    if record is None:
        return None, None
    return record, Change(collection, "delete", record, user_id, origin, revision=DELETED)
