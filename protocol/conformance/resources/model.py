"""A pure model of resource subscriptions (seed 004) under the one rule set.

Written from the README's "Resource subscriptions" and "Roles and
permissions" sections, not from ``satchel.protocol.resources``: rules are
compiled and filters evaluated by the Directus kit's own small
implementation (``..directus.model``), never by the server's.

What it predicts, for every step:

- each REST answer under ``/realtime``: ``PUT|GET|DELETE /realtime/kv/{id}``,
  ``GET /realtime/kv?prefix&limit`` (sorted by id; the rule's filter drops
  entries from a page after the limit is taken), ``PUT|GET
  /realtime/live-config/{id}``, each in the connection's scope
  (``x-m2-organization`` / ``x-m2-project``) and under the ``kvStore`` /
  ``liveConfig`` rules (403 no rule, 404 absent or hidden by the filter, a
  write needing ``data`` among the rule's fields);
- every frame every resource websocket receives, in order: the answer to a
  subscribe (the current value as an update, ``resource_not_found``, the
  ``Forbidden`` error, nothing for a collection with a readable record),
  and each update of a subscribed resource - entries only within the
  connection's scope and when its read rule admits the value, deletions
  with ``"deleted": true`` (a deleted resource keeps its subscribers),
  record changes cut to the fields the subscriber's role may read, inbox
  document writes to anyone holding the read token.

Versions are not predicted, only related: an expected frame or answer
carries a ``Version`` marker - ``fresh`` (a new version of that resource:
strictly greater than every earlier one, and the same for every frame of
one write) or ``current`` (the version last seen for it). The runner
checks the markers; everything else is compared exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..matching import ANY_STRING, Sym
from ..directus.model import Rule, compile_roles, evaluate

__all__ = ["ResourcesModel", "Outcome", "Version", "SCOPES", "SPACES", "Conn", "Rec", "HIDDEN_RULE_COLLECTIONS"]

#: The scopes of a run: (organization, project); scope 0 sends no headers.
SCOPES = (("", ""), ("o1", "p1"), ("o1", "p2"), ("o2", "p1"))
#: The entry spaces: step name -> resource type (= rule collection).
SPACES = {"kv": "kvStore", "lc": "liveConfig"}
#: The server-owned fields of every record.
RESERVED = ("_id", "createdAt", "updatedAt", "__v")
HIDDEN_RULE_COLLECTIONS = ("users", "uploads", "sessions")
_ADMIN = Rule(True)


@dataclass(frozen=True)
class Version:
    """A version the server chooses for ``resource``: ``fresh`` (a new one)
    or the current one."""

    resource: tuple[Any, ...]
    fresh: bool

    def __repr__(self) -> str:
        return f"<{'new' if self.fresh else 'current'} version of {self.resource}>"


@dataclass
class Outcome:
    status: int = 200
    body: Any = None
    #: conn -> the frames it receives, in order
    frames: dict[int, list[Any]] = field(default_factory=dict)
    created: list[int] = field(default_factory=list)

    def add(self, k: int, frame: Any) -> None:
        self.frames.setdefault(k, []).append(frame)


@dataclass
class EntryState:
    value: Any           # JSON value; meaningless when not live
    live: bool
    writer: str | None


@dataclass
class Rec:
    n: int
    collection: str
    record: dict[str, Any] | None  # None: deleted


@dataclass
class Conn:
    user: int | None
    scope: int
    role: str = "public"  # the role it opened with (see ``ResourcesModel``)
    subs: set[tuple[str, str]] = field(default_factory=set)


def error(title: str, code: str, resource: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": title, "code": code, "message": ANY_STRING}
    if resource is not None:
        body["resource"] = resource
    return body


FORBIDDEN = error("Forbidden", "forbidden")
NOT_FOUND = error("Not found", "not_found")
DIRECTUS_FORBIDDEN = {"errors": [{"message": ANY_STRING, "extensions": {"code": "FORBIDDEN"}}]}


def _warning(resource: dict[str, str]) -> dict[str, Any]:
    return {"warning": "resource_not_found", "message": ANY_STRING, "resource": resource}


class ResourcesModel:
    """One sequence: ``user_ids`` the run's accounts (``admin`` the index of
    the administrator), every other user ``authenticated``, the rules the
    rule file ``base_roles``. Entry ids, collection names and document
    tokens are the runner's real ones."""

    def __init__(self, user_ids: list[str], base_roles: dict[str, Any], revision: int, *, admin: int) -> None:
        self.user_ids = list(user_ids)
        self.roles = ["authenticated"] * len(user_ids)
        self.roles[admin] = "admin"
        self.rules = compile_roles(base_roles)
        self.revision = revision
        self.entries: dict[tuple[str, int, str], EntryState] = {}
        self.records: list[Rec] = []
        self.docs: dict[str, tuple[int, Any]] = {}  # read token -> (revision, content)
        self.conns: dict[int, Conn] = {}
        self._ts = 0

    # -- rules -------------------------------------------------------------------------

    def role_of(self, user: int | None) -> str:
        return "public" if user is None else self.roles[user]

    def uid(self, user: int | None) -> str | None:
        return None if user is None else self.user_ids[user]

    def me(self, user: int | None, role: str | None = None) -> tuple[str | None, str]:
        return self.uid(user), self.role_of(user) if role is None else role

    def rule(self, user: int | None, collection: str, action: str, role: str | None = None) -> Rule | None:
        if collection in HIDDEN_RULE_COLLECTIONS or collection.startswith("_"):
            return None
        table = self.rules.get(self.role_of(user) if role is None else role)
        if table is None:
            return None
        if table == "admin":
            return _ADMIN
        found = table.get((collection, action))
        if found is None:
            found = table.get(("*", action))
        return found if found is not None and found.allowed else None

    def set_rules(self, ours: dict[str, Any], everything: dict[str, Any]) -> Outcome:
        compiled = compile_roles(everything)
        if any(role not in compiled for role in self.roles):
            return Outcome(400, ANY_BODY)
        self.rules = compiled
        return Outcome(200, None)

    def set_role(self, user: int, role: str) -> Outcome:
        if role == "public" or role not in self.rules:
            return Outcome(400, None)
        self.roles[user] = role
        return Outcome(200, None)

    # -- entries -----------------------------------------------------------------------

    @staticmethod
    def item(scope: int, entry_id: str, value: Any) -> dict[str, Any]:
        organization, project = SCOPES[scope]
        return {"_id": entry_id, "id": entry_id, "organization": organization, "project": project, "data": value}

    def _readable(self, user: int | None, space: str, scope: int, entry_id: str, value: Any,
                  role: str | None = None) -> bool:
        rule = self.rule(user, space, "read", role)
        return rule is not None and evaluate(rule.filter, self.item(scope, entry_id, value), self.me(user, role))

    def conn_role(self, conn: Conn) -> str:
        # An admin's role change reaches the user's open websockets at once.
        return self.role_of(conn.user)

    def _shown(self, space: str, scope: int, entry_id: str, value: Any, fresh: bool) -> dict[str, Any]:
        return {"id": entry_id, "data": value, "version": Version((space, scope, entry_id), fresh)}

    def entry_put(self, user: int | None, space: str, scope: int, entry_id: str, value: Any) -> Outcome:
        key = (space, scope, entry_id)
        before = self.entries.get(key)
        live = before is not None and before.live
        rule = self.rule(user, space, "update" if live else "create")
        me = self.me(user)
        if rule is None or (live and not evaluate(rule.filter, self.item(scope, entry_id, before.value), me)) \
                or not evaluate(rule.filter, self.item(scope, entry_id, value), me) \
                or (rule.fields != "*" and "data" not in rule.fields):
            return Outcome(403, FORBIDDEN)
        self.entries[key] = EntryState(value, True, self.uid(user))
        outcome = Outcome(200, self._shown(space, scope, entry_id, value, True))
        resource = {"type": space, "id": entry_id}
        for k, conn in sorted(self.conns.items()):
            if conn.scope == scope and (space, entry_id) in conn.subs \
                    and self._readable(conn.user, space, scope, entry_id, value, self.conn_role(conn)):
                outcome.add(k, {"userId": self.uid(user), "resource": resource, "data": value,
                                "version": Version(key, False)})
        return outcome

    def entry_get(self, user: int | None, space: str, scope: int, entry_id: str) -> Outcome:
        if self.rule(user, space, "read") is None:
            return Outcome(403, FORBIDDEN)
        state = self.entries.get((space, scope, entry_id))
        if state is None or not state.live or not self._readable(user, space, scope, entry_id, state.value):
            return Outcome(404, NOT_FOUND)
        return Outcome(200, self._shown(space, scope, entry_id, state.value, False))

    def entry_delete(self, user: int | None, space: str, scope: int, entry_id: str) -> Outcome:
        key = (space, scope, entry_id)
        state = self.entries.get(key)
        rule = self.rule(user, space, "delete")
        if state is None or not state.live:
            return Outcome(403, FORBIDDEN) if rule is None else Outcome(404, NOT_FOUND)
        if rule is None or not evaluate(rule.filter, self.item(scope, entry_id, state.value), self.me(user)):
            return Outcome(403, FORBIDDEN)
        before = state.value
        state.live, state.writer = False, self.uid(user)
        outcome = Outcome(200, self._shown(space, scope, entry_id, before, True))
        resource = {"type": space, "id": entry_id}
        for k, conn in sorted(self.conns.items()):
            # A deletion reaches whoever's read rule admitted the entry as it was.
            role = self.conn_role(conn)
            if conn.scope == scope and (space, entry_id) in conn.subs \
                    and self._readable(conn.user, space, scope, entry_id, before, role):
                outcome.add(k, {"userId": self.uid(user), "resource": resource, "data": None,
                                "version": Version(key, False), "deleted": True})
        return outcome

    def entry_list(self, user: int | None, scope: int, prefix: str, limit: int) -> Outcome:
        if self.rule(user, "kvStore", "read") is None:
            return Outcome(403, FORBIDDEN)
        ids = sorted(entry_id for (space, s, entry_id), state in self.entries.items()
                     if space == "kvStore" and s == scope and state.live and entry_id.startswith(prefix))
        taken = ids[:limit]
        page = [self._shown("kvStore", scope, entry_id, self.entries[("kvStore", scope, entry_id)].value, False)
                for entry_id in taken
                if self._readable(user, "kvStore", scope, entry_id, self.entries[("kvStore", scope, entry_id)].value)]
        return Outcome(200, {"entries": page, "next": taken[-1] if len(ids) > limit else None})

    # -- records (collections) ---------------------------------------------------------

    @staticmethod
    def cut(record: dict[str, Any], rule: Rule) -> dict[str, Any]:
        if rule.fields == "*":
            return dict(record)
        return {k: v for k, v in record.items() if k == "_id" or k in rule.fields}

    def _record_frames(self, outcome: Outcome, user: int | None, action: str, collection: str,
                       record: dict[str, Any]) -> None:
        resource = {"type": "collection", "id": collection}
        for k, conn in sorted(self.conns.items()):
            if ("collection", collection) not in conn.subs:
                continue
            role = self.conn_role(conn)
            rule = self.rule(conn.user, collection, "read", role)
            if rule is None or not evaluate(rule.filter, record, self.me(conn.user, role)):
                continue
            outcome.add(k, {"userId": self.uid(user), "resource": resource,
                            "data": {"action": action, "record": self.cut(record, rule)},
                            "version": Version(("collection", collection), True)})

    def _answer(self, user: int | None, collection: str, record: dict[str, Any], outcome: Outcome) -> None:
        """What a Directus write answers: 200 with the item if its writer may
        read it (its key learned from there), else 204."""
        rule = self.rule(user, collection, "read")
        if rule is not None and evaluate(rule.filter, record, self.me(user)):
            outcome.status, outcome.body = 200, "item"
        else:
            outcome.status, outcome.body = 204, None

    def record_create(self, user: int | None, collection: str, data: dict[str, Any]) -> Outcome:
        if self.rule(user, collection, "create") is None:
            return Outcome(403, DIRECTUS_FORBIDDEN)
        n = len(self.records)
        fields = {k: v for k, v in data.items() if k not in RESERVED and k != "id"}
        record = {"_id": Sym("id", n), **fields, "createdAt": ANY_STRING, "updatedAt": ANY_STRING, "__v": 0}
        self.records.append(Rec(n, collection, record))
        outcome = Outcome(created=[n])
        self._answer(user, collection, record, outcome)
        self._record_frames(outcome, user, "create", collection, record)
        return outcome

    def record_update(self, user: int | None, n: int, changes: dict[str, Any]) -> Outcome:
        rec = self.records[n]
        assert rec.record is not None
        if self.rule(user, rec.collection, "update") is None:
            return Outcome(403, DIRECTUS_FORBIDDEN)
        after = dict(rec.record)
        for name, value in changes.items():
            if name in RESERVED or name == "id":
                continue
            if value is None:
                after.pop(name, None)
            else:
                after[name] = value
        # Keys in the stored order: server fields last.
        after = {"_id": after["_id"], **{k: v for k, v in after.items() if k not in RESERVED},
                 "createdAt": ANY_STRING, "updatedAt": ANY_STRING, "__v": after.get("__v", 0)}
        rec.record = after
        outcome = Outcome()
        self._answer(user, rec.collection, after, outcome)
        self._record_frames(outcome, user, "update", rec.collection, after)
        return outcome

    def record_delete(self, user: int | None, n: int) -> Outcome:
        rec = self.records[n]
        assert rec.record is not None
        if self.rule(user, rec.collection, "delete") is None:
            return Outcome(403, DIRECTUS_FORBIDDEN)
        before, rec.record = rec.record, None
        outcome = Outcome(204, None)
        self._record_frames(outcome, user, "delete", rec.collection, before)
        return outcome

    def live(self, collection: str) -> list[Rec]:
        return [rec for rec in self.records if rec.collection == collection and rec.record is not None]

    # -- documents ---------------------------------------------------------------------

    def doc_put(self, token: str, content: Any) -> Outcome:
        revision = self.docs.get(token, (0, None))[0] + 1
        self.docs[token] = (revision, content)
        outcome = Outcome(200, {"revision": revision})
        for k, conn in sorted(self.conns.items()):
            if ("document", token) in conn.subs:
                outcome.add(k, {"userId": None, "resource": {"type": "document", "id": token},
                                "data": {"revision": revision, "content": content},
                                "version": Version(("document", token), True)})
        return outcome

    # -- websockets --------------------------------------------------------------------

    def open(self, k: int, user: int | None, scope: int) -> None:
        self.conns[k] = Conn(user, scope, self.role_of(user))

    def close(self, k: int) -> None:
        self.conns.pop(k, None)

    def subscribe(self, k: int, type_: str, ident: str) -> Outcome:
        """The answer to a subscribe (entries: ``ident`` the entry id)."""
        conn = self.conns[k]
        role = self.conn_role(conn)
        resource = {"type": type_, "id": ident}
        outcome = Outcome()
        if type_ in ("kvStore", "liveConfig"):
            if self.rule(conn.user, type_, "read", role) is None:
                outcome.add(k, error("Forbidden", "forbidden", resource))
                return outcome
            conn.subs.add((type_, ident))
            state = self.entries.get((type_, conn.scope, ident))
            if state is None or not state.live or \
                    not self._readable(conn.user, type_, conn.scope, ident, state.value, role):
                outcome.add(k, _warning(resource))
            else:
                outcome.add(k, {"userId": state.writer, "resource": resource, "data": state.value,
                                "version": Version((type_, conn.scope, ident), False)})
        elif type_ == "collection":
            rule = self.rule(conn.user, ident, "read", role)
            if rule is None:
                outcome.add(k, error("Forbidden", "forbidden", resource))
                return outcome
            conn.subs.add((type_, ident))
            if not any(evaluate(rule.filter, rec.record, self.me(conn.user, role)) for rec in self.live(ident)):
                outcome.add(k, _warning(resource))
        else:
            conn.subs.add((type_, ident))
            doc = self.docs.get(ident)
            if doc is None:
                outcome.add(k, _warning(resource))
            else:
                outcome.add(k, {"userId": None, "resource": resource,
                                "data": {"revision": doc[0], "content": doc[1]},
                                "version": Version(("document", ident), True)})
        return outcome

    def unsubscribe(self, k: int, type_: str, ident: str) -> Outcome:
        self.conns[k].subs.discard((type_, ident))
        return Outcome()


class _AnyBody:
    def __repr__(self) -> str:
        return "<any body>"


ANY_BODY = _AnyBody()
