"""The Directus kit's steps: one sequence's collections, items and
websockets, each step sent to the target and its answer and frames checked
against the model (the steps themselves: ``runner``'s docstring).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from ..matching import ANY_STRING, EMPTY_BODY, Bindings, Mismatch, Sym, match, show
from ..sequences import PASSWORD, SequenceBase
from .model import MISSING_ID, DirectusModel, Expected, Outcome, forbidden_body
from .runner import _NO_COLLECTIONS, ADMIN, COLLECTIONS, KIT_ROLES, USERS, DirectusMismatch, DirectusRun

__all__ = ["DirectusSequence"]


def _query_string(query: dict[str, Any] | None) -> str:
    """A query as the REST API reads it (what ``@directus/sdk`` sends)."""
    if not query:
        return ""
    parts = []
    for name, value in query.items():
        if isinstance(value, list):
            text = ",".join(value)
        elif isinstance(value, dict):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = str(value)
        parts.append(f"{name}={quote(text, safe=',')}")
    return "?" + "&".join(parts)


class DirectusSequence(SequenceBase):
    """One sequence of a ``DirectusRun``: its collections, items and
    websockets, each step run and checked against ``DirectusModel``."""

    mismatch = DirectusMismatch

    def __init__(self, run: DirectusRun, label: str, revision: int) -> None:
        self.run, self.target, self.label = run, run.target, label
        self.collections = {c: f"{label}{c}" for c in COLLECTIONS}
        self.model = DirectusModel(run.user_ids, run.base(), revision, admin=ADMIN)
        self.bindings = Bindings()
        self.index = 0

    # -- names --------------------------------------------------------------------

    def real(self, value: Any) -> Any:
        """``value`` with every ``"@uN"`` as user N's id."""
        if isinstance(value, str) and value.startswith("@u") and value[2:].isdigit():
            n = int(value[2:])
            return self.run.user_ids[n] if n < len(self.run.user_ids) else value
        if isinstance(value, str) and value.startswith("@") and value[1:] in KIT_ROLES:
            return self.run.role_name(value[1:])
        if isinstance(value, dict):
            return {key: self.real(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.real(item) for item in value]
        return value

    def coll(self, step: dict[str, Any]) -> str:
        name = step.get("coll", "a")
        if name in _NO_COLLECTIONS:
            return name  # a name that may not be a collection: as it is
        return self.collections.get(name, self.collections["a"])

    def item_n(self, n: Any) -> int | None:
        """The item a step's ``item`` names: the n-th of the sequence's
        items still there (counted round, so that a short script still names
        one); ``-1`` (or no item) names none."""
        live = [item.n for item in self.model.items if item.record is not None]
        if not isinstance(n, int) or n < 0 or not live:
            return None
        return live[n % len(live)]

    def item_id(self, n: Any) -> str:
        found = self.item_n(n)
        return MISSING_ID if found is None else self.bindings.values.get(Sym("id", found), MISSING_ID)

    def item_coll(self, step: dict[str, Any]) -> str:
        """An item step's collection: ``coll``, else its item's."""
        found = self.item_n(step.get("item", (step.get("items") or [None])[0]))
        if "coll" in step or found is None:
            return self.coll(step)
        return self.model.items[found].collection

    def token(self, user: Any) -> str | None:
        return None if user is None else self.run.tokens[user]

    # -- steps ----------------------------------------------------------------------

    def _check_http(self, what: str, outcome: Outcome, status: int, answer: Any) -> None:
        if status != outcome.status:
            self.fail(f"{what}: expected {outcome.status} {show(self.bindings.resolve(outcome.body))}, "
                      f"got {status} {show(answer)}")
        if outcome.body is EMPTY_BODY:
            if answer is not EMPTY_BODY:
                self.fail(f"{what}: expected an empty body, got {show(answer)}")
            return
        try:
            match(outcome.body, answer, self.bindings)
        except Mismatch as mismatch:
            self.fail(f"{what}: {mismatch.describe()}")

    def _rest(self, step: dict[str, Any], outcome: Outcome, method: str, path: str, body: Any = None) -> None:
        user = step.get("user")
        who = "nobody signed in" if user is None else f"user {user} ({self.model.role_of(user)})"
        what = f"{method} {path} as {who}"
        status, answer = self.run.http(method, path, self.real(body), self.token(user))
        self._check_http(what, outcome, status, answer)
        self._learn_ids(outcome, what)
        self.deliveries(outcome, what)

    def _learn_ids(self, outcome: Outcome, what: str) -> None:
        """Items created but not shown to their writer: their ids from the admin's listing."""
        unknown = {self.model.items[n].collection for n in outcome.created if Sym("id", n) not in self.bindings.values}
        for collection in sorted(unknown):
            path = f"/items/{collection}?fields=id&limit=-1"
            status, answer = self.run.http("GET", path, None, self.run.tokens[ADMIN])
            expected = {"data": [{"id": Sym("id", item.n)} for item in self.model.live(collection)]}
            self._check_http(f"after {what}: GET {path} as the admin", Outcome(200, expected), status, answer)

    def _rules(self, step: dict[str, Any]) -> None:
        ours = self.run.kit_roles(self.real(step.get("roles") or {}), step.get("drop"), self._rule)
        everything = {**self.run.foreign, **ours}
        body = {"revision": self.model.revision, "rules": {"version": 1, "roles": everything}}
        outcome = self.model.set_rules(ours, everything)
        status, answer = self.run.http("PUT", "/_/api/rules", body, self.run.tokens[ADMIN])
        self._check_http("PUT /_/api/rules as the admin", outcome, status, answer)
        self.deliveries(outcome, "PUT /_/api/rules")

    def _rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        real = dict(rule)
        real["collection"] = self.collections.get(rule.get("collection", "*"), rule.get("collection", "*"))
        return real

    def _role(self, step: dict[str, Any]) -> None:
        user, role = step["user"], self.run.role_name(step["role"])
        if not isinstance(user, int) or not 0 <= user < USERS:
            return
        outcome = self.model.set_role(user, role)
        path = f"/_/api/users/{self.run.user_ids[user]}/role"
        status, answer = self.run.http("PUT", path, {"role": role}, self.run.tokens[ADMIN])
        self._check_http(f"PUT {path} {{role: {role}}} as the admin", outcome, status, answer)
        self.deliveries(outcome, f"PUT {path}")

    def _get(self, step: dict[str, Any]) -> None:
        collection = self.coll(step)
        query = self.real(step.get("query") or {})
        outcome = self.model.read(step.get("user"), collection, query)
        self._rest(step, outcome, "GET", f"/items/{collection}{_query_string(query)}")

    def _get_one(self, step: dict[str, Any]) -> None:
        collection = self.item_coll(step)
        query = self.real(step.get("query") or {})
        outcome = self.model.read_one(step.get("user"), collection, self.item_n(step.get("item")), query)
        self._rest(step, outcome, "GET", f"/items/{collection}/{self.item_id(step.get('item'))}{_query_string(query)}")

    def _create(self, step: dict[str, Any]) -> None:
        collection = self.coll(step)
        data = self.real(step.get("data") or {})
        one = not isinstance(data, list)
        outcome = self.model.create(step.get("user"), collection, [data] if one else data, one)
        self._rest(step, outcome, "POST", f"/items/{collection}", data)

    def _bp_create(self, step: dict[str, Any]) -> None:
        """A record written through Backpack's REST API (``POST /{collection}``
        with the API key and the user's session): skipped without the key."""
        user, collection = step.get("user"), self.coll(step)
        if self.run.api_key is None or not isinstance(user, int) or not 0 <= user < USERS \
                or collection in _NO_COLLECTIONS:
            return
        data = self.real(step.get("data") or {})
        outcome = self.model.backpack_create(user, collection, data)
        what = f"Backpack POST /{collection} as user {user} ({self.model.role_of(user)})"
        reply = self.target.http(self.run.jar(user), "POST", f"/{collection}",
                                 json.dumps(data, ensure_ascii=False).encode(), key=self.run.api_key)
        try:
            answer = json.loads(reply.body) if reply.body else EMPTY_BODY
        except ValueError:
            answer = reply.body
        self._check_http(what, outcome, reply.status, answer)
        self._learn_ids(outcome, what)
        self.deliveries(outcome, what)

    def _update(self, step: dict[str, Any]) -> None:
        collection = self.item_coll(step)
        data = self.real(step.get("data") or {})
        if "items" in step:
            ns = [self.item_n(n) for n in step["items"]]
            ids = [self.item_id(n) for n in step["items"]]
            outcome = self.model.update(step.get("user"), collection, ns, data, False)
            self._rest(step, outcome, "PATCH", f"/items/{collection}", {"keys": ids, "data": data})
        else:
            path = f"/items/{collection}/{self.item_id(step.get('item'))}"
            outcome = self.model.update(step.get("user"), collection, [self.item_n(step.get("item"))], data, True)
            self._rest(step, outcome, "PATCH", path, data)

    def _update_query(self, step: dict[str, Any]) -> None:
        """``PATCH /items/{c} {query, data}``: the items the writer may read
        that the query selects."""
        collection, query = self.coll(step), self.real(step.get("query") or {})
        data = self.real(step.get("data") or {})
        ns = self.model.selected(step.get("user"), collection, query)
        outcome = (Outcome(403, forbidden_body()) if ns is None
                   else self.model.update(step.get("user"), collection, ns, data, False))
        self._rest(step, outcome, "PATCH", f"/items/{collection}", {"query": query, "data": data})

    def _delete_query(self, step: dict[str, Any]) -> None:
        """``DELETE /items/{c} {query}``."""
        collection, query = self.coll(step), self.real(step.get("query") or {})
        ns = self.model.selected(step.get("user"), collection, query)
        outcome = Outcome(403, forbidden_body()) if ns is None else self.model.delete(step.get("user"), collection, ns)
        self._rest(step, outcome, "DELETE", f"/items/{collection}", {"query": query})

    def _delete(self, step: dict[str, Any]) -> None:
        # The ids first: the model forgets what it deletes.
        collection = self.item_coll(step)
        if "items" in step:
            ns, ids = [self.item_n(n) for n in step["items"]], [self.item_id(n) for n in step["items"]]
            outcome = self.model.delete(step.get("user"), collection, ns)
            self._rest(step, outcome, "DELETE", f"/items/{collection}", ids)
        else:
            path = f"/items/{collection}/{self.item_id(step.get('item'))}"
            outcome = self.model.delete(step.get("user"), collection, [self.item_n(step.get("item"))])
            self._rest(step, outcome, "DELETE", path)

    def _login(self, step: dict[str, Any]) -> None:
        user = step.get("user")
        if not isinstance(user, int) or not 0 <= user < USERS:
            return
        what = f"POST /auth/login as user {user}"
        status, answer = self.run.http("POST", "/auth/login",
                                       {"email": self.run.emails[user], "password": PASSWORD, "mode": "json"})
        data = answer.get("data") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(data, dict) or set(data) != {"access_token", "expires", "refresh_token"} \
                or not isinstance(data["access_token"], str) or not isinstance(data["refresh_token"], str) \
                or not isinstance(data["expires"], int) or data["expires"] <= 30_000:
            self.fail(f"{what}: expected 200 {{data: {{access_token, expires (ms, > 30 s), refresh_token}}}}, "
                      f"got {status} {show(answer)}")
        status, answer = self.run.http("GET", "/users/me", None, data["access_token"])
        expected = {"data": {"id": self.run.user_ids[user], "email": self.run.emails[user],
                             "role": self.model.role_of(user)}}
        self._check_http(f"GET /users/me with the access token of user {user}'s login", Outcome(200, expected),
                         status, answer)
        # The refresh token rotates; the old one, and a logged-out session's tokens, are no more.
        old = data["refresh_token"]
        status, answer = self.run.http("POST", "/auth/refresh", {"refresh_token": old, "mode": "json"})
        fresh = answer.get("data") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(fresh, dict) or set(fresh) != {"access_token", "expires", "refresh_token"} \
                or fresh["refresh_token"] == old:
            self.fail(f"POST /auth/refresh after {what}: expected 200 {{data: {{access_token, expires, "
                      f"refresh_token (a new one)}}}}, got {status} {show(answer)}")
        refused = Outcome(401, {"errors": [{"message": ANY_STRING, "extensions": {"code": "INVALID_CREDENTIALS"}}]})
        status, answer = self.run.http("POST", "/auth/refresh", {"refresh_token": old, "mode": "json"})
        self._check_http(f"POST /auth/refresh with the refresh token already used, after {what}", refused, status,
                         answer)
        status, answer = self.run.http("POST", "/auth/logout", {"refresh_token": fresh["refresh_token"], "mode": "json"},
                                       fresh["access_token"])
        self._check_http(f"POST /auth/logout after {what}", Outcome(204, EMPTY_BODY), status, answer)
        status, answer = self.run.http("GET", "/users/me", None, fresh["access_token"])
        self._check_http(f"GET /users/me with the access token of a logged-out session, after {what}", refused,
                         status, answer)
        self.deliveries(Outcome(), what)

    # -- websockets -----------------------------------------------------------------------

    def send(self, k: int, message: dict[str, Any]) -> None:
        self.target.directus_send(self.conn_name(k), json.dumps(self.real(message), ensure_ascii=False))

    def _open(self, step: dict[str, Any]) -> None:
        k, user, proto = step["conn"], step.get("user"), step.get("proto", "core")
        if k in self.model.conns or not isinstance(user, int) or not 0 <= user <= ADMIN:
            return
        token = self.run.tokens[user]
        path = {"core": "/websocket", "extension": f"/websocket?access_token={quote(token)}",
                "v1": f"/websocket?api_token={quote(token)}"}[proto]
        status = self.target.directus_open(self.conn_name(k), path, [])
        if status != 101:
            self.fail(f"opening websocket {k} ({proto}) as user {user}: expected 101, got {status}")
        outcome = self.model.open(k, user, proto)
        if proto == "core":
            self.send(k, {"type": "auth", "access_token": token})
        self.deliveries(outcome, f"opening websocket {k} ({proto}) as user {user} ({self.model.role_of(user)})")

    def _reauth(self, step: dict[str, Any]) -> None:
        """A core connection's ``auth`` with another (or the same) user's token."""
        conn, user = self._conn(step), step.get("user")
        if conn is None or conn.fmt != "core" or not isinstance(user, int) or not 0 <= user <= ADMIN:
            return
        k = step["conn"]
        outcome = self.model.reauth(k, user)
        self.send(k, {"type": "auth", "access_token": self.run.tokens[user]})
        self.deliveries(outcome, f"auth on websocket {k} as user {user} ({self.model.role_of(user)})")

    def _conn(self, step: dict[str, Any]) -> Any:
        k = step.get("conn")
        return self.model.conns.get(k)

    def _subscribe(self, step: dict[str, Any]) -> None:
        conn = self._conn(step)
        if conn is None:
            return
        k, collection = step["conn"], self.coll(step)
        query = self.real(step.get("query")) if step.get("query") else None
        uid, event = step.get("uid"), step.get("event") if conn.fmt == "core" else None
        message: dict[str, Any] = {"type": "subscribe" if conn.fmt == "core" else "SUBSCRIBE", "collection": collection}
        if query is not None and conn.fmt != "v1":
            message["query"] = query
        if uid is not None and conn.fmt != "v1":
            message["uid"] = uid
        if event is not None:
            message["event"] = event
        item = None
        if "item" in step and conn.fmt == "core":
            found = self.item_n(step["item"])
            item = -1 if found is None or self.model.items[found].collection != collection else found
            message["item"] = self.item_id(step["item"]) if item >= 0 else MISSING_ID
        outcome = self.model.subscribe(k, collection, query if conn.fmt != "v1" else None,
                                       uid if conn.fmt != "v1" else None, event, item)
        self.send(k, message)
        if not outcome.frames.get(k):
            self._barrier(k, outcome)
        self.deliveries(outcome, f"subscribe {show(message)} on websocket {k} ({conn.fmt}, {conn.role})")

    def _barrier(self, k: int, outcome: Outcome) -> None:
        """A message the extension does not answer: then a ``GET`` that it
        does, so that the step ends once the server has read the first."""
        fmt = self.model.conns[k].fmt
        uid = "barrier" if fmt == "extension" else None
        query: dict[str, Any] = {"limit": 0} if fmt == "extension" else {}  # v1 drops a limit of 0
        request: dict[str, Any] = {"type": "GET", "collection": self.collections["b"], "query": query}
        if uid is not None:
            request["uid"] = uid
        self.send(k, request)
        outcome.frames.setdefault(k, []).extend(self.model.ws_read(k, self.collections["b"], query, uid).frames[k])

    def _unsubscribe(self, step: dict[str, Any]) -> None:
        conn = self._conn(step)
        if conn is None:
            return
        k, uid = step["conn"], step.get("uid") if conn.fmt != "v1" else None
        message: dict[str, Any] = {"type": "unsubscribe" if conn.fmt == "core" else "UNSUBSCRIBE"}
        if uid is not None:
            message["uid"] = uid
        outcome = self.model.unsubscribe(k, uid)
        self.send(k, message)
        if conn.fmt != "core":
            self._barrier(k, outcome)
        self.deliveries(outcome, f"unsubscribe {show(message)} on websocket {k} ({conn.fmt})")

    def _ws_get(self, step: dict[str, Any]) -> None:
        conn = self._conn(step)
        if conn is None:
            return
        k, collection = step["conn"], self.coll(step)
        query = self.real(step.get("query") or {})
        uid = step.get("uid", "g")
        if conn.fmt == "core":
            message: dict[str, Any] = {"type": "items", "collection": collection, "action": "read", "query": query,
                                       "uid": uid}
        else:
            message = {"type": "GET", "collection": collection, "query": query, "uid": uid}
        outcome = self.model.ws_read(k, collection, query, uid)
        self.send(k, message)
        self.deliveries(outcome, f"{show(message)} on websocket {k} ({conn.fmt}, {conn.role})")

    def _ws_write(self, step: dict[str, Any]) -> None:
        conn = self._conn(step)
        if conn is None:
            return
        k, verb = step["conn"], step.get("verb", "POST")
        collection = self.item_coll(step) if verb != "POST" else self.coll(step)
        data = self.real(step.get("data") or {})
        uid = step.get("uid", "w")
        if conn.fmt == "core":
            action = {"POST": "create", "PATCH": "update", "DELETE": "delete"}[verb]
            message: dict[str, Any] = {"type": "items", "collection": collection, "action": action, "uid": uid}
        else:
            message = {"type": verb, "collection": collection, "uid": uid}
        if verb != "DELETE":
            message["data"] = data
        if verb != "POST":
            message["id"] = self.item_id(step.get("item"))
        outcome = self.model.ws_write(k, verb, collection, [self.item_n(step.get("item"))], data, uid)
        self.send(k, message)
        if conn.fmt == "core":
            # A core write's answer to a connection subscribed to the collection
            # waits a moment after its event (DirectusConfig.reply_gap_ms) and
            # goes out at the latest before the answer to the next message.
            self.send(k, {"type": "ping", "uid": "flush"})
            outcome.add(k, "reply", {"type": "pong", "uid": "flush"})
        what = f"{show(message)} on websocket {k} ({conn.fmt}, {conn.role})"
        self.deliveries(outcome, what)  # first: the answer says the write is done
        self._learn_ids(outcome, what)

    def _close(self, step: dict[str, Any]) -> None:
        self.close_connection(step.get("conn"))

    # -- what the connections received ---------------------------------------------------

    def receive(self, k: int, timeout: float) -> Any:
        return self.target.directus_receive(self.conn_name(k), timeout)

    def expecting(self, pending: list[Expected]) -> str:
        return " and ".join(f"{e.kind} {show(self.bindings.resolve(e.data))}" for e in pending)

    def take(self, k: int, pending: list[Expected], frame: Any, what: str) -> None:
        """A step's frames may arrive in any order."""
        problems = []
        for expected in pending:
            trial = self.bindings.copy()
            try:
                match(expected.data, frame, trial)
            except Mismatch as mismatch:
                problems.append(mismatch.describe())
                continue
            self.bindings.adopt(trial)
            pending.remove(expected)
            return
        self.fail(f"{what}: websocket {k} received {show(frame)}, expected {self.expecting(pending)} "
                  f"({'; '.join(problems[:2])})")

    def close_conn(self, name: str) -> None:
        self.target.directus_close(name)
