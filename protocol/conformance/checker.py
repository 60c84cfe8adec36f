"""Runs steps against a target and checks every answer and delivery.

A *step* is one thing a client does, as a small JSON object::

    {"op": "http", "actor": "alice", "method": "POST", "path": "/${ns}notes", "json": {"text": "hi"}}
    {"op": "http", "actor": null, "method": "GET", "path": "/collections", "key": "wrong"}
    {"op": "connect", "actor": "bob", "conn": "c1"}
    {"op": "send", "conn": "c1", "message": {"action": "patch", "collection": "${ns}notes",
                                             "id": "${id:1}", "data": {"text": null}}}
    {"op": "send", "conn": "c1", "text": "{not json"}      (or "binary": "<hex>")
    {"op": "disconnect", "conn": "c1"}

``actor`` names a cookie jar holding that account's session (``null``: no
cookies); ``key`` is ``good`` (default), ``wrong`` or ``none``; an HTTP body
is ``json`` (a value) or ``raw`` (text sent as is). Values the server chose
appear as placeholders, so that a script replays against any server:
``${ns}`` (the run's collection prefix), ``${id:N}`` (the N-th record id the
model met), ``${user:ACTOR}``, ``${email:ACTOR}``, ``${password:ACTOR}``.

``Run`` sets up a target once (an account per actor, logged in, and an
observer connection that stays open so every close is confirmed), then
hands out one ``Checker`` per example. ``Checker.step`` runs a step, compares
the answer and every connection's messages with ``BackpackModel``, and on
the first difference raises ``ConformanceFailure`` carrying the script so
far. ``replay`` runs a script again.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from .model import EMPTY_BODY, Account, BackpackModel, Bindings, Expectation, Mismatch, Sym, match
from .targets import CLOSED, NOTHING, HttpReply, Target

__all__ = [
    "ACTORS",
    "WATCH",
    "ConformanceFailure",
    "SetupError",
    "ScriptError",
    "Run",
    "Checker",
    "format_script",
    "load_script",
    "replay",
]

#: The accounts every run creates; each is also the name of its cookie jar.
ACTORS = ("alice", "bob", "carol")
#: The observer's account and its connection, open for the whole run.
OBSERVER = "observer"
WATCH = "watch"

_PLACEHOLDER = re.compile(r"\$\{(ns|id|user|email|password)(?::([\w.-]+))?\}")


class ConformanceFailure(AssertionError):
    """A server's answer or delivery differed from the model.

    ``script`` is every step of the failing run, up to and including the one
    that failed, with placeholders: ``format_script(script)`` prints it and
    ``replay(target, script)`` runs it again.
    """

    def __init__(self, message: str, script: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.script = script

    def __str__(self) -> str:
        count = len(self.script)
        return f"{self.message}\n\nFailing script ({count} step{'' if count == 1 else 's'}):\n{format_script(self.script)}"


class SetupError(Exception):
    """The target could not be prepared (accounts, the observer connection)."""


class ScriptError(Exception):
    """A script cannot be replayed as written (it names a record the server
    never showed, or an unknown actor): a problem of the script, not of the
    server."""


def format_script(steps: Iterable[dict[str, Any]]) -> str:
    """A script as JSON, one step per line (``load_script`` reads it back)."""
    lines = [json.dumps(step, ensure_ascii=False) for step in steps]
    return "[\n  " + ",\n  ".join(lines) + "\n]" if lines else "[]"


def load_script(text: str) -> list[dict[str, Any]]:
    """The steps of a script printed by ``format_script``."""
    steps = json.loads(text)
    if not isinstance(steps, list) or not all(isinstance(step, dict) and "op" in step for step in steps):
        raise ValueError("a script is a JSON list of steps, each an object with an 'op'")
    return steps


def _json_body(reply: HttpReply) -> Any:
    if not reply.body:
        return EMPTY_BODY
    try:
        return json.loads(reply.body)
    except ValueError:
        return reply.body.decode("utf-8", "replace")


class Run:
    """One run of the kit against one target.

    ``token`` makes the run's emails and collection names unique, so that
    one server can serve many runs, one after another (pass something random
    for a real server; runs at the same time would hear each other).
    ``timeout`` is how long to wait for each expected websocket message;
    ``quiet`` how long to listen for unexpected ones at the end of an example.
    """

    def __init__(self, target: Target, *, token: str = "t0", timeout: float = 2.0, quiet: float = 0.0) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]{1,16}", token):
            raise ValueError("token: 1-16 letters or digits")
        self.target = target
        self.token = token
        self.timeout = timeout
        self.quiet = quiet
        self.accounts: dict[str, Account] = {}
        self.observer: Account | None = None
        self.examples = 0
        #: The first failure any example of this run met.
        self.first_failure: ConformanceFailure | None = None
        self._logged_in: set[str] = set()
        self._dirty = False
        self._ready = False

    # -- setup --------------------------------------------------------------------

    def _account(self, actor: str) -> Account:
        email = f"{actor}-{self.token}@conformance.example"
        password = f"pw-{self.token}-{actor}-long-enough"
        body = json.dumps({"email": email, "password": password}).encode()
        registered = self.target.http(None, "POST", "/register", body, key=self.target.api_key)
        if registered.status not in (200, 422):
            raise SetupError(f"registering {email}: {registered.status} {registered.body[:200]!r}")
        user_id = self._login(actor, email, password)
        return Account(actor, email, password, user_id)

    def _login(self, actor: str, email: str, password: str) -> str:
        body = json.dumps({"email": email, "password": password}).encode()
        reply = self.target.http(actor, "POST", "/login", body, key=self.target.api_key)
        value = _json_body(reply)
        if reply.status != 200 or not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise SetupError(f"logging in {email}: {reply.status} {reply.body[:200]!r}")
        self._logged_in.add(actor)
        return value["id"]

    def setup(self) -> None:
        """Create the accounts and open the observer's connection (once)."""
        if self._ready:
            return
        for actor in ACTORS:
            self.accounts[actor] = self._account(actor)
        self.observer = self._account(OBSERVER)
        self._open_watch()
        self._ready = True

    def _open_watch(self) -> None:
        status = self.target.connect(OBSERVER, WATCH)
        if status != 101:
            raise SetupError(f"the observer's websocket was refused with {status}")
        greeting = self.target.receive(WATCH, self.timeout)
        if not isinstance(greeting, dict) or greeting.get("action") != "connection":
            raise SetupError(f"the observer's websocket was not greeted: {greeting!r}")

    # -- examples -----------------------------------------------------------------

    def start_example(self) -> "Checker":
        """A checker for a fresh example: new collection names, every actor logged in."""
        self.setup()
        if self._dirty:
            self._recover()
        for actor, account in self.accounts.items():
            if actor not in self._logged_in:
                self._login(actor, account.email, account.password)
        self.examples += 1
        return Checker(self, f"k{self.token}x{self.examples}_", f"e{self.examples}")

    def _recover(self) -> None:
        """After a failed example: forget what the observer was still sent,
        and log everyone in again."""
        while True:
            message = self.target.receive(WATCH, max(self.quiet, 0.1) if self.quiet else 0)
            if message is NOTHING:
                break
            if message is CLOSED:
                self.target.disconnect(WATCH)
                self._open_watch()
                break
        self._dirty = False

    def finish_example(self, checker: "Checker") -> None:
        """Close the example's connections - checking the close notices, when
        nothing failed - so that the next example starts clean."""
        if not checker.failed:
            for connection in [c for c in checker.model.connections if c != WATCH]:
                checker.step({"op": "disconnect", "conn": connection})
            stray = self.target.receive(WATCH, self.quiet)
            if stray is not NOTHING:
                checker.fail(f"after the last step the observer still received {stray!r}")
            self._logged_in = self._own_sessions(checker)
            return
        for connection in [c for c in checker.model.connections if c != WATCH]:
            try:
                self.target.disconnect(checker.target_connection(connection))
            except Exception:  # noqa: BLE001 - cleaning up after a failure already reported
                pass
        # Sessions as the model last knew them, except the jar of a failed
        # account request, whose state on the server is unknown.
        self._logged_in = self._own_sessions(checker)
        last = checker.log[-1] if checker.log else {}
        if last.get("op") == "http" and last.get("path", "").strip("/") in ("login", "logout", "register"):
            self._logged_in.discard(last.get("actor"))
        self._dirty = True

    def _own_sessions(self, checker: "Checker") -> set[str]:
        return {
            actor for actor, user in checker.model.sessions.items()
            if actor in self.accounts and user == self.accounts[actor].user_id
        }

    def attempt(self, script: list[dict[str, Any]]) -> tuple[ConformanceFailure, list[list[int]]] | None:
        """Replay ``script`` as a new example. If it fails at its last step:
        the failure, and the record ids each step created (None if it
        passes, fails earlier, or cannot be replayed)."""
        checker = self.start_example()
        try:
            for template in script:
                checker.replay_step(template)
        except ConformanceFailure as failure:
            self.finish_example(checker)
            return (failure, checker.created) if len(checker.log) == len(script) else None
        except ScriptError:
            checker.failed = True
            self.finish_example(checker)
            return None
        try:
            self.finish_example(checker)
        except ConformanceFailure:
            pass  # it failed after the script: another failure
        return None

    def minimize(self, failure: ConformanceFailure, *, budget: int = 300) -> ConformanceFailure:
        """A shorter script that still fails at its last step.

        Deletes runs of steps (halves, then quarters... then single steps),
        renumbering the ``${id:N}`` references of the steps that stay, then
        fields inside message and body objects; keeps each change after which
        a replay still fails at the last step. Spends at most ``budget``
        replays; returns the failure with the shortest script found.
        """
        first = self.attempt(failure.script)
        if first is None:
            return failure  # it does not fail again on replay: keep it as found
        best, created = first
        steps = list(best.script)
        tries = 1

        def attempt(candidate: list[dict[str, Any]] | None) -> bool:
            nonlocal best, steps, created, tries
            if candidate is None or tries >= budget:
                return False
            tries += 1
            found = self.attempt(candidate)
            if found is None:
                return False
            best, created = found
            steps = list(best.script)
            return True

        size = max(1, (len(steps) - 1) // 2)
        while size >= 1 and tries < budget:
            start, changed = 0, False
            while start < len(steps) - 1 and tries < budget:
                end = min(start + size, len(steps) - 1)
                if attempt(_delete_steps(steps, created, start, end)):
                    changed = True
                else:
                    start += size
            if not changed:
                size //= 2
        for index in range(len(steps)):
            progress = True
            while progress and tries < budget:
                progress = False
                for path in _removable_fields(steps[index]):
                    candidate = list(steps)
                    candidate[index] = _without(steps[index], path)
                    if attempt(candidate):
                        progress = True
                        break
        return best


class Checker:
    """Runs one example's steps against the target and checks each one."""

    def __init__(self, run: Run, namespace: str, prefix: str) -> None:
        assert run.observer is not None
        self.run = run
        self.target = run.target
        self.namespace = namespace
        self.prefix = prefix
        self.model = BackpackModel(namespace, run.accounts, {WATCH: run.observer.user_id})
        self.log: list[dict[str, Any]] = []
        #: per step, the numbers of the record ids (``${id:N}``) it created
        self.created: list[list[int]] = []
        self.failed = False

    @property
    def bindings(self) -> Bindings:
        """What the server chose for each placeholder so far."""
        return self.model.bindings

    def target_connection(self, connection: str) -> str:
        """The name the target knows a step's connection by (unique per run)."""
        return connection if connection == WATCH else f"{self.prefix}.{connection}"

    # -- placeholders ---------------------------------------------------------------

    def _values(self) -> dict[str, str]:
        """Concrete string -> placeholder, for writing steps portably."""
        values: dict[str, str] = {}
        for sym, value in self.bindings.values.items():
            if sym.kind == "id" and isinstance(value, str):
                values[value] = f"${{id:{sym.n}}}"
        for actor, account in self.run.accounts.items():
            values[account.user_id] = f"${{user:{actor}}}"
            values[account.email] = f"${{email:{actor}}}"
            values[account.password] = f"${{password:{actor}}}"
        return values

    def templatize(self, value: Any) -> Any:
        """``value`` with server-chosen and run-specific strings as placeholders."""
        return _map_strings(value, self._templatize_string(self._values()))

    def _templatize_string(self, values: dict[str, str]) -> Any:
        # Longest first, and inside strings too: an id may sit in a path.
        pattern = re.compile("|".join(re.escape(v) for v in sorted([*values, self.namespace], key=len, reverse=True)))
        replacements = {**values, self.namespace: "${ns}"}

        def convert(text: str) -> str:
            return pattern.sub(lambda found: replacements[found.group(0)], text)

        return convert

    def substitute(self, value: Any) -> Any:
        """``value`` with every placeholder replaced by this run's value."""

        def one(found: re.Match[str]) -> str:
            kind, argument = found.group(1), found.group(2)
            if kind == "ns":
                return self.namespace
            if kind == "id":
                bound = self.bindings.values.get(Sym("id", int(argument)))
                if not isinstance(bound, str):
                    raise ScriptError(f"step {len(self.log) + 1} refers to {found.group(0)}, a record never shown")
                return bound
            account = self.run.accounts.get(argument or "")
            if account is None:
                raise ScriptError(f"unknown actor in {found.group(0)}; actors are {', '.join(ACTORS)}")
            return {"user": account.user_id, "email": account.email, "password": account.password}[kind]

        return _map_strings(value, lambda text: _PLACEHOLDER.sub(one, text))

    # -- running steps ----------------------------------------------------------------

    def step(self, step: dict[str, Any]) -> None:
        """Run a concrete step (as a generator builds them) and check it."""
        self.log.append(self.templatize(step))
        self._check(step)

    def replay_step(self, template: dict[str, Any]) -> None:
        """Run a step written with placeholders (from a script) and check it."""
        step = self.substitute(template)
        self.log.append(template)
        self._check(step)

    def fail(self, message: str) -> None:
        """Raise ``ConformanceFailure`` for the current step, with the script so far."""
        self.failed = True
        failure = ConformanceFailure(f"step {len(self.log)}: {message}", list(self.log))
        if self.run.first_failure is None:
            self.run.first_failure = failure
        raise failure

    def _check(self, step: dict[str, Any]) -> None:
        op = step["op"]
        connection = step.get("conn")
        if op in ("send", "disconnect") and connection not in self.model.connections:
            raise ScriptError(f"step {len(self.log)} uses connection {connection!r}, which is not open")
        if op == "connect" and connection in self.model.connections:
            raise ScriptError(f"step {len(self.log)} opens connection {connection!r}, which is already open")
        before = self.model.id_count()
        expectation = self.model.expect(step)
        self.created.append(list(range(before + 1, self.model.id_count() + 1)))
        try:
            if op == "http":
                self._http(step, expectation)
            elif op == "connect":
                status = self.target.connect(step.get("actor"), self.target_connection(step["conn"]))
                if expectation.accepted and status != 101:
                    self.fail(f"the websocket upgrade was refused with {status}; it must be accepted")
                if not expectation.accepted and not 400 <= status < 500:
                    self.fail(f"the websocket upgrade answered {status}; without a session it must be refused (4xx)")
            elif op == "send":
                self.target.send(self.target_connection(step["conn"]), _frame(step))
            elif op == "disconnect":
                self.target.disconnect(self.target_connection(step["conn"]))
            self._deliveries(expectation)
        except Mismatch as mismatch:
            problem = mismatch.describe()
        else:
            return
        # Raised outside the handler, so that every failure has one origin
        # for Hypothesis: it may shrink one difference into a shorter one.
        self.fail(problem)

    def _http(self, step: dict[str, Any], expectation: Expectation) -> None:
        key = {"good": self.target.api_key, "wrong": "not-" + self.target.api_key, "none": None}[step.get("key", "good")]
        if "raw" in step:
            body: bytes | None = step["raw"].encode()
        elif step.get("json") is not None:
            body = json.dumps(step["json"]).encode()
        else:
            body = None
        reply = self.target.http(step.get("actor"), step["method"], step["path"], body, key=key)
        actual = _json_body(reply)
        assert expectation.http is not None
        for status, expected in expectation.http.options:
            if status != reply.status:
                continue
            if expected is EMPTY_BODY:
                if actual is EMPTY_BODY:
                    return
                continue
            trial = self.bindings.copy()
            try:
                match(expected, actual, trial, "the response body")
            except Mismatch:
                continue
            self.bindings.adopt(trial)
            return
        if len(expectation.http.options) == 1 and expectation.http.options[0][0] == reply.status:
            match(expectation.http.options[0][1], actual, self.bindings, "the response body")  # raises, with detail
        self.fail(
            f"{step['method']} {step['path']} answered {reply.status} {reply.body[:300]!r}; "
            f"expected {expectation.http.describe()}"
        )

    def _deliveries(self, expectation: Expectation) -> None:
        for connection, messages in expectation.deliveries.items():
            for index, expected in enumerate(messages):
                actual = self.target.receive(self.target_connection(connection), self.run.timeout)
                where = f"message {index + 1} to {connection}"
                if actual is NOTHING or actual is CLOSED:
                    self.fail(
                        f"{connection} received nothing{' (closed)' if actual is CLOSED else ''}; "
                        f"expected {_describe(self.bindings.resolve(expected))}"
                    )
                match(expected, actual, self.bindings, where)
        for connection in self.model.connections:
            stray = self.target.receive(self.target_connection(connection), 0)
            if stray is not NOTHING:
                self.fail(f"{connection} received {_describe(stray)}, which nothing should have sent it")


def _describe(value: Any) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 400 else text[:400] + "..."


def _frame(step: dict[str, Any]) -> str | bytes:
    if "message" in step:
        return json.dumps(step["message"])
    if "text" in step:
        return step["text"]
    return bytes.fromhex(step["binary"])


def _map_strings(value: Any, convert: Any) -> Any:
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {_map_strings(key, convert): _map_strings(item, convert) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, convert) for item in value]
    return value


_FIXED_FIELDS = {"op", "conn", "actor", "method", "path", "key", "action"}
_ID_REFERENCE = re.compile(r"\$\{id:(\d+)\}")


def _delete_steps(
    steps: list[dict[str, Any]], created: list[list[int]], start: int, end: int
) -> list[dict[str, Any]] | None:
    """``steps`` without ``steps[start:end]``, the ``${id:N}`` references of
    the rest renumbered; None if a remaining step refers to a deleted record."""
    gone = sorted(n for numbers in created[start:end] for n in numbers)
    if not gone:
        return steps[:start] + steps[end:]
    dangling = False

    def renumber(found: re.Match[str]) -> str:
        nonlocal dangling
        number = int(found.group(1))
        if number in gone:
            dangling = True
            return found.group(0)
        return f"${{id:{number - sum(1 for g in gone if g < number)}}}"

    kept = [_map_strings(step, lambda text: _ID_REFERENCE.sub(renumber, text)) for step in steps[:start] + steps[end:]]
    return None if dangling else kept


def _removable_fields(step: dict[str, Any], path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of the fields inside a step's message or body that could go."""
    node: Any = step
    for part in path:
        node = node[part]
    found: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if not path and key not in ("message", "json"):
                continue
            if path and key not in _FIXED_FIELDS or len(path) > 1:
                found.append((*path, key))
            if isinstance(value, (dict, list)):
                found.extend(_removable_fields(step, (*path, key)))
    elif isinstance(node, list):
        for index in reversed(range(len(node))):
            found.append((*path, index))
    return found


def _without(step: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    copy_ = json.loads(json.dumps(step))
    node = copy_
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return copy_


def replay(target: Target, script: list[dict[str, Any]], *, token: str = "r0", timeout: float = 2.0,
           quiet: float = 0.0) -> None:
    """Run ``script`` against ``target`` from a fresh start; raises
    ``ConformanceFailure`` at the first difference from the model."""
    run = Run(target, token=token, timeout=timeout, quiet=quiet)
    checker = run.start_example()
    for template in script:
        checker.replay_step(template)
    run.finish_example(checker)
