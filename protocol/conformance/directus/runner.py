"""Runs Directus steps against a target and checks every answer and frame.

A step is a small JSON object; users, connections and items are named by
index, roles and collections by the kit's short names, so that a failing
sequence prints short and replays against any server::

    {"do": "rules", "roles": {"r1": [{"collection": "a", "action": "read",
                                       "filter": {"owner": {"_eq": "$CURRENT_USER"}}, "fields": ["n", "owner"]}],
                              "authenticated": "admin"}, "drop": ["r3"]}
    {"do": "role", "user": 0, "role": "r1"}
    {"do": "get", "user": 0, "coll": "a", "query": {"filter": {...}, "sort": ["-n"], "limit": 2, "fields": ["n"]}}
    {"do": "get-one", "user": 0, "coll": "a", "item": 1, "query": {"fields": ["n"]}}
    {"do": "create", "user": 0, "coll": "a", "data": {"n": 1, "owner": "@u0"}}      (a list: createMany)
    {"do": "update", "user": 0, "coll": "a", "item": 1, "data": {"n": 2}}          ("items": [0, 1]: updateMany)
    {"do": "delete", "user": 0, "coll": "a", "item": 1}                            ("items": [0, 1]: deleteMany)
    {"do": "bp-create", "user": 0, "coll": "a", "data": {"n": 1}}    (through Backpack; needs the API key)
    {"do": "update-query", "user": 0, "coll": "a", "query": {"filter": {...}}, "data": {"n": 2}}
    {"do": "delete-query", "user": 0, "coll": "a", "query": {"filter": {...}, "limit": 1}}
    {"do": "login", "user": 0}
    {"do": "open", "conn": 0, "user": 1, "proto": "core" | "extension" | "v1"}
    {"do": "subscribe", "conn": 0, "coll": "a", "query": {...}, "uid": "1", "event": "update", "item": 0}
    {"do": "unsubscribe", "conn": 0, "uid": "1"}
    {"do": "ws-get", "conn": 0, "coll": "a", "query": {...}}
    {"do": "ws-write", "conn": 0, "verb": "POST" | "PATCH" | "DELETE", "coll": "a", "item": 0, "data": {...}}
    {"do": "reauth", "conn": 0, "user": 2}                                       (core: auth again)
    {"do": "close", "conn": 0}

``user`` ``null`` is nobody signed in (the ``public`` role); user
``ADMIN`` (the last) is the kit's administrator. ``"@u1"`` anywhere in
rules, data and queries stands for user 1's id, ``"@r1"`` for role r1's name. Roles ``r1``-``r3`` are
the run's own (named after its token); ``public`` and ``authenticated``
are the built-in ones, which the kit redefines (every other role of the
stored rules is kept as it is). Collections ``a`` and ``b`` are fresh for
every sequence; ``users``, ``_kit`` and ``directus_users`` are names that may
never be collections. ``item`` n is the n-th item of the sequence still there (in
any collection, counted round), ``-1`` a missing id; an item step without
``coll`` is on its item's collection. ``rules`` roles
``r1``-``r3`` it does not list get no rules, unless ``drop``ped.

Every sequence starts over: every user ``authenticated``, the rules at
the kit's base (``authenticated`` may do everything, ``public`` nothing,
``r1``-``r3`` nothing). After each step the answer is compared with the
model's, and every open connection must have received exactly the frames
the model predicts (in any order within the step) and nothing else.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, Sequence
from urllib.parse import quote

from ..checker import SetupError
from ..matching import EMPTY_BODY, show
from ..sequences import PASSWORD, StepMismatch, StepScript, run_sequence, sign_up
from .model import ACTIONS, DirectusModel

__all__ = ["DirectusTarget", "DirectusMismatch", "DirectusRun", "run_steps", "format_steps", "load_steps", "tidy",
           "USERS", "ADMIN", "CONNS", "COLLECTIONS", "KIT_ROLES", "InProcessDirectus"]

#: The run's ordinary accounts; the admin is user ``ADMIN`` (after them).
USERS = 3
ADMIN = USERS
CONNS = 4
COLLECTIONS = ("a", "b")
KIT_ROLES = ("r1", "r2", "r3")
#: Names no rule reaches: never collections (403 to everyone, admins included).
_NO_COLLECTIONS = ("users", "_kit", "directus_users")
_ORDER = ("do", "conn", "user", "proto", "verb", "coll", "item", "items", "role", "uid", "event", "query", "data",
          "roles", "drop")


class DirectusTarget(Protocol):
    """What the Directus kit drives: HTTP with extra headers, and websockets
    to a path with headers whose text frames are decoded JSON
    (``InProcessDirectus``, ``satchel.transports.conformance_runner.UrlTarget``)."""

    def http(self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None,
             headers: Sequence[tuple[str, str]] | None = None) -> Any: ...

    def directus_open(self, connection: str, path: str, headers: Sequence[tuple[str, str]]) -> int: ...

    def directus_send(self, connection: str, frame: str) -> None: ...

    def directus_receive(self, connection: str, timeout: float) -> Any: ...

    def directus_close(self, connection: str) -> None: ...


class InProcessDirectus:
    """``InProcessTarget`` (Satchel's core in this process) seen as a
    ``DirectusTarget``; ``make_admin`` creates the kit's administrator
    directly in the store, as ``satchel admin create`` does."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.api_key = target.api_key  # Backpack's, for the writes made through it

    def http(self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None,
             headers: Sequence[tuple[str, str]] | None = None) -> Any:
        return self.target.http(jar, method, path, body, key=key, headers=headers)

    def make_admin(self, email: str, password: str) -> None:
        from satchel.protocol.admin import create_admin

        self.target._run(create_admin(email, password, self.target._env))

    def directus_open(self, connection: str, path: str, headers: Sequence[tuple[str, str]]) -> int:
        return self._upgrade(connection, path, [(name.lower(), value) for name, value in headers])[0]

    def _upgrade(self, connection: str, path: str, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        """A websocket upgrade handed to the core: 101 and what accepted it,
        or the refusal's status and None."""
        from satchel.protocol.http import HttpRequest, HttpResponse

        target = self.target
        accepted = target._run(target._board.accept(HttpRequest("GET", path, headers, b""), connection))
        if isinstance(accepted, HttpResponse):
            return accepted.status, None
        target._open.add(connection)
        target._publish(accepted.events)
        return 101, accepted

    def directus_send(self, connection: str, frame: str) -> None:
        self.target.send(connection, frame)

    def directus_receive(self, connection: str, timeout: float) -> Any:
        return self.target.receive(connection, timeout)

    def directus_close(self, connection: str) -> None:
        self.target.disconnect(connection)

    def close(self) -> None:
        self.target.close()


class DirectusMismatch(StepMismatch):
    """The server differs from the Directus model at step ``step``; ``steps`` is
    the sequence up to and including that step."""

    script = StepScript("a Directus", _ORDER)


tidy = DirectusMismatch.script.tidy
format_steps = DirectusMismatch.script.format
load_steps = DirectusMismatch.script.load


class DirectusRun:
    """One run of the kit against one target: its accounts and tokens, made
    once (``setup``), and the sequences run on them (``run``), each over
    fresh collections and connections and from the same rules and roles.

    ``admin``: the email and password of an administrator (``satchel admin
    create``) or ``admin_token`` a static token of one; an in-process
    target (``InProcessDirectus``) makes its own. ``token`` makes the run's
    accounts, roles and collections unique on a shared server."""

    def __init__(self, target: DirectusTarget, *, token: str = "t0", timeout: float = 2.0, quiet: float = 0.0,
                 admin: tuple[str, str] | None = None, admin_token: str | None = None) -> None:
        self.target, self.token, self.timeout, self.quiet = target, token, timeout, quiet
        self.admin, self.admin_token = admin, admin_token
        self.user_ids: list[str] = []
        self.emails: list[str] = []
        self.tokens: list[str] = []
        self.foreign: dict[str, Any] = {}
        self.original: dict[str, Any] | None = None
        self.api_key: str | None = None
        self.sequences = 0

    # -- HTTP -------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Any = None, token: str | None = None,
             raw: bool = False) -> tuple[int, Any]:
        headers = [("Authorization", f"Bearer {token}")] if token is not None else []
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        reply = self.target.http(None, method, path, data, key=None, headers=headers)
        if not reply.body:
            return reply.status, EMPTY_BODY
        try:
            return reply.status, json.loads(reply.body)
        except ValueError:
            return reply.status, reply.body

    def _admin(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, answer = self.http(method, path, body, self.admin_token)
        if status not in ok:
            raise SetupError(f"{method} {path} as the admin answered {status} {show(answer)}")
        return answer

    def jar(self, user: int) -> str:
        """The cookie jar of user ``user``'s Backpack session."""
        return f"kit{self.token}u{user}"

    def role_name(self, role: str) -> str:
        return f"kit{self.token}{role}" if role in KIT_ROLES else role

    def setup(self) -> None:
        """The administrator's token, the run's accounts and their static
        tokens, and the stored rules (whose other roles the kit keeps)."""
        if self.admin_token is None:
            email, password = self.admin or (f"kit{self.token}admin@example.com", PASSWORD)
            make = getattr(self.target, "make_admin", None)
            if self.admin is None:
                if make is None:
                    raise SetupError("the kit needs an administrator: --admin-email and --admin-password "
                                     "(satchel admin create EMAIL), or --admin-token")
                make(email, password)
            status, body = self.http("POST", "/auth/login", {"email": email, "password": password, "mode": "json"})
            access = body.get("data", {}).get("access_token") if isinstance(body, dict) else None
            if status != 200 or not isinstance(access, str):
                raise SetupError(f"POST /auth/login as the admin {email} answered {status} {show(body)}")
            status, body = self.http("POST", "/_/api/me/tokens", None, access)
            if status != 201 or not isinstance(body, dict):
                raise SetupError(f"POST /_/api/me/tokens as the admin answered {status} {show(body)} "
                                 "(is the account an administrator?)")
            self.admin_token = body["data"]["token"]
        me = self._admin("GET", "/_/api/me")["data"]
        if not me.get("admin"):
            raise SetupError(f"the kit's administrator {me.get('email')} does not have the role admin")
        for index in range(USERS):
            email = sign_up(self.http, self.token, index)
            found = self._admin("GET", f"/_/api/users?email={quote(email)}")["data"]
            if not found:
                raise SetupError(f"GET /_/api/users?email={email} found no account after its signup")
            user_id = found[0]["id"]
            token = self._admin("POST", f"/_/api/users/{user_id}/tokens", ok=(201,))["data"]["token"]
            self.user_ids.append(user_id)
            self.emails.append(email)
            self.tokens.append(token)
        self.user_ids.append(me["id"])
        self.emails.append(me["email"])
        self.tokens.append(self.admin_token)
        # Backpack sessions (one account per person), when the server's API key is known.
        key = getattr(self.target, "api_key", None)
        self.api_key = key if isinstance(key, str) and key else None
        for index in range(USERS if self.api_key else 0):
            body = json.dumps({"email": self.emails[index], "password": PASSWORD}).encode()
            reply = self.target.http(self.jar(index), "POST", "/login", body, key=self.api_key)
            if reply.status != 200:
                raise SetupError(f"Backpack POST /login of {self.emails[index]} answered {reply.status} {reply.body!r}")
        stored = self._admin("GET", "/_/api/rules")["data"]
        self.original = stored["rules"]
        ours = {"public", "authenticated", *(self.role_name(r) for r in KIT_ROLES)}
        self.foreign = {name: role for name, role in (stored["rules"].get("roles") or {}).items() if name not in ours}

    def _reset(self) -> int:
        """Every user ``authenticated`` and the kit's base rules; the revision after."""
        for user in range(USERS):
            self._admin("PUT", f"/_/api/users/{self.user_ids[user]}/role", {"role": "authenticated"})
        revision = self._admin("GET", "/_/api/rules")["data"]["revision"]
        answer = self._admin("PUT", "/_/api/rules", {"revision": revision, "rules": {"version": 1, "roles": self.base()}})
        return answer["data"]["revision"]

    def base(self) -> dict[str, Any]:
        roles = dict(self.foreign)
        roles["public"] = {"rules": []}
        roles["authenticated"] = {"rules": [{"collection": "*", "action": "*"}]}
        for role in KIT_ROLES:
            roles[self.role_name(role)] = {"rules": []}
        return roles

    def kit_roles(self, roles: dict[str, Any], drop: Any, rule: Any) -> dict[str, Any]:
        """The kit's roles as a ``rules`` step (its ``roles`` and ``drop``)
        installs them, by their names on the server; ``rule`` names a rule's
        collection as the server knows it. A role the step does not list
        gets the base rules, unless dropped."""
        dropped = set(drop or [])
        ours: dict[str, Any] = {}
        for role in ("public", "authenticated", *KIT_ROLES):
            if role in dropped and role in KIT_ROLES:
                continue
            spec = roles.get(role)
            if spec is None:
                spec = {"rules": [{"collection": "*", "action": "*"}]} if role == "authenticated" else {"rules": []}
            elif spec == "admin":
                spec = {"admin": True}
            else:
                spec = {"rules": [rule(one) for one in spec]}
            ours[self.role_name(role)] = spec
        return ours

    def teardown(self) -> None:
        """Give the users back ``authenticated`` and put the stored rules back."""
        if self.original is None or self.admin_token is None:
            return
        for user in range(len(self.user_ids) - 1):
            self.http("PUT", f"/_/api/users/{self.user_ids[user]}/role", {"role": "authenticated"}, self.admin_token)
        status, body = self.http("GET", "/_/api/rules", None, self.admin_token)
        if status == 200:
            self.http("PUT", "/_/api/rules", {"revision": body["data"]["revision"], "rules": self.original},
                      self.admin_token)

    def run(self, steps: list[dict[str, Any]]) -> DirectusModel:
        """Run ``steps`` as a new sequence; raises ``DirectusMismatch`` at the
        first difference."""
        if not self.user_ids:
            self.setup()
        self.sequences += 1
        revision = self._reset()
        return run_sequence(self._sequence(f"k{self.token}s{self.sequences}", revision), steps)

    def _sequence(self, label: str, revision: int) -> Any:
        # The resources kit's runs are this run with their own sequences.
        from .steps import DirectusSequence

        return DirectusSequence(self, label, revision)


def run_steps(target: DirectusTarget, steps: list[dict[str, Any]], *, token: str = "r0", timeout: float = 2.0,
              quiet: float = 0.0, admin: tuple[str, str] | None = None, admin_token: str | None = None) -> DirectusModel:
    """Replay ``steps`` on fresh accounts (named after ``token``)."""
    run = DirectusRun(target, token=token, timeout=timeout, quiet=quiet, admin=admin, admin_token=admin_token)
    try:
        return run.run(steps)
    finally:
        run.teardown()


_ = ACTIONS  # the model's actions, re-exported for the strategies
