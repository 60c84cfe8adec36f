"""Satchel as an ASGI app (quart-trio) on hypercorn's trio worker.

It passes the same end-to-end scenarios as the reference server, and
hypercorn's known crash (STACK.md, bug #225: an ``Upgrade: websocket``
request with bytes after its head) is contained: the first test reproduces
the crash with plain ``hypercorn.trio.serve``, the second sends the same
bytes to ``serve_asgi`` and checks that it goes on serving.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from functools import partial
from http.client import HTTPConnection
from typing import Iterator

import pytest
import trio

from satchel.protocol.backpack import BackpackConfig
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.asgi import create_asgi_app, hypercorn_config, serve_asgi
from scenarios import HOSTILE, SCENARIOS, Client, Endpoint, Launched, example, greeted, raw_exchange, receive
from server_process import Http

API_KEY = "asgi-api-key"
HAZARD = HOSTILE[6]  # an upgrade request, then one byte after its head


@pytest.fixture(scope="module")
def asgi_server() -> Iterator[Endpoint]:
    launched: Launched = example("asgi_app", API_KEY)
    try:
        yield launched.endpoint
    finally:
        launched.stop()


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_scenario(asgi_server: Endpoint, scenario: str) -> None:
    await SCENARIOS[scenario](asgi_server)


BOUNDARY = "----satchelAsgiBoundary"


def _multipart(fields: list[tuple[str, str]], file: tuple[str, bytes]) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields]
    filename, content = file
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def test_uploads_the_sdk_and_inbox_documents_are_served_too(asgi_server: Endpoint) -> None:
    """The rest of the reference server's HTTP surface, through the same core."""
    client = Http(asgi_server)  # type: ignore[arg-type]
    user = client.login(f"asgi-files-{os.getpid()}@example.com")
    content = os.urandom(300_000)
    form = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    status, meta, _ = client.request("POST", "/uploads", _multipart([("bucket", "b"), ("filename", "a b.png")],
                                                                    ("a b.png", content)), headers=form)
    assert status == 200 and (meta["userId"], meta["filename"]) == (user, "a b.png"), meta
    assert client.request("GET", f"/uploads/{user}")[1] == {"records": [meta]}
    status, body, headers = client.request("GET", f"/uploads/{user}/a%20b.png")
    assert (status, body, headers["content-type"]) == (200, content, "image/png")
    assert client.request("DELETE", "/uploads/a%20b.png")[1] == {"deletedRecord": meta}
    assert client.request("GET", f"/uploads/{user}/a%20b.png")[0] == 404

    status, sdk, headers = Http(asgi_server).request("GET", "/sdk.js", key=None)  # type: ignore[arg-type]
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"createSdk" in sdk

    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    status, _, _ = client.request("PUT", f"/backend/documents/{read_token}", {"#messages": {}}, key=None,
                                  headers={"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
    assert status == 200
    status, document, _ = client.request("GET", f"/backend/documents/{read_token}", key=None)
    assert status == 200 and document == {"#messages": {}}


def _app() -> object:
    return create_asgi_app(MemoryStore(), BackpackConfig(api_key=API_KEY))


async def _get_collections(port: int) -> int:
    def get() -> int:
        connection = HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/collections", headers={"Authorization": f"key {API_KEY}"})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    return await trio.to_thread.run_sync(get)


async def test_plain_hypercorn_serve_is_taken_down_by_the_hazard() -> None:
    """The reproduction: the error escapes ``hypercorn.trio.serve``."""
    from hypercorn.trio import serve

    config = hypercorn_config("127.0.0.1", 0)
    crashed: list[BaseException] = []

    async def run_server(task_status: trio.TaskStatus[int]) -> None:
        try:
            await serve(_app(), config, task_status=task_status)  # type: ignore[arg-type]
        except BaseException as error:  # noqa: BLE001 - what we are looking for
            if not isinstance(error, trio.Cancelled):
                crashed.append(error)
                return
            raise

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(run_server)
            port = int(binds[0].rsplit(":", 1)[1])
            assert await _get_collections(port) == 200
            for _ in range(5):
                await trio.to_thread.run_sync(partial(raw_exchange, port, HAZARD, timeout=0.5))
                await trio.sleep(0.05)
                if crashed:
                    break
            nursery.cancel_scope.cancel()
    if not crashed:
        pytest.skip("hypercorn no longer crashes on bug #225's request; serve_asgi's guard is now belt and braces")
    assert "LocalProtocolError" in repr(crashed[0])


async def test_serve_asgi_contains_the_hazard_and_goes_on_serving() -> None:
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_asgi, _app(), hypercorn_config("127.0.0.1", 0))
        port = int(binds[0].rsplit(":", 1)[1])
        with trio.fail_after(20):
            async with trio.open_nursery() as senders:
                for payload in [HAZARD] * 5 + HOSTILE:
                    senders.start_soon(partial(trio.to_thread.run_sync, partial(raw_exchange, port, payload, timeout=1)))
            assert await _get_collections(port) == 200
        nursery.cancel_scope.cancel()


async def test_a_slow_consumer_is_dropped_and_the_others_carry_on() -> None:
    """A websocket that never reads fills its bounded outbox and is dropped
    (its user's close is announced); the sender is never held up."""
    app = create_asgi_app(MemoryStore(), BackpackConfig(api_key=API_KEY), outbox_messages=4)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_asgi, app, hypercorn_config("127.0.0.1", 0))
        endpoint = Endpoint(int(binds[0].rsplit(":", 1)[1]), API_KEY)
        sender, sleeper = await Client.create(endpoint, "sender"), await Client.create(endpoint, "sleeper")
        stuck = socket.create_connection(("127.0.0.1", endpoint.port))
        stuck.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + f"Cookie: {sleeper.http.cookie}\r\n\r\n".encode()
        )
        try:
            async with sender.websocket() as ws:
                await greeted(ws)
                with trio.fail_after(20):
                    while len(app.satchel_hub) != 1:  # type: ignore[attr-defined]
                        await ws.send_message(json.dumps({"action": "open", "pad": "x" * 200_000}))
                        assert (await receive(ws))["action"] in ("open", "close")
                    while (await receive(ws)) != {"action": "close", "userId": sleeper.user_id}:
                        pass
        finally:
            stuck.close()
        nursery.cancel_scope.cancel()


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_health_ready_and_metrics_are_the_reference_servers() -> None:
    """``/health``, ``/ready`` and ``/metrics`` through the ASGI app: the same
    ``health.Operations`` (no API key for the first two; ``/metrics`` an
    administrator's, or anyone's with ``metrics_access="public"``), requests
    counted by mount, and a store that fails makes ``/ready`` 503."""
    from prometheus_client.parser import text_string_to_metric_families

    from satchel.protocol.operations import GetUser

    store = MemoryStore()
    guarded = create_asgi_app(store, BackpackConfig(api_key=API_KEY))
    public = create_asgi_app(store, BackpackConfig(api_key=API_KEY), metrics_access="public")
    async with trio.open_nursery() as nursery:
        ports = []
        for app in (guarded, public):
            binds = await nursery.start(serve_asgi, app, hypercorn_config("127.0.0.1", 0))
            ports.append(int(binds[0].rsplit(":", 1)[1]))
        get = partial(trio.to_thread.run_sync)
        status, body = await get(partial(_get, ports[0], "/health"))
        assert status == 200 and json.loads(body) == {"status": "ok", "pid": os.getpid()}
        status, body = await get(partial(_get, ports[0], "/ready"))
        assert status == 200 and json.loads(body) == {"status": "ready", "checks": {"store": "ok"}}
        assert (await get(partial(_get, ports[0], "/metrics")))[0] == 401
        assert (await get(partial(_get, ports[0], "/metrics", {"Authorization": "Bearer nope"})))[0] == 401
        assert await _get_collections(ports[1]) == 200
        status, body = await get(partial(_get, ports[1], "/metrics"))
        assert status == 200
        families = {family.name: family for family in text_string_to_metric_families(body.decode())}
        routes = {(s.labels["route"], s.labels["status"]) for s in families["satchel_http_request_duration_seconds"].samples}
        assert ("backpack", "200") in routes
        assert {s.labels["protocol"] for s in families["satchel_connections"].samples} >= {"backpack", "admin"}

        real_execute = store.execute

        async def failing(operation: object) -> object:
            if isinstance(operation, GetUser):
                raise ConnectionRefusedError("the store went away")
            return await real_execute(operation)

        store.execute = failing  # type: ignore[method-assign]
        await trio.sleep(1.1)  # past the cached result (PROBE_CACHE)
        status, body = await get(partial(_get, ports[1], "/ready"))
        assert status == 503 and json.loads(body)["checks"] == {"store": "ConnectionRefusedError: the store went away"}
        nursery.cancel_scope.cancel()


async def test_a_store_that_cannot_be_reached_is_answered_503_in_the_protocols_format() -> None:
    """``StoreUnavailable`` through the ASGI app, as through ``satchel
    serve``: an HTTP request gets its protocol's 503 with ``Retry-After``, a
    websocket message its protocol's error frame on a connection that stays
    open, and everything works again once the store is back."""
    from satchel.storage_backends.base import StoreUnavailable

    store = MemoryStore()
    real_execute, real_stamped = store.execute, store.execute_stamped
    away = [False]

    async def flaky(operation: object) -> object:
        if away[0]:
            raise StoreUnavailable("the database went away")
        return await real_execute(operation)  # type: ignore[arg-type]

    async def flaky_stamped(operation: object) -> object:
        if away[0]:
            raise StoreUnavailable("the database went away")
        return await real_stamped(operation)  # type: ignore[arg-type]

    store.execute, store.execute_stamped = flaky, flaky_stamped  # type: ignore[method-assign]
    app = create_asgi_app(store, BackpackConfig(api_key=API_KEY))
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_asgi, app, hypercorn_config("127.0.0.1", 0))
        endpoint = Endpoint(int(binds[0].rsplit(":", 1)[1]), API_KEY)
        client = await Client.create(endpoint, "writer")
        async with client.websocket() as ws:
            await greeted(ws)
            away[0] = True

            def get() -> tuple[int, str | None, bytes]:
                connection = HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
                try:
                    connection.request("GET", "/collections", headers={"Authorization": f"key {API_KEY}"})
                    response = connection.getresponse()
                    return response.status, response.getheader("retry-after"), response.read()
                finally:
                    connection.close()

            status, retry_after, body = await trio.to_thread.run_sync(get)
            assert (status, retry_after) == (503, "1")
            assert set(json.loads(body)) == {"message"}  # Backpack's error format
            await ws.send_message(json.dumps({"action": "create", "collection": "notes", "data": {"n": 1}}))
            frame = await receive(ws)
            assert frame["action"] == "error" and frame["status"] == 503 and frame["failedAction"] == "create"
            away[0] = False
            await ws.send_message(json.dumps({"action": "create", "collection": "notes", "data": {"n": 2}}))
            while (frame := await receive(ws))["action"] != "create":
                pass
            assert frame["response"]["n"] == 2
        assert await _get_collections(endpoint.port) == 200
        nursery.cancel_scope.cancel()


async def test_a_mounts_timer_runs_on_asgi_websockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's change stream re-checks its session on the mount's timer
    (``Mount.deadline_ms``), which the ASGI app runs beside each websocket:
    a sign-out closes the stream, 4401, within ``RECHECK_MS``."""
    from trio_websocket import ConnectionClosed, open_websocket_url

    from satchel.protocol.admin import bootstrap, live
    from satchel.transports.runner import Runner
    from satchel.transports.system_environment import system_environment

    monkeypatch.setattr(live, "RECHECK_MS", 200)
    store = MemoryStore()
    await Runner(store).run(bootstrap.create_admin("root@example.com", "a long password", system_environment()))
    app = create_asgi_app(store, BackpackConfig(api_key=API_KEY))
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_asgi, app, hypercorn_config("127.0.0.1", 0))
        port = int(binds[0].rsplit(":", 1)[1])

        def post(path: str, body: dict[str, str], token: str | None = None) -> tuple[int, bytes]:
            connection = HTTPConnection("127.0.0.1", port, timeout=5)
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
            try:
                connection.request("POST", path, json.dumps(body), headers)
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()

        status, body = await trio.to_thread.run_sync(post, "/auth/login", {"email": "root@example.com",
                                                                           "password": "a long password"})
        assert status == 200, body
        tokens = json.loads(body)["data"]
        async with open_websocket_url(f"ws://127.0.0.1:{port}/_/api/live") as ws:
            await ws.send_message(json.dumps({"type": "auth", "access_token": tokens["access_token"]}))
            assert json.loads(await ws.get_message())["status"] == "ok"
            await trio.sleep(0.5)  # re-checked twice already, still open
            await ws.send_message(json.dumps({"type": "ping"}))
            assert json.loads(await ws.get_message()) == {"type": "pong"}
            status, _ = await trio.to_thread.run_sync(post, "/auth/logout", {"refresh_token": tokens["refresh_token"]},
                                                      tokens["access_token"])
            assert status == 204
            with trio.fail_after(3):
                assert json.loads(await ws.get_message())["code"] == "INVALID_CREDENTIALS"
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
        assert closed.value.reason.code == 4401
        nursery.cancel_scope.cancel()
