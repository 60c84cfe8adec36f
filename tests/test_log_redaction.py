"""No secret ever reaches a log line: when a request fails, the server logs
which one - without the tokens that travel in its query string
(``?access_token=``, ``?api_token=``) or in its path (the inbox documents'
read and write tokens)."""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio
from trio_websocket import HandshakeError, open_websocket_url

from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.http import HttpRequest, loggable_target
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.mounts import Mount
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.asgi import create_asgi_app, hypercorn_config, serve_asgi
from satchel.transports.cli import build_parser, run_server

SECRET = "s3cr3t" * 6  # 36 characters: a capability token's length
TARGET = f"/boom/{SECRET}?access_token={SECRET}&api_token={SECRET}"


class BoomMount(Mount):
    """Claims ``/boom...`` and fails on everything: the transport must log it."""

    name = "boom"

    def claims_request(self, request: HttpRequest) -> bool:
        return request.path.startswith("/boom")

    def claims_upgrade(self, request: HttpRequest) -> bool:
        return request.path.startswith("/boom")

    def handle_request(self, request: HttpRequest, env: Any, form: Any = None) -> Any:
        raise RuntimeError("boom")
        yield

    def accept(self, request: HttpRequest, connection: str, env: Any) -> Any:
        raise RuntimeError("boom")
        yield


@contextlib.asynccontextmanager
async def reference_server(tmp_path: Path) -> AsyncIterator[int]:
    args = build_parser().parse_args(["serve", "--port", "0", "--data-dir", str(tmp_path), "--api-key", "k",
                                      "--udp-port", "-1"])
    async with trio.open_nursery() as nursery:
        yield await nursery.start(partial(run_server, args, extra_mounts=[BoomMount()]))
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def asgi_server(tmp_path: Path) -> AsyncIterator[int]:
    app = create_asgi_app(MemoryStore(), mounts=standard_mounts(BackpackConfig(api_key="k"), first=[BoomMount()]))
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve_asgi, app, hypercorn_config("127.0.0.1", 0)))
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


def test_a_loggable_target_drops_the_query_and_long_segments() -> None:
    read = "0123456789abcdef" * 2
    assert loggable_target(f"/backend/documents/{read}?If=1") == "/backend/documents/<redacted>?<query>"
    assert loggable_target("/items/articles/5e9f2fc00000000000000001") == "/items/articles/5e9f2fc00000000000000001"
    assert loggable_target(f"/websocket?access_token={SECRET}") == "/websocket?<query>"
    assert len(loggable_target("/" + "a/" * 500)) <= 200


@pytest.mark.parametrize("server", [reference_server, asgi_server], ids=["reference", "asgi"])
async def test_a_failing_request_is_logged_without_its_tokens(server: Any, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with server(tmp_path) as port:
        def call() -> int:
            connection = HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", TARGET)
                return connection.getresponse().status
            finally:
                connection.close()

        assert await trio.to_thread.run_sync(call) == 500
        with pytest.raises(HandshakeError):
            async with open_websocket_url(f"ws://127.0.0.1:{port}{TARGET}"):
                pass
    # The server's own records (the client library logs the URL it dials).
    server_records = [record for record in caplog.records if not record.name.startswith("trio-websocket")]
    logged = "\n".join(record.getMessage() for record in server_records)
    assert logged.count("/boom/<redacted>") >= 2, logged  # both failures were logged...
    shown = "\n".join(logging.Formatter().format(record) for record in server_records)
    assert SECRET not in shown  # ...without the secret, tracebacks included
