"""A pure model of the Directus protocols under the one rule set.

Written from the contract (``../shared/protocols/directus.md``), the rule
file's documented meaning (``satchel.protocol.permissions.rules``) and the
query semantics Satchel documents (``satchel.protocol.query.evaluate``'s
docstring) - not from the code that implements them: the filter language,
the rule lookup, the field redaction and the write checks are evaluated
here by a small implementation of their own, so that a bug in the server's
rule evaluation shows as a difference.

What it predicts, for every step of a sequence:

- each REST answer of ``/items/{collection}`` (GET with filter, sort,
  limit, offset and fields; POST one or many; PATCH one; DELETE one or
  many): which items a user may read and which fields, which writes are
  refused (403 ``FORBIDDEN`` in Directus's error shape, nothing written),
  and what a write answers (the item as its writer may read it, or 204);
- each admin API answer (``PUT /_/api/rules``, ``PUT /_/api/users/{id}/role``);
- what every websocket connection receives: the answers to its own
  messages (core ``auth``, ``subscribe`` with its ``init`` data, ``items``
  reads, ``unsubscribe``; the extension's ``GET``, ``SUBSCRIBE``
  acknowledgement and errors) and, for every create, update and delete,
  the event of each of its subscriptions whose read rule (and query) admit
  the item, with only the fields that subscriber may read.

Values the server chooses - item ids and timestamps - are ``Sym``s
(``matching``). Everything else is real: user ids, role and collection
names are handed in by the runner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..matching import ANY_STRING, EMPTY_BODY, Check, Sym

__all__ = ["DirectusModel", "Outcome", "Expected", "Item", "Conn", "evaluate", "forbidden_body", "MISSING_ID",
           "DEFAULT_LIMIT", "BUILT_IN_ROLES"]

#: The server-owned fields of every record.
RESERVED = ("_id", "createdAt", "updatedAt", "__v")
#: A key that names no item (24 hex digits: a well-formed id).
MISSING_ID = "ffffffffffffffffffffffff"
#: Directus's QUERY_LIMIT_DEFAULT (Satchel's default).
DEFAULT_LIMIT = 100
BUILT_IN_ROLES = ("admin", "authenticated", "public")
ACTIONS = ("create", "read", "update", "delete")
#: Collections that are no collection to anyone (and every ``_`` or ``directus_`` one).
HIDDEN = frozenset(("users", "uploads", "sessions"))
_ABSENT = object()


def forbidden_body() -> dict[str, Any]:
    """Directus's answer to what the rules deny (and to a missing item)."""
    return {"errors": [{"message": ANY_STRING, "extensions": {"code": "FORBIDDEN"}}]}


def _error_body(code: str) -> dict[str, Any]:
    return {"errors": [{"message": ANY_STRING, "extensions": {"code": code}}]}


# -- the filter language (an independent reading of the documented semantics) ---------


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _same(value: Any, operand: Any) -> bool:
    """``_eq``: JSON scalars of one type; numbers by value; null equals nothing."""
    if operand is None or value is _ABSENT or value is None:
        return False
    if isinstance(operand, bool) or isinstance(value, bool):
        return isinstance(operand, bool) and isinstance(value, bool) and operand == value
    if isinstance(operand, str):
        return isinstance(value, str) and value == operand
    return _number(value) and value == operand


def _ordered(value: Any, operand: Any) -> bool:
    if isinstance(operand, str):
        return isinstance(value, str)
    return _number(operand) and _number(value) and not isinstance(value, bool)


def _positive(op: str, value: Any, operand: Any) -> bool:
    if op == "_eq":
        return _same(value, operand)
    if op == "_in":
        return any(_same(value, item) for item in operand)
    if op in ("_lt", "_lte", "_gt", "_gte"):
        if not _ordered(value, operand):
            return False
        return {"_lt": value < operand, "_lte": value <= operand, "_gt": value > operand,
                "_gte": value >= operand}[op]
    if op == "_between":
        low, high = operand
        return _ordered(value, low) and _ordered(value, high) and low <= value <= high
    if op == "_null":
        return value is _ABSENT or value is None
    if op == "_empty":
        return value is _ABSENT or value is None or value in ("", [], {})
    if op == "_contains":
        if isinstance(value, str):
            return isinstance(operand, str) and operand in value
        return isinstance(value, list) and any(_same(item, operand) for item in value)
    if not isinstance(value, str) or not isinstance(operand, str):
        return False
    if op == "_icontains":
        return operand.lower() in value.lower()
    if op == "_starts_with":
        return value.startswith(operand)
    if op == "_istarts_with":
        return value.lower().startswith(operand.lower())
    if op == "_ends_with":
        return value.endswith(operand)
    if op == "_iends_with":
        return value.lower().endswith(operand.lower())
    raise ValueError(f"the model knows no operator {op}")


_NEGATIONS = {"_neq": "_eq", "_nin": "_in", "_nnull": "_null", "_nempty": "_empty", "_ncontains": "_contains",
              "_nicontains": "_icontains", "_nstarts_with": "_starts_with", "_nistarts_with": "_istarts_with",
              "_nends_with": "_ends_with", "_niends_with": "_iends_with", "_nbetween": "_between"}


def _bound(operand: Any, me: tuple[str | None, str | None]) -> Any:
    if operand == "$CURRENT_USER":
        return me[0]
    if operand == "$CURRENT_ROLE":
        return me[1]
    if isinstance(operand, list):
        return [_bound(item, me) for item in operand]
    return operand


def _operator(op: str, value: Any, operand: Any, me: tuple[str | None, str | None]) -> bool:
    operand = _bound(operand, me)
    if op in ("_null", "_nnull", "_empty", "_nempty"):
        flag = operand is True or operand == "true"
        base = _NEGATIONS.get(op, op)
        result = _positive(base, value, None)
        if op != base:
            result = not result
        return result if flag else not result
    if op in _NEGATIONS:
        return not _positive(_NEGATIONS[op], value, operand)
    return _positive(op, value, operand)


def _lookup(record: dict[str, Any], path: list[str]) -> Any:
    value: Any = record
    for segment in path:
        if not isinstance(value, dict) or segment not in value:
            return _ABSENT
        value = value[segment]
    return value


def evaluate(flt: Any, record: dict[str, Any], user: Any, role: str | None = None) -> bool:
    """Whether the Directus filter ``flt`` (JSON; ``None``: everything)
    admits ``record`` for ``user`` (``$CURRENT_USER``; ``None`` nobody) of
    ``role`` (``$CURRENT_ROLE``); ``user`` may be the pair of both."""
    me = user if isinstance(user, tuple) else (user, role)
    if flt is None:
        return True
    for key, value in flt.items():
        if key == "_and":
            ok = all(evaluate(item, record, me) for item in value)
        elif key == "_or":
            ok = any(evaluate(item, record, me) for item in value)
        else:
            path = ["_id" if key == "id" else key]
            found = _lookup(record, path)
            if isinstance(value, dict):
                ok = all(_operator(op, found, operand, me) for op, operand in value.items())
            else:
                ok = _operator("_eq", found, value, me)
        if not ok:
            return False
    return True


def filter_fields(flt: Any) -> set[str]:
    """The top-level fields a filter looks at (``id`` as ``_id``)."""
    names: set[str] = set()
    for key, value in (flt or {}).items():
        if key in ("_and", "_or"):
            for item in value:
                names |= filter_fields(item)
        else:
            names.add("_id" if key == "id" else key)
    return names


# -- rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One compiled rule: the item filter (JSON, ``None``: all) and the fields."""

    allowed: bool
    filter: Any = None
    fields: Any = "*"  # "*" or frozenset


_ADMIN = Rule(True)


def compile_roles(roles: dict[str, Any]) -> dict[str, Any]:
    """A rule file's ``roles`` as ``name -> "admin" | {(collection, action): Rule}``,
    with the built-in roles filled in as the rule file's documentation says."""
    compiled: dict[str, Any] = {"public": {}, "authenticated": {("*", a): Rule(True) for a in ACTIONS}}
    for name, spec in roles.items():
        if spec.get("admin"):
            compiled[name] = "admin"
            continue
        table: dict[tuple[str, str], Rule] = {}
        for rule in spec.get("rules", []):
            actions = rule["action"]
            actions = [actions] if isinstance(actions, str) else list(actions)
            if "*" in actions:
                actions = list(ACTIONS)
            fields = rule.get("fields", "*")
            if fields != "*":
                fields = "*" if "*" in fields else frozenset(fields)
            for action in actions:
                table[(rule["collection"], action)] = Rule(rule.get("allowed", True), rule.get("filter"), fields)
        compiled[name] = table
    compiled["admin"] = "admin"
    return compiled


# -- what the model predicts ---------------------------------------------------------


@dataclass
class Expected:
    """One frame a connection must receive: ``reply`` (an answer to its own
    message) or ``event``; ``data`` the frame, with ``Sym``s and matchers."""

    kind: str
    data: Any


@dataclass
class Outcome:
    """What one step answers: an HTTP status and body (``None``: no HTTP
    request), and the frames each connection receives."""

    status: int | None = None
    body: Any = None
    frames: dict[int, list[Expected]] = field(default_factory=dict)
    created: list[int] = field(default_factory=list)  # the items this step created

    def add(self, conn: int, kind: str, data: Any) -> None:
        self.frames.setdefault(conn, []).append(Expected(kind, data))


@dataclass
class Item:
    """A record of the sequence: its collection, its index (``Sym("id", n)``)
    and what is stored (``None`` once deleted)."""

    n: int
    collection: str
    record: dict[str, Any] | None


@dataclass
class Sub:
    uid: Any  # core: str or None; extension: the truthy uid sent, or None
    collection: str
    query: dict[str, Any] | None  # None: v1, which ignores the query
    event: str | None = None
    item: int | None = None  # core: the one item it follows (-1: a missing id)


@dataclass
class Conn:
    """An open websocket: whose, in which format, the role it acts with
    (the one it signed in with, until an admin gives its user another:
    then that one, at once), its subscriptions."""

    user: int
    fmt: str  # "core" | "extension" | "v1"
    role: str
    subs: list[Sub] = field(default_factory=list)


class DirectusModel:
    """The model of one sequence. ``user_ids`` are the run's accounts (the
    last may be the admin); every user starts with the role ``authenticated``
    and the rules with ``base`` (a rule file's ``roles``)."""

    def __init__(self, user_ids: list[str], base_roles: dict[str, Any], revision: int, *,
                 admin: int | None = None, foreign: tuple[str, ...] = ()) -> None:
        self.user_ids = list(user_ids)
        self.roles = ["authenticated"] * len(user_ids)
        if admin is not None:
            self.roles[admin] = "admin"
        self.admin = admin
        self.spec = dict(base_roles)
        self.rules = compile_roles(self.spec)
        self.revision = revision
        self.foreign = foreign  # roles of the stored rules the kit keeps as they are
        self.items: list[Item] = []
        self.conns: dict[int, Conn] = {}
        self.counts: dict[str, int] = {}
        self._ts = 0

    # -- helpers ----------------------------------------------------------------------

    def ts(self) -> Sym:
        self._ts += 1
        return Sym("ts", self._ts)

    def role_of(self, user: int | None) -> str:
        return "public" if user is None else self.roles[user]

    def me(self, user: int | None, role: str) -> tuple[str | None, str]:
        """What ``$CURRENT_USER`` and ``$CURRENT_ROLE`` are for ``user`` acting with ``role``."""
        return self.uid_of(user), role

    def uid_of(self, user: int | None) -> str | None:
        return None if user is None else self.user_ids[user]

    def rule(self, role: str, collection: str, action: str) -> Rule | None:
        if collection.lower() in HIDDEN or collection.startswith("_") or collection.lower().startswith("directus_"):
            return None  # no collection to anyone, admins included
        role_rules = self.rules.get(role)
        if role_rules is None:
            return None
        if role_rules == "admin":
            return _ADMIN
        found = role_rules.get((collection, action))
        if found is None:
            found = role_rules.get(("*", action))
        return found if found is not None and found.allowed else None

    def live(self, collection: str) -> list[Item]:
        return [item for item in self.items if item.collection == collection and item.record is not None]

    @staticmethod
    def readable(rule: Rule) -> Any:
        return "*" if rule.fields == "*" else rule.fields | {"_id"}

    @staticmethod
    def render(record: dict[str, Any], readable: Any, fields: list[str] | None) -> dict[str, Any]:
        """What a reader sees of ``record``: its readable fields, cut to the
        query's ``fields``, ``_id`` shown as ``id``."""
        wanted = None if not fields or "*" in fields else {"_id" if f == "id" else f for f in fields}
        shown: dict[str, Any] = {}
        for key, value in record.items():
            if readable != "*" and key not in readable:
                continue
            if wanted is not None and key not in wanted:
                continue
            shown["id" if key == "_id" else key] = value
        return shown

    @staticmethod
    def query_names(query: dict[str, Any]) -> set[str]:
        names = {("_id" if f == "id" else f) for f in query.get("fields") or [] if f != "*"}
        for key in query.get("sort") or []:
            key = key[1:] if key.startswith("-") else key
            names.add("_id" if key == "id" else key)
        return names | filter_fields(query.get("filter"))

    def may_query(self, role: str, collection: str, query: dict[str, Any]) -> Rule | None:
        """The read rule, if ``role`` may run ``query`` on ``collection``
        (a query naming a field it may not read is refused)."""
        rule = self.rule(role, collection, "read")
        if rule is None:
            return None
        readable = self.readable(rule)
        if readable != "*" and self.query_names(query) - readable:
            return None
        return rule

    @staticmethod
    def _sort_key(value: Any) -> tuple[int, Any]:
        if value is _ABSENT or value is None:
            return (0, 0)
        if isinstance(value, bool):
            return (1, int(value))
        if _number(value):
            return (2, value)
        if isinstance(value, str):
            return (3, value)
        return (4, 0)

    def select(self, role: str, user: int | None, collection: str, query: dict[str, Any],
               default_limit: int | None = DEFAULT_LIMIT) -> list[dict[str, Any]] | None:
        """readByQuery: the items ``query`` answers for this reader, or
        ``None`` when it is forbidden."""
        rule = self.may_query(role, collection, query)
        if rule is None:
            return None
        me = self.me(user, role)
        scoped = [item.record for item in self.live(collection) if evaluate(rule.filter, item.record, me)]
        records = [record for record in scoped if evaluate(query.get("filter"), record, me)]
        self.counts = {"total_count": len(scoped), "filter_count": len(records)}
        for key in reversed(query.get("sort") or []):
            name = key[1:] if key.startswith("-") else key
            name = "_id" if name == "id" else name
            records.sort(key=lambda r, name=name: self._sort_key(r.get(name, _ABSENT)), reverse=key.startswith("-"))
        offset = query.get("offset", 0)
        limit = query.get("limit", default_limit)
        if "page" in query and limit is not None and limit != -1:
            offset = limit * (query["page"] - 1)
        page = records[offset:] if limit is None or limit == -1 else records[offset:offset + limit]
        readable = self.readable(rule)
        return [self.render(record, readable, query.get("fields")) for record in page]

    def selected(self, user: int | None, collection: str, query: dict[str, Any]) -> list[int] | None:
        """The items an update or a delete by query names: those the writer
        may read that the query selects (its filter, sort, limit; not its
        fields); ``None`` when it may not read so."""
        role = self.role_of(user)
        rule = self.rule(role, collection, "read")
        keyed = {key: value for key, value in query.items() if key != "fields"}
        if rule is None or (self.readable(rule) != "*" and self.query_names(keyed) - self.readable(rule)):
            return None
        picked = self.select(role, user, collection, {**keyed, "fields": ["id"]}, default_limit=None)
        assert picked is not None
        by_key = {item.record["_id"]: item.n for item in self.live(collection) if item.record is not None}
        return [by_key[entry["id"]] for entry in picked]

    def _shown(self, user: int | None, collection: str, records: list[dict[str, Any]], one: bool) -> tuple[int, Any]:
        """A write's answer: what its writer may read of the records written."""
        rule = self.rule(self.role_of(user), collection, "read")
        if rule is None:
            return 204, EMPTY_BODY
        me = self.me(user, self.role_of(user))
        visible = [self.render(r, self.readable(rule), None) for r in records if evaluate(rule.filter, r, me)]
        if one:
            return (200, {"data": visible[0]}) if visible else (204, EMPTY_BODY)
        return 200, {"data": visible}

    def _may_write(self, role: str, user: int | None, collection: str, before: dict[str, Any] | None,
                   after: dict[str, Any] | None) -> bool:
        action = "create" if before is None else "delete" if after is None else "update"
        rule = self.rule(role, collection, action)
        if rule is None:
            return False
        me = self.me(user, role)
        for record in (before, after):
            if record is not None and not evaluate(rule.filter, record, me):
                return False
        if after is not None and rule.fields != "*":
            if _changed(before, after) - rule.fields:
                return False
        return True

    # -- deliveries -----------------------------------------------------------------------

    def deliver(self, outcome: Outcome, kind: str, collection: str, record: dict[str, Any], n: int) -> None:
        """The events of one change (``kind``: create, update, delete;
        ``record`` after it, or before it for a delete) to every subscriber."""
        key = Sym("id", n)
        for k, conn in sorted(self.conns.items()):
            rule = self.rule(conn.role, collection, "read")
            if rule is None or not evaluate(rule.filter, record, self.me(conn.user, conn.role)):
                continue
            seen: list[Any] = []
            for sub in conn.subs:
                if sub.collection != collection or (sub.event is not None and sub.event != kind):
                    continue
                if sub.item is not None and sub.item != n:
                    continue
                if kind != "delete" and sub.query is not None and not evaluate(
                        sub.query.get("filter"), record, self.me(conn.user, conn.role)):
                    continue
                fields = sub.query.get("fields") if sub.query is not None else None
                item = None if kind == "delete" else self.render(record, self.readable(rule), fields)
                frame = self._event(conn.fmt, sub, kind, collection, key, item)
                if frame not in seen:  # identical frames reach a connection once
                    seen.append(frame)
                    outcome.add(k, "event", frame)

    @staticmethod
    def _event(fmt: str, sub: Sub, kind: str, collection: str, key: Sym, item: Any) -> dict[str, Any]:
        if fmt == "core":
            data = key if item is None else item
            frame: dict[str, Any] = {"type": "subscription", "event": kind,
                                     "data": data if sub.item is not None else [data]}
        elif fmt == "v1":
            frame = {"action": kind, "payload": [key] if kind == "delete" else item, "collection": collection}
            if kind == "create":
                frame["key"] = key
            elif kind == "update":
                frame["keys"] = [key]
            return frame
        else:
            frame = {"type": "SUBSCRIPTION", "action": kind, "collection": collection}
            if kind == "create":
                frame["key"], frame["payload"] = key, item
            elif kind == "update":
                frame["keys"], frame["payload"] = [key], [item]
            else:
                frame["payload"] = [key]
        if sub.uid is not None:
            frame["uid"] = sub.uid
        return frame

    # -- REST -------------------------------------------------------------------------------

    def meta(self, query: dict[str, Any]) -> dict[str, int] | None:
        """The ``meta`` a query asks for (of the last ``select``)."""
        asked = query.get("meta") or []
        names = {"total_count", "filter_count"} if "*" in asked else set(asked)
        return {name: self.counts[name] for name in sorted(names)} or None

    def read(self, user: int | None, collection: str, query: dict[str, Any]) -> Outcome:
        found = self.select(self.role_of(user), user, collection, query)
        if found is None:
            return Outcome(403, forbidden_body())
        body: dict[str, Any] = {"data": found}
        meta = self.meta(query)
        if meta:
            body["meta"] = meta
        return Outcome(200, body)

    def read_one(self, user: int | None, collection: str, n: int | None, query: dict[str, Any],
                 role: str | None = None) -> Outcome:
        role = self.role_of(user) if role is None else role
        me = self.me(user, role)
        rule = self.may_query(role, collection, query)
        item = self._item(collection, n)
        if rule is None or item is None or not evaluate(rule.filter, item.record, me) \
                or not evaluate(query.get("filter"), item.record, me):
            return Outcome(403, forbidden_body())
        return Outcome(200, {"data": self.render(item.record, self.readable(rule), query.get("fields"))})

    def _item(self, collection: str, n: int | None) -> Item | None:
        if n is None or not 0 <= n < len(self.items):
            return None
        item = self.items[n]
        return item if item.collection == collection and item.record is not None else None

    def create(self, user: int | None, collection: str, payloads: list[dict[str, Any]], one: bool,
               role: str | None = None) -> Outcome:
        role = self.role_of(user) if role is None else role
        previews = []
        for payload in payloads:
            fields = {k: v for k, v in payload.items() if k not in ("id", "_id") and k not in RESERVED}
            previews.append(fields)
        base = len(self.items)
        records = []
        for i, fields in enumerate(previews):
            now = self.ts()  # each record is stamped as it is written
            records.append({"_id": Sym("id", base + i), **fields, "createdAt": now, "updatedAt": now, "__v": 0})
        if not all(self._may_write(role, user, collection, None, record) for record in records):
            return Outcome(403, forbidden_body())
        outcome = Outcome()
        for i, record in enumerate(records):
            self.items.append(Item(base + i, collection, record))
            outcome.created.append(base + i)
        for i, record in enumerate(records):
            self.deliver(outcome, "create", collection, record, base + i)
        outcome.status, outcome.body = self._shown(user, collection, records, one)
        return outcome

    def backpack_create(self, user: int, collection: str, data: dict[str, Any]) -> Outcome:
        """``POST /{collection}`` through Backpack (the one data model): the
        same rules decide; a refusal is Backpack's 403 ``{"message":
        "Unauthorized"}``, the answer the record as its writer may read it
        (Backpack's names: ``_id``), or only its ``_id``."""
        outcome = self.create(user, collection, [data], True)
        if outcome.status == 403:
            outcome.body = {"message": "Unauthorized"}
            return outcome
        record = self.items[outcome.created[0]].record
        assert record is not None
        rule = self.rule(self.role_of(user), collection, "read")
        if rule is not None and evaluate(rule.filter, record, self.me(user, self.role_of(user))):
            readable = self.readable(rule)
            shown = {key: value for key, value in record.items() if readable == "*" or key in readable}
        else:
            shown = {"_id": record["_id"]}
        outcome.status, outcome.body = 200, shown
        return outcome

    def update(self, user: int | None, collection: str, ns: list[int | None], payload: dict[str, Any],
               one: bool, role: str | None = None) -> Outcome:
        role = self.role_of(user) if role is None else role
        keys = list(dict.fromkeys(ns))
        items = [self._item(collection, n) for n in keys]
        if any(item is None for item in items):
            return Outcome(403, forbidden_body())
        afters = []
        for item in items:
            now = self.ts()
            assert item is not None and item.record is not None
            after = {k: v for k, v in item.record.items() if k not in RESERVED}
            for name, value in payload.items():
                if name in ("id", "_id") or name in RESERVED:
                    continue
                if value is None:
                    after.pop(name, None)
                else:
                    after[name] = value
            afters.append({"_id": item.record["_id"], **after, "createdAt": item.record["createdAt"],
                           "updatedAt": now, "__v": item.record["__v"]})
        if not all(self._may_write(role, user, collection, item.record, after) for item, after in zip(items, afters)):
            return Outcome(403, forbidden_body())
        outcome = Outcome()
        for item, after in zip(items, afters):
            assert item is not None
            item.record = after
            self.deliver(outcome, "update", collection, after, item.n)
        outcome.status, outcome.body = self._shown(user, collection, afters, one)
        return outcome

    def delete(self, user: int | None, collection: str, ns: list[int | None], role: str | None = None) -> Outcome:
        role = self.role_of(user) if role is None else role
        keys = list(dict.fromkeys(ns))
        items = [self._item(collection, n) for n in keys]
        if any(item is None for item in items) or not all(
                self._may_write(role, user, collection, item.record, None) for item in items if item):
            return Outcome(403, forbidden_body())
        outcome = Outcome(204, EMPTY_BODY)
        for item in items:
            assert item is not None and item.record is not None
            before, item.record = item.record, None
            self.deliver(outcome, "delete", collection, before, item.n)
        return outcome

    # -- the admin API -----------------------------------------------------------------------

    def set_role(self, user: int, role: str) -> Outcome:
        if role == "public" or role not in self.rules:
            return Outcome(400, _error_body("INVALID_PAYLOAD"))
        self.roles[user] = role
        for conn in self.conns.values():  # the user's open websockets take it at once
            if conn.user == user:
                conn.role = role
        return Outcome(200, {"data": {"id": self.user_ids[user], "email": ANY_STRING, "role": role,
                                      "created_at": ANY_STRING, "disabled": False}})

    def set_rules(self, roles: dict[str, Any], all_roles: dict[str, Any]) -> Outcome:
        """``PUT /_/api/rules``: ``roles`` are the kit's roles, ``all_roles``
        the whole file sent (the kit's and the foreign ones)."""
        defined = set(all_roles) | set(BUILT_IN_ROLES)
        held = {role for role in self.roles}
        if held - defined:
            return Outcome(400, _error_body("INVALID_PAYLOAD"))
        self.spec = dict(roles)
        self.rules = compile_roles(all_roles)
        self.revision += 1
        listing = [{"name": name, "admin": name == "admin" or bool(all_roles.get(name, {}).get("admin")),
                    "builtin": name in BUILT_IN_ROLES} for name in sorted(defined)]
        return Outcome(200, {"data": {"revision": self.revision,
                                      "rules": Check(lambda v: isinstance(v, dict) and "roles" in v, "the rule file"),
                                      "roles": listing}})

    # -- websockets ----------------------------------------------------------------------------

    def open(self, k: int, user: int, fmt: str) -> Outcome:
        self.conns[k] = Conn(user, fmt, self.role_of(user))
        outcome = Outcome()
        if fmt == "core":
            outcome.add(k, "reply", {"type": "auth", "status": "ok"})
        return outcome

    def reauth(self, k: int, user: int) -> Outcome:
        """A core connection signs in again (as ``user``): from now on its
        subscriptions see what that user, with its role now, may read."""
        conn = self.conns[k]
        conn.user, conn.role = user, self.role_of(user)
        outcome = Outcome()
        outcome.add(k, "reply", {"type": "auth", "status": "ok"})
        return outcome

    def close(self, k: int) -> None:
        self.conns.pop(k, None)

    def subscribe(self, k: int, collection: str, query: dict[str, Any] | None, uid: Any, event: str | None,
                  item: int | None = None) -> Outcome:
        """A subscribe; ``item`` (core) the index of the one item it follows
        (``-1``: an id that names none)."""
        conn = self.conns[k]
        outcome = Outcome()
        asked = query or {}
        if conn.fmt == "core":
            uid = _core_uid(uid)
            init: Any
            if event is not None or item is None:
                init = self.select(conn.role, conn.user, collection, asked)
            else:
                one = self.read_one(conn.user, collection, None if item < 0 else item, asked, role=conn.role)
                init = one.body["data"] if one.status == 200 else None
            if init is None:
                error: dict[str, Any] = {"type": "subscribe", "status": "error",
                                         "error": {"code": "FORBIDDEN", "message": ANY_STRING}}
                if uid is not None:
                    error["uid"] = uid
                outcome.add(k, "reply", error)
                return outcome
            conn.subs = [sub for sub in conn.subs if uid is None or sub.uid != uid]
            conn.subs.append(Sub(uid, collection, asked, event, item))
            frame: dict[str, Any] = {"type": "subscription", "event": "init"}
            if event is None:
                frame["data"] = init
                meta = self.meta(asked) if item is None else None
                if meta:
                    frame["meta"] = meta
            if uid is not None:
                frame["uid"] = uid
            outcome.add(k, "reply", frame)
            return outcome
        if self.may_query(conn.role, collection, asked if conn.fmt == "extension" else {}) is None:
            if conn.fmt == "v1":
                outcome.add(k, "reply", {"type": "ERROR", "data": {"status": 403, "code": "FORBIDDEN",
                                                                   "message": ANY_STRING, "extensions": {}}})
            else:
                frame = {"type": "ERROR", "data": ANY_STRING}
                if uid is not None:
                    frame["uid"] = uid
                outcome.add(k, "reply", frame)
            return outcome
        if conn.fmt == "v1":
            conn.subs.append(Sub(None, collection, None))
            return outcome
        conn.subs.append(Sub(uid, collection, asked))
        if uid is not None:
            outcome.add(k, "reply", {"type": "RESPONSE", "data": {"subscribed": collection}, "uid": uid})
        return outcome

    def unsubscribe(self, k: int, uid: Any) -> Outcome:
        conn = self.conns[k]
        if conn.fmt == "core":
            uid = _core_uid(uid)
        conn.subs = [] if uid is None else [sub for sub in conn.subs if sub.uid is None or sub.uid != uid]
        outcome = Outcome()
        if conn.fmt == "core":
            frame: dict[str, Any] = {"type": "subscription", "event": "unsubscribe"}
            if uid is not None:
                frame["uid"] = uid
            outcome.add(k, "reply", frame)
        return outcome

    def ws_read(self, k: int, collection: str, query: dict[str, Any], uid: Any) -> Outcome:
        conn = self.conns[k]
        found = self.select(conn.role, conn.user, collection, query)
        outcome = Outcome()
        if conn.fmt == "core":
            frame: dict[str, Any] = ({"type": "items", "status": "error",
                                      "error": {"code": "FORBIDDEN", "message": ANY_STRING}}
                                     if found is None else {"type": "items", "data": found})
            meta = self.meta(query) if found is not None else None
            if meta:
                frame["meta"] = meta
        elif conn.fmt == "v1":
            frame = ({"type": "ERROR", "data": {"status": 403, "code": "FORBIDDEN", "message": ANY_STRING,
                                                "extensions": {}}}
                     if found is None else {"type": "RESPONSE", "data": found})
        else:
            frame = {"type": "ERROR", "data": ANY_STRING} if found is None else {"type": "RESPONSE", "data": found}
        if uid is not None:
            frame["uid"] = uid
        outcome.add(k, "reply", frame)
        return outcome

    def ws_write(self, k: int, verb: str, collection: str, ns: list[int | None], data: Any, uid: Any) -> Outcome:
        """A websocket's write - the extension's ``POST`` / ``PATCH`` /
        ``DELETE``, core's ``items`` ``create`` / ``update`` / ``delete`` -
        made with the role the connection acts with."""
        conn = self.conns[k]
        if verb == "POST":
            outcome = self.create(conn.user, collection, [data], True, role=conn.role)
        elif verb == "PATCH":
            outcome = self.update(conn.user, collection, ns, data, True, role=conn.role)
        else:
            outcome = self.delete(conn.user, collection, ns, role=conn.role)
        if outcome.status == 403:
            frame = self._ws_error(conn.fmt, "items")
        else:
            if verb == "DELETE":
                shown: Any = Sym("id", ns[0])  # the id sent
            else:
                # What its writer (as it signed in) may read of the item, or null.
                rule = self.rule(conn.role, collection, "read")
                n = outcome.created[0] if verb == "POST" else ns[0]
                record = self.items[n].record if n is not None else None
                shown = None
                if rule is not None and record is not None and evaluate(rule.filter, record, self.me(conn.user, conn.role)):
                    shown = self.render(record, self.readable(rule), None)
            frame = {"type": "items" if conn.fmt == "core" else "RESPONSE", "data": shown}
        if uid is not None:
            frame["uid"] = uid
        outcome.status, outcome.body = None, None
        outcome.add(k, "reply", frame)
        return outcome

    @staticmethod
    def _ws_error(fmt: str, core_type: str) -> dict[str, Any]:
        if fmt == "core":
            return {"type": core_type, "status": "error", "error": {"code": "FORBIDDEN", "message": ANY_STRING}}
        if fmt == "v1":
            return {"type": "ERROR", "data": {"status": 403, "code": "FORBIDDEN", "message": ANY_STRING,
                                              "extensions": {}}}
        return {"type": "ERROR", "data": ANY_STRING}


def _core_uid(uid: Any) -> str | None:
    """Core keys subscriptions by ``String(uid)``: ``1`` and ``"1"`` alike."""
    return None if uid is None else str(uid)


def _changed(before: dict[str, Any] | None, after: dict[str, Any]) -> set[str]:
    """The user fields a write changes (added, removed, or another JSON value)."""
    before = before or {}
    names = (set(before) | set(after)) - set(RESERVED)
    return {name for name in names
            if name not in before or name not in after
            or json.dumps(before[name], sort_keys=True) != json.dumps(after[name], sort_keys=True)}
