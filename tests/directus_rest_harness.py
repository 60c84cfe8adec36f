"""Drives the Directus REST API and the admin API through the pure core.

``DirectusCore`` is ``core_harness.Core`` (the standard mount table behind a
``Switchboard`` on a ``MemoryStore``, every delivery recorded per
connection) with a clock the test moves, Directus-style requests (no
Backpack API key; a Bearer token in a header or the query), and shortcuts
for accounts, roles, rules and static tokens.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from core_harness import API_KEY, Core, Response
from satchel.protocol import backpack
from satchel.protocol.directus import DirectusConfig
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.operations import GetUserByEmail, SetUserRole
from satchel.protocol.permissions import RuleSet, save_rules, load_rules
from satchel.protocol.records import object_id
from satchel.protocol.switchboard import Switchboard
from satchel.protocol.tokens import issue_static_token

START_MS = 1_700_000_000_000
PASSWORD = "correct horse"


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def advance(self, ms: int) -> None:
        self.now += ms


def environment(clock: Clock) -> Environment:
    ids = itertools.count(1)
    tokens = itertools.count(1)
    return Environment(
        now_ms=lambda: clock.now,
        new_id=lambda: object_id(clock.now // 1000, b"\x00\x00\x00\x00\x02", next(ids)),
        new_token=lambda: f"dtok{next(tokens):040d}",
    )


@dataclass
class Account:
    """A user of the shared table: id, email, password, and a Directus login's tokens."""

    id: str
    email: str
    password: str
    access: str = ""
    refresh: str = ""
    cookie: str = ""


def q(value: Any) -> str:
    """A query-string value: JSON for objects, percent-encoded."""
    return quote(value if isinstance(value, str) else json.dumps(value), safe="")


class DirectusCore(Core):
    def __init__(self, config: DirectusConfig | None = None) -> None:
        super().__init__()
        self.clock = Clock()
        self.env = environment(self.clock)
        self.directus = config or DirectusConfig()
        self.config = backpack.BackpackConfig(api_key=API_KEY)
        self.board = Switchboard(standard_mounts(self.config, directus=self.directus), self.env)
        self.last_changes: list[Any] = []

    # -- requests -------------------------------------------------------------

    def api(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        raw: bytes | None = None,
    ) -> Response:
        """A request as ``@directus/sdk`` sends it: JSON, a Bearer token, no API key."""
        sent = list(headers or [])
        if token is not None:
            sent.append(("authorization", f"Bearer {token}"))
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        if payload:
            sent.append(("content-type", "application/json"))
        outcome = self.run(self.board.handle_request(HttpRequest(method, target, sent, payload)))
        self.last_changes = list(outcome.changes)
        self.publish(outcome.changes)
        return Response(outcome.response)

    # -- accounts -------------------------------------------------------------

    def account(self, email: str, *, role: str | None = None, password: str = PASSWORD) -> Account:
        """Register through Backpack, log in through Backpack (a cookie) and
        through Directus (tokens); give the account ``role`` first."""
        registered = self.http("POST", "/register", {"email": email, "password": password})
        assert registered.status == 200, registered.json
        user_id = registered.json["id"]
        if role is not None:
            assert self.run(_set_role(user_id, role))
        cookie = self.http("POST", "/login", {"email": email, "password": password}).cookie
        assert cookie is not None
        tokens = self.login(email, password)
        return Account(user_id, email, password, tokens["access_token"], tokens["refresh_token"], cookie)

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        answer = self.api("POST", "/auth/login", {"email": email, "password": password, "mode": "json"})
        assert answer.status == 200, answer.json
        return answer.json["data"]

    def static_token(self, user_id: str) -> tuple[str, str]:
        """(token id, token): a static token made for ``user_id``, as the admin API makes it."""
        listing, token = self.run(issue_static_token(user_id, self.env))
        return listing.id, token

    def stored_user(self, email: str) -> Any:
        """The ``User`` stored for ``email`` (or ``None``)."""
        return self.run(_get_user(email))

    def set_rules(self, rules: dict[str, Any]) -> RuleSet:
        """Store ``rules`` (a rule file) and load them, as a server does at start."""
        rule_set = RuleSet.from_json(json.dumps(rules))
        _, revision = self.run(load_rules())
        assert self.run(save_rules(rule_set, revision))
        self.run(self.board.load_rules())
        return rule_set


def _set_role(user_id: str, role: str) -> Any:
    return (yield SetUserRole(user_id, role))


def _get_user(email: str) -> Any:
    return (yield GetUserByEmail(email))


def errors(response: Response) -> tuple[int, str]:
    """(status, code) of an error answer, checking its shape."""
    body = response.json
    assert set(body) == {"errors"}, body
    [error] = body["errors"]
    assert set(error) == {"message", "extensions"} and isinstance(error["message"], str), error
    return response.status, error["extensions"]["code"]
