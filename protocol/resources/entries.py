"""Entries: the key-value store (``kvStore``) and live configuration
(``liveConfig``) of seed 004, read and written under the one rule set.

Scope. Every entry lives in a scope, ``(organization, project)``, taken
from the ``x-m2-organization`` / ``x-m2-project`` headers (on a websocket,
possibly from its ``Sec-WebSocket-Protocol``); a header that is absent or
empty leaves its half of the scope ``""``, so no headers at all is one
default scope. Two scopes never see each other's entries: the scope is
part of every storage operation's key.

Ids are 1 to ``max_id_chars`` characters of any Unicode but control
characters: ``:`` (the seed's ``World:kvstoreClient:testKey``), ``/``,
``../`` and emoji are plain characters of a key, which never becomes a
path. Values are any JSON value, stored as the exact bytes sent (after a
check that they are JSON), at most ``max_value_bytes``.

Versions (``versions``). A write reads the entry, computes the next version
from ``env.now_ms()`` (the clock, or the last version + 1 ms when the clock
has not moved past it) and writes by compare-and-swap on the version it
read, retrying when another writer got there first: concurrent writers can
never store equal or decreasing versions. When the writer's rules allow
any value whether the entry exists or not (the default rules do), the read
is needless and so is the turn-taking: the write is one ``OverwriteEntry``
and the store picks the same next version itself, so a burst of writers of
one hot entry commits in one batch (the kv fan-out bench: 8 writers in
flight had committed one per batch). A delete leaves a tombstone with
its version, so a value written after it gets a greater one still; a
subscriber of a deleted entry keeps its subscription.

Rules. For the rules each space is a collection of its own, named
``kvStore`` / ``liveConfig`` (the default rules let every signed-in user do
everything and the public role nothing, as for Backpack's collections).
The item a rule's filter sees is ``entry_item``: ``{"_id", "id",
"organization", "project", "data"}``, so a rule can confine a role to one
organization (``{"organization": {"_eq": "acme"}}``) or to entries whose
id starts with something (``{"id": {"_starts_with": "public:"}}``). A
write also needs ``data`` among the rule's ``fields`` (``"*"`` by
default); a read shows an entry whole, or not at all.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping

import msgspec

from ..changes import EntryChange
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..operations import Action, DeleteEntry, Entry, GetEntry, ListEntries, OverwriteEntry, PutEntry
from ..permissions import Accountability, Forbidden, RuleSet, variables_for
from ..query import MATCH_ALL, matches
from ..query.evaluate import ALL_FIELDS
from .config import ResourcesConfig
from .versions import next_version

__all__ = [
    "ORIGIN_HTTP",
    "ORGANIZATION_HEADER",
    "PROJECT_HEADER",
    "Scope",
    "DEFAULT_SCOPE",
    "ResourceError",
    "scope_of",
    "validate_entry_id",
    "entry_item",
    "may",
    "read_entry",
    "put_entry",
    "delete_entry",
    "list_entries",
]

#: ``EntryChange.origin`` of writes made over HTTP.
ORIGIN_HTTP = "resources-http"
ORGANIZATION_HEADER = "x-m2-organization"
PROJECT_HEADER = "x-m2-project"

# A compare-and-swap that keeps losing means one entry is hammered; give up
# with a 409 rather than spin.
_MAX_ATTEMPTS = 64

_json = msgspec.json.Decoder()


class ResourceError(RemoteProtocolError):
    """An error of this protocol: ``status``, a short ``title`` (the JSON's
    ``error``), a ``code`` and a ``message`` safe to show."""

    def __init__(self, status: int, title: str, code: str, message: str) -> None:
        super().__init__(message, status)
        self.title = title
        self.code = code


def invalid(message: str) -> ResourceError:
    """A request or message that is not valid (400)."""
    return ResourceError(400, "Invalid request", "invalid_request", message)


class Scope(msgspec.Struct, frozen=True):
    """Whose entries: ``organization`` and ``project`` (``""``: none given)."""

    organization: str = ""
    project: str = ""


DEFAULT_SCOPE = Scope()


def _scope_part(value: str | None, name: str, config: ResourcesConfig) -> str:
    value = (value or "").strip()
    if len(value) > config.max_scope_chars or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise invalid(f"{name} is at most {config.max_scope_chars} characters, without control characters")
    return value


def scope_of(headers: Callable[[str], str | None] | Mapping[str, str], config: ResourcesConfig) -> Scope:
    """The scope the headers name (``headers(name)`` or a mapping of
    lower-case names); raises ``ResourceError`` for a bad value."""
    get = headers.get if isinstance(headers, Mapping) else headers
    return Scope(_scope_part(get(ORGANIZATION_HEADER), ORGANIZATION_HEADER, config),
                 _scope_part(get(PROJECT_HEADER), PROJECT_HEADER, config))


def _bad_char(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000


def validate_entry_id(value: object, config: ResourcesConfig) -> str:
    """``value`` if it may be an entry id, else ``ResourceError`` (400)."""
    if not isinstance(value, str) or not value:
        raise invalid("an id is a non-empty string")
    if len(value) > config.max_id_chars:
        raise invalid(f"an id is at most {config.max_id_chars} characters")
    if any(_bad_char(char) for char in value):
        raise invalid("an id has no control characters")
    return value


def entry_item(scope: Scope, entry_id: str, value: bytes | None) -> dict[str, Any]:
    """What a rule's filter sees of an entry (see the module docstring)."""
    return {"_id": entry_id, "id": entry_id, "organization": scope.organization, "project": scope.project,
            "data": None if value is None else _json.decode(value)}


def may(rules: RuleSet, who: Accountability, space: str, action: Literal["create", "read", "update", "delete"],
        item: Callable[[], dict[str, Any]] | None, now_ms: int) -> bool:
    """Whether ``who`` may do ``action`` in ``space`` (on the item, when
    given: built only if the rule has a filter)."""
    rule = rules.rule(who, space, action)
    if rule is None:
        return False
    if rule.filter == MATCH_ALL or item is None:
        return True
    return matches(rule.filter, item(), variables_for(who, now_ms))


def _check_write(rules: RuleSet, who: Accountability, space: str, scope: Scope, entry_id: str,
                 before: Entry | None, value: bytes | None, now_ms: int) -> None:
    live = before is not None and before.value is not None
    action: Literal["create", "update", "delete"] = "delete" if value is None else "update" if live else "create"
    rule = rules.rule(who, space, action)
    if rule is None:
        raise Forbidden()
    if rule.filter != MATCH_ALL:
        variables = variables_for(who, now_ms)
        if live and not matches(rule.filter, entry_item(scope, entry_id, before.value), variables):  # type: ignore[union-attr]
            raise Forbidden()
        if value is not None and not matches(rule.filter, entry_item(scope, entry_id, value), variables):
            raise Forbidden()
    if value is not None and rule.fields != ALL_FIELDS and "data" not in rule.fields:
        raise Forbidden('You don\'t have permission to write field "data".')


def _may_write_whatever_is_stored(rules: RuleSet, who: Accountability, space: str) -> bool:
    """Whether ``who`` may write every value of ``space`` whether the entry
    is new or not (both rules allow every entry and the value): then what is
    stored cannot change the answer of ``_check_write``."""
    for action in ("create", "update"):
        rule = rules.rule(who, space, action)  # type: ignore[arg-type]
        if rule is None or rule.filter != MATCH_ALL or (rule.fields != ALL_FIELDS and "data" not in rule.fields):
            return False
    return True


def check_value(value: bytes, config: ResourcesConfig) -> bytes:
    """``value`` if it is one JSON value of at most ``max_value_bytes``."""
    if len(value) > config.max_value_bytes:
        raise ResourceError(413, "Payload too large", "too_large",
                            f"a value is at most {config.max_value_bytes} bytes of JSON")
    try:
        _json.decode(value)
    except (msgspec.DecodeError, RecursionError):
        raise invalid("the body is not one JSON value") from None
    return value


def read_entry(space: str, scope: Scope, entry_id: str, who: Accountability, rules: RuleSet,
               env: Environment) -> Action[Entry | None]:
    """The live entry ``entry_id`` as ``who`` may read it; ``None`` when it
    is absent, deleted or hidden from ``who`` by the rule's filter.
    ``Forbidden`` when ``who`` may read nothing of ``space``."""
    if rules.rule(who, space, "read") is None:
        raise Forbidden()
    entry: Entry | None = yield GetEntry(space, scope.organization, scope.project, entry_id)
    if entry is None or entry.value is None:
        return None
    value = entry.value
    if not may(rules, who, space, "read", lambda: entry_item(scope, entry_id, value), env.now_ms()):
        return None
    return entry


def put_entry(space: str, scope: Scope, entry_id: str, value: bytes, who: Accountability, rules: RuleSet,
              env: Environment, origin: str = ORIGIN_HTTP) -> Action[tuple[Entry, EntryChange]]:
    """Store ``value`` (checked JSON bytes) as the entry, at its next
    version; the entry written and its one change."""
    if _may_write_whatever_is_stored(rules, who, space):
        # No read first: the store picks the next version itself, so writers
        # of one entry commit together instead of taking turns.
        version = yield OverwriteEntry(space, scope.organization, scope.project, entry_id, value, env.now_ms(),
                                       who.user)
        change = EntryChange(space, scope.organization, scope.project, entry_id, "put", value, version, who.user,
                             origin)
        return Entry(entry_id, value, version, who.user), change
    for _ in range(_MAX_ATTEMPTS):
        before: Entry | None = yield GetEntry(space, scope.organization, scope.project, entry_id)
        now = env.now_ms()
        _check_write(rules, who, space, scope, entry_id, before, value, now)
        expected = 0 if before is None else before.version
        version = next_version(now, expected)
        written = yield PutEntry(space, scope.organization, scope.project, entry_id, value, version, expected, who.user)
        if written:
            change = EntryChange(space, scope.organization, scope.project, entry_id, "put", value, version, who.user,
                                 origin)
            return Entry(entry_id, value, version, who.user), change
    raise ResourceError(409, "Conflict", "conflict", "the entry is changing too fast; try again")


def delete_entry(space: str, scope: Scope, entry_id: str, who: Accountability, rules: RuleSet,
                 env: Environment, origin: str = ORIGIN_HTTP) -> Action[tuple[Entry, EntryChange] | None]:
    """Delete the live entry (leaving a tombstone at its next version); the
    entry as it was and the change, or ``None`` when there was none."""
    for _ in range(_MAX_ATTEMPTS):
        before: Entry | None = yield GetEntry(space, scope.organization, scope.project, entry_id)
        if before is None or before.value is None:
            if rules.rule(who, space, "delete") is None:
                raise Forbidden()
            return None
        now = env.now_ms()
        _check_write(rules, who, space, scope, entry_id, before, None, now)
        version = next_version(now, before.version)
        if (yield DeleteEntry(space, scope.organization, scope.project, entry_id, version, before.version, who.user)):
            change = EntryChange(space, scope.organization, scope.project, entry_id, "delete", None, version, who.user,
                                 origin, previous=before.value)
            return before, change
    raise ResourceError(409, "Conflict", "conflict", "the entry is changing too fast; try again")


def list_entries(space: str, scope: Scope, prefix: str, after: str, limit: int, who: Accountability,
                 rules: RuleSet, env: Environment, max_bytes: int) -> Action[tuple[list[Entry], str | None]]:
    """A page of the live entries whose ids start with ``prefix`` (after
    ``after``), those ``who`` may read, at most ``limit`` and about
    ``max_bytes`` of values; and the id to continue after (``None``: the
    last page)."""
    rule = rules.rule(who, space, "read")
    if rule is None:
        raise Forbidden()
    entries: list[Entry] = yield ListEntries(space, scope.organization, scope.project, prefix, after, limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    now = env.now_ms()
    page: list[Entry] = []
    size = 0
    for entry in entries:
        size += len(entry.value or b"")
        if page and size > max_bytes:
            return page, page[-1].id
        value = entry.value
        if may(rules, who, space, "read", lambda: entry_item(scope, entry.id, value), now):
            page.append(entry)
    if more and entries:
        return page, entries[-1].id
    return page, None
