"""Backpack under the one rule set (``satchel.protocol.permissions``).

Backpack itself had no permissions: any logged-in user could do anything to
any record. The default rules say exactly that, and then ``permit`` answers
``None`` ("nothing to check") without reading the user's role, so the
original's behaviour costs nothing extra. Under rules that limit a role,
every record action asks its ``Permit``:

- reads keep only the records the user's read rule admits, cut to its
  readable fields (a single record the user may not read is answered as
  missing: Backpack has no "forbidden record" answer, and 404 does not
  reveal that it exists);
- a ``find`` whose query names a field the user may not read is refused
  (a filter on a hidden field would reveal its value);
- writes are decided by ``check_write`` on the record before and after,
  through the guard of ``satchel.protocol.collections``;
- a refusal is ``permissions.Forbidden``, which Backpack answers in its own
  format, in the original's words for a refusal: 403
  ``{"message":"Unauthorized"}`` over HTTP, ``{"action":"error",
  "message":"Unauthorized","failedAction":...}`` on the websocket.

The channel actions keep their bookkeeping writes (a user's own
users-information document, a channel's document) under the rules of the
collections they name, as any other write; ``deleteChannel`` keeps its own
owner check too.
"""

from __future__ import annotations

from typing import Any

from ..collections import Guard
from ..environment import Environment
from ..operations import Action, ListRecords, QueryRecords
from ..permissions import (
    Accountability,
    CurrentRules,
    UserRole,
    FieldSet,
    Forbidden,
    PermissionAction,
    RuleSet,
    can,
    check_write,
    read_filter,
    read_query,
    readable_fields,
    variables_for,
)
from ..query import Query, matches, redact
from ..query.evaluate import ALL_FIELDS

__all__ = ["Permit", "guard_of", "permit", "shown", "who_is"]


def who_is(user_id: str) -> Action[Accountability]:
    """-> the ``Accountability`` of a signed-in user, with its stored role
    (an account deleted under a live session counts as nobody)."""
    role: str | None = yield UserRole(user_id)
    if role is None:
        return Accountability()
    return Accountability(user_id, role)


class Permit:
    """What the rules let one user do in one collection."""

    __slots__ = ("rules", "who", "collection", "now_ms", "_readable")

    def __init__(self, rules: RuleSet, who: Accountability, collection: str, now_ms: int) -> None:
        self.rules = rules
        self.who = who
        self.collection = collection
        self.now_ms = now_ms
        self._readable: FieldSet | None = None

    @property
    def readable(self) -> FieldSet:
        if self._readable is None:
            self._readable = readable_fields(self.rules, self.who, self.collection)
        return self._readable

    def require(self, action: PermissionAction) -> None:
        """Refuse unless the user may do ``action`` to some record here."""
        if not can(self.rules, self.who, self.collection, action):
            raise Forbidden()

    def shown(self, record: dict[str, Any] | None) -> dict[str, Any] | None:
        """The part of ``record`` the user may read, or ``None``."""
        if record is None or not can(self.rules, self.who, self.collection, "read", record, now_ms=self.now_ms):
            return None
        return redact(record, self.readable)

    def shows_whole(self, record: dict[str, Any]) -> bool:
        """Whether the user may read ``record`` with every field: then what
        it is shown is the record as stored (``shown`` would copy it whole)."""
        return self.readable == ALL_FIELDS and can(self.rules, self.who, self.collection, "read", record,
                                                    now_ms=self.now_ms)

    def guard(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        """``collections``' guard: decide a write by the record before and after."""
        check_write(self.rules, self.who, self.collection, before, after, now_ms=self.now_ms)

    def list_all(self) -> QueryRecords:
        """The read of every record the user may see, pushed into the store."""
        return read_query(self.rules, self.who, self.collection, Query(), now_ms=self.now_ms)

    def find(self, query: dict[str, Any]) -> Action[list[dict[str, Any]]]:
        """-> the records matching a Backpack ``find`` query that the user may see."""
        readable = self.readable
        if not readable:
            raise Forbidden()
        if readable != ALL_FIELDS:
            hidden = sorted({key.split(".", 1)[0] for key in query} - readable)
            if hidden:
                raise Forbidden(f"You don't have permission to access field \"{hidden[0][:64]}\".")
        records = yield ListRecords(self.collection, query)
        allowed = read_filter(self.rules, self.who, self.collection)
        variables = variables_for(self.who, self.now_ms)
        return [redact(r, readable) for r in records if matches(allowed, r, variables)]


def permit(user_id: str, collection: str, env: Environment, *actions: PermissionAction) -> Action[Permit | None]:
    """-> ``None`` when the rules let every signed-in user do each of
    ``actions`` to every record of ``collection`` with every field (nothing
    to check: the default rules), else the user's ``Permit`` there."""
    rules: RuleSet = yield CurrentRules()
    for action in actions:  # a loop, not all(<generator>): every REST call asks this
        if not rules.unrestricted(collection, action):
            break
    else:
        return None
    who = yield from who_is(user_id)
    return Permit(rules, who, collection, env.now_ms())


def guard_of(permit: Permit | None) -> Guard | None:
    """The guard for ``collections``' writes (``None``: nothing to check)."""
    return None if permit is None else permit.guard


def shown(permit: Permit | None, record: dict[str, Any]) -> dict[str, Any] | None:
    """What the user may read of ``record`` (all of it without a permit)."""
    return record if permit is None else permit.shown(record)
