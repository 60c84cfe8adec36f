"""Runs resource-subscription steps against a target and checks every
answer and every frame.

A step is a small JSON object; users, connections, scopes, entries,
records and documents are named by index or by the kit's short names, so
that a failing sequence prints short and replays against any server::

    {"do": "rules", "roles": {"r1": [{"collection": "kvStore", "action": "read",
                                       "filter": {"id": {"_starts_with": "@p"}}}], ...}, "drop": ["r3"]}
    {"do": "role", "user": 0, "role": "r1"}
    {"do": "put", "space": "kv" | "lc", "user": 0, "scope": 1, "key": "p0", "value": {"hp": 1}}
    {"do": "get", "space": "kv" | "lc", "user": 0, "scope": 1, "key": "p0"}
    {"do": "del", "user": 0, "scope": 1, "key": "p0"}                      (kvStore only)
    {"do": "list", "user": 0, "scope": 1, "prefix": "p", "limit": 2}
    {"do": "open", "conn": 0, "user": 1, "scope": 2, "via": "encoded" | "real"}
    {"do": "sub", "conn": 0, "type": "kvStore" | "liveConfig", "id": "p0"}
    {"do": "sub", "conn": 0, "type": "collection", "id": "a"}            ("users": an invalid one)
    {"do": "sub", "conn": 0, "type": "document", "id": 0}
    {"do": "unsub", ...as sub}
    {"do": "create", "user": 0, "coll": "a", "data": {"owner": "@u0", "n": 1}}   (Directus REST)
    {"do": "update", "user": 0, "item": 1, "data": {"n": 2}}
    {"do": "delete", "user": 0, "item": 1}
    {"do": "doc", "doc": 0, "content": {"v": 1}}                          (an inbox document PUT)
    {"do": "close", "conn": 0}

``user`` ``null`` is nobody signed in (the ``public`` role), user ``ADMIN``
(3) the kit's administrator. Scope n is ``SCOPES[n]`` (0: no headers).
``key`` k is the entry ``<label>:k`` (``"@p"`` in a rule stands for
``<label>:p``), ``coll`` a/b the sequence's own collections, ``doc`` n its
n-th document, ``item`` n the n-th of its records still there (counted
round). ``"@uN"`` is user N's id, ``"@rN"`` role rN's name.

Every sequence starts over (every user ``authenticated``, the kit's base
rules: ``authenticated`` may do everything, ``public`` and ``r1``-``r3``
nothing). After each step the answer is compared with the model's, and
every open connection must have received exactly the frames the model
predicts, in that order, and nothing else; versions must be ISO 8601 with
milliseconds and strictly increase per resource.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Protocol, Sequence
from urllib.parse import quote

from ..directus.runner import ADMIN, KIT_ROLES, USERS, DirectusRun, InProcessDirectus
from ..matching import ANY_STRING, EMPTY_BODY, Bindings, Mismatch, Sym, match, show
from ..sequences import SequenceBase, StepMismatch, StepScript
from .model import ANY_BODY, SCOPES, SPACES, Outcome, ResourcesModel, Version

__all__ = ["ResourcesTarget", "ResourcesMismatch", "ResourcesRun", "InProcessResources", "run_steps", "format_steps",
           "load_steps", "tidy", "USERS", "ADMIN", "CONNS", "COLLECTIONS", "DOCS", "KEYS"]

CONNS = 4
COLLECTIONS = ("a", "b")
DOCS = 2
#: Entry keys (the part after the sequence's label): ":" "/" and non-ASCII are plain key characters.
KEYS = ("p0", "p1", "q0", "p:/é")
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
_ORDER = ("do", "conn", "user", "space", "scope", "via", "type", "id", "key", "coll", "item", "doc", "prefix",
          "limit", "role", "value", "data", "content", "roles", "drop")
_BARRIER = {"error": "Invalid message format", "code": "invalid_message", "message": ANY_STRING}


class ResourcesTarget(Protocol):
    """What the kit drives: HTTP with headers, and websockets opened with a
    subprotocol (``InProcessResources``, ``conformance_runner.UrlTarget``)."""

    def http(self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None,
             headers: Sequence[tuple[str, str]] | None = None) -> Any: ...

    def resources_open(self, connection: str, path: str, headers: Sequence[tuple[str, str]],
                       subprotocol: str | None) -> tuple[int, str | None]: ...

    def directus_send(self, connection: str, frame: str) -> None: ...

    def directus_receive(self, connection: str, timeout: float) -> Any: ...

    def directus_close(self, connection: str) -> None: ...


class InProcessResources(InProcessDirectus):
    """``InProcessTarget`` (the core in this process) as a ``ResourcesTarget``:
    the Directus kit's, with websockets opened with a subprotocol."""

    def resources_open(self, connection: str, path: str, headers: Sequence[tuple[str, str]],
                       subprotocol: str | None) -> tuple[int, str | None]:
        sent = [(name.lower(), value) for name, value in headers]
        sent += [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-version", "13")]
        if subprotocol is not None:
            sent.append(("sec-websocket-protocol", subprotocol))
        status, accepted = self._upgrade(connection, path, sent)
        return status, None if accepted is None else accepted.subprotocol


class ResourcesMismatch(StepMismatch):
    """The server differs from the resource-subscription model at step ``step``; ``steps`` is
    the sequence up to and including that step."""

    script = StepScript("a resources", _ORDER)


tidy = ResourcesMismatch.script.tidy
format_steps = ResourcesMismatch.script.format
load_steps = ResourcesMismatch.script.load


class ResourcesRun(DirectusRun):
    """The kit's accounts, tokens and rules (made as the Directus kit makes
    them: an administrator, static tokens, ``PUT /_/api/rules``) and the
    sequences run on them."""

    def _sequence(self, label: str, revision: int) -> Any:
        return _Sequence(self, label, revision)


def run_steps(target: ResourcesTarget, steps: list[dict[str, Any]], *, token: str = "r0", timeout: float = 2.0,
              quiet: float = 0.0, admin: tuple[str, str] | None = None,
              admin_token: str | None = None) -> ResourcesModel:
    """Replay ``steps`` on fresh accounts (named after ``token``)."""
    run = ResourcesRun(target, token=token, timeout=timeout, quiet=quiet, admin=admin, admin_token=admin_token)
    try:
        return run.run(steps)
    finally:
        run.teardown()


def _encoded(pairs: list[tuple[str, str]]) -> str:
    from satchel.protocol.resources import encode_headers

    return encode_headers(pairs)


class _Sequence(SequenceBase):
    mismatch = ResourcesMismatch

    def __init__(self, run: ResourcesRun, label: str, revision: int) -> None:
        self.run, self.target, self.label = run, run.target, label
        self.collections = {c: f"{label}{c}" for c in COLLECTIONS}
        self.model = ResourcesModel(run.user_ids, run.base(), revision, admin=ADMIN)
        self.bindings = Bindings()
        self.index = 0
        self.versions: dict[Any, str] = {}   # resource -> the last version seen
        self.fresh: dict[Any, str] = {}      # resource -> the new version of this step

    # -- names ---------------------------------------------------------------------

    def real(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("@u") and value[2:].isdigit():
            n = int(value[2:])
            return self.run.user_ids[n] if n < len(self.run.user_ids) else value
        if isinstance(value, str) and value.startswith("@") and value[1:] in KIT_ROLES:
            return self.run.role_name(value[1:])
        if isinstance(value, str) and value.startswith("@") and len(value) > 1:
            return f"{self.label}:{value[1:]}"
        if isinstance(value, dict):
            return {key: self.real(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.real(item) for item in value]
        return value

    def entry_id(self, key: Any) -> str:
        return f"{self.label}:{key}"

    def coll(self, name: Any) -> str:
        return self.collections.get(name, name if isinstance(name, str) else self.collections["a"])

    def doc_tokens(self, slot: int) -> tuple[str, str]:
        digest = hashlib.sha256(f"{self.run.token}/{self.label}/{slot}".encode()).hexdigest()
        return digest[:32], digest[32:64]

    def who(self, user: Any) -> str:
        return "nobody signed in" if user is None else f"user {user} ({self.model.role_of(user)})"

    def user_of(self, step: dict[str, Any]) -> int | None:
        user = step.get("user")
        return user if isinstance(user, int) and 0 <= user <= ADMIN else None

    # -- steps ----------------------------------------------------------------------

    def step(self, step: dict[str, Any], index: int) -> None:
        self.fresh = {}
        super().step(step, index)

    def version(self, marker: Version, actual: Any, where: str) -> None:
        if not isinstance(actual, str) or not _VERSION.match(actual):
            self.fail(f"{where}: a version is ISO 8601 UTC with milliseconds, got {show(actual)}")
        key = marker.resource
        if not marker.fresh:
            if self.versions.get(key) != actual:
                self.fail(f"{where}: expected the version last seen for {key}, {self.versions.get(key)}, "
                          f"got {actual}")
            return
        if key in self.fresh:
            if self.fresh[key] != actual:
                self.fail(f"{where}: one write, two versions: {self.fresh[key]} and {actual}")
            return
        last = self.versions.get(key)
        if last is not None and not actual > last:
            self.fail(f"{where}: versions of {key} must strictly increase: {actual} after {last}")
        self.versions[key] = self.fresh[key] = actual

    def expect(self, expected: Any, actual: Any, where: str) -> None:
        """Match ``actual`` against ``expected``, checking its version markers."""
        def walk(want: Any, got: Any) -> Any:
            if isinstance(want, Version):
                self.version(want, got, where)
                return got
            if isinstance(want, dict) and isinstance(got, dict):
                return {key: walk(value, got.get(key)) if key in got else value for key, value in want.items()}
            if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
                return [walk(w, g) for w, g in zip(want, got)]
            return want
        try:
            match(walk(expected, actual), actual, self.bindings)
        except Mismatch as mismatch:
            self.fail(f"{where}: {mismatch.describe()}")

    def http(self, method: str, path: str, body: Any, user: int | None,
             scope: int | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        headers: list[tuple[str, str]] = []
        if user is not None:
            headers.append(("Authorization", f"Bearer {self.run.tokens[user]}"))
        if scope:
            organization, project = SCOPES[scope]
            headers += [("x-m2-organization", organization), ("x-m2-project", project)]
        data = raw if raw is not None else None if body is None else json.dumps(body, ensure_ascii=False).encode()
        reply = self.target.http(None, method, path, data, key=None, headers=headers)
        if not reply.body:
            return reply.status, EMPTY_BODY
        try:
            return reply.status, json.loads(reply.body)
        except ValueError:
            return reply.status, reply.body

    def check(self, what: str, outcome: Outcome, status: int, answer: Any) -> None:
        if status != outcome.status:
            self.fail(f"{what}: expected {outcome.status} {show(self.bindings.resolve(outcome.body))}, "
                      f"got {status} {show(answer)}")
        if outcome.body is None or outcome.body is ANY_BODY:
            return
        self.expect(outcome.body, answer, what)

    # -- rules and roles -----------------------------------------------------------------

    def _rules(self, step: dict[str, Any]) -> None:
        ours = self.run.kit_roles(self.real(step.get("roles") or {}), step.get("drop"),
                                  lambda rule: {**rule, "collection": self.coll(rule.get("collection", "*"))})
        everything = {**self.run.foreign, **ours}
        body = {"revision": self.model.revision, "rules": {"version": 1, "roles": everything}}
        outcome = self.model.set_rules(ours, everything)
        status, answer = self.http("PUT", "/_/api/rules", body, ADMIN)
        self.check("PUT /_/api/rules as the admin", outcome, status, answer)
        if status == 200:
            self.model.revision = answer["data"]["revision"]
        self.deliveries(Outcome(), "PUT /_/api/rules")

    def _role(self, step: dict[str, Any]) -> None:
        user, role = step.get("user"), self.run.role_name(step.get("role", "authenticated"))
        if not isinstance(user, int) or not 0 <= user < USERS:
            return
        outcome = self.model.set_role(user, role)
        path = f"/_/api/users/{self.run.user_ids[user]}/role"
        status, answer = self.http("PUT", path, {"role": role}, ADMIN)
        self.check(f"PUT {path} {{role: {role}}} as the admin", outcome, status, answer)
        self.deliveries(Outcome(), f"PUT {path}")

    # -- entries over REST ---------------------------------------------------------------

    def _entry(self, step: dict[str, Any]) -> tuple[str, str, int, str, int | None]:
        space_name = step.get("space", "kv")
        space = SPACES.get(space_name, "kvStore")
        scope = step.get("scope", 0) if step.get("scope", 0) in range(len(SCOPES)) else 0
        entry_id = self.entry_id(step.get("key", KEYS[0]))
        route = "kv" if space == "kvStore" else "live-config"
        return space, f"/realtime/{route}/{quote(entry_id, safe=':')}", scope, entry_id, self.user_of(step)

    def _put(self, step: dict[str, Any]) -> None:
        space, path, scope, entry_id, user = self._entry(step)
        value = step.get("value")
        outcome = self.model.entry_put(user, space, scope, entry_id, value)
        what = f"PUT {path} {show(value)} in scope {scope} as {self.who(user)}"
        status, answer = self.http("PUT", path, None, user, scope, json.dumps(value, ensure_ascii=False).encode())
        self.check(what, outcome, status, answer)
        self.deliveries(outcome, what)

    def _get(self, step: dict[str, Any]) -> None:
        space, path, scope, entry_id, user = self._entry(step)
        outcome = self.model.entry_get(user, space, scope, entry_id)
        what = f"GET {path} in scope {scope} as {self.who(user)}"
        status, answer = self.http("GET", path, None, user, scope)
        self.check(what, outcome, status, answer)
        self.deliveries(Outcome(), what)

    def _del(self, step: dict[str, Any]) -> None:
        space, path, scope, entry_id, user = self._entry({**step, "space": "kv"})
        outcome = self.model.entry_delete(user, space, scope, entry_id)
        what = f"DELETE {path} in scope {scope} as {self.who(user)}"
        status, answer = self.http("DELETE", path, None, user, scope)
        self.check(what, outcome, status, answer)
        self.deliveries(outcome, what)

    def _list(self, step: dict[str, Any]) -> None:
        user = self.user_of(step)
        scope = step.get("scope", 0) if step.get("scope", 0) in range(len(SCOPES)) else 0
        prefix, limit = self.entry_id(step.get("prefix", "")), int(step.get("limit", 100))
        outcome = self.model.entry_list(user, scope, prefix, limit)
        path = f"/realtime/kv?prefix={quote(prefix, safe='')}&limit={limit}"
        what = f"GET {path} in scope {scope} as {self.who(user)}"
        status, answer = self.http("GET", path, None, user, scope)
        self.check(what, outcome, status, answer)
        self.deliveries(Outcome(), what)

    # -- records and documents -------------------------------------------------------------

    def item_n(self, n: Any) -> int | None:
        live = [rec.n for rec in self.model.records if rec.record is not None]
        if not isinstance(n, int) or n < 0 or not live:
            return None
        return live[n % len(live)]

    def _create(self, step: dict[str, Any]) -> None:
        user, collection = self.user_of(step), self.coll(step.get("coll", "a"))
        if collection not in self.collections.values():
            return
        data = {**self.real(step.get("data") or {}), "seq": len(self.model.records)}
        outcome = self.model.record_create(user, collection, data)
        what = f"POST /items/{collection} {show(data)} as {self.who(user)}"
        status, answer = self.http("POST", f"/items/{collection}", data, user)
        self.written(what, outcome, status, answer, collection)

    def written(self, what: str, outcome: Outcome, status: int, answer: Any, collection: str) -> None:
        if outcome.status != status:
            self.fail(f"{what}: expected {outcome.status}, got {status} {show(answer)}")
        if status == 403:
            self.check(what, outcome, status, answer)
        for n in outcome.created:
            sym = Sym("id", n)
            key = answer.get("data", {}).get("id") if status == 200 and isinstance(answer, dict) else None
            if key is None:
                path = f"/items/{collection}?fields=id&filter={quote(json.dumps({'seq': {'_eq': n}}))}"
                found, listing = self.http("GET", path, None, ADMIN)
                rows = listing.get("data") if isinstance(listing, dict) else None
                if found != 200 or not isinstance(rows, list) or len(rows) != 1:
                    self.fail(f"after {what}: GET {path} as the admin answered {found} {show(listing)}")
                key = rows[0].get("id")
            if not isinstance(key, str):
                self.fail(f"{what}: no id for the record created ({show(answer)})")
            self.bindings.values[sym] = key
        self.deliveries(outcome, what)

    def _update(self, step: dict[str, Any]) -> None:
        n, user = self.item_n(step.get("item")), self.user_of(step)
        if n is None:
            return
        rec = self.model.records[n]
        data = self.real(step.get("data") or {})
        path = f"/items/{rec.collection}/{self.bindings.values[Sym('id', n)]}"
        outcome = self.model.record_update(user, n, data)
        what = f"PATCH {path} {show(data)} as {self.who(user)}"
        status, answer = self.http("PATCH", path, data, user)
        self.written(what, outcome, status, answer, rec.collection)

    def _delete(self, step: dict[str, Any]) -> None:
        n, user = self.item_n(step.get("item")), self.user_of(step)
        if n is None:
            return
        rec = self.model.records[n]
        path = f"/items/{rec.collection}/{self.bindings.values[Sym('id', n)]}"
        outcome = self.model.record_delete(user, n)
        what = f"DELETE {path} as {self.who(user)}"
        status, answer = self.http("DELETE", path, None, user)
        self.written(what, outcome, status, answer, rec.collection)

    def _doc(self, step: dict[str, Any]) -> None:
        slot = step.get("doc", 0) if step.get("doc", 0) in range(DOCS) else 0
        read, write = self.doc_tokens(slot)
        current = self.model.docs.get(read, (0, None))[0]
        content = step.get("content", {})
        outcome = self.model.doc_put(read, content)
        headers = [("Derived-From", str(current)), ("Revision", str(current + 1)), ("Write-Token", write)]
        what = f"PUT /backend/documents/(document {slot}) revision {current + 1} {show(content)}"
        reply = self.target.http(None, "PUT", f"/backend/documents/{read}",
                                 json.dumps(content).encode(), key=None, headers=headers)
        try:
            answer = json.loads(reply.body) if reply.body else EMPTY_BODY
        except ValueError:
            answer = reply.body
        self.check(what, outcome, reply.status, answer)
        self.deliveries(outcome, what)

    # -- websockets ------------------------------------------------------------------------

    def _open(self, step: dict[str, Any]) -> None:
        k, user = step.get("conn"), self.user_of(step)
        if not isinstance(k, int) or k in self.model.conns:
            return
        scope = step.get("scope", 0) if step.get("scope", 0) in range(len(SCOPES)) else 0
        pairs: list[tuple[str, str]] = []
        if scope:
            organization, project = SCOPES[scope]
            pairs += [("x-m2-organization", organization), ("x-m2-project", project)]
        if user is not None:
            pairs.append(("authorization", f"Bearer {self.run.tokens[user]}"))
        real = step.get("via") == "real"
        subprotocol = None if real or not pairs else _encoded(pairs)
        status, echoed = self.target.resources_open(self.conn_name(k), "/realtime", pairs if real else [],
                                                    subprotocol)
        what = f"opening resource websocket {k} as {self.who(user)} in scope {scope} ({'real' if real else 'encoded'} headers)"
        if status != 101:
            self.fail(f"{what}: expected 101, got {status}")
        if echoed != subprotocol:
            self.fail(f"{what}: expected the subprotocol {subprotocol!r} echoed, got {echoed!r}")
        self.model.open(k, user, scope)
        self.deliveries(Outcome(), what)

    def _resource(self, step: dict[str, Any]) -> tuple[str, str] | None:
        type_ = step.get("type", "kvStore")
        ident = step.get("id")
        if type_ in ("kvStore", "liveConfig"):
            return type_, self.entry_id(ident if isinstance(ident, str) else KEYS[0])
        if type_ == "collection":
            return type_, self.coll(ident if isinstance(ident, str) else "a")
        if type_ == "document":
            return type_, self.doc_tokens(ident if isinstance(ident, int) and 0 <= ident < DOCS else 0)[0]
        return None

    def _sub(self, step: dict[str, Any], action: str = "subscribe") -> None:
        k, resource = step.get("conn"), self._resource(step)
        if k not in self.model.conns or resource is None:
            return
        type_, ident = resource
        if type_ == "collection" and ident not in self.collections.values():
            outcome = Outcome()
            outcome.add(k, dict(_BARRIER))  # not a collection: invalid, nothing subscribed
        elif action == "subscribe":
            outcome = self.model.subscribe(k, type_, ident)
        else:
            outcome = self.model.unsubscribe(k, type_, ident)
        message = {"action": action, "resource": {"type": type_, "id": ident}}
        self.target.directus_send(self.conn_name(k), json.dumps(message, ensure_ascii=False))
        if not outcome.frames.get(k):
            # Silent: then a message that is answered, so that the step ends
            # once the server has read the first.
            self.target.directus_send(self.conn_name(k), '{"action":"sync"}')
            outcome.add(k, dict(_BARRIER))
        conn = self.model.conns[k]
        self.deliveries(outcome, f"{show(message)} on websocket {k} ({self.who(conn.user)}, scope {conn.scope})")

    def _unsub(self, step: dict[str, Any]) -> None:
        self._sub(step, "unsubscribe")

    def _close(self, step: dict[str, Any]) -> None:
        self.close_connection(step.get("conn"))

    # -- what the connections received ---------------------------------------------------

    def receive(self, k: int, timeout: float) -> Any:
        return self.target.directus_receive(self.conn_name(k), timeout)

    def take(self, k: int, pending: list[Any], frame: Any, what: str) -> None:
        """A connection's frames arrive in the order the model says."""
        self.expect(pending.pop(0), frame, f"{what}: websocket {k} received {show(frame)}")

    def expecting(self, pending: list[Any]) -> str:
        return show(self.bindings.resolve(pending[0]))

    def unexpected(self, k: int, frame: Any) -> str:
        conn = self.model.conns[k]
        return f"websocket {k} ({self.who(conn.user)}, scope {conn.scope}) received an unexpected frame {show(frame)}"

    def close_conn(self, name: str) -> None:
        self.target.directus_close(name)

