"""Resource subscriptions end to end (seed 004): the real ``satchel serve``,
a real websocket client (trio-websocket) passing its headers base58-encoded
in ``Sec-WebSocket-Protocol`` as a browser must, kv writes over REST, a
Backpack record, an inbox message sent over UDP by the Python client - and
entries surviving kill -9."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from satchel.protocol.resources import encode_headers
from satchel.transports.udp import send_message_udp
from server_process import Http, ServerProcess

PASSWORD = "correct horse battery"


def account(server: ServerProcess, email: str) -> tuple[Http, str]:
    """A Backpack session (cookie) and a Directus access token for ``email``."""
    http = Http(server)
    http.login(email, PASSWORD)
    status, body, _ = http.request("POST", "/auth/login", {"email": email, "password": PASSWORD}, key=None)
    assert status == 200, body
    return http, body["data"]["access_token"]


async def receive(ws: WebSocketConnection) -> Any:
    with trio.fail_after(5):
        return json.loads(await ws.get_message())


async def call(server: ServerProcess, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    def run() -> tuple[int, Any]:
        http = Http(server)
        try:
            status, value, _ = http.request(method, path, body, **kwargs)
        finally:
            http.close()
        return status, value

    return await trio.to_thread.run_sync(run)


async def test_a_browser_style_client_hears_kv_records_and_udp_inbox_messages(server: ServerProcess) -> None:
    http, token = account(server, "resources-e2e@example.com")
    headers = {"x-m2-organization": "testOrg", "x-m2-project": "testProj", "authorization": f"Bearer {token}"}
    offered = encode_headers(headers)
    scope = {"x-m2-organization": "testOrg", "x-m2-project": "testProj", "Authorization": f"Bearer {token}"}
    url = f"ws://127.0.0.1:{server.port}/realtime"
    async with open_websocket_url(url, subprotocols=[offered]) as ws, open_websocket_url(url) as anonymous:
        assert ws.subprotocol == offered  # echoed, as RFC 6455 requires

        # kvStore: a missing resource still subscribes; a REST write reaches it.
        await ws.send_message(json.dumps({"action": "subscribe", "resource": {"type": "kvStore", "id": "World:kvstoreClient:testKey"}}))
        warning = await receive(ws)
        assert warning["warning"] == "resource_not_found"
        status, put = await call(server, "PUT", "/realtime/kv/World:kvstoreClient:testKey", {"hp": 10}, key=None,
                                 headers=scope)
        assert status == 200, put
        update = await receive(ws)
        assert update["resource"] == {"type": "kvStore", "id": "World:kvstoreClient:testKey"}
        assert update["data"] == {"hp": 10} and update["version"] == put["version"] and update["userId"]

        # collection: a Backpack REST create reaches the resource subscriber.
        await ws.send_message(json.dumps({"action": "subscribe", "resource": {"type": "collection", "id": "e2eResources"}}))
        assert (await receive(ws))["warning"] == "resource_not_found"
        status, record = await trio.to_thread.run_sync(lambda: http.request("POST", "/e2eResources", {"text": "hi"})[:2])
        assert status == 200
        update = await receive(ws)
        assert update["data"] == {"action": "create", "record": record}

        # document: no account needed; a UDP inbox message reaches the subscriber.
        read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
        status, _ = await call(server, "PUT", f"/backend/documents/{read_token}", {"#messages": {}}, key=None,
                               headers={"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
        assert status == 200
        await anonymous.send_message(json.dumps({"action": "subscribe", "resource": {"type": "document", "id": read_token}}))
        assert (await receive(anonymous))["data"] == {"revision": 1, "content": {"#messages": {}}}
        answer = await trio.to_thread.run_sync(
            lambda: send_message_udp("127.0.0.1", server.port, write_token, "00000000000000c3", {"#": 1, "t": 21.5}))
        assert answer == "M"
        update = await receive(anonymous)
        assert update["resource"] == {"type": "document", "id": read_token}
        assert update["data"]["content"]["#messages"] == {"00000000000000c3": {"#": 1, "t": 21.5}}

        # The anonymous connection may not read kv entries; malformed input is answered, not fatal.
        await anonymous.send_message(json.dumps({"action": "subscribe", "resource": {"type": "kvStore", "id": "x"}}))
        assert (await receive(anonymous))["code"] == "forbidden"
        await anonymous.send_message("{nope")
        assert (await receive(anonymous))["error"] == "Invalid message format"

        status, health = await call(server, "GET", "/realtime/status", key=None)
        assert status == 200 and health["status"] == "ok"
        assert health["connections"] >= 2 and health["subscriptions"] >= 3
    http.close()


@pytest.mark.parametrize("offered, status", [("0OIl", 400), (encode_headers({"authorization": "Bearer forged"}), 401)])
async def test_bad_headers_and_tokens_refuse_the_upgrade(server: ServerProcess, offered: str, status: int) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"ws://127.0.0.1:{server.port}/realtime", subprotocols=[offered]):
            pass
    assert rejected.value.status_code == status
    body = json.loads(rejected.value.body)
    assert set(body) == {"error", "code", "message"}


def test_acknowledged_entries_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        http, token = account(server, "durable@example.com")
        bearer = {"Authorization": f"Bearer {token}"}
        versions = {}
        for n in range(50):
            status, body, _ = http.request("PUT", f"/realtime/kv/key:{n}", {"n": n}, key=None, headers=bearer)
            assert status == 200, body
            versions[n] = body["version"]
        status, _, _ = http.request("PUT", "/realtime/live-config/game", {"mode": "ffa"}, key=None, headers=bearer)
        assert status == 200
        http.close()
    finally:
        server.kill()
    again = ServerProcess(data)
    try:
        http, token = account(again, "durable@example.com")
        bearer = {"Authorization": f"Bearer {token}"}
        status, listed, _ = http.request("GET", "/realtime/kv?prefix=key:&limit=1000", key=None, headers=bearer)
        assert status == 200
        assert {entry["id"]: entry["version"] for entry in listed["entries"]} == {f"key:{n}": v for n, v in versions.items()}
        status, game, _ = http.request("GET", "/realtime/live-config/game", key=None, headers=bearer)
        assert status == 200 and game["data"] == {"mode": "ffa"}
        # The next write's version is past every stored one, clock or not.
        status, body, _ = http.request("PUT", "/realtime/kv/key:0", 1, key=None, headers=bearer)
        assert body["version"] > versions[0]
        http.close()
    finally:
        again.stop()
