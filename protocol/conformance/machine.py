"""The stateful test: Hypothesis generates Backpack sessions of several users.

``BackpackMachine`` is a ``RuleBasedStateMachine`` whose rules are the things
a client can do - open and close websockets as one of three users (or with
no session), send every websocket action (valid, malformed, unknown), make
REST calls (records, collections, accounts, with a wrong key or no session)
- drawn from what the model currently holds, so that steps build on each
other. Every step goes through a ``Checker``, which compares the server's
answer and every connection's deliveries with the model.

When a step differs, the failing script is cut down by replaying shorter
versions of it (``Run.minimize``: runs of steps, then fields inside
messages) until every step left is needed; the report carries that script
(``ConformanceFailure.script``). Hypothesis's own shrinking is left off by
default: with stateful tests it re-draws the rules' feature flags when it
deletes a step, which misaligns the rest of the test case, so it rarely
manages to delete steps and takes long trying.

``check_target`` runs it; the command line (``satchel conformance``) and the
tests call that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, initialize, rule

from .checker import ACTORS, WATCH, Checker, ConformanceFailure, Run
from .model import Sym
from .strategies import (
    CHANNEL_MESSAGES,
    DELETE_CHANNEL_MESSAGES,
    INVALID_FRAMES,
    PATCH_DATA,
    PATH_COLLECTIONS,
    READ_MESSAGES,
    RECORD_DATA,
    RECORD_IDS,
    RELAY_MESSAGES,
    WRITE_MESSAGES,
    Vocabulary,
    login_bodies,
    realize,
    register_bodies,
)
from .targets import Target

__all__ = ["BackpackMachine", "machine_for", "Report", "check_target"]

#: Collection names each example uses, after its namespace prefix.
NAMES = ("notes", "rooms", "meta", "chat")
#: Open connections per example (the observer's not counted).
MAX_CONNECTIONS = 4
#: Steps per example that make a real server hash or verify a password
#: (~0.1 s each with argon2): logins and successful registrations.
SLOW_STEPS = 2


class BackpackMachine(RuleBasedStateMachine):
    """Rules over one ``Run``; subclass with ``machine_for(run)``."""

    run: Run

    def __init__(self) -> None:
        super().__init__()
        self.checker: Checker = self.run.start_example()
        self.model = self.checker.model
        self.ns = self.checker.namespace
        self.opened = 0
        self.slow = 0

    def teardown(self) -> None:
        """Close the example's connections, checking the close notices."""
        self.run.finish_example(self.checker)

    # -- what the model holds --------------------------------------------------

    def collections(self) -> list[str]:
        """The example's collections, busiest first."""
        return [self.ns + name for name in NAMES]

    def live(self) -> list[str]:
        """The example's open connections (not the observer's)."""
        return sorted(c for c in self.model.connections if c != WATCH)

    def vocabulary(self) -> Vocabulary:
        """What the model holds, for resolving drawn templates."""
        model, ns = self.model, self.ns
        return Vocabulary(
            collections=self.collections(),
            ids={name: model.known_ids(name) for name in model.collections},
            records={name: [_known_fields(r) for r in model.resolved_records(name)] for name in model.collections},
            channels=model.channel_ids(),
            user_ids=[account.user_id for account in self.run.accounts.values()],
            users_collections=[ns + "meta"],
            channel_types=[ns + "rooms", ns + "notes"],
            message_collections=[ns + "chat", ns + "notes"],
        )

    def step(self, step: dict[str, Any]) -> None:
        """Run and check one step."""
        self.checker.step(step)

    def send(self, data: Any, templates: Any) -> None:
        """Send a message drawn from ``templates`` on a drawn connection."""
        message = realize(data.draw(templates), self.vocabulary())
        self.step({"op": "send", "conn": self.pick_connection(data), "message": message})

    def pick_connection(self, data: Any) -> str:
        """One of the open connections (drawn with fixed bounds)."""
        live = self.live()
        return live[data.draw(st.integers(0, 15), label="connection") % len(live)]

    # Rules have no preconditions on purpose: a precondition that changes
    # with the state makes rule selection draw a different number of times
    # when the shrinker deletes a step, which stops it from deleting steps.
    # Instead there is always at least one connection: the first ones open
    # in ``open_first_connections`` and the last one is never closed alone.
    # Hypothesis picks rules uniformly, so the ones that matter most (writes,
    # channels) are registered more than once, as ``*_again``.

    # -- websockets ---------------------------------------------------------------

    @initialize(actors=st.lists(st.sampled_from(ACTORS), min_size=1, max_size=3))
    def open_first_connections(self, actors: list[str]) -> None:
        """Every example starts with one to three users connected."""
        for actor in actors:
            self._connect(actor)

    def _connect(self, actor: str | None) -> None:
        self.opened += 1
        self.step({"op": "connect", "actor": actor, "conn": f"c{self.opened}"})

    @rule(actor=st.sampled_from([*ACTORS, None]))
    def connect(self, actor: str | None) -> None:
        """Open a websocket as ``actor`` (None: without a session, refused)."""
        if len(self.live()) < MAX_CONNECTIONS or actor is None:
            self._connect(actor)

    @rule(data=st.data(), replacement=st.sampled_from(ACTORS))
    def disconnect(self, data: Any, replacement: str) -> None:
        """Close a websocket (opening another first if it is the last one)."""
        connection = self.pick_connection(data)
        if len(self.live()) == 1:
            if self.model.sessions.get(replacement) is None:
                return  # it would close the last connection, and nobody could open another
            self._connect(replacement)
        self.step({"op": "disconnect", "conn": connection})

    def _ws_write(self, data: Any) -> None:
        self.send(data, WRITE_MESSAGES)

    ws_write = rule(data=st.data())(_ws_write)
    ws_write_again = rule(data=st.data())(_ws_write)

    @rule(data=st.data())
    def ws_read(self, data: Any) -> None:
        """``find``, ``getAll`` or ``getOne``."""
        self.send(data, READ_MESSAGES)

    @rule(data=st.data())
    def ws_relay(self, data: Any) -> None:
        """``broadcast``, ``open`` or ``close``."""
        self.send(data, RELAY_MESSAGES)

    def _ws_channel(self, data: Any) -> None:
        self.send(data, CHANNEL_MESSAGES)

    ws_channel = rule(data=st.data())(_ws_channel)
    ws_channel_again = rule(data=st.data())(_ws_channel)

    @rule(data=st.data())
    def ws_delete_channel(self, data: Any) -> None:
        """``deleteChannel``."""
        self.send(data, DELETE_CHANNEL_MESSAGES)

    @rule(data=st.data())
    def ws_invalid(self, data: Any) -> None:
        """A frame the server must answer with an error."""
        frame = realize(data.draw(INVALID_FRAMES), self.vocabulary())
        self.step({"op": "send", "conn": self.pick_connection(data), **frame})

    # -- REST -----------------------------------------------------------------------

    def _path(self, data: Any, *segments: str) -> str:
        path = "/" + "/".join(quote(segment, safe="") for segment in segments)
        # BRIEF: doubled slashes are single ones.
        return ("/" + path) if data.draw(st.integers(0, 9)) == 0 else path

    def _actor(self, data: Any) -> str | None:
        return data.draw(st.sampled_from([*ACTORS, *ACTORS, None]), label="actor")

    def _http_write(self, data: Any) -> None:
        actor = self._actor(data)
        method = data.draw(st.sampled_from(["POST", "POST", "PUT", "PATCH", "PATCH", "DELETE"]))
        collection_template, id_template, body, changes = data.draw(
            st.tuples(PATH_COLLECTIONS, RECORD_IDS, RECORD_DATA, PATCH_DATA))
        vocab = self.vocabulary()
        collection = realize(collection_template, vocab)
        step: dict[str, Any] = {"op": "http", "actor": actor, "method": method}
        if method == "POST":
            step.update(path=self._path(data, collection), json=realize(body, vocab, collection))
        else:
            step["path"] = self._path(data, collection, realize(id_template, vocab, collection))
            if method == "PUT":
                step["json"] = realize(body, vocab, collection)
            elif method == "PATCH":
                step["json"] = realize(changes, vocab, collection)
        self.step(step)

    http_write = rule(data=st.data())(_http_write)
    http_write_again = rule(data=st.data())(_http_write)

    @rule(data=st.data())
    def http_read(self, data: Any) -> None:
        """``GET`` a collection, a record, or ``/collections``."""
        actor = self._actor(data)
        kind = data.draw(st.sampled_from(["list", "one", "collections"]))
        collection_template, id_template = data.draw(st.tuples(PATH_COLLECTIONS, RECORD_IDS))
        vocab = self.vocabulary()
        collection = realize(collection_template, vocab)
        record_id = realize(id_template, vocab, collection)
        segments = {"list": [collection], "one": [collection, record_id], "collections": ["collections"]}[kind]
        self.step({"op": "http", "actor": actor, "method": "GET", "path": self._path(data, *segments)})

    @rule(data=st.data())
    def http_refused(self, data: Any) -> None:
        """Requests a server must refuse: a wrong or missing key, a body that
        is not an object, unknown routes and methods."""
        actor = self._actor(data)
        collection = data.draw(st.sampled_from(self.collections()))
        step = data.draw(st.sampled_from([
            {"method": "GET", "path": "/collections", "key": "wrong"},
            {"method": "POST", "path": f"/{collection}", "json": {"a": 1}, "key": "none"},
            {"method": "POST", "path": f"/{collection}", "json": [1, 2]},
            {"method": "POST", "path": f"/{collection}", "raw": "{nope"},
            {"method": "DELETE", "path": f"/{collection}"},
            {"method": "GET", "path": f"/{collection}/a/b"},
            {"method": "GET", "path": "/register"},
            {"method": "PUT", "path": "/collections"},
            {"method": "POST", "path": "/collections", "json": {"collectionName": collection}},
            {"method": "POST", "path": "/collections", "json": {"collectionName": "users"}},
            {"method": "POST", "path": "/collections", "json": {"collectionName": "bad name"}},
            {"method": "POST", "path": "/collections", "json": ["x"]},
        ]))
        self.step({"op": "http", "actor": actor, **step})

    @rule(data=st.data())
    def account(self, data: Any) -> None:
        """Logout, and registrations and logins the server refuses before
        hashing anything."""
        actor = self._actor(data)
        kind = data.draw(st.sampled_from(["logout", "register", "login"]))
        emails = [account.email for account in self.run.accounts.values()]
        accounts = [(account.email, account.password) for account in self.run.accounts.values()]
        register = data.draw(register_bodies(self.ns, emails, fresh=False))
        login = data.draw(login_bodies(accounts, self.ns, checking=False))
        if kind == "logout":
            self.step({"op": "http", "actor": actor, "method": "POST", "path": "/logout"})
        else:
            body = register if kind == "register" else login
            self.step({"op": "http", "actor": actor, "method": "POST", "path": f"/{kind}", **body})

    @rule(data=st.data())
    def account_checked(self, data: Any) -> None:
        """Logins that verify a password, and a registration that hashes one:
        at most ``SLOW_STEPS`` per example, then a cheap request instead."""
        actor = data.draw(st.sampled_from(ACTORS))
        kind = data.draw(st.integers(0, 3))
        emails = [account.email for account in self.run.accounts.values()]
        others = [(account.email, account.password) for account in self.run.accounts.values()]
        own = self.run.accounts[actor]
        register = data.draw(register_bodies(self.ns, emails, fresh=True))
        login = data.draw(st.one_of(st.just({"json": {"email": own.email, "password": own.password}}),
                                    login_bodies(others, self.ns, checking=True)))
        self.slow += 1
        if self.slow > SLOW_STEPS:
            self.step({"op": "http", "actor": actor, "method": "GET", "path": "/collections"})
        elif kind == 0:
            self.step({"op": "http", "actor": actor, "method": "POST", "path": "/register", **register})
        else:
            self.step({"op": "http", "actor": actor, "method": "POST", "path": "/login", **login})


def _known_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A record's fields whose values are known (no server value still unseen)."""
    return {key: value for key, value in record.items() if not _has_sym(value)}


def _has_sym(value: Any) -> bool:
    if isinstance(value, Sym):
        return True
    if isinstance(value, dict):
        return any(_has_sym(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_sym(item) for item in value)
    return False


def machine_for(run: Run) -> type[BackpackMachine]:
    """A ``BackpackMachine`` subclass bound to ``run``."""
    return type("BackpackMachine", (BackpackMachine,), {"run": run})


@dataclass
class Report:
    """The outcome of ``check_target``: ``failure`` is None when the target
    conformed; otherwise the failure with the shortest script found
    (``failure.script``), and ``found`` the one Hypothesis first reported."""

    examples: int
    failure: ConformanceFailure | None = None
    found: ConformanceFailure | None = None
    #: The failure did not happen again every time its steps were rerun.
    flaky: bool = False
    errors: list[BaseException] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No difference and no error."""
        return self.failure is None and not self.errors


def check_target(
    target: Target,
    *,
    examples: int = 50,
    steps: int = 30,
    seed: int | None = None,
    token: str = "t0",
    timeout: float = 2.0,
    quiet: float = 0.0,
    minimize: bool = True,
    hypothesis_shrink: bool = False,
) -> Report:
    """Run the stateful test against ``target`` and report.

    ``examples`` sequences of at most ``steps`` steps each. ``seed`` makes
    the generated sequences repeatable (None: new ones every run). ``token``
    makes the run's accounts and collection names unique on a shared server;
    ``timeout`` is how long to wait for each expected websocket message and
    ``quiet`` how long to listen for unexpected ones when an example ends.

    A failure is cut down by replaying shorter scripts (``Run.minimize``):
    that deletes steps reliably, where Hypothesis's own shrinking of a
    stateful test (``hypothesis_shrink``) is slow here and often cannot
    delete steps.
    """
    run = Run(target, token=token, timeout=timeout, quiet=quiet)
    run.setup()
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if hypothesis_shrink else []),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    test = get_state_machine_test(machine_for(run), settings=config)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    report = Report(examples=0)
    try:
        test()
    except ConformanceFailure as failure:
        report.found = failure
        report.failure = run.minimize(failure) if minimize else failure
    except Flaky as flaky:
        # Hypothesis reran a failing case and it passed (a server whose
        # answers depend on timing): report the first failure seen.
        if run.first_failure is None:
            report.errors.append(flaky)
        else:
            report.flaky = True
            report.found = run.first_failure
            report.failure = run.minimize(run.first_failure) if minimize else run.first_failure
    finally:
        report.examples = run.examples
    return report
