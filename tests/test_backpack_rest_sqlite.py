"""Backpack REST through the runner and the SQLite store, the way ``satchel
serve`` runs it, for the fast paths of issue 13 part 3: a get-by-id that
passes the stored JSON through answers exactly what encoding the record
would, a rule that cuts fields still cuts them, and a logout or an expiry is
final at once though the session was cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from argon2 import PasswordHasher

from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, json_response
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.operations import SetUserRole
from satchel.protocol.permissions import RuleSet
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.sqlite import SqliteStore
from satchel.transports.app import SatchelApp
from satchel.transports.bus import LocalBus
from satchel.transports.hub import Hub
from satchel.transports.runner import Runner
from satchel.transports.system_environment import system_environment

KEY = "sqlite-rest-key"
PASSWORD = "correct horse battery"
# Key order, nesting, unicode, a float, a big integer, null, an empty string.
RECORD = {"zebra": 1, "apple": {"b": 2, "a": [3, 1]}, "text": "ünïcödé ✓ \"q\"", "value": 0.1,
          "big": 2**53 + 1, "nothing": None, "empty": ""}


class App:
    def __init__(self, store: SqliteStore, env: Environment, ttl_ms: int | None = None) -> None:
        config = BackpackConfig(KEY) if ttl_ms is None else BackpackConfig(KEY, session_ttl_ms=ttl_ms)
        self.board = Switchboard(standard_mounts(config), env)
        self.runner = Runner(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        self.app = SatchelApp(self.runner, LocalBus(Hub(), self.board))
        self.cookie: str | None = None

    async def call(self, method: str, target: str, body: Any = None) -> Any:
        headers = [("authorization", f"key {KEY}")]
        if self.cookie:
            headers.append(("cookie", self.cookie))
        payload = b"" if body is None else msgspec.json.encode(body)
        if payload:
            headers.append(("content-type", "application/json"))
        return await self.app.handle_http(HttpRequest(method, target, headers, payload))

    async def sign_in(self, email: str) -> str:
        await self.call("POST", "/register", {"email": email, "password": PASSWORD})
        response = await self.call("POST", "/login", {"email": email, "password": PASSWORD})
        assert response.status == 200
        self.cookie = next(v for k, v in response.headers if k == "set-cookie").split(";", 1)[0]
        return msgspec.json.decode(response.body)["id"]


async def test_a_passed_through_record_is_byte_for_byte_what_encoding_gives(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    try:
        app = App(store, system_environment())
        await app.sign_in("sally@example.com")
        created = await app.call("POST", "/notes", RECORD)
        record = msgspec.json.decode(created.body)
        got = await app.call("GET", f"/notes/{record['_id']}")
        assert got.status == 200
        assert got.body == json_response(200, record).body == created.body
        assert list(msgspec.json.decode(got.body)) == list(record)
        assert ("content-type", "application/json; charset=utf-8") in got.headers
        head = await app.call("HEAD", f"/notes/{record['_id']}")
        assert head.status == 200 and head.body == got.body  # the transport drops it for HEAD
        missing = await app.call("GET", "/notes/" + "0" * 24)
        assert missing.status == 404
    finally:
        await store.aclose()


async def test_a_rule_that_cuts_fields_still_cuts_them(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    try:
        app = App(store, system_environment())
        writer = await app.sign_in("editor@example.com")
        created = msgspec.json.decode((await app.call("POST", "/notes", RECORD)).body)
        reader = App(store, system_environment())
        reader.board = app.board  # one server
        reader.app = app.app
        sally = await reader.sign_in("sally@example.com")
        app.board.rules = RuleSet.from_json(b"""{"version": 1, "roles": {"reader": {"rules": [
            {"collection": "notes", "action": "read", "fields": ["zebra", "text"]}]}}}""")
        assert await app.runner.run(_one(SetUserRole(sally, "reader"))) is True
        got = await reader.call("GET", f"/notes/{created['_id']}")
        assert got.status == 200
        assert msgspec.json.decode(got.body) == {"_id": created["_id"], "zebra": 1, "text": RECORD["text"]}
        full = await app.call("GET", f"/notes/{created['_id']}")  # the editor may read it all
        assert msgspec.json.decode(full.body) == created and writer
    finally:
        await store.aclose()


def _one(operation: Any) -> Any:
    return (yield operation)


async def test_logout_and_expiry_are_final_at_once_through_the_runner(tmp_path: Path) -> None:
    now = [1_700_000_000_000]
    ids = iter(range(1, 10**6))
    env = Environment(now_ms=lambda: now[0], new_id=lambda: f"{next(ids):024x}",
                      new_token=lambda: f"token-{next(ids):040d}")
    store = await SqliteStore.open(tmp_path / "db")
    try:
        app = App(store, env, ttl_ms=60_000)
        await app.sign_in("sally@example.com")
        for _ in range(3):
            assert (await app.call("GET", "/notes")).status == 200
        assert len(app.board.sessions) == 1
        assert (await app.call("POST", "/logout")).status == 200
        assert (await app.call("GET", "/notes")).status == 403

        await app.sign_in("sally@example.com")
        assert (await app.call("GET", "/notes")).status == 200
        now[0] += 60_000 - 1
        assert (await app.call("GET", "/notes")).status == 200
        now[0] += 1
        assert (await app.call("GET", "/notes")).status == 403
    finally:
        await store.aclose()


async def test_a_filter_that_admits_every_field_passes_the_record_through_and_denies_the_rest(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    try:
        app = App(store, system_environment())
        await app.sign_in("editor@example.com")
        shown = msgspec.json.decode((await app.call("POST", "/notes", RECORD)).body)
        hidden = msgspec.json.decode((await app.call("POST", "/notes", {**RECORD, "zebra": 2})).body)
        reader = App(store, system_environment())
        reader.board, reader.app = app.board, app.app
        sally = await reader.sign_in("sally@example.com")
        app.board.rules = RuleSet.from_json(b"""{"version": 1, "roles": {"reader": {"rules": [
            {"collection": "notes", "action": "read", "filter": {"zebra": {"_eq": 1}}}]}}}""")
        assert await app.runner.run(_one(SetUserRole(sally, "reader"))) is True
        got = await reader.call("GET", f"/notes/{shown['_id']}")
        assert got.status == 200 and got.body == json_response(200, shown).body
        assert (await reader.call("GET", f"/notes/{hidden['_id']}")).status == 404
    finally:
        await store.aclose()
