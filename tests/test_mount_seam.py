"""A protocol plugs in as one mount: an extra mount added to the table is
reachable through the reference server and the ASGI app with no other edit.

``EchoMount`` (``echo_mount.py``) claims ``/echo`` for HTTP and websockets.
Each server is built by its own code path - the reference server by
``satchel serve``'s ``run_server`` (SQLite, the thin trio transport), the ASGI
app by ``create_asgi_app`` on hypercorn - with the mount added to Satchel's
table, and the same scenario runs against both: the echo protocol's HTTP
route, upgrades, messages, deliveries and error format; Backpack beside it
unchanged; and a Backpack write rendered by both protocols.
"""

from __future__ import annotations

import contextlib
import json
from functools import partial
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio
from trio_websocket import open_websocket_url

from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.conformance import InProcessTarget
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.asgi import create_asgi_app, hypercorn_config, serve_asgi
from satchel.transports.cli import build_parser, run_server
from satchel.transports.static import STATIC_FILES

from echo_mount import EchoMount

API_KEY = "seam-api-key"


@contextlib.asynccontextmanager
async def reference_server(tmp_path: Path) -> AsyncIterator[int]:
    args = build_parser().parse_args(
        ["serve", "--port", "0", "--data-dir", str(tmp_path), "--api-key", API_KEY, "--udp-port", "-1"]
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(run_server, args, extra_mounts=[EchoMount()]))
        yield port
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def asgi_server(tmp_path: Path) -> AsyncIterator[int]:
    mounts = standard_mounts(BackpackConfig(api_key=API_KEY), first=[STATIC_FILES, EchoMount()])
    app = create_asgi_app(MemoryStore(), mounts=mounts)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve_asgi, app, hypercorn_config("127.0.0.1", 0)))
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


SERVERS = {"reference": reference_server, "asgi": asgi_server}


async def http(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
               cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    def call() -> tuple[int, dict[str, str], bytes]:
        connection = HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            sent = dict(headers or {})
            if cookie:
                sent["Cookie"] = cookie
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    return await trio.to_thread.run_sync(call)


async def receive(ws: Any) -> Any:
    with trio.fail_after(5):
        return json.loads(await ws.get_message())


@pytest.mark.parametrize("server", SERVERS)
async def test_an_extra_mount_is_served_beside_satchels_own(server: str, tmp_path: Path) -> None:
    async with SERVERS[server](tmp_path) as port:
        url = f"ws://127.0.0.1:{port}/echo"
        async with open_websocket_url(url, subprotocols=["echo"]) as a, open_websocket_url(url) as b:
            assert a.subprotocol == "echo" and b.subprotocol is None
            a_id = (await receive(a))["hello"]
            b_id = (await receive(b))["hello"]
            assert a_id != b_id

            # Messages: the sender's echo, the others' relay.
            await a.send_message("hi")
            assert await receive(a) == {"echo": "hi"}
            assert await receive(b) == {"from": a_id, "said": "hi"}

            # Its HTTP route, and a delivery from an HTTP action to its websockets.
            status, headers, body = await http(port, "POST", "/echo", b"ping")
            assert (status, json.loads(body)) == (200, {"echo": "ping"})
            assert await receive(a) == {"heard": "ping"}
            assert await receive(b) == {"heard": "ping"}

            # Its own error format: its action's errors, and the transport's
            # errors on its path (a body over the limit, refused unread).
            status, headers, body = await http(port, "GET", "/echo")
            assert (status, body) == (405, b"echo says: POST only")
            status, headers, body = await http(port, "POST", "/echo", b"x" * (1024 * 1024 + 1))
            assert status == 413 and headers["content-type"].startswith("text/plain")
            assert body.startswith(b"echo says: ")

            # Backpack beside it, unchanged, and its writes rendered for both protocols.
            key = {"Authorization": f"key {API_KEY}", "Content-Type": "application/json"}
            credentials = json.dumps({"email": f"seam-{server}@example.com", "password": "long enough"}).encode()
            assert (await http(port, "POST", "/register", credentials, key))[0] == 200
            status, headers, _ = await http(port, "POST", "/login", credentials, key)
            cookie = headers["set-cookie"].split(";")[0]
            status, _, body = await http(port, "GET", "/nowhere", headers=key, cookie=cookie)
            assert status == 200 and json.loads(body) == []  # still Backpack's catch-all
            async with open_websocket_url(f"ws://127.0.0.1:{port}/", extra_headers=[("Cookie", cookie)]) as backpack:
                assert (await receive(backpack))["action"] == "connection"
                status, _, body = await http(port, "POST", "/notes", b'{"text":"hello"}', key, cookie)
                assert status == 200
                record = json.loads(body)
                seen = await receive(backpack)
                assert seen == {"action": "create", "collection": "notes", "httpRequest": True, "response": record}
                assert await receive(a) == {"changed": "notes", "kind": "create"}
                assert await receive(b) == {"changed": "notes", "kind": "create"}


@pytest.mark.parametrize("server", SERVERS)
async def test_a_closed_echo_connection_is_announced_to_the_others(server: str, tmp_path: Path) -> None:
    async with SERVERS[server](tmp_path) as port:
        url = f"ws://127.0.0.1:{port}/echo"
        async with open_websocket_url(url) as a:
            await receive(a)
            async with open_websocket_url(url) as b:
                b_id = (await receive(b))["hello"]
            assert await receive(a) == {"left": b_id}


def test_the_in_process_target_serves_the_extra_mount_too() -> None:
    mounts = standard_mounts(BackpackConfig(api_key=API_KEY), first=[EchoMount()])
    target = InProcessTarget(MemoryStore(), API_KEY, mounts=mounts)
    reply = target.http(None, "POST", "/echo", b"ping", key=None)
    assert (reply.status, json.loads(reply.body)) == (200, {"echo": "ping"})
    reply = target.http(None, "GET", "/collections", None, key=API_KEY)
    assert (reply.status, json.loads(reply.body)) == (200, [])


def test_a_runner_without_engineio_refuses_its_paths_in_engineios_format() -> None:
    """The in-process target (like the ASGI app and the examples) has no
    Engine.IO transport: Socket.IO's path answers 501 saying so, not Backpack's 401."""
    target = InProcessTarget(MemoryStore(), API_KEY)
    reply = target.http(None, "GET", "/socket.io/?EIO=4&transport=polling", None, key=API_KEY)
    assert reply.status == 501 and json.loads(reply.body)["code"] == 3
    assert target.connect(None, "c1") == 401  # "/" still Backpack's (no session)
