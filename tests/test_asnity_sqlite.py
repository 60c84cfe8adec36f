"""Asnity's actions against the SQLite store, driven as the trio runner
drives them: the same answers as on the memory store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from asnity_harness import Clock, environment
from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.http import HttpRequest
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.operations import HashPassword, VerifyPassword
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.sqlite import SqliteStore


async def _run(store: SqliteStore, action: Any) -> Any:
    try:
        operation = next(action)
        while True:
            if isinstance(operation, HashPassword):
                result: Any = "fake$" + operation.password
            elif isinstance(operation, VerifyPassword):
                result = operation.password_hash == "fake$" + operation.password
            else:
                result = await store.execute(operation)
            operation = action.send(result)
    except StopIteration as done:
        return done.value


async def test_a_community_chat_on_sqlite(tmp_path: Path) -> None:
    board = Switchboard(standard_mounts(BackpackConfig(api_key="k")), environment(Clock()))

    async with await SqliteStore.open(tmp_path / "asnity.db") as store:

        async def http(method: str, target: str, body: Any = None, token: str | None = None) -> Any:
            headers = [("content-type", "application/json")] + ([("authorization", f"Bearer {token}")] if token else [])
            payload = json.dumps(body).encode() if body is not None else b""
            outcome = await _run(store, board.handle_request(HttpRequest(method, target, headers, payload)))
            return outcome.response.status, json.loads(outcome.response.body)

        assert (await http("POST", "/api/user/auth/signup", {"id": "a@b.co", "password": "password1", "nickname": "al"}))[0] == 201
        _, signed_in = await http("POST", "/api/user/auth/signin", {"id": "a@b.co", "password": "password1"})
        token = signed_in["result"]["accessToken"]
        _, community = await http("POST", "/api/community", {"name": "commu"}, token)
        body = {"communityId": community["result"]["_id"], "name": "general", "isPrivate": False, "type": "Channel"}
        _, channel = await http("POST", "/api/channel", body, token)
        channel_id = channel["result"]["_id"]

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(http, "POST", f"/api/channels/{channel_id}/chat", {"type": "TEXT", "content": f"c{n}"}, token)
        status, page = await http("GET", f"/api/channels/{channel_id}/chat?prev=-1", token=token)
        assert status == 200 and [chat["id"] for chat in page["result"]["chat"]] == list(range(21))
        _, users = await http("GET", "/api/users?search=A@B", token=token)
        assert [user["nickname"] for user in users["result"]["users"]] == ["al"]
        assert (await http("POST", "/api/user/auth/signout", {}, token))[0] == 201
        assert (await http("GET", "/api/user/auth/me", token=token))[0] == 401
